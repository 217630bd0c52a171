//! The axum router and the state its handlers share: `/graphql` (POST, GET for queries,
//! WebSocket for subscriptions), `/graphiql` (a self-hosted GraphiQL), `/health`,
//! `/ready`, `/metrics`, the Connect OAuth redirect target `/connect/callback`, Stripe's
//! webhooks, and the consent page of a processor that serves one (the sandbox's). One
//! file per route family; this one wires them together.

mod admit;
mod connect;
mod graphiql;
mod graphql;
mod health;
mod metrics;
mod page;
mod sandbox;
mod stripe;
mod websocket;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::response::Redirect;
use axum::routing::get;

use crate::broker::BrokerState;
use crate::graphql::Api;
use crate::limits::Limits;

pub use metrics::metrics_router;

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
    let schema = crate::graphql::schema(Some(broker.clone()));
    let cors = cors(&broker.config.cors_allowed_origins);
    let limits = Arc::new(Limits::new(&broker.config));
    let state = HttpState { broker, schema, limits };
    let graphiql = state.broker.config.graphiql;
    let mut router = Router::new().route(
        "/graphql",
        get(graphql::get).post(graphql::post).layer(axum::middleware::from_fn_with_state(state.clone(), admit::admit)),
    );
    if graphiql {
        router = router
            .route("/", get(|| async { Redirect::temporary("/graphiql") }))
            .route("/graphiql", get(graphiql::page))
            .route("/graphiql/graphiql.js", get(graphiql::js))
            .route("/graphiql/graphiql.css", get(graphiql::css));
    }
    router
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/connect/callback", get(connect::callback))
        .route("/sandbox/connect/oauth/authorize", get(sandbox::authorize))
        .route("/webhooks/stripe", axum::routing::post(stripe::webhook))
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
