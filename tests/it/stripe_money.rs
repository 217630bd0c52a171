//! The money lifecycle in Stripe mode, against the Stripe test double: holds as
//! PaymentIntents with `capture_method=manual` on the operator's connected account,
//! increments, captures, cancels and refunds with the exact requests checked, and the
//! dispute and refund webhooks. Every test ends with the ledger check.

use serde_json::{Value, json};

use crate::money::{CANCEL, CHARGE, END, EXTEND, REFUND, kinds, ledger, row, start_held};
use crate::stripe::stripe_mode;
use crate::util::ledger::assert_ledger_balanced;
use crate::util::stripe::Recorded;

fn param<'a>(request: &'a Recorded, name: &str) -> Option<&'a str> {
    request.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn posts(requests: &[Recorded], path_suffix: &str) -> Vec<Recorded> {
    requests.iter().filter(|r| r.method == "POST" && r.path.ends_with(path_suffix)).cloned().collect()
}

#[tokio::test]
async fn a_held_session_runs_on_payment_intents() {
    let s = stripe_mode().await;
    let (w, account) = s.world("tok_visa").await;
    let started = start_held(&s.t, &w, "h-1", "B-CP 123", 1000).await;
    let session = &started["session"];
    assert_eq!(session["status"], "ACTIVE", "{started}");
    assert_eq!(session["chargeToken"]["status"], "HELD");
    let sid = session["id"].clone();

    let requests = s.double.requests();
    let created = posts(&requests, "/v1/payment_intents");
    assert_eq!(created.len(), 1);
    let pi = &created[0];
    assert_eq!(pi.stripe_account.as_deref(), Some(account.as_str()));
    for (name, value) in [
        ("amount", "1000"),
        ("currency", "usd"),
        ("capture_method", "manual"),
        ("confirm", "true"),
        ("off_session", "true"),
        ("payment_method_options[card][request_incremental_authorization]", "if_available"),
        ("payment_method_data[type]", "card"),
        ("application_fee_amount", "25"),
    ] {
        assert_eq!(param(pi, name), Some(value), "{name} in {:?}", pi.params);
    }
    assert!(param(pi, "payment_method_data[card][token]").unwrap().starts_with("tok_"));
    let key = pi.idempotency_key.clone().unwrap();
    assert!(key.starts_with("authorization:"), "{key}");

    // Extend in place, end, capture less than the hold, refund half.
    let ext = s.t.ok(&w.app_token, EXTEND, json!({ "s": sid, "a": 500, "k": "e-1" })).await;
    assert_eq!(ext["extendParkingSession"]["session"]["balance"]["held"]["amount"], 1500);
    s.t.ok(&w.app_token, END, json!({ "s": sid, "a": 1200 })).await;
    let charged = s.t.ok(&w.operator_token, CHARGE, json!({ "s": sid })).await;
    assert_eq!(charged["chargeSession"]["session"]["status"], "CHARGED");
    let refund = s.t.ok(&w.operator_token, REFUND, json!({ "s": sid, "a": 600, "k": "r-1" })).await;
    assert_eq!(refund["refundSession"]["refund"]["status"], "SUCCEEDED");
    assert_eq!(refund["refundSession"]["session"]["status"], "PARTIALLY_REFUNDED");

    let requests = s.double.requests();
    let increment = &posts(&requests, "/increment_authorization")[0];
    assert_eq!(param(increment, "amount"), Some("1500"));
    assert_eq!(param(increment, "application_fee_amount"), Some("37"));
    let capture = &posts(&requests, "/capture")[0];
    assert_eq!(param(capture, "amount_to_capture"), Some("1200"));
    assert_eq!(param(capture, "application_fee_amount"), Some("30"));
    let refund = &posts(&requests, "/v1/refunds")[0];
    assert_eq!(param(refund, "amount"), Some("600"));
    assert_eq!(param(refund, "refund_application_fee"), Some("true"));
    assert_eq!(param(refund, "reason"), Some("requested_by_customer"));
    assert!(param(refund, "payment_intent").unwrap().starts_with("pi_"));
    for request in [increment, capture, refund] {
        assert_eq!(request.stripe_account.as_deref(), Some(account.as_str()));
        assert!(request.idempotency_key.is_some());
    }
    // The remainder went back with the partial capture: no cancel call.
    assert!(posts(&requests, "/cancel").is_empty());
    let l = ledger(&s.t, &sid).await;
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
    assert_ledger_balanced(&s.t).await;
}

#[tokio::test]
async fn declines_of_holds_and_extensions_are_results() {
    let s = stripe_mode().await;
    let (declined, _) = s.world("tok_chargeDeclinedInsufficientFunds").await;
    let started = start_held(&s.t, &declined, "h-1", "B-CP 123", 1000).await;
    assert_eq!(started["session"]["status"], "DECLINED");
    assert_eq!(started["session"]["failure"]["declineCode"], "insufficient_funds");
    assert_eq!(started["session"]["chargeToken"]["status"], "VOIDED");
    assert_ledger_balanced(&s.t).await;

    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa").await;
    let sid = start_held(&s.t, &w, "h-2", "OTHER 1", 1000).await["session"]["id"].clone();
    let ext = s.t.ok(&w.app_token, EXTEND, json!({ "s": sid, "a": 1_000_000, "k": "big" })).await;
    assert_eq!(ext["extendParkingSession"]["failure"]["declineCode"], "insufficient_funds");
    assert_eq!(ext["extendParkingSession"]["session"]["status"], "ACTIVE");
    assert_eq!(ext["extendParkingSession"]["session"]["balance"]["held"]["amount"], 1000);
    assert_ledger_balanced(&s.t).await;
}

#[tokio::test]
async fn a_debit_card_takes_a_second_payment_intent_and_cancel_releases_both() {
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa_debit").await;
    let sid = start_held(&s.t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    let ext = s.t.ok(&w.app_token, EXTEND, json!({ "s": sid, "a": 400, "k": "e-1" })).await;
    assert_eq!(ext["extendParkingSession"]["failure"], Value::Null, "{ext}");
    assert_eq!(ext["extendParkingSession"]["session"]["balance"]["held"]["amount"], 1400);
    let requests = s.double.requests();
    assert_eq!(posts(&requests, "/v1/payment_intents").len(), 2);
    assert!(posts(&requests, "/increment_authorization").is_empty());
    let canceled = s.t.ok(&w.app_token, CANCEL, json!({ "s": sid })).await;
    assert_eq!(canceled["cancelParkingSession"]["session"]["status"], "CANCELED");
    assert_eq!(canceled["cancelParkingSession"]["session"]["chargeTokens"], json!([{ "status": "VOIDED" }]));
    assert_eq!(posts(&s.double.requests(), "/cancel").len(), 2);
    assert_ledger_balanced(&s.t).await;
}

#[tokio::test]
async fn dispute_webhooks_move_the_session() {
    let s = stripe_mode().await;
    let (w, account) = s.world("tok_visa").await;
    let sid = start_held(&s.t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    s.t.ok(&w.operator_token, END, json!({ "s": sid, "a": 800 })).await;
    let charged = s.t.ok(&w.operator_token, CHARGE, json!({ "s": sid })).await;
    let pi = charged["chargeSession"]["session"]["processorChargeId"].as_str().unwrap().to_owned();
    let url = format!("http://{}/webhooks/stripe", s.t.addr);
    let dispute = json!({
        "id": "dp_test_1", "object": "dispute", "amount": 800, "currency": "usd", "charge": "ch_x",
        "payment_intent": pi, "reason": "fraudulent", "status": "needs_response", "created": 0, "livemode": false,
    });
    let event = s.double.event("charge.dispute.created", Some(&account), dispute.clone());
    let delivered = s.double.deliver_webhook(&url, event.clone(), &s.platform.webhook_secret, None).await;
    assert_eq!(delivered.status(), 200);
    // A redelivery is acknowledged and changes nothing.
    let again = s.double.deliver_webhook(&url, event, &s.platform.webhook_secret, None).await;
    assert_eq!(again.status(), 200);
    for token in [&w.operator_token, &w.app_token] {
        let seen =
            s.t.ok(
                token,
                "query($s: ID!) { parkingSession(id: $s) { status dispute { id amount { amount } reason status } } }",
                json!({ "s": sid }),
            )
            .await;
        assert_eq!(seen["parkingSession"]["status"], "DISPUTED");
        assert_eq!(
            seen["parkingSession"]["dispute"],
            json!({ "id": "dp_test_1", "amount": { "amount": 800 }, "reason": "fraudulent", "status": "OPEN" })
        );
    }
    let mut closed = dispute;
    closed["status"] = json!("won");
    let event = s.double.event("charge.dispute.closed", Some(&account), closed);
    assert_eq!(s.double.deliver_webhook(&url, event, &s.platform.webhook_secret, None).await.status(), 200);
    let l = ledger(&s.t, &sid).await;
    assert_eq!(l["status"], "CHARGED", "a won dispute returns the session");
    assert_eq!(l["dispute"]["status"], "WON");
    assert_ledger_balanced(&s.t).await;
}

#[tokio::test]
async fn unknown_outcomes_of_money_calls_are_reconciled_not_repeated() {
    use crate::util::stripe::Fault;
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa").await;
    // The hold is placed, but Stripe answers a 500 it saved for the key: found by metadata.
    s.double.inject("POST", "/v1/payment_intents", vec![Fault::AfterSuccess500]);
    let started = start_held(&s.t, &w, "h-1", "B-CP 123", 1000).await;
    assert_eq!(started["session"]["status"], "ACTIVE", "{started}");
    assert_eq!(s.double.objects("payment_intent"), 1, "one hold, not two");
    let sid = started["session"]["id"].clone();
    s.t.ok(&w.operator_token, END, json!({ "s": sid, "a": 700 })).await;
    // The capture and the refund likewise: looked up, not sent again under a new key.
    s.double.inject("POST", "/v1/payment_intents/", vec![Fault::AfterSuccess500]);
    let charged = s.t.ok(&w.operator_token, CHARGE, json!({ "s": sid })).await;
    assert_eq!(charged["chargeSession"]["session"]["balance"]["captured"]["amount"], 700);
    assert_eq!(posts(&s.double.requests(), "/capture").len(), 1);
    s.double.inject("POST", "/v1/refunds", vec![Fault::AfterSuccess500]);
    let refund = s.t.ok(&w.operator_token, REFUND, json!({ "s": sid, "a": 300, "k": "r-1" })).await;
    assert_eq!(refund["refundSession"]["refund"]["status"], "SUCCEEDED");
    assert_eq!(s.double.objects("refund"), 1, "one refund, not two");
    // Connection drops and retryable 500s reuse the same key.
    s.double.inject("POST", "/v1/refunds", vec![Fault::Drop, Fault::ServerError { should_retry: true }]);
    s.t.ok(&w.operator_token, REFUND, json!({ "s": sid, "a": 200, "k": "r-2" })).await;
    let keys: Vec<String> =
        posts(&s.double.requests(), "/v1/refunds").iter().skip(1).filter_map(|r| r.idempotency_key.clone()).collect();
    assert!(keys.len() >= 3 && keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    assert_eq!(s.double.objects("refund"), 2);
    assert_ledger_balanced(&s.t).await;
}

/// The Stripe requests each money mutation makes (method and path, ids elided).
#[tokio::test]
async fn stripe_calls_per_money_mutation() {
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa").await;
    let calls = |from: usize| -> Vec<String> {
        s.double.requests()[from..]
            .iter()
            .map(|r| {
                let path: Vec<&str> = r
                    .path
                    .split('/')
                    .map(|p| if ["cus_", "pi_", "ch_", "re_"].iter().any(|x| p.starts_with(x)) { "{id}" } else { p })
                    .collect();
                format!("{} {}", r.method, path.join("/"))
            })
            .collect()
    };
    let mark = s.double.requests().len();
    let sid = start_held(&s.t, &w, "h-1", "B-CP 123", 1000).await["session"]["id"].clone();
    assert_eq!(calls(mark), ["GET /v1/customers/{id}", "POST /v1/tokens", "POST /v1/payment_intents"]);
    let mark = s.double.requests().len();
    s.t.ok(&w.app_token, EXTEND, json!({ "s": sid, "a": 500, "k": "e-1" })).await;
    assert_eq!(calls(mark), ["POST /v1/payment_intents/{id}/increment_authorization"]);
    let mark = s.double.requests().len();
    s.t.ok(&w.app_token, END, json!({ "s": sid, "a": 1200 })).await;
    assert!(calls(mark).is_empty());
    s.t.ok(&w.operator_token, CHARGE, json!({ "s": sid })).await;
    assert_eq!(calls(mark), ["POST /v1/payment_intents/{id}/capture"]);
    let mark = s.double.requests().len();
    s.t.ok(&w.operator_token, REFUND, json!({ "s": sid, "a": 600, "k": "r-1" })).await;
    assert_eq!(calls(mark), ["POST /v1/refunds"]);
    let other = start_held(&s.t, &w, "h-2", "OTHER 1", 1000).await["session"]["id"].clone();
    let mark = s.double.requests().len();
    s.t.ok(&w.operator_token, CANCEL, json!({ "s": other })).await;
    assert_eq!(calls(mark), ["POST /v1/payment_intents/{id}/cancel"]);
    assert_ledger_balanced(&s.t).await;
}
