//! Traces: the real binary with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a loopback
//! OTLP/HTTP receiver exports one span per GraphQL operation (joining the caller's trace
//! from `traceparent`), with its SQL statements and processor calls as children and no
//! bound value or token anywhere; without the variable nothing is exported, and no
//! span of theirs is even made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use curbpay::auth::{Claims, Role};
use futures_util::{SinkExt, StreamExt};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::otlp::{OtlpReceiver, ReceivedSpan};
use crate::util::process::Curbpay;
use crate::util::{JWT_SECRET, START_SESSION, TestApp, TestDb};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// `startParkingSession`, named (the shared constant's operation is anonymous).
fn start_session() -> String {
    START_SESSION.replacen("mutation(", "mutation TracedStart(", 1)
}

/// POSTs an operation to the real server as a traced caller would.
async fn post(server: &Curbpay, token: &str, query: &str, variables: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}graphql", server.base))
        .bearer_auth(token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .header("tracestate", "caller=1")
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
}

/// Runs one query over a graphql-transport-ws socket and returns its result.
async fn over_websocket(server: &Curbpay, token: &str, query: &str) -> Value {
    let mut request = server.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket handshake");
    let mut send = async |message: Value| socket.send(Message::text(message.to_string())).await.unwrap();
    send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    send(json!({ "id": "1", "type": "subscribe", "payload": { "query": query } })).await;
    let mut result = Value::Null;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("silence for 10 s");
        let Some(Ok(Message::Text(text))) = message else { panic!("the socket closed: {message:?}") };
        let message: Value = serde_json::from_str(text.as_str()).unwrap();
        match message["type"].as_str() {
            Some("next") => result = message["payload"].clone(),
            Some("complete") => break,
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    result
}

/// Every attribute value of every span (and of its events) received.
fn attribute_values(spans: &[ReceivedSpan]) -> Vec<(String, String)> {
    let mut values = Vec::new();
    for span in spans {
        let events = span.event_attributes.iter().flat_map(BTreeMap::iter);
        for (key, value) in span.attributes.iter().chain(events).chain(span.resource.iter()) {
            values.push((format!("{}: {key}", span.name), value.clone()));
        }
    }
    values
}

#[tokio::test]
async fn an_operation_joins_the_callers_trace_with_its_statements_and_processor_calls() {
    let receiver = OtlpReceiver::start().await;
    let db = Arc::new(TestDb::new().await);
    let endpoint = receiver.endpoint();
    let server = Curbpay::serve(&[
        ("DATABASE_URL", &db.url),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ])
    .await;
    // The world is set up through an in-process server (not traced) on the same database.
    let t = TestApp::on_db(db.clone(), |_| {}).await;
    let w = t.world().await;
    let variables = json!({
        "c": w.customer_id, "o": w.operator_id, "k": "traced-idempotency-key", "z": "ZONE-TRACED", "p": "PLATE-TRACED"
    });
    let response: Value = post(&server, &w.app_token, &start_session(), variables).await.json().await.unwrap();
    assert!(response.get("errors").is_none(), "{response:#}");
    let session = &response["data"]["startParkingSession"]["session"];
    assert_eq!(session["status"], "ACTIVE");

    let operation = receiver.wait_for(|s| s.name == "graphql.operation" && s.trace_id == TRACE_ID).await;
    assert_eq!(operation.parent_span_id, CALLER_SPAN_ID, "the caller's span is the parent");
    assert_eq!(operation.trace_state, "caller=1");
    assert_eq!(operation.kind, SpanKind::Server);
    assert_eq!(operation.attribute("graphql.operation.name"), Some("TracedStart"));
    assert_eq!(operation.attribute("graphql.operation.type"), Some("mutation"));
    assert_eq!(operation.attribute("code"), Some("OK"));
    assert_eq!(operation.attribute("http.response.status_code"), Some("200"));
    assert_eq!(operation.resource.get("service.name").map(String::as_str), Some("curbpay"));

    let trace: Vec<ReceivedSpan> = receiver.spans().into_iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let children_of =
        |parent: &str| -> Vec<&ReceivedSpan> { trace.iter().filter(|s| s.parent_span_id == parent).collect() };
    let is_statement = |s: &&ReceivedSpan| s.attribute("db.system") == Some("postgresql");
    // The operation's own statements (authentication, the session's transaction) …
    let statements: Vec<&ReceivedSpan> = children_of(&operation.span_id).into_iter().filter(is_statement).collect();
    assert!(!statements.is_empty(), "no statement spans under the operation: {trace:#?}");
    for statement in &statements {
        assert_eq!(statement.kind, SpanKind::Client);
        assert!(!statement.attribute("db.statement").unwrap_or_default().is_empty(), "{statement:#?}");
    }
    assert!(
        statements.iter().any(|s| s.attribute("db.statement").is_some_and(|sql| sql.contains("$1"))),
        "statements carry placeholders: {statements:#?}"
    );
    assert!(statements.iter().any(|s| s.name == "INSERT"), "named by their keyword: {statements:#?}");
    // … and the processor call that minted the charge token, with the sandbox's own.
    let processor = children_of(&operation.span_id)
        .into_iter()
        .find(|s| s.name == "processor" && s.attribute("flow") == Some("issue_charge_token"))
        .unwrap_or_else(|| panic!("no processor span under the operation: {trace:#?}"));
    assert_eq!(processor.kind, SpanKind::Client);
    assert_eq!(processor.attribute("processor"), Some("sandbox"));
    assert_eq!(processor.attribute("outcome"), Some("ok"));
    assert!(children_of(&processor.span_id).iter().any(is_statement), "the sandbox's statements: {trace:#?}");
    // Nothing in the trace hangs outside it.
    for span in &trace {
        let parent_known =
            span.parent_span_id == CALLER_SPAN_ID || trace.iter().any(|p| p.span_id == span.parent_span_id);
        assert!(parent_known, "a span outside the tree: {span:#?}");
    }

    // Browsers may send the trace context from another origin.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}graphql", server.base))
        .header("Origin", "https://parking.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization,content-type,traceparent,tracestate")
        .send()
        .await
        .unwrap();
    let allowed = preflight.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_owned();
    assert!(allowed.contains("traceparent") && allowed.contains("tracestate"), "{allowed}");

    // An operation over a WebSocket gets a span too (a trace of its own).
    let result = over_websocket(&server, &w.app_token, "query TracedOverSocket { viewer { role } }").await;
    assert_eq!(result["data"]["viewer"]["role"], "APP", "{result:#}");
    let socket_operation =
        receiver.wait_for(|s| s.attribute("graphql.operation.name") == Some("TracedOverSocket")).await;
    assert_eq!(socket_operation.name, "graphql.operation");
    assert_eq!(socket_operation.kind, SpanKind::Server);
    assert_eq!(socket_operation.attribute("graphql.operation.type"), Some("query"));
    assert_eq!(socket_operation.attribute("code"), Some("OK"));
    assert!(socket_operation.parent_span_id.is_empty());
    assert_ne!(socket_operation.trace_id, TRACE_ID);

    // No bound value, token or secret in any attribute of any span received.
    let session_id = session["id"].as_str().unwrap().to_owned();
    let token_id = session["chargeToken"]["id"].as_str().unwrap();
    let token_value = t
        .ok(&w.operator_token, "query($id: ID!) { chargeToken(id: $id) { token } }", json!({ "id": token_id }))
        .await["chargeToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    server.stop().await;
    let spans = receiver.spans();
    let secrets = [
        w.app_token.as_str(),
        JWT_SECRET,
        &token_value,
        "traced-idempotency-key",
        "ZONE-TRACED",
        "PLATE-TRACED",
        &w.customer_id.to_string(),
        &w.operator_id.to_string(),
        &session_id,
        "binds",
    ];
    for (key, value) in attribute_values(&spans) {
        for secret in secrets {
            assert!(!value.contains(secret), "{key} = {value:?} holds {secret:?}");
        }
    }
}

#[tokio::test]
async fn spans_still_buffered_are_sent_on_shutdown() {
    let receiver = OtlpReceiver::start().await;
    let db = TestDb::new().await;
    let endpoint = receiver.endpoint();
    let server = Curbpay::serve(&[
        ("DATABASE_URL", &db.url),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        // An hour: the batch only leaves with the shutdown.
        ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
        ("OTEL_SERVICE_NAME", "curbpay-east"),
    ])
    .await;
    let admin =
        curbpay::auth::mint(JWT_SECRET.as_bytes(), &Claims::new(Role::Admin, None, Duration::from_secs(600))).unwrap();
    let response: Value =
        post(&server, &admin, "query BeforeShutdown { viewer { role } }", json!({})).await.json().await.unwrap();
    assert_eq!(response["data"]["viewer"]["role"], "ADMIN", "{response:#}");
    server.stop().await;
    let spans = receiver.spans();
    let operation = spans
        .iter()
        .find(|s| s.attribute("graphql.operation.name") == Some("BeforeShutdown"))
        .unwrap_or_else(|| panic!("the operation's span was not flushed: {spans:#?}"));
    assert_eq!(operation.trace_id, TRACE_ID);
    assert_eq!(operation.resource.get("service.name").map(String::as_str), Some("curbpay-east"));
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_answers_are_unchanged() {
    let receiver = OtlpReceiver::start().await;
    let db = Arc::new(TestDb::new().await);
    let elsewhere = format!("{}/v1/traces", receiver.endpoint());
    // Other OpenTelemetry variables, even other signals' endpoints at the receiver, do
    // not turn traces on.
    let server = Curbpay::serve(&[
        ("DATABASE_URL", &db.url),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
        ("OTEL_SERVICE_NAME", "curbpay-untraced"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &elsewhere),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &elsewhere),
    ])
    .await;
    let t = TestApp::on_db(db.clone(), |_| {}).await;
    let w = t.world().await;
    let variables =
        json!({ "c": w.customer_id, "o": w.operator_id, "k": "untraced-key", "z": "ZONE-U", "p": "PLATE-U" });
    let response = post(&server, &w.app_token, &start_session(), variables).await;
    assert!(response.headers().keys().all(|name| !name.as_str().starts_with("trace")), "{:?}", response.headers());
    let response: Value = response.json().await.unwrap();
    assert!(response.get("errors").is_none(), "{response:#}");
    assert_eq!(response["data"]["startParkingSession"]["replayed"], false);
    assert_eq!(response["data"]["startParkingSession"]["session"]["status"], "ACTIVE");
    assert_eq!(response["data"]["startParkingSession"]["session"]["chargeToken"]["status"], "ISSUED");
    let result = over_websocket(&server, &w.app_token, "query Untraced { viewer { role } }").await;
    assert_eq!(result["data"]["viewer"]["role"], "APP");
    // The session was logged from within the operation; no operation span framed it.
    let output = logged(&server, "parking session started").await;
    assert!(!output.contains("graphql.operation") && !output.contains("exporting traces"), "{output}");
    server.stop().await;

    assert_eq!(receiver.requests(), 0, "nothing is exported");
}

/// The server's output once it holds `line` (its logs arrive through a pipe).
async fn logged(server: &Curbpay, line: &str) -> String {
    for _ in 0..1000 {
        let output = server.output();
        if output.contains(line) {
            return output;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server never logged {line:?}:\n{}", server.output());
}

/// Counts the spans made on this thread, by name.
#[derive(Clone, Default)]
struct SpanCounter(Arc<Mutex<BTreeMap<&'static str, usize>>>);

impl<S: ::tracing::Subscriber> tracing_subscriber::Layer<S> for SpanCounter {
    fn on_new_span(
        &self,
        attrs: &::tracing::span::Attributes<'_>,
        _: &::tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        *self.0.lock().unwrap().entry(attrs.metadata().name()).or_default() += 1;
    }
}

#[tokio::test]
async fn with_traces_off_no_operation_or_statement_span_is_made() {
    use tracing_subscriber::layer::SubscriberExt;
    let t = TestApp::new().await;
    let w = t.world().await;
    let counter = SpanCounter::default();
    // Every level enabled: what is not made is not made at all, not merely filtered.
    let subscriber = tracing_subscriber::registry().with(counter.clone());
    let _default = ::tracing::subscriber::set_default(subscriber);
    assert!(!curbpay::telemetry::enabled());
    let variables = json!({ "c": w.customer_id, "o": w.operator_id, "k": "off-1", "z": "Z", "p": "P" });
    t.ok(&w.app_token, START_SESSION, variables).await;
    let counts = counter.0.lock().unwrap().clone();
    // The spans the logs always had are seen (the counter works) …
    assert!(counts.get("processor").is_some_and(|n| *n >= 1), "{counts:?}");
    // … and none of the trace-only ones.
    assert_eq!(counts.get("graphql.operation"), None, "{counts:?}");
    assert_eq!(counts.get("db.query"), None, "{counts:?}");
}
