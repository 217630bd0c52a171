//! Bad input gets a clear error with a stable `extensions.code`, never internal detail,
//! and changes nothing. Also the HTTP edges: batches, oversized bodies, GET, the
//! credentials header, and the static routes.

mod documents;
mod http;
mod input;
mod routes;

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::{Value, json};

use crate::util::{TestApp, code_of};

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

async fn operator_count(t: &TestApp) -> i64 {
    t.ok(&t.admin(), "{ operators { totalCount } }", json!({})).await["operators"]["totalCount"].as_i64().unwrap()
}

fn raw_post(token: &str, raw: &'static str) -> Request<Body> {
    Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(raw))
        .unwrap()
}

fn get(path_and_query: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path_and_query);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}
