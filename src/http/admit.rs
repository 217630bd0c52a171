//! Admission to `/graphql`: who the caller is (the `Authorization` header, or the
//! WebSocket's `connection_init`) and its rate limit, before any GraphQL runs.

use async_graphql::ServerError;
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::HttpState;
use crate::auth;
use crate::broker::BrokerState;
use crate::error::ApiError;
use crate::graphql::Auth;
use crate::limits::Caller;

/// Reads the caller from an `Authorization` value. The token never reaches a log.
pub(super) async fn authenticate(broker: &BrokerState, authorization: Option<&str>) -> Auth {
    let Some(value) = authorization else {
        return Auth::Anonymous;
    };
    if value.len() > auth::MAX_TOKEN_BYTES {
        return Auth::Invalid(format!("the Authorization header is larger than {} KiB", auth::MAX_TOKEN_BYTES / 1024));
    }
    let principal = match auth::bearer(value) {
        None => return Auth::Invalid("the Authorization header must be `Bearer <JWT>`".to_owned()),
        Some(token) => match broker.jwt.verify(token) {
            Ok(principal) => principal,
            Err(err) => return Auth::Invalid(err.client_message()),
        },
    };
    match crate::payments::parties::principal_exists(broker, &principal).await {
        Ok(true) => Auth::Principal(principal),
        Ok(false) => Auth::Invalid("invalid token: the app or operator it names does not exist".to_owned()),
        Err(err) => {
            tracing::warn!(error = %err, "could not check the party a token names");
            Auth::Unavailable
        }
    }
}

async fn request_auth(broker: &BrokerState, headers: &HeaderMap) -> Auth {
    let value = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    authenticate(broker, value).await
}

/// Authenticates a `/graphql` request and charges it to its caller's rate limit (the
/// principal; the client address when unauthenticated). Over the limit: 429 with
/// `Retry-After` and a RATE_LIMITED error. The handlers find the `Auth` in the request.
///
/// With traces on, the operation's span starts here (a child of the caller's span when
/// the request carries `traceparent`), so authentication is part of it; a WebSocket
/// upgrade gets none (each operation on the socket gets its own).
pub(super) async fn admit(
    State(state): State<HttpState>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    let span = if request.headers().contains_key(header::UPGRADE) {
        tracing::Span::none()
    } else {
        crate::telemetry::http_operation_span(request.headers())
    };
    let admitted = async move {
        let auth = request_auth(&state.broker, request.headers()).await;
        let caller = match &auth {
            Auth::Principal(principal) => Caller::principal(principal),
            _ => Caller::address(request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())),
        };
        if let Err(err) = state.limits.rate.check(&caller) {
            crate::metrics::rate_limited("http");
            return rate_limited(&err);
        }
        request.extensions_mut().insert(auth);
        next.run(request).await
    };
    let response = admitted.instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

fn rate_limited(err: &ApiError) -> Response {
    if let Some(span) = crate::telemetry::current_operation() {
        crate::telemetry::record_code(&span, err.code().as_str());
    }
    let seconds = match err {
        ApiError::RateLimited { retry_after } => crate::error::retry_after_secs(*retry_after),
        _ => 1,
    };
    let mut error = ServerError::new(err.client_message(), None);
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", err.code().as_str());
    extensions.set("retryAfter", seconds);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, HeaderValue::from(seconds))],
        Json(serde_json::json!({ "errors": [error] })),
    )
        .into_response()
}
