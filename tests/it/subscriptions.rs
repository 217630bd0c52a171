//! GraphQL subscriptions over real WebSockets: the npm `graphql-ws` client (as a child
//! process), raw `graphql-transport-ws` and legacy `graphql-ws` clients (tokio-tungstenite),
//! and two real server processes sharing one database (live delivery through Postgres
//! `NOTIFY`).
//!
//! Synchronisation: a subscriber is known to be set up once it has delivered an event, so
//! most tests first issue something it will receive by replay (`after: "0"`), and only
//! then issue the events that must arrive live. "Nothing else was delivered" is shown by a
//! marker event: the next event a subscriber gets must be the marker, not a stray one.

use std::time::{Duration, Instant};

use curbpay::auth::{Claims, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::util::node::NodeSubscriber;
use crate::util::process::{Curbpay, Parties};
use crate::util::{JWT_SECRET, START_SESSION, TestApp, TestDb, World, id};

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

// ---------------------------------------------------------------------------------------
// 1. Live delivery with the npm graphql-ws client.

#[tokio::test]
async fn graphql_ws_client_gets_replayed_then_live_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = issue_for(&t, &w, w.operator_id, "s-1", "Z-12", "B-CP 123").await;

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some("0"), None);
    expect_connected(&mut sub).await;
    let first_value = check_token(&sub.next_data().await, "1", &first);

    // The stream has caught up and now waits; this one can only arrive live.
    let second = issue_for(&t, &w, w.operator_id, "s-2", "Z-7", "HH-X 42").await;
    let second_value = check_token(&sub.next_data().await, "2", &second);
    assert_ne!(first_value, second_value, "each session has its own single-use token");
}

/// Without `after` the stream starts with the next token: nothing issued earlier.
#[tokio::test]
async fn without_after_only_new_tokens_arrive() {
    let t = TestApp::new().await;
    let w = t.world().await;
    issue(&t, &w, "before").await;

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, None, None);
    expect_connected(&mut sub).await;
    // There is no protocol message for "subscription set up"; the hub registers the topic
    // right after the stream has read its starting cursor, so wait for that.
    until("the subscription is registered", || t.broker.events.active_topics() == 1).await;

    let next = issue(&t, &w, "after").await;
    check_token(&sub.next_data().await, "2", &next);
}

#[tokio::test]
async fn a_malformed_cursor_is_bad_user_input() {
    let t = TestApp::new().await;
    let w = t.world().await;
    for cursor in ["abc", "-1"] {
        let sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some(cursor), None);
        let (events, _) = drain(sub).await;
        let codes: Vec<_> = events.iter().filter_map(graphql_error_code).collect();
        assert_eq!(codes, ["BAD_USER_INPUT"], "{events:#?}");
        assert!(!events.iter().any(|e| e["type"] == "next" && !e["payload"]["data"].is_null()), "{events:#?}");
    }
}

// ---------------------------------------------------------------------------------------
// 2. Replay after reconnecting.

#[tokio::test]
async fn reconnecting_with_the_last_cursor_replays_exactly_what_was_missed() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut issued = Vec::new();
    for key in ["s-1", "s-2"] {
        issued.push(issue(&t, &w, key).await);
    }

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some("0"), Some(2));
    let mut last = String::new();
    for (n, expected) in issued.iter().enumerate() {
        let data = sub.next_data().await;
        check_token(&data, &(n + 1).to_string(), expected);
        last = data["chargeTokenIssued"]["cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(sub.exit_code().await, 0, "COUNT=2 makes the client stop");
    assert_eq!(last, "2");
    // The server noticed the disconnect and dropped the subscription's wake-up handle.
    until("the subscription is gone", || t.broker.events.active_topics() == 0).await;

    // Issued while nobody is connected.
    for key in ["s-3", "s-4", "s-5"] {
        issued.push(issue(&t, &w, key).await);
    }

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some(&last), None);
    expect_connected(&mut sub).await;
    for n in 3..=5 {
        check_token(&sub.next_data().await, &n.to_string(), &issued[n - 1]);
    }
    // Nothing more was replayed (no duplicate, nothing older): the next event is a new one.
    let marker = issue(&t, &w, "s-6").await;
    check_token(&sub.next_data().await, "6", &marker);
}

// ---------------------------------------------------------------------------------------
// 3. Routing: an operator only ever receives its own tokens.

#[tokio::test]
async fn operators_receive_only_their_own_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let x = w.operator_id;
    let y = t.create_operator("Uptown Lots").await;
    t.activate_link(w.app_id, y).await;

    let mut sub_x = subscribe_tokens(&t.ws_url(), &w.operator_token, Some("0"), None);
    let mut sub_y = subscribe_tokens(&t.ws_url(), &t.token(Role::Operator(y)), Some("0"), None);
    expect_connected(&mut sub_x).await;
    expect_connected(&mut sub_y).await;

    let mut for_x = Vec::new();
    for key in ["x-1", "x-2", "x-3"] {
        for_x.push(issue_for(&t, &w, x, key, "ZX", &format!("P-{key}")).await);
    }
    let y1 = issue_for(&t, &w, y, "y-1", "ZY", "P-y-1").await;

    // Y's first event is its own first token (cursors are per operator).
    check_token(&sub_y.next_data().await, "1", &y1);
    for (n, expected) in for_x.iter().enumerate() {
        check_token(&sub_x.next_data().await, &(n + 1).to_string(), expected);
    }

    // Interleave again; each sees only its own, in order.
    let y2 = issue_for(&t, &w, y, "y-2", "ZY", "P-y-2").await;
    let x4 = issue_for(&t, &w, x, "x-4", "ZX", "P-x-4").await;
    check_token(&sub_x.next_data().await, "4", &x4);
    check_token(&sub_y.next_data().await, "2", &y2);
}

// ---------------------------------------------------------------------------------------
// 4. Authentication and authorization.

/// The `extensions.code` of a GraphQL error event (`next` with errors, or `error`).
fn graphql_error_code(event: &Value) -> Option<String> {
    let errors = match event["type"].as_str() {
        Some("next") => &event["payload"]["errors"],
        Some("error") => &event["error"],
        _ => return None,
    };
    errors[0]["extensions"]["code"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn unauthenticated_subscribers_are_rejected_at_connection_init() {
    let t = TestApp::new().await;
    let w = t.world().await;
    issue(&t, &w, "s-1").await;

    let mut expired = Claims::new(Role::Operator(w.operator_id), None, Duration::from_secs(60));
    expired.exp -= 3600; // well past the verifier's leeway
    let wrong_secret = "another-secret-another-secret-0123456789";
    let cases = [
        ("no token", String::new(), "authentication required"),
        ("not a JWT", "not-a-jwt".to_owned(), "malformed"),
        (
            "wrong secret",
            mint(&Claims::new(Role::Operator(w.operator_id), None, Duration::from_secs(60)), wrong_secret),
            "signature",
        ),
        ("expired", mint(&expired, JWT_SECRET), "expired"),
    ];
    for (case, token, why) in cases {
        let sub = subscribe_tokens(&t.ws_url(), &token, Some("0"), None);
        let (events, code) = drain(sub).await;
        assert_eq!(code, 2, "{case}: the client reports a closed socket: {events:#?}");
        assert!(
            !events.iter().any(|e| e["type"] == "connected" || e["type"] == "next"),
            "{case}: a rejected client must never be acknowledged or get data: {events:#?}"
        );
        let closed = events.iter().find(|e| e["type"] == "closed").unwrap_or_else(|| panic!("{case}: {events:#?}"));
        assert_eq!(closed["code"], 4403, "{case}: {events:#?}");
        let reason = closed["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{case}: the close says why: {reason:?}");
        assert!(token.is_empty() || !reason.contains(&token), "{case}: the reason must not echo the token");
    }
}

#[tokio::test]
async fn only_operators_may_subscribe_to_charge_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    issue(&t, &w, "s-1").await;

    for (who, token) in [("app", w.app_token.clone()), ("admin", t.admin())] {
        let sub = subscribe_tokens(&t.ws_url(), &token, Some("0"), None);
        let (events, code) = drain(sub).await;
        // Connected, then the resolver's error as a result, then the end of the operation.
        let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
        assert_eq!(kinds, ["connected", "next", "complete"], "{who}: {events:#?}");
        assert_eq!(code, 0, "{who}");
        let codes: Vec<_> = events.iter().filter_map(graphql_error_code).collect();
        assert_eq!(codes, ["FORBIDDEN"], "{who}: {events:#?}");
        assert!(
            !events.iter().any(|e| e["type"] == "next" && !e["payload"]["data"].is_null()),
            "{who} must get no token: {events:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Subscriptions end when the JWT does.

#[tokio::test]
async fn a_subscription_completes_when_its_jwt_expires() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = issue(&t, &w, "s-1").await;

    let minted = Instant::now();
    // `exp` has one-second resolution: this token expires 4–5 s from now, time enough for
    // the client to start and authenticate on a busy machine.
    let token = t.token_for(Role::Operator(w.operator_id), Duration::from_secs(5));
    let mut sub = subscribe_tokens(&t.ws_url(), &token, Some("0"), None);
    expect_connected(&mut sub).await;
    check_token(&sub.next_data().await, "1", &first);

    let end = tokio::time::timeout(Duration::from_secs(10), sub.next_event())
        .await
        .expect("the subscription outlived its JWT by seconds")
        .expect("the client reports how the subscription ended");
    let elapsed = minted.elapsed();
    assert!(end["type"] == "complete" || (end["type"] == "closed" && end["code"] == 1000), "{end}");
    assert!(elapsed >= Duration::from_millis(3900), "ended before the token expired: {elapsed:?}");
    assert_eq!(sub.exit_code().await, 0);
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

// ---------------------------------------------------------------------------------------
// 6. The legacy subscriptions-transport-ws protocol (`graphql-ws` subprotocol).

#[tokio::test]
async fn legacy_subscriptions_transport_ws_protocol_delivers_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = issue(&t, &w, "s-1").await;

    for key in ["Authorization", "authorization"] {
        let mut ws = WsClient::connect(&t.ws_url(), "graphql-ws").await;
        ws.init(json!({ key: format!("Bearer {}", w.operator_token) })).await;
        ws.send(json!({ "type": "start", "id": "1", "payload": { "query": TOKENS, "variables": { "after": "0" } } }))
            .await;
        let data = ws.recv().await;
        assert_eq!(data["type"], "data", "{key}: {data}");
        assert_eq!(data["id"], "1");
        assert!(data["payload"].get("errors").is_none(), "{data}");
        check_token(&data["payload"]["data"], "1", &first);

        if key == "authorization" {
            // Live on the legacy protocol too.
            let second = issue(&t, &w, "s-2").await;
            let data = ws.recv().await;
            assert_eq!((&data["type"], &data["id"]), (&json!("data"), &json!("1")), "{data}");
            check_token(&data["payload"]["data"], "2", &second);
        }

        ws.send(json!({ "type": "stop", "id": "1" })).await;
        let complete = ws.recv().await;
        assert_eq!((&complete["type"], &complete["id"]), (&json!("complete"), &json!("1")), "{complete}");
    }
}

#[tokio::test]
async fn legacy_protocol_refuses_a_bad_token_with_connection_error() {
    let t = TestApp::new().await;
    let mut ws = WsClient::connect(&t.ws_url(), "graphql-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": bearer("not-a-jwt") })).await;
    let refused = ws.recv().await;
    assert_eq!(refused["type"], "connection_error", "{refused}");
    assert!(refused["payload"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{refused}");
    // A `start` is never served on that connection.
    ws.send(json!({ "type": "start", "id": "1", "payload": { "query": TOKENS, "variables": { "after": "0" } } })).await;
    match ws.incoming().await {
        Incoming::Closed(_) => {}
        Incoming::Json(message) => panic!("the refused connection answered: {message}"),
    }
}

// ---------------------------------------------------------------------------------------
// 7. linkStatusChanged: each party sees its own links' changes, in order.

async fn subscribe_links(t: &TestApp, token: &str) -> NodeSubscriber {
    let mut sub = NodeSubscriber::spawn(&t.ws_url(), token, LINKS, after(Some("0")), None);
    expect_connected(&mut sub).await;
    sub
}

/// Links as an admin and follows the authorization URL; returns the link id.
async fn link_and_authorize(t: &TestApp, app: Uuid, operator: Uuid) -> Uuid {
    let data = t.ok(&t.admin(), LINK_OPERATOR, json!({ "a": app, "o": operator })).await;
    let link = &data["linkOperator"]["link"];
    assert_eq!(link["status"], "PENDING");
    let (status, body, _) = t.follow(link["authorizationUrl"].as_str().unwrap()).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    id(&link["id"])
}

#[track_caller]
fn check_link_event(data: &Value, status: &str, link: Uuid, app: Uuid, operator: Uuid) -> i64 {
    let event = &data["linkStatusChanged"];
    assert_eq!(event["status"], status, "{data:#}");
    assert_eq!(id(&event["link"]["id"]), link, "{data:#}");
    assert_eq!(id(&event["link"]["app"]["id"]), app, "{data:#}");
    assert_eq!(id(&event["link"]["operator"]["id"]), operator, "{data:#}");
    assert!(
        event["occurredAt"].as_str().is_some_and(|s| s.parse::<chrono::DateTime<chrono::Utc>>().is_ok()),
        "{data:#}"
    );
    event["cursor"].as_str().and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("cursor: {data:#}"))
}

#[tokio::test]
async fn link_status_changes_reach_only_the_parties_of_the_link() {
    let t = TestApp::new().await;
    let app_a = t.create_app("ParkNow").await;
    let app_b = t.create_app("EasyPark").await;
    let op = t.create_operator("Downtown Garages").await;
    let other_op = t.create_operator("Airport Parking").await;

    let mut sub_a = subscribe_links(&t, &t.token(Role::App(app_a))).await;
    let mut sub_b = subscribe_links(&t, &t.token(Role::App(app_b))).await;
    let mut sub_op = subscribe_links(&t, &t.token(Role::Operator(op))).await;

    let link_a = link_and_authorize(&t, app_a, op).await;
    for sub in [&mut sub_a, &mut sub_op] {
        let pending = check_link_event(&sub.next_data().await, "PENDING", link_a, app_a, op);
        let active_event = sub.next_data().await;
        let active = check_link_event(&active_event, "ACTIVE", link_a, app_a, op);
        assert!(active > pending, "cursors increase");
        assert_eq!(active_event["linkStatusChanged"]["link"]["status"], "ACTIVE");
    }

    // B's stream is ordered: its first event being its own link shows it got none of A's.
    let link_b = link_and_authorize(&t, app_b, other_op).await;
    check_link_event(&sub_b.next_data().await, "PENDING", link_b, app_b, other_op);
    check_link_event(&sub_b.next_data().await, "ACTIVE", link_b, app_b, other_op);

    // Likewise the operator saw nothing of B's link to another operator.
    let link_b_op = link_and_authorize(&t, app_b, op).await;
    check_link_event(&sub_op.next_data().await, "PENDING", link_b_op, app_b, op);
    check_link_event(&sub_b.next_data().await, "PENDING", link_b_op, app_b, op);
    // ...and A saw nothing of B's links: its next event is its own again.
    let data = t
        .ok(
            &t.admin(),
            "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { status } } }",
            json!({ "l": link_a }),
        )
        .await;
    assert_eq!(data["unlinkOperator"]["link"]["status"], "REVOKED");
    check_link_event(&sub_a.next_data().await, "REVOKED", link_a, app_a, op);
}

#[tokio::test]
async fn an_app_initiated_link_reaches_its_operator_to_authorize() {
    let t = TestApp::new().await;
    let app = t.create_app("ParkNow").await;
    let op = t.create_operator("Downtown Garages").await;
    let query = "subscription($after: String) {
  linkStatusChanged(after: $after) { status link { id status authorizationUrl } }
}";
    let mut sub = NodeSubscriber::spawn(&t.ws_url(), &t.token(Role::Operator(op)), query, after(Some("0")), None);
    expect_connected(&mut sub).await;

    // The app asks for the link; only the operator can authorize it.
    let data = t.ok(&t.token(Role::App(app)), LINK_OPERATOR, json!({ "a": app, "o": op })).await;
    let link = id(&data["linkOperator"]["link"]["id"]);
    assert!(data["linkOperator"]["link"]["authorizationUrl"].is_null(), "{data}");

    // The operator learns of it live, with the URL to authorize it.
    let event = tokio::time::timeout(PROMPTLY, sub.next_data()).await.expect("the pending link reaches the operator");
    let change = &event["linkStatusChanged"];
    assert_eq!(change["status"], "PENDING", "{event}");
    assert_eq!(id(&change["link"]["id"]), link);
    let url = change["link"]["authorizationUrl"].as_str().expect("the operator gets the authorization URL");
    let (status, body, _) = t.follow(url).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    let event = tokio::time::timeout(PROMPTLY, sub.next_data()).await.expect("the activation reaches the operator");
    assert_eq!(event["linkStatusChanged"]["status"], "ACTIVE", "{event}");
    assert!(event["linkStatusChanged"]["link"]["authorizationUrl"].is_null(), "{event}");
}

// ---------------------------------------------------------------------------------------
// 8. Two server processes (the real binary) on one database.

#[tokio::test]
async fn tokens_issued_on_one_process_reach_subscribers_on_another() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str()), ("CURBPAY_JWT_SECRET", JWT_SECRET), ("RUST_LOG", "warn")];
    let one = Curbpay::serve(&env).await;
    let two = Curbpay::serve(&env).await;
    assert_ne!(one.addr, two.addr);
    // The whole setup goes through process 1 over HTTP.
    let Parties { operator_id, customer_id, app_token, operator_token, authorization_url: url, .. } =
        one.parties(JWT_SECRET).await;
    assert!(url.starts_with(&format!("http://{}/", one.addr)), "{url}");
    let start = async |key: &str| {
        let (zone, plate) = (format!("Z-{key}"), format!("P-{key}"));
        let data = one.ok(&app_token, START_SESSION, session_vars(customer_id, operator_id, key, &zone, &plate)).await;
        issued_from(&data, &zone, &plate)
    };

    let first = start("s-1").await;
    let mut sub = subscribe_tokens(&two.ws_url(), &operator_token, Some("0"), Some(2));
    expect_connected(&mut sub).await;
    check_token(&sub.next_data().await, "1", &first); // replayed from the table by process 2
    // Process 2 has caught up and waits; only process 1's NOTIFY can wake it.
    let second = start("s-2").await;
    let live = tokio::time::timeout(PROMPTLY, sub.next_data()).await.expect("no cross-process delivery within 10 s");
    check_token(&live, "2", &second);
    assert_eq!(sub.exit_code().await, 0, "COUNT=2 makes the client disconnect");

    // Missed while disconnected from process 2; replayed on reconnect, then live again.
    let third = start("s-3").await;
    let fourth = start("s-4").await;
    let mut sub = subscribe_tokens(&two.ws_url(), &operator_token, Some("2"), None);
    expect_connected(&mut sub).await;
    check_token(&sub.next_data().await, "3", &third);
    check_token(&sub.next_data().await, "4", &fourth);
    let fifth = start("s-5").await;
    check_token(&sub.next_data().await, "5", &fifth);
}

// ---------------------------------------------------------------------------------------
// 9. Many concurrent subscribers (graphql-transport-ws over tokio-tungstenite).

#[tokio::test]
async fn twenty_concurrent_subscribers_each_get_exactly_their_own_tokens() {
    const OPERATORS: usize = 20;
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut operators = vec![w.operator_id];
    let more = futures_util::future::join_all((1..OPERATORS).map(|n| {
        let t = &t;
        async move {
            let operator = t.create_operator(&format!("Operator {n}")).await;
            t.activate_link(w.app_id, operator).await;
            operator
        }
    }))
    .await;
    operators.extend(more);

    let mut clients = Vec::new();
    for (n, operator) in operators.iter().enumerate() {
        let mut ws = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
        ws.init(bearer(&t.token(Role::Operator(*operator)))).await;
        ws.send(json!({ "type": "subscribe", "id": format!("sub-{n}"), "payload": { "query": TOKENS, "variables": { "after": "0" } } }))
            .await;
        clients.push(ws);
    }

    // Two tokens per operator, issued concurrently (bounded: the test server's pool is small).
    let jobs: Vec<(usize, String)> =
        (0..2).flat_map(|round| (0..OPERATORS).map(move |n| (n, format!("op{n}-r{round}")))).collect();
    let results: Vec<(usize, Issued)> = futures_util::stream::iter(jobs)
        .map(|(n, key)| {
            let (t, w, operator) = (&t, &w, operators[n]);
            // One vehicle per session: a vehicle has one ACTIVE session per zone.
            async move { (n, issue_for(t, w, operator, &key, &format!("Z{n}"), &format!("P-{key}")).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let receive = async |ws: &mut WsClient, n: usize| -> Value {
        let message = ws.recv().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], format!("sub-{n}"));
        assert!(message["payload"].get("errors").is_none(), "{message}");
        message["payload"]["data"].clone()
    };
    for (n, ws) in clients.iter_mut().enumerate() {
        let mut mine: Vec<Issued> = results.iter().filter(|(m, _)| *m == n).map(|(_, i)| i.clone()).collect();
        assert_eq!(mine.len(), 2);
        for cursor in ["1", "2"] {
            let data = receive(ws, n).await;
            let token_id = id(&data["chargeTokenIssued"]["chargeToken"]["id"]);
            let at = mine
                .iter()
                .position(|i| i.token_id == token_id)
                .unwrap_or_else(|| panic!("operator {n} got a foreign token: {data:#}"));
            check_token(&data, cursor, &mine.remove(at));
        }
    }
    assert_eq!(t.broker.events.active_topics(), OPERATORS, "one wake-up topic per subscribed operator");

    // A marker per operator: the next event each gets is its own third token, so nobody
    // received anything extra (a duplicate or another operator's token).
    for (n, operator) in operators.iter().enumerate() {
        let marker = issue_for(&t, &w, *operator, &format!("op{n}-marker"), &format!("Z{n}"), &format!("P{n}")).await;
        let data = receive(&mut clients[n], n).await;
        check_token(&data, "3", &marker);
    }

    drop(clients);
    until("every subscription is gone", || t.broker.events.active_topics() == 0).await;
}

// ---------------------------------------------------------------------------------------
// 10. An expired JWT must not keep authorizing a WebSocket connection.

/// A WebSocket authenticates once, in `connection_init`, and carries queries and
/// mutations too: once the JWT has expired (and HTTP rejects it), operations on the open
/// socket are refused as well. Here an app tries to start a parking session with a JWT
/// the server itself already rejects over HTTP.
#[tokio::test]
async fn an_expired_jwt_stops_authorizing_operations_on_an_open_websocket() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut claims = Claims::new(Role::App(w.app_id), None, Duration::from_secs(60));
    // Already past `exp` but inside the verifier's 30 s leeway: accepted at connection_init,
    // and rejected everywhere within about 2 s.
    claims.exp = chrono::Utc::now().timestamp() - 29;
    let token = mint(&claims, JWT_SECRET);
    let mut ws = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
    ws.init(bearer(&token)).await;

    // Wait (polling; wall-clock time has to pass, there is no event for it) until the
    // server rejects this JWT over HTTP.
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let response = t.post(Some(&token), "{ viewer { role } }", json!({})).await;
        if crate::util::code_of(&response).as_deref() == Some("UNAUTHENTICATED") {
            break;
        }
        assert!(Instant::now() < deadline, "the JWT never expired: {response}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let attempts = [
        ("query", json!({ "query": "{ viewer { role expiresAt } }" })),
        (
            "mutation",
            json!({ "query": START_SESSION, "variables": session_vars(w.customer_id, w.operator_id, "late", "Z", "P") }),
        ),
    ];
    let mut authorized = Vec::new();
    for (n, (what, payload)) in attempts.into_iter().enumerate() {
        ws.send(json!({ "type": "subscribe", "id": format!("op-{n}"), "payload": payload })).await;
        match ws.incoming().await {
            // Closing the socket (e.g. 4401/4403) would be a fine answer too.
            Incoming::Closed(_) => break,
            Incoming::Json(message) => {
                let refused = message["payload"]["data"].is_null()
                    && message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED";
                if !refused {
                    authorized.push(format!("{what}: {message}"));
                }
                if message["type"] == "next" {
                    let complete = ws.recv().await;
                    assert_eq!(complete["type"], "complete", "{complete}");
                }
            }
        }
    }
    assert!(
        authorized.is_empty(),
        "an expired JWT still authorized operations over the WebSocket:\n{}",
        authorized.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// A socket that never authenticates is closed; one that does stays open.

#[tokio::test]
async fn sockets_that_never_send_connection_init_are_closed() {
    let t = TestApp::with_config(|c| c.ws_init_timeout = Duration::from_millis(300)).await;
    let mut silent = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
    let started = std::time::Instant::now();
    assert!(matches!(silent.incoming().await, Incoming::Closed(_)), "the silent socket was closed");
    assert!(started.elapsed() < Duration::from_secs(5));

    // An authenticated socket outlives the deadline and still serves subscriptions.
    let w = t.world().await;
    let first = issue(&t, &w, "k1").await;
    let mut client = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
    client.init(bearer(&w.operator_token)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // past the init deadline on purpose
    client
        .send(json!({
            "id": "1",
            "type": "subscribe",
            "payload": { "query": "subscription { chargeTokenIssued(after: \"0\") { chargeToken { id } } }" },
        }))
        .await;
    let next = client.recv().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["payload"]["data"]["chargeTokenIssued"]["chargeToken"]["id"], first.token_id.to_string().as_str());
}
