//! The event log: events appended with each change, per-audience copies, the `events`
//! query (paging without gap or duplicate) and the `events` subscription resuming
//! from a cursor across a reconnect.

use curbpay::auth::Role;
use serde_json::{Value, json};

use crate::util::node::NodeSubscriber;
use crate::util::{CHARGE_SESSION, END_SESSION, TestApp, id};

const EVENTS: &str = "query($first: Int, $after: String, $types: [String!]) {
  events(first: $first, after: $after, types: $types) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id type createdAt data } }
  }
}";

/// The caller's events once at least `n` are readable. An event becomes readable once
/// every transaction older than its own has ended (the tests share a Postgres cluster
/// with other tests' transactions).
pub async fn events_eventually(app: &TestApp, token: &str, types: Option<Vec<&str>>, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = all_events(app, token, types.clone()).await;
        if events.len() >= n || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn all_events(app: &TestApp, token: &str, types: Option<Vec<&str>>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = app.ok(token, EVENTS, json!({ "first": 2, "after": after, "types": types })).await;
        let page = &data["events"];
        for edge in page["edges"].as_array().unwrap() {
            out.push(edge.clone());
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return out;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

fn types_of(edges: &[Value]) -> Vec<String> {
    edges.iter().map(|e| e["node"]["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn every_change_appends_one_event_per_audience() {
    let app = TestApp::new().await;
    let world = app.world().await;
    let started = app.start_session(&world, "k1").await;
    let session_id = id(&started["session"]["id"]);
    app.ok(&world.app_token, END_SESSION, json!({ "s": session_id, "a": 350, "c": "usd" })).await;
    app.ok(&world.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;

    let expected = [
        "link.status_changed",
        "link.status_changed",
        "session.started",
        "charge_token.issued",
        "session.ended",
        "session.charged",
    ];
    let for_app = events_eventually(&app, &world.app_token, None, 6).await;
    assert_eq!(types_of(&for_app), expected);
    let for_operator = events_eventually(&app, &world.operator_token, None, 6).await;
    assert_eq!(types_of(&for_operator), expected);
    let for_admin = events_eventually(&app, &app.admin(), None, 6).await;
    assert_eq!(types_of(&for_admin), expected);
    // The same event ids everywhere, unique.
    let ids: Vec<_> = for_app.iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect();
    assert!(ids.iter().all(|i| i.starts_with("evt_")));
    assert_eq!(ids, for_operator.iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>());
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), ids.len());

    // The charge token's value only in the operator's copy.
    let token_app = &for_app[3]["node"]["data"]["chargeToken"];
    let token_operator = &for_operator[3]["node"]["data"]["chargeToken"];
    let token_admin = &for_admin[3]["node"]["data"]["chargeToken"];
    assert_eq!(token_app["token"], Value::Null);
    assert_eq!(token_admin["token"], Value::Null);
    assert!(token_operator["token"].as_str().unwrap().starts_with("tok_"), "{token_operator}");
    assert_eq!(token_app["id"], token_operator["id"]);

    let charged = &for_app[5]["node"]["data"]["session"];
    assert_eq!(charged["status"], "CHARGED");
    assert_eq!(charged["amount"], json!({ "amount": 350, "currency": "USD" }));
    assert_eq!(charged["id"], json!(session_id.to_string()));
    assert_eq!(for_app[1]["node"]["data"]["link"]["status"], "ACTIVE");

    // A type filter; unknown types are refused.
    let only = all_events(&app, &world.app_token, Some(vec!["session.ended", "session.charged"])).await;
    assert_eq!(types_of(&only), ["session.ended", "session.charged"]);
    let code = app.error_code(Some(&world.app_token), EVENTS, json!({ "types": ["session.exploded"] })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let code = app.error_code(Some(&world.app_token), EVENTS, json!({ "after": "nonsense" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let code = app.error_code(None, EVENTS, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");

    // Tenant isolation: another app and another operator see none of it.
    let other_app = app.create_app("Other").await;
    let other_operator = app.create_operator("Other Lots").await;
    assert!(all_events(&app, &app.token(Role::App(other_app)), None).await.is_empty());
    assert!(all_events(&app, &app.token(Role::Operator(other_operator)), None).await.is_empty());
}

#[tokio::test]
async fn declined_charges_emit_payment_failed() {
    let app = TestApp::new().await;
    let world = app.world_with_card("tok_chargeDeclined").await;
    let started = app.start_session(&world, "k1").await;
    let session_id = id(&started["session"]["id"]);
    app.ok(&world.app_token, END_SESSION, json!({ "s": session_id, "a": 350, "c": "usd" })).await;
    app.ok(&world.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    // Charging again changes nothing and emits nothing.
    app.ok(&world.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    let events =
        events_eventually(&app, &world.app_token, Some(vec!["session.payment_failed", "session.charged"]), 1).await;
    assert_eq!(types_of(&events), ["session.payment_failed"]);
    assert_eq!(events[0]["node"]["data"]["session"]["failure"]["code"], "card_declined");
}

#[tokio::test]
async fn retention_prunes_old_events() {
    let app = TestApp::new().await;
    let world = app.world().await;
    assert_eq!(events_eventually(&app, &world.app_token, None, 2).await.len(), 2);
    let pruned =
        curbpay::payments::event_log::prune(&app.broker.pool, chrono::Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap();
    assert_eq!(pruned, 2);
    assert!(all_events(&app, &world.app_token, None).await.is_empty());
}

const SUBSCRIBE: &str = "subscription($after: String, $types: [String!]) {
  events(after: $after, types: $types) { cursor event { id type createdAt data } }
}";

#[tokio::test]
async fn subscription_resumes_from_a_cursor_without_gap_or_duplicate() {
    let app = TestApp::new().await;
    let world = app.world().await;
    let first = events_eventually(&app, &world.operator_token, None, 2).await;
    let start_cursor = first[0]["cursor"].as_str().unwrap().to_owned();

    // Replays what follows the cursor, then streams new events; stop after 3.
    let mut sub = NodeSubscriber::spawn(
        &app.ws_url(),
        &world.operator_token,
        SUBSCRIBE,
        json!({ "after": start_cursor }),
        Some(3),
    );
    let mut seen = vec![sub.next_data().await["events"].clone()];
    app.start_session(&world, "k1").await;
    for _ in 0..2 {
        seen.push(sub.next_data().await["events"].clone());
    }
    assert_eq!(sub.exit_code().await, 0);

    // Meanwhile more happens; a reconnect with the last cursor picks up exactly there.
    let second = app.start_session(&world, "k2").await;
    app.ok(&world.app_token, END_SESSION, json!({ "s": id(&second["session"]["id"]), "a": 100, "c": "eur" })).await;
    let last = seen.last().unwrap()["cursor"].as_str().unwrap().to_owned();
    let mut sub =
        NodeSubscriber::spawn(&app.ws_url(), &world.operator_token, SUBSCRIBE, json!({ "after": last }), Some(3));
    for _ in 0..3 {
        seen.push(sub.next_data().await["events"].clone());
    }
    assert_eq!(sub.exit_code().await, 0);

    let streamed: Vec<_> = seen.iter().map(|e| e["event"]["id"].as_str().unwrap().to_owned()).collect();
    let listed = events_eventually(&app, &world.operator_token, None, 7).await;
    let expected: Vec<_> = listed[1..].iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(streamed, expected, "the stream matches the log, with no gap and no duplicate");
    assert_eq!(
        seen.iter().map(|e| e["event"]["type"].as_str().unwrap()).collect::<Vec<_>>(),
        [
            "link.status_changed",
            "session.started",
            "charge_token.issued",
            "session.started",
            "charge_token.issued",
            "session.ended"
        ]
    );
    // The operator's stream carries the token's value.
    assert!(seen[2]["event"]["data"]["chargeToken"]["token"].is_string());

    // An app's stream never does.
    let mut sub = NodeSubscriber::spawn(
        &app.ws_url(),
        &world.app_token,
        SUBSCRIBE,
        json!({ "after": start_cursor, "types": ["charge_token.issued"] }),
        Some(2),
    );
    for _ in 0..2 {
        let event = sub.next_data().await["events"].clone();
        assert_eq!(event["event"]["data"]["chargeToken"]["token"], Value::Null);
    }
    assert_eq!(sub.exit_code().await, 0);
}

/// The events of the caller's session events (and its tokens), by type, once `n` are readable.
async fn session_events(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    let types = vec![
        "session.started",
        "session.declined",
        "session.extended",
        "session.ended",
        "session.charged",
        "session.payment_failed",
        "session.canceled",
        "session.refunded",
        "session.disputed",
        "charge_token.issued",
    ];
    events_eventually(app, token, Some(types), n).await
}

#[tokio::test]
async fn a_held_session_emits_each_money_transition_once() {
    use crate::money::{CHARGE, END, EXTEND, REFUND, start_held};
    let t = TestApp::new().await;
    let w = t.world().await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    t.ok(&w.app_token, EXTEND, json!({ "s": s, "a": 500, "k": "e-1", "e": "2030-01-01T11:00:00Z" })).await;
    // A retry of the extension emits nothing more.
    t.ok(&w.app_token, EXTEND, json!({ "s": s, "a": 500, "k": "e-1", "e": "2030-01-01T11:00:00Z" })).await;
    t.ok(&w.app_token, END, json!({ "s": s, "a": 1200 })).await;
    t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    t.ok(&w.operator_token, REFUND, json!({ "s": s, "a": 600, "k": "r-1" })).await;
    t.ok(&w.operator_token, REFUND, json!({ "s": s, "a": 600, "k": "r-1" })).await;

    let expected = [
        "session.started",
        "charge_token.issued",
        "session.extended",
        "session.ended",
        "session.charged",
        "session.refunded",
    ];
    let for_app = session_events(&t, &w.app_token, expected.len()).await;
    assert_eq!(types_of(&for_app), expected);
    let for_operator = session_events(&t, &w.operator_token, expected.len()).await;
    assert_eq!(types_of(&for_operator), expected);

    // The held token's value reaches only the operator's copy.
    assert_eq!(for_app[1]["node"]["data"]["chargeToken"]["status"], "HELD");
    assert_eq!(for_app[1]["node"]["data"]["chargeToken"]["token"], Value::Null);
    assert!(for_operator[1]["node"]["data"]["chargeToken"]["token"].as_str().unwrap().starts_with("tok_"));

    let extended = &for_app[2]["node"]["data"];
    assert_eq!(extended["extension"]["amount"], json!({ "amount": 500, "currency": "USD" }));
    assert_eq!(extended["session"]["balance"]["held"], json!({ "amount": 1500, "currency": "USD" }));
    assert_eq!(extended["session"]["expectedEndAt"], "2030-01-01T11:00:00Z");

    let charged = &for_app[4]["node"]["data"]["session"];
    assert_eq!(charged["balance"]["captured"], json!({ "amount": 1200, "currency": "USD" }));
    let refunded = &for_app[5]["node"]["data"];
    assert_eq!(refunded["session"]["status"], "PARTIALLY_REFUNDED");
    assert_eq!(refunded["refund"]["amount"], json!({ "amount": 600, "currency": "USD" }));
    assert_eq!(refunded["refund"]["status"], "SUCCEEDED");
    assert_eq!(refunded["session"]["balance"]["refunded"]["amount"], 600);
}

#[tokio::test]
async fn a_declined_hold_emits_declined_and_no_token() {
    use crate::money::start_held;
    let t = TestApp::new().await;
    let w = t.world_with_card("tok_chargeDeclinedInsufficientFunds").await;
    start_held(&t, &w, "h-1", "B-CP 123", 1000).await;
    start_held(&t, &w, "h-1", "B-CP 123", 1000).await;
    for token in [&w.app_token, &w.operator_token] {
        let events = session_events(&t, token, 2).await;
        assert_eq!(types_of(&events), ["session.started", "session.declined"]);
        let declined = &events[1]["node"]["data"]["session"];
        assert_eq!(declined["status"], "DECLINED");
        assert_eq!(declined["failure"]["declineCode"], "insufficient_funds");
    }
}

#[tokio::test]
async fn cancel_and_dispute_emit_their_events_once() {
    use crate::money::{CANCEL, CHARGE, END, start_held};
    let t = TestApp::new().await;
    let w = t.world().await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    t.ok(&w.app_token, CANCEL, json!({ "s": s })).await;
    t.ok(&w.app_token, CANCEL, json!({ "s": s })).await;
    let events = session_events(&t, &w.operator_token, 3).await;
    assert_eq!(types_of(&events), ["session.started", "charge_token.issued", "session.canceled"]);
    let canceled = &events[2]["node"]["data"]["session"];
    assert_eq!(canceled["status"], "CANCELED");
    assert_eq!(canceled["cancelReason"], "REQUESTED_BY_CUSTOMER");

    let t = TestApp::new().await;
    let w = t.world_with_card("tok_createDispute").await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    t.ok(&w.operator_token, END, json!({ "s": s, "a": 800 })).await;
    t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    let events = session_events(&t, &w.app_token, 5).await;
    assert_eq!(
        types_of(&events),
        ["session.started", "charge_token.issued", "session.ended", "session.charged", "session.disputed"]
    );
    let disputed = &events[4]["node"]["data"];
    assert_eq!(disputed["session"]["status"], "DISPUTED");
    assert_eq!(disputed["dispute"]["amount"], json!({ "amount": 800, "currency": "USD" }));
    assert_eq!(disputed["dispute"]["reason"], "fraudulent");
    assert!(disputed["dispute"]["id"].as_str().unwrap().starts_with("dp_"));
}

/// The `charge_token.issued` event is written with the token in one statement: it shows
/// the token exactly as stored, and so does the start's response.
#[tokio::test]
async fn the_issued_event_shows_the_token_as_stored() {
    const TOKEN: &str = "query($id: ID!) { chargeToken(id: $id) { id status token issuedAt expiresAt } }";
    let t = TestApp::new().await;
    let w = t.world().await;
    let started = t.start_session(&w, "exact").await;
    let token_id = started["session"]["chargeToken"]["id"].clone();
    assert_eq!(started["session"]["chargeToken"]["status"], "ISSUED", "{started}");
    let stored = t.ok(&w.operator_token, TOKEN, json!({ "id": token_id })).await["chargeToken"].clone();
    let events = session_events(&t, &w.operator_token, 2).await;
    assert_eq!(types_of(&events), ["session.started", "charge_token.issued"]);
    let shown = &events[1]["node"]["data"]["chargeToken"];
    let instant = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(shown["id"], stored["id"]);
    assert_eq!(shown["status"], "ISSUED");
    assert_eq!(shown["token"], stored["token"]);
    assert!(stored["token"].as_str().unwrap().starts_with("tok_"), "{stored}");
    assert_eq!(instant(&shown["issuedAt"]), instant(&stored["issuedAt"]));
    assert_eq!(instant(&shown["expiresAt"]), instant(&stored["expiresAt"]));
}
