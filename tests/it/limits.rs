//! Limits that keep one caller from taking the server down: rate limits per principal
//! and per address, WebSocket limits (operations per socket, sockets per principal,
//! the protocol's close codes), no pooled connection held by idle subscriptions, HTTP
//! connection deadlines and cap, and the shape of error-heavy responses.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use curbpay::auth::{Claims, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::{JWT_SECRET, TestApp, code_of, id};

const PROMPTLY: Duration = Duration::from_secs(10);

const TOKENS: &str = "subscription { chargeTokenIssued(after: \"0\") { cursor chargeToken { id } } }";

// ---------------------------------------------------------------------------------------
// A raw graphql-transport-ws client.

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

#[derive(Debug)]
enum Incoming {
    Json(Value),
    Closed(Option<u16>, String),
}

struct Ws {
    socket: Socket,
}

impl Ws {
    async fn connect(t: &TestApp) -> Ws {
        let mut request = t.ws_url().into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        let (socket, _) = tokio::time::timeout(PROMPTLY, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake timed out")
            .expect("WebSocket handshake");
        Ws { socket }
    }

    async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.unwrap();
    }

    async fn incoming(&mut self) -> Incoming {
        loop {
            let message = tokio::time::timeout(PROMPTLY, self.socket.next()).await.expect("nothing for 10 s");
            match message {
                None | Some(Err(_)) => return Incoming::Closed(None, String::new()),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unzip();
                    return Incoming::Closed(code, reason.unwrap_or_default());
                }
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Incoming::Json(value);
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn recv(&mut self) -> Value {
        match self.incoming().await {
            Incoming::Json(value) => value,
            closed => panic!("the server closed the socket: {closed:?}"),
        }
    }

    /// The close code the server ends the socket with.
    async fn closed_with(&mut self) -> (u16, String) {
        match self.incoming().await {
            Incoming::Closed(Some(code), reason) => (code, reason),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Sends `connection_init` with the token; returns the server's answer.
    async fn init(&mut self, token: &str) -> Incoming {
        self.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
            .await;
        self.incoming().await
    }

    async fn authenticated(t: &TestApp, token: &str) -> Ws {
        let mut ws = Ws::connect(t).await;
        match ws.init(token).await {
            Incoming::Json(ack) if ack["type"] == "connection_ack" => ws,
            other => panic!("not acknowledged: {other:?}"),
        }
    }

    async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query } })).await;
    }
}

fn error_code(message: &Value) -> Option<&str> {
    message["payload"][0]["extensions"]["code"].as_str()
}

/// An admin token with its own subject: its own rate-limit bucket and socket count.
fn admin_named(subject: &str) -> String {
    let claims = Claims::new(Role::Admin, Some(subject.to_owned()), Duration::from_secs(3600));
    curbpay::auth::mint(JWT_SECRET.as_bytes(), &claims).unwrap()
}

// ---------------------------------------------------------------------------------------
// Rate limits.

async fn post_status(t: &TestApp, token: Option<&str>) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = json!({ "query": "{ viewer { role } }" }).to_string();
    let response = tower::ServiceExt::oneshot(t.router.clone(), request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, retry_after, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_principal_over_its_rate_limit_gets_429_and_others_are_unaffected() {
    let t = TestApp::with_config(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 5;
    })
    .await;
    let (busy, quiet) = (admin_named("busy"), admin_named("quiet"));

    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(post_status(&t, Some(&busy)).await);
    }
    for (n, (status, _, body)) in answers.iter().take(5).enumerate() {
        assert_eq!(*status, StatusCode::OK, "request {n} is within the burst: {body}");
        assert_eq!(body["data"]["viewer"]["role"], "ADMIN", "{body}");
    }
    let (status, retry_after, body) = answers.last().unwrap();
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry_after: u64 = retry_after.as_deref().expect("a Retry-After header").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(code_of(body).as_deref(), Some("RATE_LIMITED"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], retry_after, "{body}");
    assert!(body.get("data").is_none(), "{body}");

    // Another principal has its own bucket.
    let (status, _, body) = post_status(&t, Some(&quiet)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The bucket refills at the configured rate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = post_status(&t, Some(&busy)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn unauthenticated_clients_are_limited_by_address() {
    let t = TestApp::with_config(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/graphql", t.addr);
    let post = |token: Option<String>| {
        let mut request = client.post(&url).json(&json!({ "query": "{ __typename }" }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(post(None).await.status());
    }
    assert_eq!(&statuses[..3], [StatusCode::OK; 3], "{statuses:?}");
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // An authenticated caller from the same address is charged to its principal.
    let response = post(Some(admin_named("same-host"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    // A token that does not verify is charged to the address, not to a name it claims.
    let response = post(Some("not-a-jwt".to_owned())).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let body: Value = response.json().await.unwrap();
    assert_eq!(code_of(&body).as_deref(), Some("RATE_LIMITED"), "{body}");
}

#[tokio::test]
async fn operations_started_on_a_websocket_are_rate_limited() {
    let t = TestApp::with_config(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let mut ws = Ws::authenticated(&t, &admin_named("ws-busy")).await;
    let mut refused = Vec::new();
    for n in 0..5 {
        ws.subscribe(&format!("q{n}"), "{ viewer { role } }").await;
        let first = ws.recv().await;
        assert_eq!(first["id"], format!("q{n}"), "{first}");
        match first["type"].as_str() {
            Some("next") => {
                assert_eq!(first["payload"]["data"]["viewer"]["role"], "ADMIN", "{first}");
                assert_eq!(ws.recv().await["type"], "complete");
            }
            Some("error") => {
                assert_eq!(error_code(&first), Some("RATE_LIMITED"), "{first}");
                assert!(first["payload"][0]["extensions"]["retryAfter"].as_u64().is_some(), "{first}");
                refused.push(n);
            }
            _ => panic!("unexpected {first}"),
        }
    }
    assert_eq!(refused, [3, 4], "the first three fit the burst");
    // The socket stays usable once the bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.subscribe("later", "{ viewer { role } }").await;
    assert_eq!(ws.recv().await["type"], "next");
}

// ---------------------------------------------------------------------------------------
// WebSocket limits and close codes.

#[tokio::test]
async fn websocket_handshake_failures_use_the_protocol_close_codes() {
    let t = TestApp::with_config(|c| c.ws_init_timeout = Duration::from_millis(300)).await;

    // A rejected connection_init: 4403 with the reason.
    let mut ws = Ws::connect(&t).await;
    match ws.init("not-a-jwt").await {
        Incoming::Closed(Some(4403), reason) => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("expected 4403: {other:?}"),
    }

    // No connection_init in time: 4408.
    let mut ws = Ws::connect(&t).await;
    let started = Instant::now();
    assert_eq!(ws.closed_with().await.0, 4408);
    assert!(started.elapsed() < Duration::from_secs(5));

    // An operation before the acknowledgement: 4401.
    let mut ws = Ws::connect(&t).await;
    ws.subscribe("1", "{ viewer { role } }").await;
    assert_eq!(ws.closed_with().await.0, 4401);

    // A message that is not one of the protocol's: 4400.
    let mut ws = Ws::authenticated(&t, &t.admin()).await;
    ws.send(json!({ "type": "nonsense" })).await;
    assert_eq!(ws.closed_with().await.0, 4400);
}

#[tokio::test]
async fn a_duplicate_subscription_id_closes_the_socket_with_4409() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut ws = Ws::authenticated(&t, &w.operator_token).await;
    ws.subscribe("same", TOKENS).await;
    ws.subscribe("same", TOKENS).await;
    let (code, reason) = ws.closed_with().await;
    assert_eq!(code, 4409, "{reason}");
    assert_eq!(reason, "Subscriber for same already exists");

    // A completed id may be used again.
    let mut ws = Ws::authenticated(&t, &w.operator_token).await;
    ws.subscribe("again", "{ viewer { role } }").await;
    assert_eq!(ws.recv().await["type"], "next");
    assert_eq!(ws.recv().await["type"], "complete");
    ws.subscribe("again", "{ viewer { role } }").await;
    assert_eq!(ws.recv().await["type"], "next");
}

#[tokio::test]
async fn operations_past_the_per_socket_cap_get_an_error_and_the_socket_stays_open() {
    let t = TestApp::with_config(|c| c.ws_max_subscriptions = 3).await;
    let w = t.world().await;
    let first = t.start_session(&w, "k1").await;
    let token_id = id(&first["session"]["chargeToken"]["id"]);

    let mut ws = Ws::authenticated(&t, &w.operator_token).await;
    for n in 0..3 {
        ws.subscribe(&format!("s{n}"), TOKENS).await;
        let next = ws.recv().await;
        assert_eq!((next["type"].as_str(), next["id"].as_str()), (Some("next"), Some(format!("s{n}").as_str())));
    }
    ws.subscribe("s3", TOKENS).await;
    let refused = ws.recv().await;
    assert_eq!((refused["type"].as_str(), refused["id"].as_str()), (Some("error"), Some("s3")), "{refused}");
    assert_eq!(error_code(&refused), Some("LIMIT_EXCEEDED"), "{refused}");
    assert!(refused["payload"][0]["message"].as_str().unwrap().contains("at most 3"), "{refused}");

    // Completing one makes room; the socket was never closed.
    ws.send(json!({ "type": "complete", "id": "s0" })).await;
    ws.subscribe("s4", TOKENS).await;
    loop {
        let message = ws.recv().await;
        if message["type"] == "complete" {
            continue; // async-graphql echoes the client's complete
        }
        assert_eq!(message["id"], "s4", "{message}");
        assert_eq!(message["payload"]["data"]["chargeTokenIssued"]["chargeToken"]["id"], token_id.to_string());
        break;
    }
}

#[tokio::test]
async fn sockets_per_principal_are_capped_and_freed_when_closed() {
    let t = TestApp::with_config(|c| c.ws_max_connections_per_principal = 2).await;
    let token = admin_named("many-tabs");
    let one = Ws::authenticated(&t, &token).await;
    let _two = Ws::authenticated(&t, &token).await;
    let mut three = Ws::connect(&t).await;
    match three.init(&token).await {
        Incoming::Closed(Some(1013), reason) => assert!(reason.contains("at most 2"), "{reason}"),
        other => panic!("expected 1013: {other:?}"),
    }
    // Another principal is not affected.
    let _other = Ws::authenticated(&t, &admin_named("someone-else")).await;

    drop(one);
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let mut again = Ws::connect(&t).await;
        match again.init(&token).await {
            Incoming::Json(ack) if ack["type"] == "connection_ack" => break,
            Incoming::Closed(Some(1013), _) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("the closed socket's slot was never freed: {other:?}"),
        }
    }
}

/// Many idle subscriptions hold no pooled database connection: with a pool of two,
/// 200 subscriptions wait for events while queries still get connections at once.
#[tokio::test]
async fn idle_subscriptions_hold_no_database_connection() {
    let t = TestApp::with_config(|c| {
        c.db_pool_size = 2;
        c.db_pool_timeout = Duration::from_secs(2);
    })
    .await;
    let w = t.world().await;
    t.start_session(&w, "k1").await;

    let mut sockets = Vec::new();
    for s in 0..4 {
        let mut ws = Ws::authenticated(&t, &w.operator_token).await;
        for n in 0..50 {
            ws.subscribe(&format!("{s}-{n}"), TOKENS).await;
        }
        // Each subscription has read its replay (so it is past its first query).
        for _ in 0..50 {
            let next = ws.recv().await;
            assert_eq!(next["type"], "next", "{next}");
            assert_eq!(next["payload"]["data"]["chargeTokenIssued"]["cursor"], "1", "{next}");
        }
        sockets.push(ws);
    }
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let status = t.broker.pool.status();
        if status.available == status.size {
            break;
        }
        assert!(Instant::now() < deadline, "connections stayed checked out: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Were the 200 subscriptions holding the pool's two connections, these would wait out the
    // pool timeout and answer UNAVAILABLE.
    let answers = futures_util::future::join_all(
        (0..10).map(|_| t.post(Some(&w.app_token), "{ links { edges { node { id status } } } }", json!({}))),
    )
    .await;
    for answer in &answers {
        assert!(answer.get("errors").is_none(), "{answer}");
    }

    // And every subscription still receives the next token.
    let second = t.start_session(&w, "k2").await;
    let token_id = second["session"]["chargeToken"]["id"].clone();
    for ws in &mut sockets {
        for _ in 0..50 {
            let next = ws.recv().await;
            assert_eq!(next["payload"]["data"]["chargeTokenIssued"]["chargeToken"]["id"], token_id, "{next}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP connection hygiene (raw TCP on loopback).

async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, &'static str> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Err("still open"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Reads one response to a `GET /health` (a small body, sent in one piece).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(PROMPTLY, stream.read(&mut buf)).await.expect("no response").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_trickling_client_is_closed_after_the_header_read_timeout() {
    let t = TestApp::with_config(|c| c.http_header_read_timeout = Duration::from_millis(400)).await;

    let mut trickler = TcpStream::connect(t.addr).await.unwrap();
    let started = Instant::now();
    trickler.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let closed = async {
        for n in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickler.write_all(format!("X-Slow-{n}: a\r\n").as_bytes()).await.is_err() {
                break;
            }
            if n > 50 {
                panic!("the trickling connection stayed open for 5 s");
            }
        }
    };
    closed.await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(350), "closed too early: {elapsed:?}");

    // A silent connection is closed as well, and answered nothing.
    let mut silent = TcpStream::connect(t.addr).await.unwrap();
    let received = read_until_closed(&mut silent, Duration::from_secs(3)).await.expect("the silent one was closed");
    assert!(received.is_empty());

    // A prompt client is served.
    let mut prompt = TcpStream::connect(t.addr).await.unwrap();
    prompt.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut prompt).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn keep_alive_connections_close_after_the_idle_timeout_not_the_header_timeout() {
    let t = TestApp::with_config(|c| {
        c.http_header_read_timeout = Duration::from_millis(200);
        c.http_idle_timeout = Duration::from_millis(1200);
    })
    .await;
    let mut stream = TcpStream::connect(t.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the head deadline, within the idle timeout: still served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Then left idle: closed once the idle timeout passes.
    let idle = Instant::now();
    read_until_closed(&mut stream, Duration::from_secs(5)).await.expect("the idle connection was closed");
    let elapsed = idle.elapsed();
    assert!(elapsed >= Duration::from_millis(1100), "closed before the idle timeout: {elapsed:?}");
}

#[tokio::test]
async fn connections_beyond_the_maximum_wait_until_one_closes() {
    let t = TestApp::with_config(|c| c.http_max_connections = 2).await;
    let first = TcpStream::connect(t.addr).await.unwrap();
    let mut second = TcpStream::connect(t.addr).await.unwrap();
    second.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"), "the second is served");

    // The third connects (the kernel's backlog) but is not served...
    let mut third = TcpStream::connect(t.addr).await.unwrap();
    third.write_all(HEALTH).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await.is_err(),
        "a third connection was served past the maximum of two"
    );
    // ...until one of the others closes.
    drop(first);
    let response = read_response(&mut third).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

// ---------------------------------------------------------------------------------------
// Responses: error cap, suggestions, introspection.

#[tokio::test]
async fn a_response_carries_at_most_fifty_errors() {
    let t = TestApp::new().await;
    let fields: Vec<String> = (0..120).map(|n| format!("nope{n}")).collect();
    let response = t.post(Some(&t.admin()), &format!("{{ {} }}", fields.join(" ")), json!({})).await;
    let errors = response["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 50, "{response:#}");
    assert!(errors[..49].iter().all(|e| e["extensions"]["code"] == "BAD_USER_INPUT"), "{response:#}");
    let last = &errors[49];
    assert_eq!(last["message"], "71 more errors omitted (at most 50 are reported)", "{last}");
    assert_eq!(last["extensions"]["omittedErrors"], 71);
    assert_eq!(last["extensions"]["code"], "BAD_USER_INPUT");
}

#[tokio::test]
async fn field_suggestions_are_off_unless_configured() {
    let query = "{ viewr { role } }";
    let t = TestApp::new().await;
    let response = t.post(Some(&t.admin()), query, json!({})).await;
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("viewr") && !message.contains("Did you mean"), "{message}");

    let t = TestApp::with_config(|c| c.graphql_suggestions = true).await;
    let response = t.post(Some(&t.admin()), query, json!({})).await;
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Did you mean \"viewer\"?"), "{message}");
}

#[tokio::test]
async fn introspection_is_on_by_default_and_can_be_turned_off() {
    let query = "{ __schema { queryType { name } } }";
    let t = TestApp::new().await;
    let data = t.ok(&t.admin(), query, json!({})).await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");

    let t = TestApp::with_config(|c| c.graphql_introspection = false).await;
    let response = t.post(Some(&t.admin()), query, json!({})).await;
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response:#}");
    assert!(response["data"].is_null() || response["data"]["__schema"].is_null(), "{response:#}");
    // Ordinary queries still run.
    let data = t.ok(&t.admin(), "{ viewer { role } }", json!({})).await;
    assert_eq!(data["viewer"]["role"], "ADMIN");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns_at_once() {
    let t = TestApp::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = curbpay::server::ServerSettings::from(&*t.broker.config);
    let server = tokio::spawn(curbpay::server::serve(listener, t.router.clone(), settings, async {
        let _ = stopped.await;
    }));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), server).await.expect("serve returned").unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    for stream in [&mut idle, &mut half] {
        read_until_closed(stream, Duration::from_secs(1)).await.expect("closed by the shutdown");
    }
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}
