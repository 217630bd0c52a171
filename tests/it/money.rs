//! The money lifecycle of a session in the sandbox, through the GraphQL API: holds,
//! extensions, capture, cancel, refunds, disputes, duplicate sessions and the sweeper.
//! Every test ends by checking that the ledger and the balance agree.

use std::sync::Arc;
use std::time::Duration;

use curbpay::auth::Role;
use serde_json::{Value, json};

use crate::util::ledger::{assert_ledger_balanced, count, sql};
use crate::util::{TestApp, World, code_of, id};

pub(crate) const START_HELD: &str =
    "mutation($c: ID!, $o: ID!, $k: String!, $z: String!, $p: String!, $a: Int!, $cur: String!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: $z, vehiclePlate: $p, idempotencyKey: $k,
                              hold: {amount: $a, currency: $cur}, expectedEndAt: \"2030-01-01T10:00:00Z\"}) {
    replayed
    session { id status expectedEndAt failure { code declineCode message }
              balance { held { amount currency } captured { amount } refunded { amount } capturable { amount } }
              chargeToken { status cursor hold { amount { amount currency } expiresAt } } }
  }
}";

pub(crate) const EXTEND: &str = "mutation($s: ID!, $a: Int!, $k: String!, $e: DateTime) {
  extendParkingSession(input: {sessionId: $s, additionalHold: {amount: $a, currency: \"usd\"}, idempotencyKey: $k, expectedEndAt: $e}) {
    failure { code declineCode message }
    session { status expectedEndAt balance { held { amount } } }
  }
}";

pub(crate) const END: &str = "mutation($s: ID!, $a: Int!) {
  endParkingSession(input: {sessionId: $s, amount: {amount: $a, currency: \"usd\"}}) { session { status amount { amount } amountSetBy } }
}";

pub(crate) const CHARGE: &str = "mutation($s: ID!) {
  chargeSession(input: {sessionId: $s}) { succeeded session { status processorChargeId balance { held { amount } captured { amount } capturable { amount } } } }
}";

pub(crate) const REFUND: &str = "mutation($s: ID!, $a: Int, $k: String!) {
  refundSession(input: {sessionId: $s, amount: {amount: $a, currency: \"usd\"}, reason: REQUESTED_BY_CUSTOMER, idempotencyKey: $k}) {
    refund { id amount { amount } reason status }
    session { status balance { captured { amount } refunded { amount } } }
  }
}";

pub(crate) const REFUND_ALL: &str = "mutation($s: ID!, $k: String!) {
  refundSession(input: {sessionId: $s, reason: OTHER, idempotencyKey: $k}) {
    refund { amount { amount } status } session { status balance { refunded { amount } } }
  }
}";

pub(crate) const CANCEL: &str = "mutation($s: ID!) {
  cancelParkingSession(input: {sessionId: $s, reason: REQUESTED_BY_CUSTOMER}) {
    session { status cancelReason chargeTokens { status } balance { held { amount } capturable { amount } } }
  }
}";

pub(crate) const LEDGER: &str = "query($s: ID!) {
  parkingSession(id: $s) {
    status cancelReason
    balance { held { amount } captured { amount } refunded { amount } capturable { amount } }
    payments { kind amount { amount currency } status processorReference applicationFee { amount } failure { code declineCode } }
    dispute { id amount { amount } reason status }
  }
}";

pub(crate) async fn start_held(t: &TestApp, w: &World, key: &str, plate: &str, amount: i64) -> Value {
    t.ok(
        &w.app_token,
        START_HELD,
        json!({ "c": w.customer_id, "o": w.operator_id, "k": key, "z": "Z-12", "p": plate, "a": amount, "cur": "usd" }),
    )
    .await["startParkingSession"]
        .clone()
}

pub(crate) async fn ledger(t: &TestApp, session: &Value) -> Value {
    t.ok(&t.admin(), LEDGER, json!({ "s": session })).await["parkingSession"].clone()
}

pub(crate) fn kinds(ledger: &Value) -> Vec<(String, i64, String)> {
    ledger["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["amount"]["amount"].as_i64().unwrap(),
                p["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn row(kind: &str, amount: i64, status: &str) -> (String, i64, String) {
    (kind.to_owned(), amount, status.to_owned())
}

#[tokio::test]
async fn held_session_start_extend_end_capture_and_refund_half() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let started = start_held(&t, &w, "h-1", "B-CP 123", 1000).await;
    let session = &started["session"];
    assert_eq!(session["status"], "ACTIVE");
    assert_eq!(session["balance"]["held"], json!({ "amount": 1000, "currency": "USD" }));
    let token = &session["chargeToken"];
    assert_eq!(token["status"], "HELD");
    assert_eq!(token["hold"]["amount"], json!({ "amount": 1000, "currency": "USD" }));
    assert!(token["hold"]["expiresAt"].is_string() && token["cursor"].is_string(), "{token}");
    let s = session["id"].clone();

    // The operator sees the held token on its stream's table; it cannot be charged.
    let seen = t
        .ok(
            &w.operator_token,
            "query($s: ID!) { parkingSession(id: $s) { chargeToken { status token } } }",
            json!({ "s": s }),
        )
        .await;
    assert_eq!(seen["parkingSession"]["chargeToken"]["status"], "HELD");
    assert!(seen["parkingSession"]["chargeToken"]["token"].is_string());

    // Extend in place (tok_visa takes incremental authorizations).
    let ext = t.ok(&w.app_token, EXTEND, json!({ "s": s, "a": 500, "k": "e-1", "e": "2030-01-01T11:00:00Z" })).await;
    let ext = &ext["extendParkingSession"];
    assert_eq!(ext["failure"], Value::Null);
    assert_eq!(ext["session"]["balance"]["held"]["amount"], 1500);
    assert_eq!(ext["session"]["expectedEndAt"], "2030-01-01T11:00:00+00:00");

    // End above the hold: refused. Within it: captured, the rest released.
    let response = t.post(Some(&w.app_token), END, json!({ "s": s, "a": 1600 })).await;
    assert_eq!(code_of(&response).as_deref(), Some("CONFLICT"), "{response}");
    t.ok(&w.app_token, END, json!({ "s": s, "a": 1200 })).await;
    let charged = t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    let charged = &charged["chargeSession"];
    assert_eq!(charged["succeeded"], true);
    assert_eq!(charged["session"]["status"], "CHARGED");
    assert_eq!(charged["session"]["balance"]["captured"]["amount"], 1200);
    assert_eq!(charged["session"]["balance"]["capturable"]["amount"], 0);
    assert!(charged["session"]["processorChargeId"].as_str().unwrap().starts_with("pi_"));

    // Charging again answers the same; nothing moves.
    let again = t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    assert_eq!(again["chargeSession"]["session"]["balance"]["captured"]["amount"], 1200);

    // Refund half.
    let refund = t.ok(&w.operator_token, REFUND, json!({ "s": s, "a": 600, "k": "r-1" })).await;
    let refund = &refund["refundSession"];
    assert_eq!(refund["refund"]["status"], "SUCCEEDED");
    assert_eq!(refund["refund"]["reason"], "REQUESTED_BY_CUSTOMER");
    assert_eq!(refund["session"]["status"], "PARTIALLY_REFUNDED");
    assert_eq!(refund["session"]["balance"]["refunded"]["amount"], 600);

    let l = ledger(&t, &s).await;
    assert_eq!(
        kinds(&l),
        vec![
            row("AUTHORIZATION", 1000, "SUCCEEDED"),
            row("INCREMENT", 500, "SUCCEEDED"),
            row("CAPTURE", 1200, "SUCCEEDED"),
            row("RELEASE", 300, "SUCCEEDED"),
            row("REFUND", 600, "SUCCEEDED"),
        ]
    );
    assert!(l["payments"][4]["processorReference"].as_str().unwrap().starts_with("re_"));
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn a_declined_hold_is_a_result_and_reaches_no_operator() {
    let t = TestApp::new().await;
    let w = t.world_with_card("tok_chargeDeclinedInsufficientFunds").await;
    let started = start_held(&t, &w, "h-1", "B-CP 123", 1000).await;
    let session = &started["session"];
    assert_eq!(session["status"], "DECLINED");
    assert_eq!(session["failure"]["code"], "card_declined");
    assert_eq!(session["failure"]["declineCode"], "insufficient_funds");
    assert_eq!(session["chargeToken"]["status"], "VOIDED");
    assert_eq!(session["chargeToken"]["cursor"], Value::Null, "a declined session's token is never delivered");
    // The operator's stream has nothing.
    assert_eq!(count(&t, "SELECT count(*) AS n FROM charge_tokens WHERE cursor IS NOT NULL").await, 0);
    let l = ledger(&t, &session["id"]).await;
    assert_eq!(kinds(&l), vec![row("AUTHORIZATION", 1000, "FAILED")]);
    assert_eq!(l["payments"][0]["failure"]["declineCode"], "insufficient_funds");
    // A retry with the same key answers the same, and the plate is free again.
    let again = start_held(&t, &w, "h-1", "B-CP 123", 1000).await;
    assert_eq!(again["replayed"], true);
    assert_eq!(again["session"]["status"], "DECLINED");
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn a_declined_extension_keeps_the_old_hold_and_keys_are_idempotent() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    // Above the sandbox card's credit: declined, still ACTIVE with its hold.
    let declined = t.ok(&w.app_token, EXTEND, json!({ "s": s, "a": 1_000_000, "k": "e-big" })).await;
    let declined = &declined["extendParkingSession"];
    assert_eq!(declined["failure"]["declineCode"], "insufficient_funds");
    assert_eq!(declined["session"]["status"], "ACTIVE");
    assert_eq!(declined["session"]["balance"]["held"]["amount"], 1000);
    assert_eq!(declined["session"]["expectedEndAt"], "2030-01-01T10:00:00+00:00");

    // Same key, same result; same key, other input: CONFLICT.
    let first = t.ok(&w.app_token, EXTEND, json!({ "s": s, "a": 200, "k": "e-1" })).await;
    let replay = t.ok(&w.app_token, EXTEND, json!({ "s": s, "a": 200, "k": "e-1" })).await;
    assert_eq!(first, replay);
    assert_eq!(replay["extendParkingSession"]["session"]["balance"]["held"]["amount"], 1200);
    let other = t.post(Some(&w.app_token), EXTEND, json!({ "s": s, "a": 300, "k": "e-1" })).await;
    assert_eq!(code_of(&other).as_deref(), Some("CONFLICT"));
    // Only the session's app extends.
    let by_operator = t.post(Some(&w.operator_token), EXTEND, json!({ "s": s, "a": 300, "k": "e-2" })).await;
    assert_eq!(code_of(&by_operator).as_deref(), Some("FORBIDDEN"), "{by_operator}");
    let l = ledger(&t, &s).await;
    assert_eq!(
        kinds(&l),
        vec![
            row("AUTHORIZATION", 1000, "SUCCEEDED"),
            row("INCREMENT", 1_000_000, "FAILED"),
            row("INCREMENT", 200, "SUCCEEDED")
        ]
    );
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn a_debit_card_extends_with_a_second_hold_and_capture_and_refund_span_both() {
    let t = TestApp::new().await;
    let w = t.world_with_card("tok_visa_debit").await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    let ext = t.ok(&w.app_token, EXTEND, json!({ "s": s, "a": 800, "k": "e-1" })).await;
    assert_eq!(ext["extendParkingSession"]["session"]["balance"]["held"]["amount"], 1800);
    t.ok(&w.operator_token, END, json!({ "s": s, "a": 1500 })).await;
    let charged = t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    assert_eq!(charged["chargeSession"]["session"]["balance"]["captured"]["amount"], 1500);
    let all = t.ok(&w.operator_token, REFUND_ALL, json!({ "s": s, "k": "r-all" })).await;
    assert_eq!(all["refundSession"]["refund"]["amount"]["amount"], 1500);
    assert_eq!(all["refundSession"]["session"]["status"], "REFUNDED");
    let l = ledger(&t, &s).await;
    let mut rows = kinds(&l);
    rows.sort();
    let mut expected = vec![
        row("AUTHORIZATION", 1000, "SUCCEEDED"),
        row("AUTHORIZATION", 800, "SUCCEEDED"),
        row("CAPTURE", 1000, "SUCCEEDED"),
        row("CAPTURE", 500, "SUCCEEDED"),
        row("RELEASE", 300, "SUCCEEDED"),
        row("REFUND", 1000, "SUCCEEDED"),
        row("REFUND", 500, "SUCCEEDED"),
    ];
    expected.sort();
    assert_eq!(rows, expected);
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn the_operators_amount_stands() {
    let t = TestApp::new().await;
    let w = t.world().await;
    // The app ends; the operator replaces the amount before charging.
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    let ended = t.ok(&w.app_token, END, json!({ "s": s, "a": 900 })).await;
    assert_eq!(ended["endParkingSession"]["session"]["amountSetBy"], "APP");
    let replaced = t.ok(&w.operator_token, END, json!({ "s": s, "a": 700 })).await;
    assert_eq!(replaced["endParkingSession"]["session"]["amount"]["amount"], 700);
    assert_eq!(replaced["endParkingSession"]["session"]["amountSetBy"], "OPERATOR");
    // The app can never replace the operator's amount; the operator cannot exceed the hold.
    let refused = t.post(Some(&w.app_token), END, json!({ "s": s, "a": 900 })).await;
    assert_eq!(code_of(&refused).as_deref(), Some("CONFLICT"));
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("operator"), "{refused}");
    let over = t.post(Some(&w.operator_token), END, json!({ "s": s, "a": 1001 })).await;
    assert_eq!(code_of(&over).as_deref(), Some("CONFLICT"));
    assert_eq!(count(&t, "SELECT count(*) AS n FROM session_amount_changes").await, 2, "each change is recorded");
    let charged = t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    assert_eq!(charged["chargeSession"]["session"]["balance"]["captured"]["amount"], 700);
    // Once charged, nobody replaces it.
    let late = t.post(Some(&w.operator_token), END, json!({ "s": s, "a": 600 })).await;
    assert_eq!(code_of(&late).as_deref(), Some("CONFLICT"));
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn cancel_voids_the_token_and_releases_the_hold() {
    let t = TestApp::new().await;
    let w = t.world().await;
    // With a hold.
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    let canceled = t.ok(&w.operator_token, CANCEL, json!({ "s": s })).await;
    let session = &canceled["cancelParkingSession"]["session"];
    assert_eq!(session["status"], "CANCELED");
    assert_eq!(session["cancelReason"], "REQUESTED_BY_CUSTOMER");
    assert_eq!(session["chargeTokens"], json!([{ "status": "VOIDED" }]));
    assert_eq!(session["balance"]["capturable"]["amount"], 0);
    let l = ledger(&t, &s).await;
    assert_eq!(kinds(&l), vec![row("AUTHORIZATION", 1000, "SUCCEEDED"), row("RELEASE", 1000, "SUCCEEDED")]);
    // Again: the same session; charging it: CONFLICT.
    let again = t.ok(&w.app_token, CANCEL, json!({ "s": s })).await;
    assert_eq!(again["cancelParkingSession"]["session"]["status"], "CANCELED");
    let charge = t.post(Some(&w.operator_token), CHARGE, json!({ "s": s })).await;
    assert_eq!(code_of(&charge).as_deref(), Some("CONFLICT"));

    // Without a hold: the issued token becomes VOIDED, nothing moves.
    let plain = t.start_session(&w, "plain-1").await;
    let p = plain["session"]["id"].clone();
    assert_eq!(plain["session"]["chargeToken"]["status"], "ISSUED");
    let canceled = t.ok(&w.app_token, CANCEL, json!({ "s": p })).await;
    assert_eq!(canceled["cancelParkingSession"]["session"]["chargeTokens"], json!([{ "status": "VOIDED" }]));
    assert_eq!(canceled["cancelParkingSession"]["session"]["balance"], Value::Null);
    // EXPIRED is curbpay's own.
    let expired = t
        .post(
            Some(&w.app_token),
            "mutation($s: ID!) { cancelParkingSession(input: {sessionId: $s, reason: EXPIRED}) { session { id } } }",
            json!({ "s": p }),
        )
        .await;
    assert_eq!(code_of(&expired).as_deref(), Some("BAD_USER_INPUT"));
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn partial_refunds_add_up_to_at_most_the_capture() {
    let t = TestApp::new().await;
    let w = t.world().await;
    // A session without a hold: its token charge is on the ledger too.
    let s = t.start_session(&w, "plain").await["session"]["id"].clone();
    t.ok(&w.app_token, END, json!({ "s": s, "a": 1000 })).await;
    t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    let first = t.ok(&w.operator_token, REFUND, json!({ "s": s, "a": 400, "k": "r-1" })).await;
    assert_eq!(first["refundSession"]["session"]["status"], "PARTIALLY_REFUNDED");
    // Same key: the same refund; same key with another amount: CONFLICT.
    let replay = t.ok(&w.operator_token, REFUND, json!({ "s": s, "a": 400, "k": "r-1" })).await;
    assert_eq!(replay["refundSession"]["refund"]["id"], first["refundSession"]["refund"]["id"]);
    let other = t.post(Some(&w.operator_token), REFUND, json!({ "s": s, "a": 500, "k": "r-1" })).await;
    assert_eq!(code_of(&other).as_deref(), Some("CONFLICT"));
    t.ok(&w.operator_token, REFUND, json!({ "s": s, "a": 500, "k": "r-2" })).await;
    let too_much = t.post(Some(&w.operator_token), REFUND, json!({ "s": s, "a": 200, "k": "r-3" })).await;
    assert_eq!(code_of(&too_much).as_deref(), Some("CONFLICT"), "{too_much}");
    let rest = t.ok(&w.operator_token, REFUND_ALL, json!({ "s": s, "k": "r-4" })).await;
    assert_eq!(rest["refundSession"]["refund"]["amount"]["amount"], 100);
    assert_eq!(rest["refundSession"]["session"]["status"], "REFUNDED");
    let nothing = t.post(Some(&w.operator_token), REFUND_ALL, json!({ "s": s, "k": "r-5" })).await;
    assert_eq!(code_of(&nothing).as_deref(), Some("CONFLICT"));
    let l = ledger(&t, &s).await;
    assert_eq!(kinds(&l)[0], row("CHARGE", 1000, "SUCCEEDED"));
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn twenty_concurrent_refunds_never_exceed_the_capture() {
    let t = Arc::new(TestApp::new().await);
    let w = Arc::new(t.world().await);
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    t.ok(&w.operator_token, END, json!({ "s": s, "a": 1000 })).await;
    t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (t, w, s) = (t.clone(), w.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            t.post(Some(&w.operator_token), REFUND, json!({ "s": s, "a": 150, "k": format!("c-{i}") })).await
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        let response = task.await.unwrap();
        match code_of(&response) {
            None => succeeded += 1,
            Some(code) => assert_eq!(code, "CONFLICT", "{response}"),
        }
    }
    assert_eq!(succeeded, 6, "1000 holds six refunds of 150");
    let l = ledger(&t, &s).await;
    assert_eq!(l["balance"]["refunded"]["amount"], 900);
    assert_ledger_balanced(&t).await;

    // The database itself refuses a refund row beyond the capture.
    let refused = sql(
        &t,
        &format!(
            "INSERT INTO payments (id, session_id, kind, amount, currency, status, parent_id, refund_id)
             SELECT gen_random_uuid(), p.session_id, 'REFUND', 200, 'USD', 'PENDING', p.id, r.id
             FROM payments p, refunds r WHERE p.kind = 'CAPTURE' AND r.session_id = p.session_id AND p.session_id = '{}' LIMIT 1",
            s.as_str().unwrap()
        ),
    )
    .await;
    assert!(refused.unwrap_err().contains("parking_sessions_refunded_le_captured"));
}

#[tokio::test]
async fn ledger_rows_are_immutable_in_the_database() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    let err = sql(&t, "UPDATE payments SET amount = 5000").await.unwrap_err();
    assert!(err.contains("cannot change"), "{err}");
    let err = sql(&t, "UPDATE payments SET status = 'FAILED', failure_code = 'x'").await.unwrap_err();
    assert!(err.contains("cannot change"), "{err}");
    let err = sql(&t, "DELETE FROM payments").await.unwrap_err();
    assert!(err.contains("cannot be deleted"), "{err}");
    // Capturing more than was held is refused by the database.
    let err = sql(
        &t,
        &format!(
            "INSERT INTO payments (id, session_id, kind, amount, currency, status, parent_id, settled_at)
             SELECT gen_random_uuid(), session_id, 'CAPTURE', 1001, 'USD', 'SUCCEEDED', id, now() FROM payments WHERE session_id = '{}'",
            s.as_str().unwrap()
        ),
    )
    .await
    .unwrap_err();
    assert!(err.contains("parking_sessions_captured_le_held"), "{err}");
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn refunds_by_the_app_need_the_links_permission() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    t.ok(&w.operator_token, END, json!({ "s": s, "a": 800 })).await;
    t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    let refused = t.post(Some(&w.app_token), REFUND, json!({ "s": s, "a": 100, "k": "a-1" })).await;
    assert_eq!(code_of(&refused).as_deref(), Some("FORBIDDEN"));
    const UPDATE: &str = "mutation($l: ID!, $v: Boolean) { updateLink(input: {linkId: $l, appMayRefund: $v}) { link { appMayRefund } } }";
    let by_app = t.post(Some(&w.app_token), UPDATE, json!({ "l": w.link_id, "v": true })).await;
    assert_eq!(code_of(&by_app).as_deref(), Some("FORBIDDEN"));
    let other_operator = t.token(Role::Operator(t.create_operator("Other").await));
    let by_other = t.post(Some(&other_operator), UPDATE, json!({ "l": w.link_id, "v": true })).await;
    assert_eq!(code_of(&by_other).as_deref(), Some("NOT_FOUND"));
    let set = t.ok(&w.operator_token, UPDATE, json!({ "l": w.link_id, "v": true })).await;
    assert_eq!(set["updateLink"]["link"]["appMayRefund"], true);
    let allowed = t.ok(&w.app_token, REFUND, json!({ "s": s, "a": 100, "k": "a-1" })).await;
    assert_eq!(allowed["refundSession"]["refund"]["status"], "SUCCEEDED");
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn twenty_concurrent_starts_for_one_vehicle_from_two_apps_leave_one_active() {
    let t = Arc::new(TestApp::new().await);
    let w = t.world().await;
    let app2 = t.create_app("OtherApp").await;
    t.activate_link(app2, w.operator_id).await;
    let app2_token = t.token(Role::App(app2));
    let customer2 = t.tokenize(&app2_token, "user-2", "tok_mastercard").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let t = t.clone();
        // The same plate, written differently.
        let plate = ["B-CP 123", "bcp123", "B CP-123", "b-cp-123"][i % 4];
        let (token, customer) =
            if i % 2 == 0 { (w.app_token.clone(), w.customer_id) } else { (app2_token.clone(), customer2) };
        let operator = w.operator_id;
        tasks.push(tokio::spawn(async move {
            let vars = json!({ "c": customer, "o": operator, "k": format!("race-{i}"), "z": "Z-12", "p": plate, "a": 1000, "cur": "usd" });
            t.post(Some(&token), START_HELD, vars).await
        }));
    }
    let mut active = 0;
    for task in tasks {
        let response = task.await.unwrap();
        match code_of(&response) {
            None => {
                assert_eq!(response["data"]["startParkingSession"]["session"]["status"], "ACTIVE");
                active += 1;
            }
            Some(code) => {
                assert_eq!(code, "CONFLICT", "{response}");
                assert_eq!(response["errors"][0]["extensions"]["reason"], "DUPLICATE_SESSION");
                let message = response["errors"][0]["message"].as_str().unwrap();
                assert!(!message.contains("OtherApp") && !message.contains("ParkNow"), "{message}");
            }
        }
    }
    assert_eq!(active, 1);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM parking_sessions WHERE status = 'ACTIVE'").await, 1);
    // Another zone is another session; so is the same plate once the first has ended.
    let other_zone = t
        .post(
            Some(&w.app_token),
            START_HELD,
            json!({ "c": w.customer_id, "o": w.operator_id, "k": "zone-2", "z": "Z-13", "p": "BCP123", "a": 1000, "cur": "usd" }),
        )
        .await;
    assert_eq!(code_of(&other_zone), None, "{other_zone}");
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn the_sweeper_cancels_an_abandoned_session_exactly_once_across_two_servers() {
    let slow = |c: &mut curbpay::Config| {
        c.session_max_duration = Duration::from_secs(3600);
        c.session_sweep_interval = Duration::from_millis(100);
    };
    let t = TestApp::with_config(slow).await;
    let w = t.world().await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    let fresh = start_held(&t, &w, "h-2", "OTHER 1", 1000).await["session"]["id"].clone();
    // Two more server processes on the same database, sweeping every 50 ms with a
    // one-second maximum duration; the session is made two hours old.
    let fast = |c: &mut curbpay::Config| {
        c.session_max_duration = Duration::from_secs(3600);
        c.session_sweep_interval = Duration::from_millis(50);
    };
    let a = TestApp::on_db(t.db.clone(), fast).await;
    let b = TestApp::on_db(t.db.clone(), fast).await;
    sql(
        &t,
        &format!(
            "UPDATE parking_sessions SET started_at = now() - interval '2 hours' WHERE id = '{}'",
            s.as_str().unwrap()
        ),
    )
    .await
    .unwrap();
    let mut status = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let l = ledger(&t, &s).await;
        status = l["status"].clone();
        if status == "CANCELED" && kinds(&l).iter().all(|(_, _, st)| st != "PENDING") && kinds(&l).len() == 2 {
            break;
        }
    }
    assert_eq!(status, "CANCELED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l = ledger(&t, &s).await;
    assert_eq!(l["cancelReason"], "EXPIRED");
    assert_eq!(
        kinds(&l),
        vec![row("AUTHORIZATION", 1000, "SUCCEEDED"), row("RELEASE", 1000, "SUCCEEDED")],
        "released once"
    );
    assert_eq!(count(&t, "SELECT count(*) AS n FROM sandbox_replies WHERE operation = 'cancel'").await, 1);
    assert_eq!(ledger(&t, &fresh).await["status"], "ACTIVE", "a session within the maximum stays");
    drop((a, b));
    assert_ledger_balanced(&t).await;
}

#[tokio::test]
async fn a_disputed_charge_shows_to_operator_and_app() {
    let t = TestApp::new().await;
    let w = t.world_with_card("tok_createDispute").await;
    let s = start_held(&t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    t.ok(&w.operator_token, END, json!({ "s": s, "a": 800 })).await;
    let charged = t.ok(&w.operator_token, CHARGE, json!({ "s": s })).await;
    assert_eq!(charged["chargeSession"]["session"]["status"], "DISPUTED");
    for token in [&w.app_token, &w.operator_token] {
        let seen = t.ok(token, "query($s: ID!) { parkingSession(id: $s) { status dispute { id amount { amount currency } reason status } } }", json!({ "s": s })).await;
        let dispute = &seen["parkingSession"]["dispute"];
        assert_eq!(dispute["amount"], json!({ "amount": 800, "currency": "USD" }));
        assert_eq!(dispute["reason"], "fraudulent");
        assert_eq!(dispute["status"], "OPEN");
        assert!(dispute["id"].as_str().unwrap().starts_with("dp_"));
    }
    // A disputed charge is not refunded on top.
    let refund = t.post(Some(&w.operator_token), REFUND_ALL, json!({ "s": s, "k": "r-1" })).await;
    assert_eq!(code_of(&refund).as_deref(), Some("CONFLICT"));
    let _ = id(&s);
    assert_ledger_balanced(&t).await;
}
