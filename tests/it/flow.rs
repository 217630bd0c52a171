//! The whole contract, as the README's tour walks it: create an app and an operator,
//! link them, tokenize a card, start a session, end and charge it.

use axum::http::StatusCode;
use curbpay::auth::Role;
use serde_json::json;

use crate::util::{CHARGE_SESSION, END_SESSION, TestApp, code_of, id};

#[tokio::test]
async fn the_tour_end_to_end() {
    let t = TestApp::new().await;
    let admin = t.admin();

    let data = t
        .ok(
            &admin,
            "mutation { createApp(input: {name: \"ParkNow\"}) { app { id name publishableKey processor } } }",
            json!({}),
        )
        .await;
    let app = &data["createApp"]["app"];
    assert_eq!(app["name"], "ParkNow");
    assert_eq!(app["processor"], "sandbox");
    assert!(app["publishableKey"].as_str().unwrap().starts_with("pk_test_"));
    let app_id = id(&app["id"]);

    let data = t
        .ok(
            &admin,
            "mutation { createOperator(input: {name: \"Downtown Garages\"}) { operator { id name } } }",
            json!({}),
        )
        .await;
    let operator_id = id(&data["createOperator"]["operator"]["id"]);

    // The app links itself to the operator; the link waits for the operator to
    // authorize it. The authorization URL is the operator's, not the app's.
    let app_token = t.token(Role::App(app_id));
    let data = t
        .ok(
            &app_token,
            "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id status authorizationUrl connectedAccountId } } }",
            json!({ "a": app_id, "o": operator_id }),
        )
        .await;
    let link = &data["linkOperator"]["link"];
    assert_eq!(link["status"], "PENDING");
    assert!(link["connectedAccountId"].is_null());
    assert!(link["authorizationUrl"].is_null(), "the app never sees the authorization URL: {link}");
    let link_id = id(&link["id"]);
    let operator_token = t.token(Role::Operator(operator_id));
    let data =
        t.ok(&operator_token, "query($id: ID!) { link(id: $id) { authorizationUrl } }", json!({ "id": link_id })).await;
    let url = data["link"]["authorizationUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://{}/sandbox/connect/oauth/authorize?", t.addr)), "{url}");
    assert!(!url.contains("operator_id"), "the operator comes from the signed state only: {url}");

    // Following the URL with plain GETs and redirects activates the link.
    let (status, body, visited) = t.follow(url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Link active"));
    assert!(visited.last().unwrap().contains("/connect/callback?code="));
    let data = t
        .ok(
            &app_token,
            "query($id: ID!) { link(id: $id) { status connectedAccountId authorizationUrl activatedAt } }",
            json!({ "id": link_id }),
        )
        .await;
    assert_eq!(data["link"]["status"], "ACTIVE");
    assert!(data["link"]["connectedAccountId"].as_str().unwrap().starts_with("acct_"));
    assert!(data["link"]["authorizationUrl"].is_null());

    // Replaying the same redirect (same code and state) is refused.
    let (status, _, _) = t.follow(visited.last().unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Tokenize a test card: only brand, last 4 and expiry are kept.
    let data = t
        .ok(
            &app_token,
            "mutation { tokenizeCustomer(input: {externalRef: \"user-42\", cardToken: \"tok_visa\"}) { created customer { id externalRef card { brand last4 expMonth expYear } } } }",
            json!({}),
        )
        .await;
    let customer = &data["tokenizeCustomer"]["customer"];
    assert_eq!(data["tokenizeCustomer"]["created"], true);
    assert_eq!(customer["externalRef"], "user-42");
    assert_eq!(customer["card"]["brand"], "Visa");
    assert_eq!(customer["card"]["last4"], "4242");
    assert!(customer["card"]["expYear"].as_i64().unwrap() > 2025);
    let customer_id = id(&customer["id"]);

    // The same externalRef updates the card instead of duplicating the customer.
    let data = t
        .ok(
            &app_token,
            "mutation { tokenizeCustomer(input: {externalRef: \"user-42\", cardToken: \"tok_mastercard\"}) { created customer { id card { brand last4 } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tokenizeCustomer"]["created"], false);
    assert_eq!(id(&data["tokenizeCustomer"]["customer"]["id"]), customer_id);
    assert_eq!(data["tokenizeCustomer"]["customer"]["card"]["last4"], "4444");
    let data = t.ok(&app_token, "{ customers { totalCount } }", json!({})).await;
    assert_eq!(data["customers"]["totalCount"], 1);

    // Start a session: the operator holds a charge token for it.
    let session = t
        .ok(
            &app_token,
            crate::util::START_SESSION,
            json!({ "c": customer_id, "o": operator_id, "k": "start-1", "z": "Z-12", "p": "B-CP 123" }),
        )
        .await["startParkingSession"]
        .clone();
    assert_eq!(session["replayed"], false);
    assert_eq!(session["session"]["status"], "ACTIVE");
    let session_id = id(&session["session"]["id"]);

    let operator_token = t.token(Role::Operator(operator_id));
    let data = t
        .ok(
            &operator_token,
            "query($id: ID!) { parkingSession(id: $id) { zone vehiclePlate customer { card { last4 } } chargeToken { id token status expiresAt cursor } } }",
            json!({ "id": session_id }),
        )
        .await;
    let token = &data["parkingSession"]["chargeToken"];
    assert!(token["token"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(token["status"], "ISSUED");
    assert_eq!(token["cursor"], "1");
    assert_eq!(data["parkingSession"]["customer"]["card"]["last4"], "4444");

    // The app sees the token's state but never its value.
    let data = t
        .ok(
            &app_token,
            "query($id: ID!) { parkingSession(id: $id) { chargeToken { token status } } }",
            json!({ "id": session_id }),
        )
        .await;
    assert!(data["parkingSession"]["chargeToken"]["token"].is_null());
    assert_eq!(data["parkingSession"]["chargeToken"]["status"], "ISSUED");

    // The operator acknowledges the token.
    let data = t
        .ok(
            &operator_token,
            "mutation($id: ID!) { acknowledgeChargeToken(input: {chargeTokenId: $id}) { chargeToken { status acknowledgedAt } } }",
            json!({ "id": token["id"] }),
        )
        .await;
    assert_eq!(data["acknowledgeChargeToken"]["chargeToken"]["status"], "ACKNOWLEDGED");

    // Charging an active session is a conflict; end it first (currency in any case).
    let code = t.error_code(Some(&operator_token), CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(code, "CONFLICT");
    let data = t.ok(&app_token, END_SESSION, json!({ "s": session_id, "a": 350, "c": "usd" })).await;
    let ended = &data["endParkingSession"]["session"];
    assert_eq!(ended["status"], "ENDED");
    assert_eq!(ended["amount"], json!({ "amount": 350, "currency": "USD" }));

    // The app may not charge; the operator does.
    assert_eq!(t.error_code(Some(&app_token), CHARGE_SESSION, json!({ "s": session_id })).await, "FORBIDDEN");
    let data = t.ok(&operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    let charged = &data["chargeSession"];
    assert_eq!(charged["succeeded"], true);
    assert!(charged["failure"].is_null());
    assert_eq!(charged["session"]["status"], "CHARGED");
    assert!(charged["session"]["processorChargeId"].as_str().unwrap().starts_with("ch_"));
    assert_eq!(charged["session"]["chargeToken"]["status"], "CONSUMED");

    // Charging again returns the same outcome, and charges nothing more.
    let again = t.ok(&operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(again["chargeSession"]["session"]["processorChargeId"], charged["session"]["processorChargeId"]);

    // Lists are Relay connections.
    let data = t
        .ok(
            &admin,
            "{ parkingSessions(status: CHARGED) { totalCount edges { cursor node { id } } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["parkingSessions"]["totalCount"], 1);
    assert_eq!(id(&data["parkingSessions"]["edges"][0]["node"]["id"]), session_id);
}

#[tokio::test]
async fn a_declined_card_is_a_payment_failure_not_an_error() {
    let t = TestApp::new().await;
    let w = t.world_with_card("tok_chargeDeclinedInsufficientFunds").await;
    let session_id = id(&t.start_session(&w, "k1").await["session"]["id"]);
    t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 500, "c": "EUR" })).await;
    let response = t.post(Some(&w.operator_token), CHARGE_SESSION, json!({ "s": session_id })).await;
    assert!(response.get("errors").is_none(), "{response}");
    let payload = &response["data"]["chargeSession"];
    assert_eq!(payload["succeeded"], false);
    assert_eq!(payload["session"]["status"], "PAYMENT_FAILED");
    assert_eq!(payload["failure"]["code"], "card_declined");
    assert_eq!(payload["failure"]["declineCode"], "insufficient_funds");
    // The outcome is final: charging again reports the same failure.
    let again = t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(again["chargeSession"]["failure"]["declineCode"], "insufficient_funds");
}

#[tokio::test]
async fn unknown_card_tokens_and_card_numbers_are_rejected() {
    let t = TestApp::new().await;
    let app_id = t.create_app("A").await;
    let app_token = t.token(Role::App(app_id));
    let q =
        "mutation($t: String!) { tokenizeCustomer(input: {externalRef: \"u\", cardToken: $t}) { customer { id } } }";
    for bad in ["tok_nonexistent", "4242424242424242"] {
        let response = t.post(Some(&app_token), q, json!({ "t": bad })).await;
        assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
        assert!(!response.to_string().contains("4242424242424242"));
    }
    // Nothing was created.
    let data = t.ok(&app_token, "{ customers { totalCount } }", json!({})).await;
    assert_eq!(data["customers"]["totalCount"], 0);
}

#[tokio::test]
async fn complete_link_by_mutation_and_the_denied_path() {
    let t = TestApp::new().await;
    let app_id = t.create_app("A").await;
    let operator_id = t.create_operator("O").await;
    let app_token = t.token(Role::App(app_id));
    let operator_token = t.token(Role::Operator(operator_id));
    let link = "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id } } }";
    let data = t.ok(&app_token, link, json!({ "a": app_id, "o": operator_id })).await;
    let link_id = id(&data["linkOperator"]["link"]["id"]);
    let data =
        t.ok(&operator_token, "query($id: ID!) { link(id: $id) { authorizationUrl } }", json!({ "id": link_id })).await;
    let url = data["link"]["authorizationUrl"].as_str().unwrap().to_owned();

    // The operator declines: the link stays PENDING with the reason.
    let (status, body, _) = t.follow(&format!("{url}&sandbox_decision=deny")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data =
        t.ok(&app_token, "query($id: ID!) { link(id: $id) { status failureReason } }", json!({ "id": link_id })).await;
    assert_eq!(data["link"]["status"], "PENDING");
    assert_eq!(data["link"]["failureReason"], "The user denied your request");

    // A forged state is refused.
    let (status, _, _) = t.follow(&format!("http://{}/connect/callback?code=ac_x&state=forged", t.addr)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The operator completes the link itself with the code from the redirect.
    let path = url.split_once(&t.addr.to_string()).unwrap().1.to_owned();
    let response = {
        use tower::ServiceExt;
        t.router.clone().oneshot(axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap()).await.unwrap()
    };
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let complete = "mutation($l: ID!, $c: String!) { completeLink(input: {linkId: $l, authorizationCode: $c}) { link { status connectedAccountId } } }";
    assert_eq!(
        t.error_code(Some(&operator_token), complete, json!({ "l": link_id, "c": "ac_wrong" })).await,
        "BAD_USER_INPUT"
    );
    // The app asks for links but never authorizes them, even with a genuine code.
    assert_eq!(t.error_code(Some(&app_token), complete, json!({ "l": link_id, "c": code })).await, "FORBIDDEN");
    let data = t.ok(&operator_token, complete, json!({ "l": link_id, "c": code })).await;
    assert_eq!(data["completeLink"]["link"]["status"], "ACTIVE");
}

#[tokio::test]
async fn unlinking_voids_outstanding_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let session_id = id(&t.start_session(&w, "k1").await["session"]["id"]);
    let data = t
        .ok(
            &w.app_token,
            "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { status revokedAt } } }",
            json!({ "l": w.link_id }),
        )
        .await;
    assert_eq!(data["unlinkOperator"]["link"]["status"], "REVOKED");
    let data = t
        .ok(
            &w.operator_token,
            "query($id: ID!) { parkingSession(id: $id) { chargeToken { status voidedAt } } }",
            json!({ "id": session_id }),
        )
        .await;
    assert_eq!(data["parkingSession"]["chargeToken"]["status"], "VOIDED");
    // No new token while the link is revoked, and no new sessions.
    let reissue = "mutation($s: ID!) { reissueChargeToken(input: {sessionId: $s}) { chargeToken { id } } }";
    assert_eq!(t.error_code(Some(&w.app_token), reissue, json!({ "s": session_id })).await, "CONFLICT");
    let response = t
        .post(
            Some(&w.app_token),
            crate::util::START_SESSION,
            json!({ "c": w.customer_id, "o": w.operator_id, "k": "k2", "z": "Z", "p": "P" }),
        )
        .await;
    assert_eq!(code_of(&response).as_deref(), Some("CONFLICT"));

    // Linking again asks for authorization again; once active, reissue works.
    t.activate_link(w.app_id, w.operator_id).await;
    let data = t.ok(&w.app_token, reissue, json!({ "s": session_id })).await;
    assert!(data["reissueChargeToken"]["chargeToken"]["id"].is_string());
    let data = t
        .ok(
            &w.operator_token,
            "query($id: ID!) { parkingSession(id: $id) { chargeTokens { status } } }",
            json!({ "id": session_id }),
        )
        .await;
    assert_eq!(data["parkingSession"]["chargeTokens"], json!([{ "status": "VOIDED" }, { "status": "ISSUED" }]));
}

#[tokio::test]
async fn expired_tokens_are_reissued() {
    let t = TestApp::with_config(|c| c.charge_token_ttl = std::time::Duration::from_millis(300)).await;
    let w = t.world().await;
    let session_id = id(&t.start_session(&w, "k1").await["session"]["id"]);
    let reissue =
        "mutation($s: ID!) { reissueChargeToken(input: {sessionId: $s}) { chargeToken { id status token } } }";
    // Still valid: the operator should use it.
    assert_eq!(t.error_code(Some(&w.app_token), reissue, json!({ "s": session_id })).await, "CONFLICT");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 100, "c": "usd" })).await;
    // Charging with an expired token is refused and marks it EXPIRED.
    assert_eq!(t.error_code(Some(&w.operator_token), CHARGE_SESSION, json!({ "s": session_id })).await, "CONFLICT");
    let data = t.ok(&w.operator_token, reissue, json!({ "s": session_id })).await;
    assert_eq!(data["reissueChargeToken"]["chargeToken"]["status"], "ISSUED");
    assert!(data["reissueChargeToken"]["chargeToken"]["token"].is_string());
    let data = t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(data["chargeSession"]["session"]["status"], "CHARGED");
}

#[tokio::test]
async fn browsers_on_partner_origins_may_call_the_api() {
    let t = TestApp::with_config(|c| c.cors_allowed_origins = vec!["https://app.parknow.example".to_owned()]).await;
    let preflight = |origin: &str| {
        axum::http::Request::builder()
            .method("OPTIONS")
            .uri("/graphql")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    use tower::ServiceExt;
    let allowed = t.router.clone().oneshot(preflight("https://app.parknow.example")).await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.parknow.example");
    let other = t.router.clone().oneshot(preflight("https://evil.example")).await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// What starting a session costs in SQL statements (the sandbox processor's included):
/// the rows it checks are read once and handed on, not read again to issue the token.
#[tokio::test]
async fn starting_a_session_reads_each_row_once() {
    let t = TestApp::new().await;
    let world = t.world().await;
    t.start_session(&world, "warm-up").await;
    // The event notifier and the webhook worker share the pool and the counter: let
    // them settle before, and count what they do for the session after.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = t.statements();
    let started = t.start_session(&world, "counted").await;
    let in_request = t.statements() - before;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cost = t.statements() - before;
    assert_eq!(started["session"]["chargeToken"]["status"], "ISSUED", "{started}");
    println!("SQL statements per startParkingSession: {in_request} by the response, {cost} in all");
    // The request's own: the customer with its app, and the link (2), the session's
    // transaction (BEGIN, session, token, event, COMMIT: 5), the sandbox's checks and
    // token (2), and the one statement that issues the token (1): 10. The idempotency key is read
    // only when the insert fails, and the payload's token is the one just issued. The
    // notifier and the webhook worker answer the session's events beside it.
    assert!(in_request <= 16, "startParkingSession took {in_request} statements");
    assert!(cost <= 20, "startParkingSession took {cost} statements in all");
}
