//! Domain services: the broker's flows, each a function over `&App`. They check who may
//! act (through `policy`), keep state in the tables, call the processor outside of
//! database transactions, and announce committed changes to subscribers. They know
//! nothing of GraphQL or HTTP.

pub mod customers;
pub mod disputes;
pub mod event_log;
pub mod holds;
pub mod ledger;
pub mod links;
pub mod parties;
pub mod policy;
pub mod refunds;
pub mod sessions;
pub mod sweeper;
pub mod tokens;
pub mod webhook_endpoints;
pub mod webhooks;

/// Trims a required text input and checks its length.
pub(crate) fn required_text<'a>(field: &str, value: &'a str, max: usize) -> crate::error::ApiResult<&'a str> {
    let value = value.trim();
    if value.is_empty() {
        return Err(crate::error::ApiError::bad_input(format!("{field} must not be empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(crate::error::ApiError::bad_input(format!("{field} must not contain control characters")));
    }
    if value.chars().count() > max {
        return Err(crate::error::ApiError::bad_input(format!("{field} must be at most {max} characters")));
    }
    Ok(value)
}
