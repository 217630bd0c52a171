//! `/metrics` in Prometheus' text format, on the API router or on a listener of its
//! own (`CURBPAY_METRICS_ADDR`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::HttpState;
use crate::broker::BrokerState;

/// Prometheus' text format.
pub(super) async fn metrics(State(state): State<HttpState>) -> Response {
    metrics_text(&state.broker)
}

fn metrics_text(broker: &BrokerState) -> Response {
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
