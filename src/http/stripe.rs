//! `/webhooks/stripe`: Stripe's Connect webhook deliveries in.

use async_graphql::ServerError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::graphql::bad_request;
use super::page::status_of;

/// Stripe's Connect webhook endpoint. The signature is checked over the raw body, so
/// the body is taken as bytes, untouched.
pub(super) async fn webhook(State(state): State<HttpState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Some(signature) = headers.get("stripe-signature").and_then(|v| v.to_str().ok()) else {
        return bad_request(StatusCode::BAD_REQUEST, "missing Stripe-Signature header");
    };
    match crate::payments::webhooks::receive(&state.broker, &body, signature).await {
        Ok(received) => Json(serde_json::json!({
            "received": true,
            "duplicate": received == crate::payments::webhooks::Received::Duplicate,
        }))
        .into_response(),
        // Stripe retries deliveries that do not get a 2xx: fine for outages, and a bad
        // signature stays bad.
        Err(err) => {
            let status = status_of(err.code());
            let mut error = ServerError::new(err.client_message(), None);
            error.extensions.get_or_insert_with(Default::default).set("code", err.code().as_str());
            (status, Json(serde_json::json!({ "errors": [error] }))).into_response()
        }
    }
}
