//! `/sandbox/connect/oauth/authorize`: the sandbox processor's consent page. The processor
//! contributes it through `Processor::consent_page`; with any other processor the route
//! answers 404.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::HttpState;
use super::page::{page, status_of};
use crate::payments::links;

#[derive(Deserialize)]
pub(super) struct AuthorizeParams {
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
pub(super) async fn authorize(State(state): State<HttpState>, Query(params): Query<AuthorizeParams>) -> Response {
    let Some(consent_page) = state.broker.processor.consent_page() else {
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
    match consent_page.approve(&consent.platform_account_id, &params.client_id, &consent.authorization).await {
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
