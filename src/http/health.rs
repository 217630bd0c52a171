//! `/health` and `/ready`: liveness and readiness for load balancers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::HttpState;

/// 200 once the database answers and every migration is applied; 503 otherwise.
pub(super) async fn health(State(state): State<HttpState>) -> Response {
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
pub(super) async fn ready(State(state): State<HttpState>) -> Response {
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
