//! `/connect/callback`: the processor's OAuth redirect after the operator's decision.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::HttpState;
use super::page::{page, status_of};
use crate::payments::links;

#[derive(Deserialize)]
pub(super) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The processor's OAuth redirect after the operator's decision.
pub(super) async fn callback(State(state): State<HttpState>, Query(params): Query<CallbackParams>) -> Response {
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
