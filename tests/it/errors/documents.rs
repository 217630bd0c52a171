//! Malformed documents, variables, ids and page arguments: BAD_USER_INPUT, naming what is wrong.

use axum::http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::{END_SESSION, START_SESSION, TestApp, code_of};

use super::{assert_clean, rejected, snapshot};

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
