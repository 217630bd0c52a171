//! Operators' `graphql-transport-ws` subscriptions to `chargeTokenIssued`: connecting
//! many (small client buffers), reading deliveries in the background, and counting the
//! server's running subscriptions on `/metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

const SUBSCRIBE: &str = "subscription { chargeTokenIssued { cursor chargeToken { id } } }";
pub const WS_TIMEOUT: Duration = Duration::from_secs(10);

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An operator's subscription, acknowledged and sent (it is live once the server's
/// subscription gauge counts it; see [`wait_subscriptions`]).
pub async fn subscribe(ws_url: &str, operator: &str) -> Socket {
    let mut request = ws_url.into_client_request().expect("WS request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    // Small buffers: thousands of these share the bench's process.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await.expect("WebSocket handshake");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {operator}") } });
    socket.send(Message::text(init.to_string())).await.expect("send init");
    let ack = next_message(&mut socket).await.expect("connection_ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIBE } });
    socket.send(Message::text(subscribe.to_string())).await.expect("send subscribe");
    socket
}

/// The next protocol message (pings answered), or `None` after `WS_TIMEOUT`.
pub async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(WS_TIMEOUT, socket.next()).await.ok()?;
        let Some(Ok(Message::Text(text))) = message else {
            assert!(matches!(message, Some(Ok(_))), "WebSocket closed: {message:?}");
            continue;
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("JSON message");
        match value["type"].as_str() {
            Some("ping") => socket.send(Message::text(json!({ "type": "pong" }).to_string())).await.expect("pong"),
            Some("pong") | Some("ka") => {}
            _ => return Some(value),
        }
    }
}

/// Arrival instants of the tokens that reached any of the sockets handed to [`Arrivals::read`].
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<HashMap<Uuid, Instant>>>);

impl Arrivals {
    /// Reads `socket`'s deliveries in the background until it closes or the task is aborted.
    pub fn read(&self, mut socket: Socket) -> tokio::task::JoinHandle<()> {
        let arrivals = self.0.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                let id = value["payload"]["data"]["chargeTokenIssued"]["chargeToken"]["id"].as_str();
                if let Some(id) = id.and_then(|id| id.parse().ok()) {
                    arrivals.lock().expect("arrivals").insert(id, Instant::now());
                }
            }
        })
    }

    /// When `token` arrived, waiting up to `WS_TIMEOUT` for it.
    pub async fn wait(&self, token: Uuid) -> Option<Instant> {
        let deadline = Instant::now() + WS_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(at) = self.0.lock().expect("arrivals").get(&token) {
                return Some(*at);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

/// Running `chargeTokenIssued` subscriptions of the server whose `/metrics` is `url`.
pub async fn subscriptions(http: &reqwest::Client, url: &str) -> u64 {
    let text = http.get(url).send().await.expect("GET /metrics").text().await.expect("metrics text");
    let line = text.lines().find(|l| l.starts_with("curbpay_subscriptions_active{kind=\"chargeTokenIssued\"}"));
    line.and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok()).unwrap_or(0.0) as u64
}

/// Waits (up to a minute) until the count of such subscriptions satisfies `done`.
pub async fn wait_subscriptions(http: &reqwest::Client, url: &str, done: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = subscriptions(http, url).await;
        if done(running) {
            return;
        }
        assert!(Instant::now() < deadline, "{running} subscriptions running: still not as expected after a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
