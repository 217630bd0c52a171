//! The axum router: `/graphql` (POST, GET for queries, WebSocket for subscriptions),
//! `/graphiql` (a self-hosted GraphiQL), `/health`, the Connect OAuth redirect target
//! `/connect/callback`, and the sandbox processor's consent page.

use std::sync::Arc;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, ServerError};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Extension, FromRequestParts, Query, Request, State, WebSocketUpgrade,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tracing::Instrument;

use crate::auth;
use crate::auth::Principal;
use crate::broker::BrokerState;
use crate::error::{ApiError, ErrorCode};
use crate::graphql::loaders::Loaders;
use crate::graphql::{self, Api, Auth};
use crate::http_graphql::{self, MediaType};
use crate::limits::{Caller, Limits};
use crate::payments::links;

/// Largest accepted GraphQL request body.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct HttpState {
    broker: BrokerState,
    schema: Api,
    limits: Arc<Limits>,
}

/// Builds the router over the shared state.
pub fn router(broker: BrokerState) -> Router {
    let schema = graphql::schema(Some(broker.clone()));
    let cors = cors(&broker.config.cors_allowed_origins);
    let limits = Arc::new(Limits::new(&broker.config));
    let state = HttpState { broker, schema, limits };
    let graphiql = state.broker.config.graphiql;
    let mut router = Router::new().route(
        "/graphql",
        get(graphql_get).post(graphql_post).layer(axum::middleware::from_fn_with_state(state.clone(), admit)),
    );
    if graphiql {
        router = router
            .route("/", get(|| async { Redirect::temporary("/graphiql") }))
            .route("/graphiql", get(graphiql_page))
            .route("/graphiql/graphiql.js", get(graphiql_js))
            .route("/graphiql/graphiql.css", get(graphiql_css));
    }
    router
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/connect/callback", get(connect_callback))
        .route("/sandbox/connect/oauth/authorize", get(sandbox_authorize))
        .route("/webhooks/stripe", axum::routing::post(stripe_webhook))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The path only: query strings can carry authorization codes and states.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

/// Partner frontends call the API from their own origins.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let mut headers = vec![header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];
    if crate::telemetry::enabled() {
        // A partner frontend's OpenTelemetry instrumentation may send its trace context.
        headers.extend([header::HeaderName::from_static("traceparent"), header::HeaderName::from_static("tracestate")]);
    }
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers(headers)
        .max_age(std::time::Duration::from_secs(3600))
}

/// Reads the caller from an `Authorization` value. The token never reaches a log.
async fn authenticate(broker: &BrokerState, authorization: Option<&str>) -> Auth {
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
async fn admit(State(state): State<HttpState>, mut request: Request, next: axum::middleware::Next) -> Response {
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
async fn graphql_post(
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
async fn graphql_get(State(state): State<HttpState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    if parts.headers.contains_key(header::UPGRADE) {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => websocket(state, upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS)),
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
fn bad_request(status: StatusCode, message: &str) -> Response {
    if let Some(span) = crate::telemetry::current_operation() {
        crate::telemetry::record_code(&span, ErrorCode::BadUserInput.as_str());
    }
    http_graphql::error(status, ErrorCode::BadUserInput, message)
}

/// Subscriptions (and other operations) over a WebSocket; `ws` enforces its limits.
fn websocket(state: HttpState, upgrade: WebSocketUpgrade) -> Response {
    let Some(protocol) = crate::ws::protocol(&upgrade) else {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "WebSocket subprotocol must be graphql-transport-ws or graphql-ws",
        );
    };
    let HttpState { broker, schema, limits } = state;
    let stopping = broker.stopping.subscribe();
    upgrade
        // The default 128 KiB read buffer per socket dominated the memory of idle
        // subscribers; GraphQL messages here are small.
        .read_buffer_size(4096)
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

static GRAPHIQL_HTML: &str = include_str!("../assets/graphiql/index.html");
static GRAPHIQL_JS: &[u8] = include_bytes!("../assets/graphiql/dist/graphiql.js");
static GRAPHIQL_CSS: &[u8] = include_bytes!("../assets/graphiql/dist/graphiql.css");

async fn graphiql_page() -> Response {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src data:; \
                 img-src 'self' data:; connect-src 'self' ws: wss:",
            ),
        )],
        Html(GRAPHIQL_HTML),
    )
        .into_response()
}

async fn graphiql_js() -> Response {
    static_asset("text/javascript; charset=utf-8", GRAPHIQL_JS)
}

async fn graphiql_css() -> Response {
    static_asset("text/css; charset=utf-8", GRAPHIQL_CSS)
}

fn static_asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// 200 once the database answers and every migration is applied; 503 otherwise.
async fn health(State(state): State<HttpState>) -> Response {
    let ready = async {
        let mut conn = state.broker.pool.get().await.map_err(|e| e.to_string())?;
        crate::db::migrations_applied(&mut conn).await.map_err(|e| e.to_string())
    }
    .await;
    match ready {
        Ok(true) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "migrations pending" })))
            .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "database unavailable" })))
                .into_response()
        }
    }
}

/// Readiness for a load balancer: 200 only when the database answers, every migration
/// is applied and the LISTEN connection is up (so subscribers here get other processes'
/// events); 503 otherwise, and from the moment the process is asked to stop.
async fn ready(State(state): State<HttpState>) -> Response {
    let unavailable =
        |status: &str| (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": status }))).into_response();
    if state.broker.is_stopping() {
        return unavailable("shutting down");
    }
    let migrated = async {
        let mut conn = state.broker.pool.get().await.map_err(|e| e.to_string())?;
        crate::db::migrations_applied(&mut conn).await.map_err(|e| e.to_string())
    }
    .await;
    match migrated {
        Ok(true) => {}
        Ok(false) => return unavailable("migrations pending"),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unavailable");
            return unavailable("database unavailable");
        }
    }
    if !state.broker.events.is_listening() {
        return unavailable("event listener not connected");
    }
    if state.broker.is_stopping() {
        return unavailable("shutting down");
    }
    (StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))).into_response()
}

/// Prometheus' text format.
async fn metrics(State(state): State<HttpState>) -> Response {
    metrics_text(&state.broker)
}

pub(crate) fn metrics_text(broker: &BrokerState) -> Response {
    crate::metrics::pool_status("primary", broker.pool.status());
    crate::metrics::db_statements(broker.statements.get());
    if let Some(replica) = &broker.replica {
        crate::metrics::pool_status("replica", replica.pool().status());
    }
    let handle = crate::metrics::install();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], handle.render())
        .into_response()
}

/// `/metrics` alone, for `CURBPAY_METRICS_ADDR`.
pub fn metrics_router(broker: BrokerState) -> Router {
    Router::new().route("/metrics", get(move || async move { metrics_text(&broker) }))
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The processor's OAuth redirect after the operator's decision.
async fn connect_callback(State(state): State<HttpState>, Query(params): Query<CallbackParams>) -> Response {
    let broker = &state.broker;
    let Some(signed_state) = params.state.as_deref() else {
        return page(StatusCode::BAD_REQUEST, "Link not completed", "The request has no state.");
    };
    if let Some(error) = params.error.as_deref() {
        let reason = params.error_description.as_deref().unwrap_or(error);
        return match links::fail_from_callback(broker, signed_state, reason).await {
            Ok(_) => page(StatusCode::OK, "Link not authorized", "The operator did not authorize the link."),
            Err(err) => page(status_of(err.code()), "Link not completed", &err.client_message()),
        };
    }
    let Some(code) = params.code.as_deref() else {
        return page(StatusCode::BAD_REQUEST, "Link not completed", "The request has no authorization code.");
    };
    match links::complete_from_callback(broker, signed_state, code).await {
        Ok(link) if link.status == crate::models::LinkStatus::Active => {
            page(StatusCode::OK, "Link active", "The operator's account is now linked. You can close this window.")
        }
        // 202: recorded, but waiting for someone else (an admin) to finish it.
        Ok(_) => page(
            StatusCode::ACCEPTED,
            "Link waiting for review",
            "This authorization connected a different processor account than the one this operator is known by. \
             An administrator must accept it before the link becomes active.",
        ),
        Err(err) => page(status_of(err.code()), "Link not completed", &err.client_message()),
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::ProcessorError => StatusCode::BAD_GATEWAY,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::RateLimited | ErrorCode::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
    }
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>{t}</title><h1>{t}</h1><p>{m}</p>",
        t = escape(title),
        m = escape(message)
    );
    (status, Html(body)).into_response()
}

/// Stripe's Connect webhook endpoint. The signature is checked over the raw body, so
/// the body is taken as bytes, untouched.
async fn stripe_webhook(State(state): State<HttpState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
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

#[derive(Deserialize)]
struct AuthorizeParams {
    client_id: String,
    state: String,
    redirect_uri: String,
    /// `deny` simulates the operator declining (Stripe then redirects with
    /// `error=access_denied`).
    sandbox_decision: Option<String>,
}

/// The sandbox's stand-in for the processor's consent page: it approves at once (or
/// declines on request) and redirects back to this server's callback. The operator
/// (and link) the code is bound to come from the verified `state` only; a request
/// without a genuine, outstanding state is refused before anything is written.
async fn sandbox_authorize(State(state): State<HttpState>, Query(params): Query<AuthorizeParams>) -> Response {
    let Some(sandbox) = state.broker.sandbox.as_ref().map(Arc::clone) else {
        return page(StatusCode::NOT_FOUND, "Not found", "The sandbox processor is not in use.");
    };
    let Ok(callback) = links::callback_url(&state.broker) else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, "Error", "The server's public URL is invalid.");
    };
    // Only ever redirect to our own callback: never an open redirect.
    if params.redirect_uri != callback.as_str() {
        return page(StatusCode::BAD_REQUEST, "Invalid request", "redirect_uri is not this server's callback.");
    }
    let consent = match links::consent(&state.broker, &params.state).await {
        Ok(consent) => consent,
        Err(err) => return page(status_of(err.code()), "Invalid request", &err.client_message()),
    };
    let mut target = callback;
    if params.sandbox_decision.as_deref() == Some("deny") {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user denied your request")
            .append_pair("state", &params.state);
        return Redirect::to(target.as_str()).into_response();
    }
    match sandbox.approve(&consent.platform_account_id, &params.client_id, &consent.authorization).await {
        Ok(code) => {
            target.query_pairs_mut().append_pair("code", &code).append_pair("state", &params.state);
            Redirect::to(target.as_str()).into_response()
        }
        Err(err) => {
            let err = crate::error::ApiError::from(err);
            page(status_of(err.code()), "Authorization failed", &err.client_message())
        }
    }
}
