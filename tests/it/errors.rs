//! Bad input gets a clear error with a stable `extensions.code`, never internal detail,
//! and changes nothing. Also the HTTP edges: batches, oversized bodies, GET, the
//! credentials header, and the static routes.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use curbpay::auth::{Claims, Role};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::util::{END_SESSION, JWT_SECRET, START_SESSION, TestApp, World, code_of, id};

/// Words that would mean a database error reached the client.
const INTERNALS: [&str; 10] = [
    "diesel",
    "relation",
    "postgres",
    "sql",
    "violates",
    "constraint",
    "duplicate key",
    "syntax error at or near",
    "deadpool",
    "panicked",
];

/// Every error has a code and a message free of internal detail.
fn assert_clean(response: &Value) {
    for error in response["errors"].as_array().into_iter().flatten() {
        let message = error["message"].as_str().unwrap_or_default();
        assert!(!message.trim().is_empty(), "an error without a message: {response}");
        assert!(error["extensions"]["code"].is_string(), "an error without a code: {response}");
        let lower = message.to_lowercase();
        for word in INTERNALS {
            assert!(!lower.contains(word), "error message mentions {word:?}: {message}");
        }
    }
}

/// Runs an operation that must fail; returns the code after checking the error is
/// clean and that no data came with it.
async fn rejected(t: &TestApp, token: Option<&str>, query: &str, variables: Value) -> (String, String) {
    let response = t.post(token, query, variables).await;
    assert_clean(&response);
    let code = code_of(&response).unwrap_or_else(|| panic!("expected an error for {query}: {response:#}"));
    let nothing = match &response["data"] {
        Value::Null => true,
        Value::Object(fields) => fields.values().all(Value::is_null),
        _ => false,
    };
    assert!(nothing, "an error response carried data: {response}");
    (code, response["errors"][0]["message"].as_str().unwrap_or_default().to_owned())
}

/// Everything a mutation could change, as the admin sees it.
const SNAPSHOT: &str = "{
  apps { totalCount } operators { totalCount }
  links { nodes { id status updatedAt } }
  customers { nodes { id externalRef updatedAt card { last4 } } }
  parkingSessions { nodes { id status zone vehiclePlate endedAt amount { amount currency } chargeTokens { id status } } }
}";

async fn snapshot(t: &TestApp) -> Value {
    t.ok(&t.admin(), SNAPSHOT, json!({})).await
}

// ---------------------------------------------------------------------------------------
// Documents and variables
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_documents_and_variables_are_bad_user_input() {
    let t = TestApp::new().await;
    let admin = t.admin();
    let cases: Vec<(&str, &str, Value)> = vec![
        ("syntax error", "{ viewer { role }", json!({})),
        ("empty document", "", json!({})),
        ("unknown field", "{ viewer { nope } }", json!({})),
        ("unknown root field", "{ payments { id } }", json!({})),
        ("unknown argument", "{ apps(last: 5) { totalCount } }", json!({})),
        ("object without selection", "{ viewer }", json!({})),
        ("wrong literal type", "{ apps(first: \"ten\") { totalCount } }", json!({})),
        ("unknown enum value", "{ parkingSessions(status: PARKED) { totalCount } }", json!({})),
        ("wrong variable type", "query($f: Int) { apps(first: $f) { totalCount } }", json!({ "f": "ten" })),
        ("float for an Int", "query($f: Int) { apps(first: $f) { totalCount } }", json!({ "f": 1.5 })),
        ("object for an ID", "query($id: ID!) { app(id: $id) { id } }", json!({ "id": { "x": 1 } })),
        ("null for a required variable", "query($id: ID!) { app(id: $id) { id } }", json!({ "id": null })),
        ("undeclared variable", "{ app(id: $id) { id } }", json!({ "id": Uuid::new_v4() })),
        ("input field missing", "mutation { createApp(input: {}) { app { id } } }", json!({})),
        ("unknown input field", "mutation { createApp(input: {name: \"x\", owner: \"y\"}) { app { id } } }", json!({})),
        ("subscription over POST", "subscription { chargeTokenIssued { cursor } }", json!({})),
    ];
    let before = snapshot(&t).await;
    for (label, query, variables) in cases {
        let (code, message) = rejected(&t, Some(&admin), query, variables).await;
        assert_eq!(code, "BAD_USER_INPUT", "{label}: {message}");
    }
    assert_eq!(snapshot(&t).await, before);

    // Several operations and no (or an unknown) operationName.
    let two = "query A { viewer { role } } mutation B { createOperator(input: {name: \"x\"}) { operator { id } } }";
    for body in [json!({ "query": two }), json!({ "query": two, "operationName": "C" })] {
        let (status, text) = t.post_raw(Some(&admin), body).await;
        assert_eq!(status, StatusCode::OK);
        let response: Value = serde_json::from_str(&text).unwrap();
        assert_clean(&response);
        assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
    }
    assert_eq!(snapshot(&t).await, before);
}

#[tokio::test]
async fn malformed_ids_are_bad_user_input_naming_the_argument() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let bad = json!("not-a-uuid");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("query($v: ID!) { app(id: $v) { id } }", json!({ "v": bad }), "id"),
        ("query($v: ID!) { operator(id: $v) { id } }", json!({ "v": bad }), "id"),
        ("query($v: ID!) { link(id: $v) { id } }", json!({ "v": bad }), "id"),
        ("query($v: ID!) { customer(id: $v) { id } }", json!({ "v": bad }), "id"),
        ("query($v: ID!) { parkingSession(id: $v) { id } }", json!({ "v": bad }), "id"),
        ("query($v: ID!) { chargeToken(id: $v) { id } }", json!({ "v": bad }), "id"),
        ("query($v: ID) { links(appId: $v) { totalCount } }", json!({ "v": bad }), "appId"),
        ("query($v: ID) { links(operatorId: $v) { totalCount } }", json!({ "v": bad }), "operatorId"),
        (
            "mutation($v: ID!, $o: ID!) { linkOperator(input: {appId: $v, operatorId: $o}) { link { id } } }",
            json!({ "v": bad, "o": w.operator_id }),
            "appId",
        ),
        (
            "mutation($a: ID!, $v: ID!) { linkOperator(input: {appId: $a, operatorId: $v}) { link { id } } }",
            json!({ "a": w.app_id, "v": bad }),
            "operatorId",
        ),
        (
            "mutation($v: ID!) { completeLink(input: {linkId: $v, authorizationCode: \"ac_x\"}) { link { id } } }",
            json!({ "v": bad }),
            "linkId",
        ),
        ("mutation($v: ID!) { unlinkOperator(input: {linkId: $v}) { link { id } } }", json!({ "v": bad }), "linkId"),
        (END_SESSION, json!({ "s": bad, "a": 100, "c": "usd" }), "sessionId"),
        ("mutation($v: ID!) { chargeSession(input: {sessionId: $v}) { succeeded } }", json!({ "v": bad }), "sessionId"),
        (
            "mutation($v: ID!) { reissueChargeToken(input: {sessionId: $v}) { chargeToken { id } } }",
            json!({ "v": bad }),
            "sessionId",
        ),
        (
            "mutation($v: ID!) { acknowledgeChargeToken(input: {chargeTokenId: $v}) { chargeToken { id } } }",
            json!({ "v": bad }),
            "chargeTokenId",
        ),
    ];
    let before = snapshot(&t).await;
    for (query, variables, argument) in cases {
        // The caller for whom the operation would otherwise be allowed.
        let token = if query.contains("acknowledgeChargeToken") || query.contains("chargeSession") {
            &w.operator_token
        } else {
            &w.app_token
        };
        let (code, message) = rejected(&t, Some(token), query, variables).await;
        assert_eq!(code, "BAD_USER_INPUT", "{query}: {message}");
        assert!(message.contains(argument), "the message names {argument}: {message}");
    }
    // startParkingSession names each of its ids.
    for (variables, argument) in [
        (json!({ "c": "not-a-uuid", "o": w.operator_id, "k": "k", "z": "Z", "p": "P" }), "customerId"),
        (json!({ "c": w.customer_id, "o": "not-a-uuid", "k": "k", "z": "Z", "p": "P" }), "operatorId"),
    ] {
        let (code, message) = rejected(&t, Some(&w.app_token), START_SESSION, variables).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert!(message.contains(argument), "{message}");
    }
    assert_eq!(snapshot(&t).await, before);
}

#[tokio::test]
async fn page_arguments_are_checked_on_every_list() {
    let t = TestApp::new().await;
    let w = t.world().await;
    t.start_session(&w, "k1").await;
    let admin = t.admin();
    let lists = [
        ("apps", "query($f: Int, $a: String) { l: apps(first: $f, after: $a) { totalCount nodes { id } } }", json!({})),
        (
            "operators",
            "query($f: Int, $a: String) { l: operators(first: $f, after: $a) { totalCount nodes { id } } }",
            json!({}),
        ),
        (
            "links",
            "query($f: Int, $a: String) { l: links(first: $f, after: $a) { totalCount nodes { id } } }",
            json!({}),
        ),
        (
            "customers",
            "query($f: Int, $a: String) { l: customers(first: $f, after: $a) { totalCount nodes { id } } }",
            json!({}),
        ),
        (
            "parkingSessions",
            "query($f: Int, $a: String) { l: parkingSessions(first: $f, after: $a) { totalCount nodes { id } } }",
            json!({}),
        ),
        (
            "app.links",
            "query($id: ID!, $f: Int, $a: String) { app(id: $id) { l: links(first: $f, after: $a) { totalCount nodes { id } } } }",
            json!({ "id": w.app_id }),
        ),
        (
            "operator.links",
            "query($id: ID!, $f: Int, $a: String) { operator(id: $id) { l: links(first: $f, after: $a) { totalCount nodes { id } } } }",
            json!({ "id": w.operator_id }),
        ),
    ];
    for (label, query, base) in lists {
        let with = |extra: Value| {
            let mut variables = base.clone();
            variables.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            variables
        };
        for bad in [
            json!({ "f": 101 }),
            json!({ "f": -1 }),
            json!({ "f": i32::MIN }),
            json!({ "a": "bogus" }),
            json!({ "a": "" }),
        ] {
            let (code, message) = rejected(&t, Some(&admin), query, with(bad.clone())).await;
            assert_eq!(code, "BAD_USER_INPUT", "{label} {bad}: {message}");
        }
        // Out of Int range is a coercion error, also BAD_USER_INPUT.
        let (code, _) = rejected(&t, Some(&admin), query, with(json!({ "f": 1u64 << 40 }))).await;
        assert_eq!(code, "BAD_USER_INPUT", "{label}");

        // The edges of the range are fine; `first: 0` still counts.
        let data = t.ok(&admin, query, with(json!({ "f": 100 }))).await;
        assert_eq!(page_of(&data)["totalCount"], 1, "{label}: {data}");
        assert_eq!(page_of(&data)["nodes"].as_array().unwrap().len(), 1, "{label}: {data}");
        let data = t.ok(&admin, query, with(json!({ "f": 0 }))).await;
        assert_eq!(page_of(&data)["nodes"], json!([]), "{label}: {data}");
        assert_eq!(page_of(&data)["totalCount"], 1, "{label}: {data}");
        // A well-formed cursor past the end is an empty page, not an error.
        let data = t.ok(&admin, query, with(json!({ "a": Uuid::max().to_string() }))).await;
        assert_eq!(page_of(&data)["nodes"], json!([]), "{label}: {data}");
    }
}

/// The connection aliased `l`, at the top or one level down.
fn page_of(data: &Value) -> &Value {
    match data.get("l") {
        Some(list) => list,
        None => &data.as_object().unwrap().values().next().unwrap()["l"],
    }
}

// ---------------------------------------------------------------------------------------
// Mutation input
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

async fn operator_count(t: &TestApp) -> i64 {
    t.ok(&t.admin(), "{ operators { totalCount } }", json!({})).await["operators"]["totalCount"].as_i64().unwrap()
}

fn graphql_error(status: StatusCode, body: &str, expected: StatusCode) -> Value {
    assert_eq!(status, expected, "{body}");
    let response: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    assert_clean(&response);
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
    response
}

const CREATE_OPERATOR: &str = "mutation { createOperator(input: {name: \"Sneaky\"}) { operator { id } } }";

#[tokio::test]
async fn batches_and_malformed_bodies_are_400() {
    let t = TestApp::new().await;
    let admin = t.admin();
    // Batches of requests, even of one, are refused before anything runs.
    for batch in [
        json!([{ "query": CREATE_OPERATOR }, { "query": "{ viewer { role } }" }]),
        json!([{ "query": CREATE_OPERATOR }]),
    ] {
        let (status, body) = t.post_raw(Some(&admin), batch).await;
        graphql_error(status, &body, StatusCode::BAD_REQUEST);
    }
    for raw in
        ["{not json", "", "null", "42", "\"{ viewer { role } }\"", "{\"query\": 42}", "[\"{ viewer { role } }\", {}]"]
    {
        let (status, body) = t.send(raw_post(&admin, raw)).await;
        graphql_error(status, &body, StatusCode::BAD_REQUEST);
    }
    // JSON without a query is an empty document: a GraphQL error, not a crash.
    let (_, body) = t.send(raw_post(&admin, "{\"variables\": {}}")).await;
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_clean(&response);
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
    assert_eq!(operator_count(&t).await, 0, "nothing in a rejected body ran");
}

fn raw_post(token: &str, raw: &'static str) -> Request<Body> {
    Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(raw))
        .unwrap()
}

/// The body limit holds for GraphQL requests too (async-graphql's own extractor reads
/// the body as a raw stream that bypasses axum's limit, so curbpay reads it itself).
#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let t = TestApp::new().await;
    let admin = t.admin();
    // Just under the limit: served.
    let (status, body) = t
        .post_raw(
            Some(&admin),
            json!({ "query": "{ viewer { role } }", "variables": { "pad": "x".repeat(60 * 1024) } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Over it: refused before anything runs.
    let (status, body) = t
        .post_raw(Some(&admin), json!({ "query": CREATE_OPERATOR, "variables": { "pad": "x".repeat(70 * 1024) } }))
        .await;
    assert_eq!(operator_count(&t).await, 0, "the oversized request ran: {body}");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

fn get(path_and_query: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path_and_query);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn get_serves_queries_but_not_mutations() {
    let t = TestApp::new().await;
    let admin = t.admin();
    let (status, body) = t.send(get(&format!("/graphql?query={}", encode("{ viewer { role } }")), Some(&admin))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["data"]["viewer"]["role"], "ADMIN", "{response}");

    // With variables too.
    let query = "query($f: Int) { operators(first: $f) { totalCount } }";
    let uri = format!("/graphql?query={}&variables={}", encode(query), encode(&json!({ "f": 5 }).to_string()));
    let (status, body) = t.send(get(&uri, Some(&admin))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"]["operators"]["totalCount"], 0);

    // A mutation, alone or picked by name (`operationName`) from several operations: 405.
    let several = format!("query Q {{ viewer {{ role }} }} {}", CREATE_OPERATOR.replacen("mutation", "mutation M", 1));
    for uri in [
        format!("/graphql?query={}", encode(CREATE_OPERATOR)),
        format!("/graphql?query={}", encode(&CREATE_OPERATOR.replacen("mutation", "mutation M", 1))),
        format!("/graphql?query={}&operationName=M", encode(&several)),
    ] {
        let (status, body) = t.send(get(&uri, Some(&admin))).await;
        let response = graphql_error(status, &body, StatusCode::METHOD_NOT_ALLOWED);
        assert!(response["errors"][0]["message"].as_str().unwrap().contains("POST"), "{response}");
    }
    // Several operations without a usable name: an error, and nothing ran.
    for uri in [
        format!("/graphql?query={}", encode(&several)),
        format!("/graphql?query={}&operationName=Nope", encode(&several)),
    ] {
        let (status, body) = t.send(get(&uri, Some(&admin))).await;
        let response: Value = serde_json::from_str(&body).unwrap();
        assert!(status == StatusCode::OK || status == StatusCode::METHOD_NOT_ALLOWED, "{status}: {body}");
        assert_clean(&response);
        assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
        assert!(response["data"].is_null(), "{response}");
    }
    assert_eq!(operator_count(&t).await, 0, "a mutation ran over GET");

    // A GET without a query is an empty document: BAD_USER_INPUT.
    let (_, body) = t.send(get("/graphql", Some(&admin))).await;
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
}

/// The query GraphiQL sends to load the schema (graphql-js `getIntrospectionQuery`).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

#[tokio::test]
async fn anonymous_introspection_works() {
    let t = TestApp::new().await;
    let response = t.post(None, "{ __schema { queryType { name } } }", json!({})).await;
    assert!(response.get("errors").is_none(), "{response}");
    assert!(response["data"]["__schema"]["queryType"]["name"].is_string(), "{response}");

    // The full query GraphiQL sends, over POST and GET.
    let response = t.post(None, INTROSPECTION, json!({})).await;
    assert!(response.get("errors").is_none(), "{response}");
    let schema = &response["data"]["__schema"];
    let types: Vec<&str> = schema["types"].as_array().unwrap().iter().filter_map(|ty| ty["name"].as_str()).collect();
    assert!(types.contains(&"ParkingSession"), "{types:?}");
    // The root types it names are among the types it lists (GraphiQL needs them).
    for root in ["queryType", "mutationType", "subscriptionType"] {
        let name = schema[root]["name"].as_str().unwrap();
        assert!(types.contains(&name), "{root} {name} is not in {types:?}");
    }
    let (status, body) = t.send(get(&format!("/graphql?query={}", encode(INTROSPECTION)), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&body).unwrap().get("errors").is_none(), "{body}");

    // Anything beyond the schema still needs credentials.
    let (code, _) = rejected(&t, None, "{ __typename viewer { role } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
}

#[tokio::test]
async fn bad_credentials_are_unauthenticated_without_echoing_the_token() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let minted = |claims: &Claims, secret: &[u8]| curbpay::auth::mint(secret, claims).unwrap();
    let hour = Duration::from_secs(3600);

    let mut expired = Claims::new(Role::Admin, None, hour);
    expired.exp = chrono::Utc::now().timestamp() - 3600;
    let mut just_expired = Claims::new(Role::App(w.app_id), None, hour);
    just_expired.exp = chrono::Utc::now().timestamp() - 120; // past the 30 s leeway
    let mut app_without_id = Claims::new(Role::Admin, None, hour);
    app_without_id.role = "app".into();
    let mut unknown_role = Claims::new(Role::Admin, None, hour);
    unknown_role.role = "root".into();
    let other_secret = minted(&Claims::new(Role::Admin, None, hour), b"another-secret-another-secret-0123");
    let valid = t.admin();
    let tampered = {
        // A valid token with its payload swapped for an app's: the signature no longer matches.
        let app = t.token(Role::App(w.app_id));
        let parts: Vec<&str> = valid.split('.').collect();
        let app_parts: Vec<&str> = app.split('.').collect();
        format!("{}.{}.{}", parts[0], app_parts[1], parts[2])
    };

    let headers: Vec<(&str, String, Option<&str>)> = vec![
        ("basic", "Basic YWRtaW46YWRtaW4=".into(), Some("Bearer")),
        ("basic x", "Basic x".into(), Some("Bearer")),
        ("empty bearer", "Bearer ".into(), None),
        ("bare token", valid.clone(), None),
        ("garbage", "Bearer not-a-jwt".into(), None),
        ("expired", format!("Bearer {}", minted(&expired, JWT_SECRET.as_bytes())), Some("expired")),
        ("expired 2 min ago", format!("Bearer {}", minted(&just_expired, JWT_SECRET.as_bytes())), Some("expired")),
        ("other secret", format!("Bearer {other_secret}"), Some("signature")),
        ("tampered", format!("Bearer {tampered}"), Some("signature")),
        ("app without app_id", format!("Bearer {}", minted(&app_without_id, JWT_SECRET.as_bytes())), Some("app_id")),
        ("unknown role", format!("Bearer {}", minted(&unknown_role, JWT_SECRET.as_bytes())), Some("role")),
    ];
    let before = snapshot(&t).await;
    for (label, value, hint) in headers {
        for (query, variables) in [
            ("{ viewer { role } }", json!({})),
            ("{ parkingSessions { totalCount } }", json!({})),
            (CREATE_OPERATOR, json!({})),
        ] {
            let request = Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, &value)
                .body(Body::from(json!({ "query": query, "variables": variables }).to_string()))
                .unwrap();
            let (status, body) = t.send(request).await;
            assert_eq!(status, StatusCode::OK, "{label}: {body}");
            let response: Value = serde_json::from_str(&body).unwrap();
            assert_clean(&response);
            assert_eq!(code_of(&response).as_deref(), Some("UNAUTHENTICATED"), "{label}: {response}");
            let token = value.split_once(' ').map_or(value.as_str(), |(_, token)| token);
            if token.len() > 8 {
                assert!(!body.contains(token), "{label}: the response echoes the credentials: {body}");
            }
            if let Some(hint) = hint {
                let message = response["errors"][0]["message"].as_str().unwrap();
                assert!(message.contains(hint), "{label}: the message should say why ({hint}): {message}");
            }
        }
    }
    assert_eq!(snapshot(&t).await, before);
}

/// Introspection names the same root types as the published schema.graphql.
#[tokio::test]
async fn introspection_root_names_match_schema_graphql() {
    let t = TestApp::new().await;
    let response = t
        .post(None, "{ __schema { queryType { name } mutationType { name } subscriptionType { name } } }", json!({}))
        .await;
    let sdl = curbpay::graphql::sdl();
    for root in ["queryType", "mutationType", "subscriptionType"] {
        let name = response["data"]["__schema"][root]["name"].as_str().unwrap();
        assert!(
            sdl.contains(&format!("\ntype {name} {{")),
            "introspection's {root} {name} is not a type of schema.graphql"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Static routes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn health_and_graphiql_are_served() {
    let t = TestApp::new().await;
    let fetch = |path: &'static str| {
        let router = t.router.clone();
        async move {
            let response = router.oneshot(get(path, None)).await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
        }
    };

    let (status, content_type, body) = fetch("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({ "status": "ok" }));

    let (status, content_type, body) = fetch("/graphiql").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.contains("graphiql.js"), "{body}");

    let (status, content_type, body) = fetch("/graphiql/graphiql.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.contains("javascript"), "{content_type}");
    assert!(body.len() > 10_000, "the bundle is served whole ({} bytes)", body.len());

    let (status, content_type, _) = fetch("/graphiql/graphiql.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/css"), "{content_type}");

    // `/` leads to GraphiQL.
    let response = t.router.clone().oneshot(get("/", None)).await.unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()[header::LOCATION], "/graphiql");
}

/// A required variable that is not sent is BAD_USER_INPUT (the GraphQL spec's request
/// error), whether the argument it feeds is required or not.
#[tokio::test]
async fn missing_required_variables_are_bad_user_input() {
    let t = TestApp::new().await;
    let admin = t.admin();
    let mut wrong = Vec::new();
    for (query, variables) in [
        ("query($id: ID!) { app(id: $id) { id } }", json!({})),
        ("query($id: ID!) { parkingSession(id: $id) { id } }", json!({})),
        ("mutation($n: String!) { createOperator(input: {name: $n}) { operator { id } } }", json!({})),
        ("query($f: Int!) { apps(first: $f) { totalCount } }", json!({})),
    ] {
        let response = t.post(Some(&admin), query, variables).await;
        assert_clean(&response);
        if code_of(&response).as_deref() != Some("BAD_USER_INPUT") {
            wrong.push(format!("{query}: {response}"));
        }
    }
    assert_eq!(operator_count(&t).await, 0);
    assert!(wrong.is_empty(), "missing required variables not BAD_USER_INPUT:\n{}", wrong.join("\n"));
}

/// A JSON array body is never executed: async-graphql's `Request` would deserialize
/// from a sequence by field order, taking `["<document>"]` as `{"query": "<document>"}`.
#[tokio::test]
async fn array_bodies_are_never_executed() {
    let t = TestApp::new().await;
    let admin = t.admin();
    let mut wrong = Vec::new();
    for raw in ["[\"mutation { createOperator(input: {name: \\\"Sneaky\\\"}) { operator { id } } }\"]", "[]"] {
        let (status, body) = t.send(raw_post(&admin, raw)).await;
        if status != StatusCode::BAD_REQUEST {
            wrong.push(format!("{raw} -> {status} {body}"));
        }
    }
    assert_eq!(operator_count(&t).await, 0, "an array body ran a mutation: {wrong:?}");
    assert!(wrong.is_empty(), "array bodies not refused:\n{}", wrong.join("\n"));
}
