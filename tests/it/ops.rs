//! Operations: `/metrics` scraped and parsed through the real router, `/ready`, and
//! shutdown: WebSocket clients get `complete` per subscription then close 1012, and the
//! real binary finishes in-flight requests on SIGTERM.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use curbpay::auth::Role;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::process::Curbpay;
use crate::util::{JWT_SECRET, START_SESSION, TestApp, TestDb};

/// One sample of the Prometheus text format: name, sorted labels, value.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

/// Parses the text exposition format (what a Prometheus server reads).
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), vec![]),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels: Vec<(String, String)> = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                labels.sort();
                (name.to_owned(), labels)
            }
        };
        assert!(name.starts_with("curbpay_"), "unprefixed metric {name}");
        samples.insert((name, labels), value);
    }
    samples
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    samples.get(&(name.to_owned(), labels)).copied()
}

async fn scrape(t: &TestApp) -> Samples {
    let (status, body) = t.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    parse(&body)
}

#[tokio::test]
async fn metrics_are_scraped_in_the_prometheus_format() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let admin = t.admin();
    t.ok(&admin, "query MetricsProbeOk { viewer { role } }", json!({})).await;
    t.ok(&admin, "query MetricsProbeOk { viewer { role } }", json!({})).await;
    let code = t
        .error_code(Some(&w.app_token), "query MetricsProbeDenied { apps(first: 1000) { totalCount } }", json!({}))
        .await;
    t.ok(
        &w.app_token,
        START_SESSION,
        json!({ "c": w.customer_id, "o": w.operator_id, "k": "metrics-1", "z": "Z", "p": "P" }),
    )
    .await;

    let samples = scrape(&t).await;
    let ok = [("operation", "MetricsProbeOk"), ("type", "query"), ("code", "OK")];
    assert_eq!(sample(&samples, "curbpay_graphql_operations_total", &ok), Some(2.0), "{samples:#?}");
    let denied = [("operation", "MetricsProbeDenied"), ("type", "query"), ("code", code.as_str())];
    assert_eq!(sample(&samples, "curbpay_graphql_operations_total", &denied), Some(1.0));
    let latency = [("operation", "MetricsProbeOk"), ("type", "query")];
    assert_eq!(sample(&samples, "curbpay_graphql_operation_duration_seconds_count", &latency), Some(2.0));
    let inf = [("operation", "MetricsProbeOk"), ("type", "query"), ("le", "+Inf")];
    assert_eq!(sample(&samples, "curbpay_graphql_operation_duration_seconds_bucket", &inf), Some(2.0));
    // Anonymous operations share one label value.
    assert!(
        sample(
            &samples,
            "curbpay_graphql_operations_total",
            &[("operation", "anonymous"), ("type", "mutation"), ("code", "OK")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    // The session's token came from the processor and was issued.
    let issued = [("processor", "sandbox"), ("flow", "issue_charge_token"), ("outcome", "ok")];
    assert!(sample(&samples, "curbpay_processor_calls_total", &issued).is_some_and(|n| n >= 1.0));
    assert!(sample(&samples, "curbpay_charge_tokens_issued_total", &[]).is_some_and(|n| n >= 1.0));
    assert!(sample(&samples, "curbpay_db_pool_max_connections", &[("pool", "primary")]).is_some_and(|n| n >= 1.0));
    assert!(sample(&samples, "curbpay_db_pool_connections", &[("pool", "primary"), ("state", "in_use")]).is_some());
    assert!(sample(&samples, "curbpay_db_pool_wait_seconds_count", &[("pool", "primary")]).is_some_and(|n| n >= 1.0));
    // No id, token or tenant ever becomes a label value.
    let (_, text) = t.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    for secret in [w.app_id.to_string(), w.operator_id.to_string(), w.app_token.clone()] {
        assert!(!text.contains(&secret), "metrics leak {secret}");
    }
}

#[tokio::test]
async fn operation_names_that_are_not_graphql_names_are_not_labels() {
    let t = TestApp::new().await;
    let admin = t.admin();
    let response = t
        .post_raw(
            Some(&admin),
            json!({ "query": "query A { viewer { role } } query B { viewer { role } }", "operationName": "tok_visa\"}" }),
        )
        .await;
    assert_eq!(response.0, StatusCode::OK);
    let samples = scrape(&t).await;
    assert!(!samples.keys().any(|(_, labels)| labels.iter().any(|(_, v)| v.contains("tok_visa"))));
}

#[tokio::test]
async fn rate_limit_refusals_are_counted() {
    let t = TestApp::with_config(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 1;
    })
    .await;
    let admin = t.admin();
    let before = sample(&scrape(&t).await, "curbpay_rate_limited_total", &[("transport", "http")]).unwrap_or(0.0);
    let mut refused = 0;
    for _ in 0..3 {
        let (status, _) = t.post_raw(Some(&admin), json!({ "query": "{ viewer { role } }" })).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 1);
    let after = sample(&scrape(&t).await, "curbpay_rate_limited_total", &[("transport", "http")]).unwrap();
    assert!(after - before >= refused as f64, "{before} → {after}, refused {refused}");
}

async fn get(t: &TestApp, path: &str) -> (StatusCode, Value) {
    let (status, body) = t.send(Request::get(path).body(Body::empty()).unwrap()).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")))
}

async fn until_ready(t: &TestApp) {
    for _ in 0..200 {
        if get(t, "/ready").await.0 == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never ready: {:?}", get(t, "/ready").await);
}

#[tokio::test]
async fn ready_once_listening_and_not_while_stopping() {
    let t = TestApp::new().await;
    until_ready(&t).await;
    let samples = scrape(&t).await;
    assert_eq!(sample(&samples, "curbpay_listen_connected", &[]).map(|v| v >= 0.0), Some(true));
    t.broker.begin_shutdown();
    let (status, body) = get(&t, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "shutting down");
    // Liveness is not readiness.
    assert_eq!(get(&t, "/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn not_ready_without_the_listen_connection() {
    // Nothing listens on port 1: the LISTEN connection can never be made.
    let t = TestApp::with_config(|c| {
        c.listen_database_url = Some("postgres://postgres@127.0.0.1:1/none".to_owned().into());
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = get(&t, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "event listener not connected");
    assert_eq!(get(&t, "/health").await.0, StatusCode::OK);
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribed_socket(ws_url: &str, token: &str, ids: &[&str]) -> Socket {
    let mut request = ws_url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket handshake");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let ack = next_json(&mut socket).await.expect("connection_ack");
    assert_eq!(ack["type"], "connection_ack");
    for id in ids {
        let query = "subscription { chargeTokenIssued { cursor } }";
        let subscribe = json!({ "id": id, "type": "subscribe", "payload": { "query": query } });
        socket.send(Message::text(subscribe.to_string())).await.unwrap();
    }
    socket
}

/// The next JSON message, or `None` once closed (the close frame is returned by `closing`).
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("silence for 10 s");
        match message {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(text.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads until the close frame: the ids completed on the way, and the close code.
async fn completes_then_close(socket: &mut Socket) -> (Vec<String>, Option<u16>) {
    let mut completed = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("silence for 10 s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] == "complete" {
                    completed.push(value["id"].as_str().unwrap().to_owned());
                }
            }
            Some(Ok(Message::Close(frame))) => return (completed, frame.map(|f| u16::from(f.code))),
            None | Some(Err(_)) => return (completed, None),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn stopping_completes_each_subscription_then_closes_1012() {
    let t = TestApp::new().await;
    let operator = t.create_operator("Garage").await;
    let token = t.token(Role::Operator(operator));
    let mut socket = subscribed_socket(&t.ws_url(), &token, &["a", "b"]).await;
    // Let both subscriptions start.
    for _ in 0..200 {
        let samples = scrape(&t).await;
        if sample(&samples, "curbpay_subscriptions_active", &[("kind", "chargeTokenIssued")]).unwrap_or(0.0) >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.broker.begin_shutdown();
    let (mut completed, code) = completes_then_close(&mut socket).await;
    completed.sort();
    assert_eq!(completed, ["a", "b"]);
    assert_eq!(code, Some(1012));
}

/// Holds a row lock on the operator so that `startParkingSession` (which takes the
/// operator's next cursor) waits in flight until the lock is released.
async fn lock_operator(url: &str, operator: uuid::Uuid) -> AsyncPgConnection {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query(format!("SELECT 1 FROM operators WHERE id = '{operator}' FOR UPDATE"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_closes_websockets_1012() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let server = Curbpay::serve(&[("DATABASE_URL", &db.url), ("CURBPAY_JWT_SECRET", JWT_SECRET)]).await;
    // Set the world up through an in-process server on the same database.
    let t = TestApp::on_db(db.clone(), |_| {}).await;
    let w = t.world().await;
    let mut socket = subscribed_socket(&server.ws_url(), &w.operator_token, &["tokens"]).await;

    let lock = lock_operator(&db.url, w.operator_id).await;
    let vars = json!({ "c": w.customer_id, "o": w.operator_id, "k": "in-flight", "z": "Z", "p": "P" });
    let in_flight = tokio::spawn({
        let (base, token, vars) = (server.base.clone(), w.app_token.clone(), vars.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{base}graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": START_SESSION, "variables": vars }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished(), "the request should wait on the lock");

    let pid = server.pid();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (completed, code) = completes_then_close(&mut socket).await;
    assert_eq!(completed, ["tokens"]);
    assert_eq!(code, Some(1012));
    // New connections are refused while the request still runs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(reqwest::Client::new().get(format!("{}ready", server.base)).send().await.is_err());

    drop(lock);
    let response = in_flight.await.unwrap();
    assert!(response.get("errors").is_none(), "{response:#}");
    assert_eq!(response["data"]["startParkingSession"]["session"]["status"], "ACTIVE");
    server.wait_exit(Duration::from_secs(10)).await;

    // A retry of the same request (as a client whose connection was cut would send)
    // is answered from the first one: one session, not two.
    let retried = t.ok(&w.app_token, START_SESSION, vars).await;
    assert_eq!(retried["startParkingSession"]["replayed"], true);
    assert_eq!(
        retried["startParkingSession"]["session"]["id"],
        response["data"]["startParkingSession"]["session"]["id"]
    );
}

async fn sessions_and_tokens(url: &str) -> (i64, i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        sessions: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tokens: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        issued: i64,
    }
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let counts: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM parking_sessions) AS sessions, (SELECT count(*) FROM charge_tokens) AS tokens, \
         (SELECT count(*) FROM charge_tokens WHERE status = 'ISSUED') AS issued",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    (counts.sessions, counts.tokens, counts.issued)
}

/// A client whose connection is cut mid-request does not know whether it took effect;
/// it retries with the same idempotency key. The retry finishes the first attempt's
/// work: one session, one token, issued once.
#[tokio::test]
async fn a_retry_after_a_cut_connection_is_not_half_applied() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let lock = lock_operator(&t.db.url, w.operator_id).await;
    let vars = json!({ "c": w.customer_id, "o": w.operator_id, "k": "cut-1", "z": "Z", "p": "P" });
    let cut = tokio::spawn({
        let (addr, token, vars) = (t.addr, w.app_token.clone(), vars.clone());
        async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": START_SESSION, "variables": vars }))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The connection is cut while the server waits inside the request.
    cut.abort();
    let _ = cut.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(lock);

    let retried = t.ok(&w.app_token, START_SESSION, vars.clone()).await;
    let session = &retried["startParkingSession"]["session"];
    assert_eq!(session["status"], "ACTIVE");
    assert_eq!(session["chargeToken"]["status"], "ISSUED");
    let again = t.ok(&w.app_token, START_SESSION, vars).await;
    assert_eq!(again["startParkingSession"]["replayed"], true);
    assert_eq!(again["startParkingSession"]["session"]["id"], session["id"]);
    assert_eq!(sessions_and_tokens(&t.db.url).await, (1, 1, 1));
}

/// What a stopping process waits for before it exits: `flush` returns only once every
/// wake-up published so far has gone out as a NOTIFY to the other processes. Here the
/// notifier cannot get a connection until the test lets go of the only one.
#[tokio::test]
async fn flushing_waits_until_published_wake_ups_are_sent() {
    let t = TestApp::with_config(|c| {
        c.db_pool_size = 1;
        c.db_pool_timeout = Duration::from_secs(10);
    })
    .await;
    let mut listener = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    diesel::sql_query("LISTEN curbpay_events").execute(&mut listener).await.unwrap();
    let mut notifications = std::pin::pin!(listener.notifications_stream());

    let operator = uuid::Uuid::new_v4();
    let held = t.broker.pool.get().await.unwrap();
    t.broker.events.publish(curbpay::events::Topic::OperatorTokens(operator));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), t.broker.events.flush()).await.is_err(),
        "flush returned while the wake-up could not be sent"
    );
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), t.broker.events.flush())
        .await
        .expect("flushed once a connection is free");
    // Sent, so it arrives.
    let topic = format!("t:{operator}");
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(note) = notifications.next().await {
            if note.unwrap().payload == topic {
                return;
            }
        }
        panic!("the LISTEN connection closed");
    })
    .await
    .expect("the flushed wake-up reached the listener");
}
