//! GraphQL subscriptions over real WebSockets: the npm `graphql-ws` client (as a child
//! process), raw `graphql-transport-ws` and legacy `graphql-ws` clients (tokio-tungstenite),
//! and two real server processes sharing one database (live delivery through Postgres
//! `NOTIFY`).
//!
//! Synchronisation: a subscriber is known to be set up once it has delivered an event, so
//! most tests first issue something it will receive by replay (`after: "0"`), and only
//! then issue the events that must arrive live. "Nothing else was delivered" is shown by a
//! marker event: the next event a subscriber gets must be the marker, not a stray one.

mod auth;
mod delivery;
mod legacy;
mod links;
mod scale;

use std::time::{Duration, Instant};

use curbpay::auth::Claims;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::util::node::NodeSubscriber;
use crate::util::{START_SESSION, TestApp, World, id};

const TOKENS: &str = "subscription($after: String) {
  chargeTokenIssued(after: $after) { cursor chargeToken { id token expiresAt session { id zone vehiclePlate } } }
}";

const LINKS: &str = "subscription($after: String) {
  linkStatusChanged(after: $after) { cursor status occurredAt link { id status app { id } operator { id } } }
}";

const LINK_OPERATOR: &str = "mutation($a: ID!, $o: ID!) {
  linkOperator(input: {appId: $a, operatorId: $o}) { link { id status authorizationUrl } }
}";

/// Upper bound for anything that should happen "at once".
const PROMPTLY: Duration = Duration::from_secs(10);

fn after(cursor: Option<&str>) -> Value {
    match cursor {
        Some(cursor) => json!({ "after": cursor }),
        None => json!({}),
    }
}

fn subscribe_tokens(ws_url: &str, token: &str, cursor: Option<&str>, count: Option<usize>) -> NodeSubscriber {
    NodeSubscriber::spawn(ws_url, token, TOKENS, after(cursor), count)
}

fn mint(claims: &Claims, secret: &str) -> String {
    curbpay::auth::mint(secret.as_bytes(), claims).unwrap()
}

/// What a started session should deliver to its operator.
#[derive(Debug, Clone)]
struct Issued {
    session_id: Uuid,
    token_id: Uuid,
    zone: String,
    plate: String,
}

fn session_vars(customer: Uuid, operator: Uuid, key: &str, zone: &str, plate: &str) -> Value {
    json!({ "c": customer, "o": operator, "k": key, "z": zone, "p": plate })
}

fn issued_from(payload: &Value, zone: &str, plate: &str) -> Issued {
    let session = &payload["startParkingSession"]["session"];
    assert_eq!(session["chargeToken"]["status"], "ISSUED", "{payload:#}");
    Issued {
        session_id: id(&session["id"]),
        token_id: id(&session["chargeToken"]["id"]),
        zone: zone.to_owned(),
        plate: plate.to_owned(),
    }
}

/// Starts a session for `operator` through the in-process router.
async fn issue_for(t: &TestApp, w: &World, operator: Uuid, key: &str, zone: &str, plate: &str) -> Issued {
    let data = t.ok(&w.app_token, START_SESSION, session_vars(w.customer_id, operator, key, zone, plate)).await;
    issued_from(&data, zone, plate)
}

async fn issue(t: &TestApp, w: &World, key: &str) -> Issued {
    issue_for(t, w, w.operator_id, key, &format!("Z-{key}"), &format!("P-{key}")).await
}

/// Asserts one `chargeTokenIssued` event (the `data` of a result) is `expected` at `cursor`;
/// returns the token value.
#[track_caller]
fn check_token(data: &Value, cursor: &str, expected: &Issued) -> String {
    let event = &data["chargeTokenIssued"];
    assert_eq!(event["cursor"], cursor, "{data:#}");
    let token = &event["chargeToken"];
    assert_eq!(id(&token["id"]), expected.token_id, "{data:#}");
    let value = token["token"].as_str().unwrap_or_else(|| panic!("the operator sees the token value: {data:#}"));
    assert!(value.starts_with("tok_"), "{data:#}");
    let expires_at: chrono::DateTime<chrono::Utc> =
        token["expiresAt"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("expiresAt: {data:#}"));
    assert!(expires_at > chrono::Utc::now(), "{data:#}");
    let session = &token["session"];
    assert_eq!(id(&session["id"]), expected.session_id, "{data:#}");
    assert_eq!(session["zone"], expected.zone.as_str(), "{data:#}");
    assert_eq!(session["vehiclePlate"], expected.plate.as_str(), "{data:#}");
    value.to_owned()
}

async fn expect_connected(sub: &mut NodeSubscriber) {
    let event = sub.next_event().await.expect("the client exited before connecting");
    assert_eq!(event["type"], "connected", "{event}");
}

/// Every event a client reports until it exits, and its exit code.
async fn drain(mut sub: NodeSubscriber) -> (Vec<Value>, i32) {
    let mut events = Vec::new();
    while let Some(event) = sub.next_event().await {
        events.push(event);
    }
    (events, sub.exit_code().await)
}

/// Polls an observable condition (the event hub's topic count has no notification to
/// await); bounded by `PROMPTLY`.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROMPTLY;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `extensions.code` of a GraphQL error event (`next` with errors, or `error`).
fn graphql_error_code(event: &Value) -> Option<String> {
    let errors = match event["type"].as_str() {
        Some("next") => &event["payload"]["errors"],
        Some("error") => &event["error"],
        _ => return None,
    };
    errors[0]["extensions"]["code"].as_str().map(str::to_owned)
}

// ---------------------------------------------------------------------------------------
// Raw WebSocket clients (tokio-tungstenite).

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Incoming {
    Json(Value),
    Closed(Option<(u16, String)>),
}

struct WsClient {
    socket: Socket,
}

impl WsClient {
    /// Opens a WebSocket speaking `protocol` (`graphql-transport-ws` or `graphql-ws`).
    async fn connect(ws_url: &str, protocol: &str) -> WsClient {
        let mut request = ws_url.into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let (socket, response) = tokio::time::timeout(PROMPTLY, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake timed out")
            .expect("WebSocket handshake");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        WsClient { socket }
    }

    async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.unwrap();
    }

    /// The next protocol message (keep-alives answered or skipped), or the close.
    async fn incoming(&mut self) -> Incoming {
        loop {
            let message =
                tokio::time::timeout(PROMPTLY, self.socket.next()).await.expect("the server sent nothing for 10 s");
            match message {
                None | Some(Err(_)) => return Incoming::Closed(None),
                Some(Ok(Message::Close(frame))) => {
                    return Incoming::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    match value["type"].as_str() {
                        Some("ka") => continue,
                        Some("ping") => self.send(json!({ "type": "pong" })).await,
                        _ => return Incoming::Json(value),
                    }
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn recv(&mut self) -> Value {
        match self.incoming().await {
            Incoming::Json(value) => value,
            Incoming::Closed(frame) => panic!("the server closed the socket: {frame:?}"),
        }
    }

    /// `connection_init` with `payload`; expects `connection_ack`.
    async fn init(&mut self, payload: Value) {
        self.send(json!({ "type": "connection_init", "payload": payload })).await;
        let ack = self.recv().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }
}

fn bearer(token: &str) -> Value {
    json!({ "Authorization": format!("Bearer {token}") })
}
