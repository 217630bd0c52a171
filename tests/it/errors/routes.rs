//! Static routes, and requests the GraphQL endpoint never executes.

use axum::http::{StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::util::{TestApp, code_of};

use super::{assert_clean, get, operator_count, raw_post};

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
