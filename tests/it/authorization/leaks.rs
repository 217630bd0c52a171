//! Leaks: nothing of the other world shows in any answer, whatever a caller asks.

use serde_json::{Value, json};

use super::{NOBODY, Who, Who::*, Worlds, worlds};

/// Everything a caller can ask for at once, every edge followed.
const EVERYTHING: &str = "{
  viewer { role appId operatorId }
  apps { nodes { id name publishableKey processorAccountId links { nodes { id } } } }
  operators { nodes { id name links { nodes { id app { id } connectedAccountId } } } }
  links { nodes { id app { id } operator { id } authorizationUrl connectedAccountId } }
  customers { nodes { id externalRef processorCustomerId card { last4 } } }
  parkingSessions { nodes { id zone vehiclePlate app { id publishableKey } customer { id externalRef processorCustomerId }
    link { id connectedAccountId } chargeToken { id token session { id } } chargeTokens { id token } } }
}";

/// Every by-id read and every mutation, aimed at the other world's objects.
const PROBES: [&str; 16] = [
    "query($app: ID!) { app(id: $app) { id name publishableKey processorAccountId links { nodes { id } } } }",
    "query($link: ID!) { link(id: $link) { id app { id } operator { id } connectedAccountId authorizationUrl } }",
    "query($app: ID!) { links(appId: $app) { totalCount nodes { id } } }",
    "query($customer: ID!) { customer(id: $customer) { id externalRef processorCustomerId } }",
    "query($session: ID!) { parkingSession(id: $session) { id zone vehiclePlate chargeToken { id token } } }",
    "query($token: ID!) { chargeToken(id: $token) { id token session { id } } }",
    "mutation($app: ID!, $operator: ID!) { linkOperator(input: {appId: $app, operatorId: $operator}) { link { id } } }",
    "mutation($link: ID!) { completeLink(input: {linkId: $link, authorizationCode: \"ac_x\"}) { link { id connectedAccountId } } }",
    "mutation($link: ID!) { unlinkOperator(input: {linkId: $link}) { link { id } } }",
    "mutation($customer: ID!, $operator: ID!) { startParkingSession(input: {customerId: $customer, operatorId: $operator, zone: \"Z\", vehiclePlate: \"P\", idempotencyKey: \"probe\"}) { session { id } } }",
    "mutation($session: ID!) { endParkingSession(input: {sessionId: $session, amount: {amount: 100, currency: \"usd\"}}) { session { id } } }",
    "mutation($session: ID!) { chargeSession(input: {sessionId: $session}) { session { id } } }",
    "mutation($session: ID!) { reissueChargeToken(input: {sessionId: $session}) { chargeToken { id token } } }",
    "mutation($token: ID!) { acknowledgeChargeToken(input: {chargeTokenId: $token}) { chargeToken { id token } } }",
    "mutation { tokenizeCustomer(input: {externalRef: \"alice-of-a\", cardToken: \"tok_visa\"}) { customer { id } } }",
    "mutation { tokenizeCustomer(input: {externalRef: \"bob-of-b\", cardToken: \"tok_visa\"}) { customer { id } } }",
];

/// Asks everything as `who`, aiming the probes at the given world; returns all the
/// response bodies in one string.
async fn transcript(w: &Worlds, who: Who, target: Value) -> String {
    use futures_util::StreamExt;
    let everything = w.ask(who, EVERYTHING, json!({})).await;
    let probes: Vec<Value> = futures_util::stream::iter(PROBES.iter().map(|probe| w.ask(who, probe, target.clone())))
        .buffered(8)
        .collect()
        .await;
    std::iter::once(everything).chain(probes).map(|response| response.to_string()).collect()
}

#[tokio::test]
async fn other_tenants_never_see_foreign_ids_or_token_values() {
    let w = worlds().await;
    let world_a = json!({ "app": w.app_a, "operator": w.op_x, "link": w.link_ax, "customer": w.cust_a, "session": w.sess_a, "token": w.tok_a });
    let world_b = json!({ "app": w.app_b, "operator": w.op_y, "link": w.link_by, "customer": w.cust_b, "session": w.sess_b, "token": w.tok_b });
    // Operator ids are a public directory; everything else of a world is its own.
    let secrets_a: Vec<String> = vec![
        w.app_a.to_string(),
        w.link_ax.to_string(),
        w.link_az.to_string(),
        w.cust_a.to_string(),
        w.sess_a.to_string(),
        w.tok_a.to_string(),
        w.tokval_a.clone(),
        w.acct_a.clone(),
        w.pk_a.clone(),
        w.pcus_a.clone(),
        w.conn_ax.clone(),
        "ZONE-A".into(),
        "PLATE-A".into(),
    ];
    let secrets_b: Vec<String> = vec![
        w.app_b.to_string(),
        w.link_by.to_string(),
        w.cust_b.to_string(),
        w.sess_b.to_string(),
        w.tok_b.to_string(),
        w.tokval_b.clone(),
        w.acct_b.clone(),
        w.pk_b.clone(),
        w.pcus_b.clone(),
        w.conn_by.clone(),
        "ZONE-B".into(),
        "PLATE-B".into(),
    ];
    let leaked = |text: &str, secrets: &[String]| -> Vec<String> {
        secrets.iter().filter(|s| text.contains(s.as_str())).cloned().collect()
    };

    // World B's callers, aimed at world A, and the other way round.
    for (who, target, foreign) in [
        (AppB, &world_a, &secrets_a),
        (OpY, &world_a, &secrets_a),
        (AppA, &world_b, &secrets_b),
        (OpX, &world_b, &secrets_b),
    ] {
        let text = transcript(&w, who, target.clone()).await;
        assert_eq!(leaked(&text, foreign), Vec::<String>::new(), "{who:?} saw another tenant's data:\n{text}");
    }

    // Operator Z is linked to app A (pending) and sees app A, but nothing of A's
    // dealings with operator X.
    let text = transcript(&w, OpZ, world_a.clone()).await;
    assert!(text.contains(&w.app_a.to_string()), "Z sees the app it is linked to");
    let a_with_x: Vec<String> = secrets_a
        .iter()
        .filter(|s| ![w.app_a.to_string(), w.link_az.to_string(), w.pk_a.clone()].contains(s))
        .cloned()
        .collect();
    assert_eq!(leaked(&text, &a_with_x), Vec::<String>::new(), "OpZ saw A's business with X:\n{text}");
    assert_eq!(leaked(&text, &secrets_b), Vec::<String>::new(), "OpZ saw world B:\n{text}");

    // Callers without valid credentials see nothing of either world.
    let all: Vec<String> = secrets_a.iter().chain(&secrets_b).cloned().collect();
    for who in NOBODY {
        let text = transcript(&w, who, world_a.clone()).await;
        assert_eq!(leaked(&text, &all), Vec::<String>::new(), "{who:?} saw data:\n{text}");
    }

    // Token values: only the operator each was issued to, even for callers that see the
    // token itself (its app, the admin).
    for who in [Admin, AppA, AppB, OpY, OpZ] {
        let text = w.ask(who, EVERYTHING, json!({})).await.to_string();
        assert!(!text.contains(&w.tokval_a), "{who:?} saw session A's token value: {text}");
    }
    for who in [Admin, AppA, AppB, OpX, OpZ] {
        let text = w.ask(who, EVERYTHING, json!({})).await.to_string();
        assert!(!text.contains(&w.tokval_b), "{who:?} saw session B's token value: {text}");
    }

    // The search is meaningful: the same query shows each party its own.
    let own = w.ask(OpX, EVERYTHING, json!({})).await.to_string();
    for mine in [&w.tokval_a, &w.sess_a.to_string(), &w.cust_a.to_string(), &w.conn_ax] {
        assert!(own.contains(mine.as_str()), "OpX should see {mine}: {own}");
    }
    let own = w.ask(AppA, EVERYTHING, json!({})).await.to_string();
    for mine in [&w.acct_a, &w.pcus_a, &w.tok_a.to_string(), &w.link_az.to_string()] {
        assert!(own.contains(mine.as_str()), "AppA should see {mine}: {own}");
    }
}
