//! Mutation input: bad money, text and idempotency keys are refused and change nothing.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::{END_SESSION, START_SESSION, TestApp, World, code_of, id};

use super::{assert_clean, rejected, snapshot};

async fn active_session(t: &TestApp) -> (World, Uuid) {
    let w = t.world().await;
    let session = id(&t.start_session(&w, "k1").await["session"]["id"]);
    (w, session)
}

#[tokio::test]
async fn bad_money_is_rejected_and_changes_nothing() {
    let t = TestApp::new().await;
    let (w, session) = active_session(&t).await;
    let before = snapshot(&t).await;
    let end = "mutation($s: ID!, $a: Int!, $c: String!) {
      endParkingSession(input: {sessionId: $s, amount: {amount: $a, currency: $c}}) { session { id status } }
    }";
    for (amount, currency) in [
        (json!(350), "usdx"),
        (json!(350), "zzz"),
        (json!(350), ""),
        (json!(350), "us"),
        (json!(350), "$"),
        (json!(0), "usd"),
        (json!(-1), "usd"),
        (json!(-350), "usd"),
        (json!(i64::from(i32::MAX) + 1), "usd"),
        // Beyond the processor's 8-digit maximum, below its minimum charge, or not
        // money at all (gold, the testing code, "no currency", a fund).
        (json!(i32::MAX), "usd"),
        (json!(100_000_000), "usd"),
        (json!(49), "usd"),
        (json!(350), "xau"),
        (json!(350), "XTS"),
        (json!(350), "xxx"),
        (json!(350), "usn"),
        (json!(3.5), "usd"),
        (json!("350"), "usd"),
    ] {
        for token in [&w.app_token, &w.operator_token] {
            let (code, message) =
                rejected(&t, Some(token), end, json!({ "s": session, "a": amount, "c": currency })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{amount} {currency:?}: {message}");
        }
    }
    assert_eq!(snapshot(&t).await, before, "a rejected endParkingSession changed something");

    // The session can still end normally.
    let data = t.ok(&w.app_token, END_SESSION, json!({ "s": session, "a": 350, "c": "usd" })).await;
    assert_eq!(data["endParkingSession"]["session"]["amount"], json!({ "amount": 350, "currency": "USD" }));
}

#[tokio::test]
async fn ending_twice_is_idempotent_for_the_same_amount_only() {
    let t = TestApp::new().await;
    let (w, session) = active_session(&t).await;
    let first = t.ok(&w.app_token, END_SESSION, json!({ "s": session, "a": 350, "c": "usd" })).await;
    let ended_at = first["endParkingSession"]["session"].clone();
    let before = snapshot(&t).await;
    // Same amount, in any currency case, from either party: the same session back.
    for (token, currency) in [(&w.app_token, "USD"), (&w.operator_token, "usd"), (&w.app_token, " Usd ")] {
        let again = t.ok(token, END_SESSION, json!({ "s": session, "a": 350, "c": currency })).await;
        assert_eq!(again["endParkingSession"]["session"], ended_at);
    }
    // A different amount or currency is a conflict.
    for (amount, currency) in [(400, "usd"), (349, "usd"), (350, "eur")] {
        let (code, message) =
            rejected(&t, Some(&w.app_token), END_SESSION, json!({ "s": session, "a": amount, "c": currency })).await;
        assert_eq!(code, "CONFLICT", "{amount} {currency}: {message}");
    }
    assert_eq!(snapshot(&t).await, before, "a refused end changed the session");
}

#[tokio::test]
async fn text_inputs_are_checked_and_rejections_change_nothing() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let admin = t.admin();
    let before = snapshot(&t).await;

    // startParkingSession: zone 1–100, plate 1–20, idempotencyKey 1–255 characters.
    let start =
        |z: String, p: String, k: String| json!({ "c": w.customer_id, "o": w.operator_id, "k": k, "z": z, "p": p });
    let ok = || ("Z-1".to_owned(), "B-CP 1".to_owned(), "key".to_owned());
    let mut bad_starts = Vec::new();
    for empty in ["", "   ", "\t\n"] {
        let (_, p, k) = ok();
        bad_starts.push(("zone", start(empty.into(), p, k)));
        let (z, _, k) = ok();
        bad_starts.push(("vehiclePlate", start(z, empty.into(), k)));
        let (z, p, _) = ok();
        bad_starts.push(("idempotencyKey", start(z, p, empty.into())));
    }
    let (_, p, k) = ok();
    bad_starts.push(("zone", start("z".repeat(101), p, k)));
    let (z, _, k) = ok();
    bad_starts.push(("vehiclePlate", start(z, "P".repeat(21), k)));
    let (z, p, _) = ok();
    bad_starts.push(("idempotencyKey", start(z, p, "k".repeat(256))));
    let (z, p, _) = ok();
    bad_starts.push(("idempotencyKey", start(z, p, "k".repeat(10_000))));
    for (field, variables) in bad_starts {
        let (code, message) = rejected(&t, Some(&w.app_token), START_SESSION, variables.clone()).await;
        assert_eq!(code, "BAD_USER_INPUT", "{field}: {message}");
        assert!(message.contains(field), "the message names {field}: {message}");
    }

    // tokenizeCustomer: externalRef 1–255 characters, cardToken a token.
    let tokenize = "mutation($r: String!, $t: String!) { tokenizeCustomer(input: {externalRef: $r, cardToken: $t}) { customer { id } } }";
    for (field, r, card) in [
        ("externalRef", String::new(), "tok_visa"),
        ("externalRef", "   ".to_owned(), "tok_visa"),
        ("externalRef", "r".repeat(256), "tok_visa"),
        ("externalRef", "é".repeat(256), "tok_visa"),
        ("externalRef", "r".repeat(1000), "tok_visa"),
        ("cardToken", "user-2".to_owned(), ""),
        ("cardToken", "user-2".to_owned(), "tok visa; drop table customers"),
    ] {
        let (code, message) = rejected(&t, Some(&w.app_token), tokenize, json!({ "r": r, "t": card })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{field} {}: {message}", r.len());
        assert!(message.contains(field), "the message names {field}: {message}");
    }

    // createApp / createOperator: name 1–200 characters.
    for mutation in [
        "mutation($n: String!) { createApp(input: {name: $n}) { app { id } } }",
        "mutation($n: String!) { createOperator(input: {name: $n}) { operator { id } } }",
    ] {
        for name in [String::new(), " ".into(), "n".repeat(201)] {
            let (code, message) = rejected(&t, Some(&admin), mutation, json!({ "n": name })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{mutation} {}: {message}", name.len());
            assert!(message.contains("name"), "{message}");
        }
    }

    assert_eq!(snapshot(&t).await, before, "a rejected mutation changed something");

    // The limits are exact: the longest allowed values pass (counted in characters).
    let data = t.ok(&w.app_token, START_SESSION, start("z".repeat(100), "P".repeat(20), "k".repeat(255))).await;
    assert_eq!(data["startParkingSession"]["session"]["status"], "ACTIVE");
    for r in ["r".repeat(255), "é".repeat(255)] {
        t.ok(&w.app_token, tokenize, json!({ "r": r, "t": "tok_visa" })).await;
    }
    t.ok(
        &admin,
        "mutation($n: String!) { createApp(input: {name: $n}) { app { id } } }",
        json!({ "n": "n".repeat(200) }),
    )
    .await;
}

/// Control characters (a NUL, which Postgres refuses in `text`) are refused up front as
/// BAD_USER_INPUT, never surfacing as a database error.
#[tokio::test]
async fn control_characters_in_text_are_a_clean_error() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let before = snapshot(&t).await;
    let admin = t.admin();
    let tokenize = "mutation($r: String!) { tokenizeCustomer(input: {externalRef: $r, cardToken: \"tok_visa\"}) { customer { id } } }";
    let start = |k: &str, z: &str, p: &str| json!({ "c": w.customer_id, "o": w.operator_id, "k": k, "z": z, "p": p });
    let cases: Vec<(&str, &str, &str, Value)> = vec![
        ("externalRef", &w.app_token, tokenize, json!({ "r": "user\u{0}2" })),
        ("idempotencyKey", &w.app_token, START_SESSION, start("k\u{0}", "Z", "P")),
        ("zone", &w.app_token, START_SESSION, start("k1", "Z\u{0}", "P")),
        ("vehiclePlate", &w.app_token, START_SESSION, start("k2", "Z", "P\u{0}")),
        ("createApp name", &admin, "mutation { createApp(input: {name: \"A\\u0000\"}) { app { id } } }", json!({})),
        (
            "createOperator name",
            &admin,
            "mutation { createOperator(input: {name: \"O\\u0000\"}) { operator { id } } }",
            json!({}),
        ),
    ];
    let mut wrong = Vec::new();
    for (field, token, query, variables) in cases {
        let response = t.post(Some(token), query, variables).await;
        assert_clean(&response);
        let code = code_of(&response);
        if code.as_deref() != Some("BAD_USER_INPUT") {
            wrong.push(format!("{field}: {response}"));
        }
    }
    assert_eq!(snapshot(&t).await, before, "a rejected mutation changed something");
    assert!(wrong.is_empty(), "NUL in text is not BAD_USER_INPUT:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn reusing_an_idempotency_key_with_different_input_is_a_conflict() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let other_customer = t.tokenize(&w.app_token, "user-2", "tok_mastercard").await;
    let input = json!({ "c": w.customer_id, "o": w.operator_id, "k": "start-1", "z": "Z-12", "p": "B-CP 123" });
    let first = t.ok(&w.app_token, START_SESSION, input.clone()).await["startParkingSession"].clone();
    assert_eq!(first["replayed"], false);
    let before = snapshot(&t).await;

    // The same request again: the same session, replayed.
    let again = t.ok(&w.app_token, START_SESSION, input.clone()).await["startParkingSession"].clone();
    assert_eq!(again["replayed"], true);
    assert_eq!(again["session"]["id"], first["session"]["id"]);

    // The same key with anything else different is a conflict.
    for (field, value) in [("z", json!("Z-13")), ("p", json!("B-CP 124")), ("c", json!(other_customer))] {
        let mut changed = input.clone();
        changed[field] = value;
        let (code, message) = rejected(&t, Some(&w.app_token), START_SESSION, changed).await;
        assert_eq!(code, "CONFLICT", "{field}: {message}");
        assert!(message.contains("idempotencyKey"), "{message}");
    }
    assert_eq!(snapshot(&t).await, before, "a conflicting start changed something");
}
