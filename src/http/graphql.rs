//! GraphQL over HTTP at `/graphql`: POST (one JSON request) and GET (queries only),
//! executed in a task of their own; the errors of requests that never reach the executor.

use async_graphql::ServerError;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use axum::extract::{Extension, FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{HttpState, MAX_BODY_BYTES};
use crate::error::ErrorCode;
use crate::graphql::loaders::Loaders;
use crate::graphql::{self, Auth};
use crate::http_graphql::{self, MediaType};

async fn execute(state: &HttpState, auth: Auth, media: MediaType, request: async_graphql::Request) -> Response {
    let request = request.data(auth).data(Loaders::new(&state.broker));
    // Run to completion in a task of its own: a client that goes away mid-request must
    // not cancel a mutation between its statements (the retry it sends would then find
    // a transaction still holding its locks). What was started finishes and commits.
    let schema = state.schema.clone();
    // The task runs in the operation's trace span (when traces are on).
    let span = crate::telemetry::current_operation().unwrap_or_else(tracing::Span::none);
    let response = match tokio::spawn(async move { schema.execute(request).await }.instrument(span)).await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "a GraphQL request task failed");
            let mut error = ServerError::new("internal error", None);
            error.extensions.get_or_insert_with(Default::default).set("code", ErrorCode::Internal.as_str());
            async_graphql::Response::from_errors(vec![error])
        }
    };
    http_graphql::response(media, response)
}

/// POST takes one JSON request object. The body is read here, not by async-graphql's
/// extractor, so the body limit applies and a JSON array (a batch, or a request spelled
/// as an array) is refused rather than executed.
pub(super) async fn post(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Extension(auth): Extension<Auth>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(media) = http_graphql::negotiate(&headers) else {
        return not_acceptable();
    };
    if !http_graphql::is_json_body(&headers) {
        return bad_request(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON: send Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return bad_request(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than {} KiB", MAX_BODY_BYTES / 1024),
            );
        }
        Err(rejection) => {
            return bad_request(StatusCode::BAD_REQUEST, &format!("unreadable request body: {rejection}"));
        }
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "the body must be one JSON object {\"query\": …}; batches are not supported",
        );
    }
    let params = match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body) {
        Ok(params) => params,
        Err(err) => return bad_request(StatusCode::BAD_REQUEST, &format!("malformed GraphQL request: {err}")),
    };
    match http_graphql::request_from_params(params, false) {
        Ok(request) => execute(&state, auth, media, request).await,
        Err(why) => bad_request(StatusCode::BAD_REQUEST, &format!("malformed GraphQL request: {why}")),
    }
}

/// GET serves queries (`?query=…`) and WebSocket upgrades for subscriptions.
pub(super) async fn get(State(state): State<HttpState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    if parts.headers.contains_key(header::UPGRADE) {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => super::websocket::upgrade(state, upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS)),
            Err(rejection) => rejection.into_response(),
        };
    }
    let auth = parts.extensions.get::<Auth>().cloned().unwrap_or(Auth::Anonymous);
    let Some(media) = http_graphql::negotiate(&parts.headers) else {
        return not_acceptable();
    };
    let params: serde_json::Map<String, serde_json::Value> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
    let request = match http_graphql::request_from_params(params, true) {
        Ok(request) => request,
        Err(why) => return bad_request(StatusCode::BAD_REQUEST, &format!("malformed GraphQL request: {why}")),
    };
    if !is_query(&request) {
        return bad_request(
            StatusCode::METHOD_NOT_ALLOWED,
            "only queries may be sent with GET; use POST for mutations",
        );
    }
    execute(&state, auth, media, request).await
}

/// Whether the operation a GET would run is a query (parse errors, and documents over
/// the lexical limits, are left to the executor, which reports them properly).
fn is_query(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    if graphql::limits::check_source(&request.query).is_err() {
        return true;
    }
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    let ty = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => op.node.ty,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op.node.ty,
            None => return true,
        },
        (DocumentOperations::Multiple(ops), None) => match ops.values().next() {
            Some(op) if ops.len() == 1 => op.node.ty,
            _ => return true,
        },
    };
    ty == OperationType::Query
}

fn not_acceptable() -> Response {
    bad_request(
        StatusCode::NOT_ACCEPTABLE,
        "the Accept header must allow application/graphql-response+json or application/json",
    )
}

/// A GraphQL-shaped error response for requests that never reach the executor.
pub(super) fn bad_request(status: StatusCode, message: &str) -> Response {
    if let Some(span) = crate::telemetry::current_operation() {
        crate::telemetry::record_code(&span, ErrorCode::BadUserInput.as_str());
    }
    http_graphql::error(status, ErrorCode::BadUserInput, message)
}
