//! Stripe's error answers: bodies, injected server errors, masked keys.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Any answer but a 200 object: an error, or a redirect.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// Stripe's error body: `{"error":{"type","code","message","param"}}`.
    pub(super) fn error(
        status: u16,
        ty: &str,
        code: Option<&str>,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> Reply {
        let body = json!({ "error": { "type": ty, "code": code, "message": message.into(), "param": param } });
        Reply { status, body, headers: vec![] }
    }
}

/// An `invalid_request_error` with a code.
pub(super) fn err(status: u16, code: &str, message: impl Into<String>, param: Option<&str>) -> Reply {
    Reply::error(status, "invalid_request_error", Some(code), message, param)
}

pub(super) fn oauth_err(status: u16, error: &str, description: String) -> Reply {
    Reply { status, body: json!({ "error": error, "error_description": description }), headers: vec![] }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::from_u16(self.status).unwrap(), Json(self.body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
}

pub(super) fn server_error(should_retry: bool) -> Response {
    let message = "Sorry, something went wrong. We've already been notified of the problem.";
    let mut reply = Reply::error(500, "api_error", None, message, None);
    reply.headers.push(("stripe-should-retry", should_retry.to_string()));
    reply.into_response()
}

pub(super) fn status_fault(status: u16) -> Response {
    let reply = match status {
        429 => err(
            429,
            "rate_limit",
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            None,
        ),
        _ => Reply::error(status, "api_error", None, "Sorry, something went wrong.", None),
    };
    reply.into_response()
}

/// `sk_test_****1234`: never the whole key.
pub(super) fn mask(key: &str) -> String {
    let prefix =
        ["sk_test_", "sk_live_", "rk_test_", "pk_test_"].into_iter().find(|p| key.starts_with(p)).unwrap_or("");
    let last4 = if key.len() >= prefix.len() + 8 { &key[key.len() - 4..] } else { "" };
    format!("{prefix}****{last4}")
}
