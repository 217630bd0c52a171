//! The WebSocket upgrade on `GET /graphql` and the authentication of its
//! `connection_init`; `crate::ws` serves the socket itself.

use async_graphql::Data;
use axum::extract::WebSocketUpgrade;
use axum::http::StatusCode;
use axum::response::Response;

use super::admit::authenticate;
use super::graphql::bad_request;
use super::{HttpState, MAX_BODY_BYTES};
use crate::auth::Principal;
use crate::broker::BrokerState;
use crate::graphql::Auth;
use crate::graphql::loaders::Loaders;

/// Subscriptions (and other operations) over a WebSocket; `ws` enforces its limits.
pub(super) fn upgrade(state: HttpState, upgrade: WebSocketUpgrade) -> Response {
    let Some(protocol) = crate::ws::protocol(&upgrade) else {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "WebSocket subprotocol must be graphql-transport-ws or graphql-ws",
        );
    };
    let HttpState { broker, schema, limits } = state;
    let stopping = broker.stopping.subscribe();
    upgrade
        // The read buffer is allocated per socket for as long as it is open: the default
        // 128 KiB dominated the memory of idle subscribers. Client messages here are
        // small (`connection_init` with a JWT, `subscribe` with a query); a larger one
        // grows the buffer to fit.
        .read_buffer_size(1024)
        .write_buffer_size(4096)
        .max_message_size(MAX_BODY_BYTES)
        .on_upgrade(move |socket| {
            crate::ws::serve(socket, schema, protocol, limits, stopping, move |payload| async move {
                connection_init(&broker, payload).await
            })
        })
}

/// Browsers cannot set headers on a WebSocket, so the JWT comes in the
/// `connection_init` payload: `{"Authorization": "Bearer <JWT>"}`.
async fn connection_init(broker: &BrokerState, payload: serde_json::Value) -> Result<(Data, Principal), String> {
    let value = payload.get("Authorization").or_else(|| payload.get("authorization")).and_then(|v| v.as_str());
    match authenticate(broker, value).await {
        Auth::Principal(principal) => {
            let mut data = Data::default();
            data.insert(Auth::Principal(principal.clone()));
            data.insert(Loaders::new(broker));
            Ok((data, principal))
        }
        Auth::Invalid(why) => Err(why),
        Auth::Unavailable => Err("the service is unavailable; try again".to_owned()),
        Auth::Anonymous => {
            Err("authentication required: send {\"Authorization\": \"Bearer <JWT>\"} in connection_init".to_owned())
        }
    }
}
