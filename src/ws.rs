//! One GraphQL WebSocket: async-graphql speaks the protocols (`graphql-transport-ws` and
//! the legacy `graphql-ws`); this module stands between it and the socket to enforce
//! what it does not:
//!
//! - `connection_init` within `CURBPAY_WS_INIT_TIMEOUT`, else close 4408; a rejected
//!   one closes 4403; a principal past `CURBPAY_WS_MAX_CONNECTIONS_PER_PRINCIPAL` open
//!   sockets is closed 1013 (try again later); `subscribe` before the acknowledgement
//!   closes 4401 and an unparsable message 4400 (the protocol's codes; async-graphql
//!   would send 1002 or 1011).
//! - A `subscribe` reusing the id of a running operation closes 4409.
//! - At most `CURBPAY_WS_MAX_SUBSCRIPTIONS` operations run at once; another one gets an
//!   `error` message for its id (code LIMIT_EXCEEDED) and the socket stays open.
//! - Every operation started takes a token from the principal's rate-limit bucket; an
//!   empty bucket answers an `error` message (code RATE_LIMITED).
//!
//! On the legacy protocol, refusals of single operations (a duplicate id included) are
//! `error` messages too, and a refused `connection_init` is its `connection_error`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::Data;
use async_graphql::http::{WebSocket as GraphQLWebSocket, WebSocketProtocols, WsMessage};
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::graphql::Api;
use crate::limits::{Caller, Limits, SocketSlot, principal_key};

/// graphql-transport-ws close codes.
mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    /// RFC 6455: the server is overloaded; the client may reconnect later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// RFC 6455: the server is restarting; the client should reconnect (elsewhere).
    pub const SERVICE_RESTART: u16 = 1012;
}

/// Open sockets in this process (shutdown waits for them to close).
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many GraphQL WebSockets are open in this process.
pub fn open_sockets() -> usize {
    OPEN.load(Ordering::Relaxed)
}

struct OpenSocket(#[allow(dead_code)] crate::metrics::GaugeGuard);

impl OpenSocket {
    fn new() -> OpenSocket {
        OPEN.fetch_add(1, Ordering::Relaxed);
        OpenSocket(crate::metrics::GaugeGuard::websocket())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The protocol the upgrade agreed on (`WebSocketUpgrade::protocols` picked it).
pub fn protocol(upgrade: &WebSocketUpgrade) -> Option<WebSocketProtocols> {
    upgrade.selected_protocol()?.to_str().ok()?.parse().ok()
}

/// Why a `connection_init` was refused.
enum Refusal {
    /// Missing or invalid credentials: close 4403.
    Unauthorized,
    /// The principal has too many sockets open: close 1013.
    TooManySockets,
}

/// The authenticated side of the socket, known once `connection_init` succeeded.
struct Session {
    caller: Caller,
    _slot: SocketSlot,
}

type InitOutcome = Arc<Mutex<Option<Result<Session, Refusal>>>>;

/// The fields of a client message this layer looks at.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

/// Serves one upgraded socket. `authenticate` reads the `connection_init` payload and
/// returns the operations' data and the principal, or why it refuses.
///
/// The future lives as long as the socket, so its size is memory per connection: the
/// socket is split and the protocol handler built before it, and only the halves and
/// the handler are moved in (an `async fn` would also keep the whole `WebSocket` it was
/// given in its state).
pub fn serve<F, Fut>(
    socket: WebSocket,
    schema: Api,
    protocol: WebSocketProtocols,
    limits: Arc<Limits>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    authenticate: F,
) -> impl Future<Output = ()> + Send + 'static
where
    F: FnOnce(serde_json::Value) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Data, Principal), String>> + Send + 'static,
{
    let open = OpenSocket::new();
    let (mut sink, mut client) = socket.split();
    // A futures channel rather than tokio's: tokio's unbounded channel allocates a
    // 32-slot block up front, a kilobyte per socket that almost always stays empty.
    let (to_graphql, input) = futures_channel::mpsc::unbounded::<Bytes>();
    let outcome: InitOutcome = Arc::default();
    let on_init = {
        let (outcome, limits) = (outcome.clone(), limits.clone());
        move |payload: serde_json::Value| async move {
            let (result, message) = match authenticate(payload).await {
                Err(why) => (Err(Refusal::Unauthorized), why),
                Ok((data, principal)) => {
                    let key = principal_key(&principal);
                    match limits.sockets.try_acquire(&key) {
                        Some(slot) => {
                            let session = Session { caller: Caller::Principal(key), _slot: slot };
                            *outcome.lock().expect("init outcome lock") = Some(Ok(session));
                            return Ok(data);
                        }
                        None => {
                            tracing::info!(principal = %key, "refusing a WebSocket: too many open for this principal");
                            let message = format!(
                                "too many open WebSockets for this principal (at most {}); close one and retry",
                                limits.sockets.max()
                            );
                            (Err(Refusal::TooManySockets), message)
                        }
                    }
                }
            };
            *outcome.lock().expect("init outcome lock") = Some(result);
            Err(message.into())
        }
    };
    let mut graphql = GraphQLWebSocket::new(schema, input, protocol).on_connection_init(on_init);
    async move {
        let _open = open;
        let init_deadline = tokio::time::sleep(limits.ws_init_timeout);
        tokio::pin!(init_deadline);

        let stop_signal = async move {
            if stopping.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(stop_signal);
        let mut session: Option<Session> = None;
        let mut init_sent = false;
        // Operations running, and the ids the client completed whose echo is still to come.
        let mut running: HashSet<String> = HashSet::new();
        let mut completed_by_client: HashSet<String> = HashSet::new();
        loop {
            tokio::select! {
                // While `connection_init` is being answered, later messages wait: they are
                // judged with the session it yields.
                incoming = client.next(), if !init_sent || session.is_some() => {
                    let bytes = match incoming {
                        Some(Ok(Message::Text(text))) => Bytes::from(text),
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    };
                    let envelope = serde_json::from_slice::<Envelope>(&bytes).ok();
                    let (kind, id) = match &envelope {
                        Some(Envelope { kind, id }) => (kind.as_str(), id.clone()),
                        None => ("", None),
                    };
                    match (kind, id, &session) {
                        ("connection_init", _, None) => init_sent = true,
                        ("subscribe" | "start", Some(id), Some(session)) => {
                            let refusal = if running.contains(&id) {
                                if protocol == WebSocketProtocols::GraphQLWS {
                                    let reason = format!("Subscriber for {id} already exists");
                                    let _ = sink.send(close_frame(close::SUBSCRIBER_EXISTS, &reason)).await;
                                    break;
                                }
                                Some(ApiError::LimitExceeded(format!("an operation with id {id} is already running")))
                            } else if running.len() >= limits.ws_max_subscriptions {
                                Some(ApiError::LimitExceeded(format!(
                                    "too many operations on this WebSocket (at most {}); complete one first",
                                    limits.ws_max_subscriptions
                                )))
                            } else {
                                limits.rate.check(&session.caller).err()
                            };
                            if let Some(refusal) = refusal {
                                if matches!(refusal, ApiError::RateLimited { .. }) {
                                    crate::metrics::rate_limited("websocket");
                                }
                                if sink.send(Message::Text(operation_error(protocol, &id, &refusal).into())).await.is_err() {
                                    break;
                                }
                                continue;
                            }
                            running.insert(id);
                        }
                        ("complete" | "stop", Some(id), _) if running.remove(&id) => {
                            completed_by_client.insert(id);
                        }
                        _ => {}
                    }
                    if to_graphql.unbounded_send(bytes).is_err() {
                        break;
                    }
                }
                outgoing = graphql.next() => {
                    let message = match outgoing {
                        None => break,
                        Some(WsMessage::Text(text)) => {
                            if session.is_none() && text.starts_with(r#"{"type":"connection_ack""#) {
                                session = outcome.lock().expect("init outcome lock").take().and_then(Result::ok);
                            } else if let Some(id) = completed_id(&text)
                                && !completed_by_client.remove(&id)
                            {
                                running.remove(&id);
                            }
                            Message::Text(text.into())
                        }
                        Some(WsMessage::Close(code, reason)) => {
                            let refusal = outcome.lock().expect("init outcome lock").take();
                            let code = match (code, refusal) {
                                (1002, Some(Err(Refusal::Unauthorized))) => close::FORBIDDEN,
                                (1002, Some(Err(Refusal::TooManySockets))) => close::TRY_AGAIN_LATER,
                                (1002, _) => close::BAD_REQUEST,
                                (1011, _) => close::UNAUTHORIZED,
                                (code, _) => code,
                            };
                            let _ = sink.send(close_frame(code, &reason)).await;
                            break;
                        }
                    };
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                // The process is stopping: end every operation properly, then ask the
                // client to reconnect (to another process) with 1012; it resumes
                // subscriptions from its last cursor.
                () = &mut stop_signal => {
                    for id in running.drain() {
                        let complete = json!({ "id": id, "type": "complete" }).to_string();
                        if sink.send(Message::Text(complete.into())).await.is_err() {
                            break;
                        }
                    }
                    let _ = sink.send(close_frame(close::SERVICE_RESTART, "service restart")).await;
                    break;
                }
                () = &mut init_deadline, if session.is_none() => {
                    tracing::debug!("closing a WebSocket that sent no connection_init in time");
                    let _ = sink.send(close_frame(close::INIT_TIMEOUT, "Connection initialisation timeout")).await;
                    break;
                }
            }
        }
    }
}

/// The id of a `complete` message from the server (serialised with `type` first).
fn completed_id(text: &str) -> Option<String> {
    if !text.starts_with(r#"{"type":"complete""#) {
        return None;
    }
    serde_json::from_str::<Envelope>(text).ok()?.id
}

/// An `error` message ending one operation, in the protocol's shape.
fn operation_error(protocol: WebSocketProtocols, id: &str, err: &ApiError) -> String {
    let mut extensions = json!({ "code": err.code().as_str() });
    if let ApiError::RateLimited { retry_after } = err {
        extensions["retryAfter"] = crate::error::retry_after_secs(*retry_after).into();
    }
    let error = json!({ "message": err.client_message(), "extensions": extensions });
    debug_assert!(matches!(err.code(), ErrorCode::RateLimited | ErrorCode::LimitExceeded));
    let payload = match protocol {
        WebSocketProtocols::GraphQLWS => json!([error]),
        WebSocketProtocols::SubscriptionsTransportWS => error,
    };
    json!({ "id": id, "type": "error", "payload": payload }).to_string()
}

/// A close frame; the reason is cut to the 123 bytes a frame allows.
fn close_frame(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame { code, reason: reason[..end].into() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_recognised_by_their_leading_type() {
        assert_eq!(completed_id(r#"{"type":"complete","id":"7"}"#).as_deref(), Some("7"));
        assert_eq!(completed_id(r#"{"type":"next","id":"7","payload":{"data":{"complete":1}}}"#), None);
    }

    #[test]
    fn errors_take_the_shape_of_the_protocol() {
        let err = ApiError::RateLimited { retry_after: std::time::Duration::from_millis(300) };
        let modern: serde_json::Value =
            serde_json::from_str(&operation_error(WebSocketProtocols::GraphQLWS, "a", &err)).unwrap();
        assert_eq!(modern["payload"][0]["extensions"]["code"], "RATE_LIMITED");
        assert_eq!(modern["payload"][0]["extensions"]["retryAfter"], 1);
        let legacy: serde_json::Value =
            serde_json::from_str(&operation_error(WebSocketProtocols::SubscriptionsTransportWS, "a", &err)).unwrap();
        assert_eq!(legacy["payload"]["extensions"]["code"], "RATE_LIMITED");
        assert_eq!(legacy["id"], "a");
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        let Message::Close(Some(frame)) = close_frame(4403, &"é".repeat(100)) else { panic!() };
        assert!(frame.reason.len() <= 123);
    }
}
