//! Trust boundaries: documents that cost unbounded work, tokens that should not
//! authenticate, and GraphQL over HTTP as the specification (and its audits) say.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use curbpay::auth::{Claims, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::util::{JWT_SECRET, TestApp, code_of, node};

/// `fragment Fn on Query { ...Fn-1 ...Fn-1 … }`, `levels` deep with `width` spreads
/// each: k^levels selections once expanded, in a few hundred bytes.
fn fragment_bomb(levels: usize, width: usize) -> String {
    let mut doc = format!("query Bomb {{ ...F{levels} }}\nfragment F0 on Query {{ __typename }}\n");
    for level in 1..=levels {
        doc.push_str(&format!("fragment F{level} on Query {{"));
        for _ in 0..width {
            doc.push_str(&format!(" ...F{}", level - 1));
        }
        doc.push_str(" }\n");
    }
    doc
}

/// While fragment bombs (POST and GET, anonymous) are in flight, `/health` and a
/// `viewer` query keep answering, and every bomb is refused with the limit it broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_bombs_are_refused_at_once_and_the_server_stays_responsive() {
    let t = TestApp::new().await;
    let base = format!("http://{}", t.addr);
    let client = reqwest::Client::new();
    let admin = t.admin();
    let bombs = [
        (fragment_bomb(8, 40), "fragmentSpreads"),
        (fragment_bomb(6, 10), "expandedSize"),
        (fragment_bomb(40, 2), "expandedSize"),
    ];
    assert!(bombs[0].0.len() > 2_000, "the 2 KB bomb of the report");

    let started = Instant::now();
    let mut in_flight = Vec::new();
    for (doc, limit) in &bombs {
        for _ in 0..4 {
            let post = client.post(format!("{base}/graphql")).json(&json!({ "query": doc })).send();
            let get = client.get(format!("{base}/graphql")).query(&[("query", doc.as_str())]).send();
            for request in [Box::pin(post) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>, Box::pin(get)] {
                let limit = *limit;
                in_flight.push(tokio::spawn(async move {
                    let response = tokio::time::timeout(Duration::from_secs(10), request)
                        .await
                        .expect("a fragment bomb was answered within 10 s")
                        .unwrap();
                    let body: Value = response.json().await.unwrap();
                    assert_eq!(code_of(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");
                    assert_eq!(body["errors"][0]["extensions"]["limit"], limit, "{body}");
                    assert!(body.get("data").is_none(), "a refused document has no data: {body}");
                }));
            }
        }
    }
    // Meanwhile the server answers everyone else.
    for _ in 0..5 {
        let health = tokio::time::timeout(Duration::from_secs(5), client.get(format!("{base}/health")).send())
            .await
            .expect("/health answered while bombs were in flight")
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let viewer = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .post(format!("{base}/graphql"))
                .bearer_auth(&admin)
                .json(&json!({ "query": "{ viewer { role } }" }))
                .send(),
        )
        .await
        .expect("a viewer query answered while bombs were in flight")
        .unwrap();
        assert_eq!(viewer.json::<Value>().await.unwrap()["data"]["viewer"]["role"], "ADMIN");
    }
    for task in in_flight {
        task.await.unwrap();
    }
    eprintln!("24 fragment bombs refused in {:?}", started.elapsed());
}

/// The lexical limits hold before parsing: too many tokens, too deep a nesting.
#[tokio::test]
async fn oversized_and_overnested_documents_are_refused() {
    let t = TestApp::new().await;
    let many = format!("{{ {} }}", "a ".repeat(6_000));
    let response = t.post(None, &many, json!({})).await;
    assert_eq!(response["errors"][0]["extensions"]["limit"], "tokens", "{response}");
    let deep = format!("{}{}", "{ viewer ".repeat(100), "}".repeat(100));
    let response = t.post(None, &deep, json!({})).await;
    assert_eq!(response["errors"][0]["extensions"]["limit"], "nesting", "{response}");
    // The standard introspection query GraphiQL sends is well within every limit.
    let introspection = include_str!("fixtures/introspection.graphql");
    let data = t.ok(&t.admin(), introspection, json!({})).await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
}

/// A list costs its page size times its items, so a request that would fan out into
/// thousands of statements is refused before any of them runs.
#[tokio::test]
async fn list_fields_cost_their_page_size() {
    let t = TestApp::new().await;
    let w = t.world().await;
    for i in 0..3 {
        t.create_operator(&format!("Lot {i}")).await;
    }
    let amplification = (0..64)
        .map(|i| format!("a{i}: operators(first: 100) {{ edges {{ node {{ links {{ totalCount }} }} }} }}"))
        .collect::<Vec<_>>()
        .join("\n");
    let query = format!("{{ {amplification} }}");
    // Warm up (the token's party is looked up once), then count.
    t.ok(&w.app_token, "{ viewer { role } }", json!({})).await;
    let before = t.statements();
    let response = t.post(Some(&w.app_token), &query, json!({})).await;
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("complex"), "{message}");
    assert_eq!(t.statements() - before, 0, "a refused request ran no SQL");

    // One such field alone is already over the limit: 100 operators × a count each.
    let one = "{ operators(first: 100) { edges { node { links { totalCount } } } } }";
    assert_eq!(t.error_code(Some(&w.app_token), one, json!({})).await, "BAD_USER_INPUT");
    // Variables count too.
    let with_variable = "query($n: Int) { operators(first: $n) { edges { node { links { totalCount } } } } }";
    let response = t.post(Some(&w.app_token), with_variable, json!({ "n": 100 })).await;
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");

    // Ordinary pages pass: the page of links with names, and a few operators' counts.
    let page = "{ links(first: 50) { edges { node { id status app { name } operator { name } } } } }";
    let data = t.ok(&w.app_token, page, json!({})).await;
    assert_eq!(data["links"]["edges"].as_array().unwrap().len(), 1);
    let counts = "{ operators(first: 10) { edges { node { name links { totalCount } } } } }";
    let data = t.ok(&w.app_token, counts, json!({})).await;
    assert_eq!(data["operators"]["edges"].as_array().unwrap().len(), 4);
}

fn token(claims: &Claims) -> String {
    curbpay::auth::mint(JWT_SECRET.as_bytes(), claims).unwrap()
}

async fn unauthenticated_because(t: &TestApp, authorization: &str, hint: &str) {
    let request = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::from(json!({ "query": "{ viewer { role } }" }).to_string()))
        .unwrap();
    let (_, body) = t.send(request).await;
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code_of(&response).as_deref(), Some("UNAUTHENTICATED"), "{hint}: {response}");
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(hint), "{hint}: {message}");
    assert!(!body.contains(authorization.trim_start_matches("Bearer ")), "the response echoes the token");
}

#[tokio::test]
async fn tokens_not_yet_valid_for_missing_parties_or_oversized_are_refused() {
    let t = TestApp::new().await;
    let w = t.world().await;

    // Valid only from next year.
    let mut claims = Claims::new(Role::App(w.app_id), None, Duration::from_secs(3600 * 24 * 800));
    claims.nbf = Some(chrono::Utc::now().timestamp() + 3600 * 24 * 365);
    unauthenticated_because(&t, &format!("Bearer {}", token(&claims)), "not valid yet").await;

    // Validly signed, naming an app or an operator that does not exist.
    for role in [Role::App(Uuid::now_v7()), Role::Operator(Uuid::now_v7())] {
        let ghost = token(&Claims::new(role, None, Duration::from_secs(600)));
        unauthenticated_because(&t, &format!("Bearer {ghost}"), "does not exist").await;
    }
    // The real ones still authenticate.
    assert_eq!(t.ok(&w.operator_token, "{ viewer { role } }", json!({})).await["viewer"]["role"], "OPERATOR");

    // An oversized header, and a token that names critical header extensions.
    unauthenticated_because(&t, &format!("Bearer {}", "a".repeat(9 * 1024)), "larger than 8 KiB").await;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = Claims::new(Role::Admin, None, Duration::from_secs(600));
    let signing_input = format!(
        "{}.{}",
        b64.encode(r#"{"alg":"HS256","typ":"JWT","crit":["x-ext"],"x-ext":true}"#),
        b64.encode(serde_json::to_vec(&claims).unwrap())
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    unauthenticated_because(&t, &format!("Bearer {signing_input}.{signature}"), "crit").await;
}

/// A ghost operator's token cannot open a subscription socket (it used to reach the
/// charge-token stream and fail there with INTERNAL).
#[tokio::test]
async fn a_token_for_a_missing_operator_cannot_subscribe() {
    let t = TestApp::new().await;
    let ghost = token(&Claims::new(Role::Operator(Uuid::now_v7()), None, Duration::from_secs(600)));
    let mut request = t.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {ghost}") } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("the server answered");
    match reply {
        Some(Ok(Message::Text(text))) => panic!("the ghost was answered with {text}"),
        Some(Ok(Message::Close(frame))) => {
            let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
            assert!(reason.contains("does not exist"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// graphql-http's server audits (the GraphQL over HTTP specification's reference
/// checks) pass without an error or a warning against the real server.
#[tokio::test]
async fn graphql_over_http_audits_pass() {
    let t = TestApp::new().await;
    let summary = node::graphql_http_audits(&format!("http://{}/graphql", t.addr)).await;
    assert_eq!(summary["error"], 0, "{summary:#}");
    assert_eq!(summary["warn"], 0, "{summary:#}");
    assert!(summary["ok"].as_u64().unwrap() >= 40, "{summary:#}");
}

async fn raw(
    t: &TestApp,
    method: &str,
    accept: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, String, Value) {
    let mut request = Request::builder().method(method).uri("/graphql");
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response =
        tower::ServiceExt::oneshot(t.router.clone(), request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let media =
        response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, media, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn responses_follow_the_accept_header() {
    let t = TestApp::new().await;
    let json_type = Some("application/json");
    let grj = Some("application/graphql-response+json");
    let ok = r#"{"query": "{ __typename }"}"#;
    let unparsable = r#"{"query": "{"}"#;
    let invalid = r#"{"query": "{ nope }"}"#;

    // Legacy clients: application/json, and 200 for every GraphQL result.
    for accept in [None, Some("application/json"), Some("*/*")] {
        let (status, media, body) = raw(&t, "POST", accept, json_type, ok).await;
        assert_eq!((status, media.as_str()), (StatusCode::OK, "application/json; charset=utf-8"), "{accept:?}");
        assert_eq!(body["data"]["__typename"], "Query");
        let (status, _, body) = raw(&t, "POST", accept, json_type, unparsable).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(code_of(&body).as_deref(), Some("BAD_USER_INPUT"));
    }
    // The GraphQL response media type: request errors are 400 without `data`.
    let (status, media, _) = raw(&t, "POST", grj, json_type, ok).await;
    assert_eq!((status, media.as_str()), (StatusCode::OK, "application/graphql-response+json; charset=utf-8"));
    for body in [unparsable, invalid] {
        let (status, _, response) = raw(&t, "POST", grj, json_type, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{response}");
        assert!(response.get("data").is_none(), "{response}");
        assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"));
    }
    // A field error during execution still answers 200 with data.
    let (status, _, response) = raw(&t, "POST", grj, json_type, r#"{"query": "{ viewer { role } }"}"#).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(code_of(&response).as_deref(), Some("UNAUTHENTICATED"));

    // Nothing acceptable: 406. No JSON content type: 415, and nothing runs.
    let (status, _, _) = raw(&t, "POST", Some("text/html"), json_type, ok).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    for content_type in
        [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/json; charset=latin1")]
    {
        let (status, _, body) = raw(&t, "POST", None, content_type, ok).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        assert_eq!(code_of(&body).as_deref(), Some("BAD_USER_INPUT"));
    }
    // Parameters of the wrong shape, or no query at all: 400.
    for body in [
        r#"{"qeury": "{ __typename }"}"#,
        r#"{"query": 1}"#,
        r#"{"query": "{ __typename }", "variables": []}"#,
        r#"{"query": "{ __typename }", "operationName": false}"#,
    ] {
        let (status, _, response) = raw(&t, "POST", None, json_type, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {response}");
    }
    // GET reads the same parameters from the query string.
    let (status, _, body) = raw(&t, "GET", None, None, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
