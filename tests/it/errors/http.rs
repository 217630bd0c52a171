//! The HTTP edge: batches, malformed and oversized bodies, GET, introspection, bad credentials.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use curbpay::auth::{Claims, Role};
use serde_json::{Value, json};

use crate::util::{JWT_SECRET, TestApp, code_of};

use super::{assert_clean, get, operator_count, raw_post, rejected, snapshot};

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
