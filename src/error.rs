//! The one error type of the service, with the stable codes clients see in
//! `extensions.code`. It sits at the bottom of the crate: it knows nothing of HTTP or
//! GraphQL plumbing; the GraphQL layer reads `code()` and `client_message()` from it.

use std::borrow::Cow;
use std::fmt;

/// The error behind an internal or unavailable one, kept whole so the log shows its
/// chain of causes (`ErrorChain`), never the client.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Stable, documented error codes. Clients switch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No valid credentials: the token is missing, malformed, expired or names no party.
    Unauthenticated,
    /// Authenticated, but the role or scope does not allow the operation.
    Forbidden,
    /// The object does not exist or the caller may not see it.
    NotFound,
    /// An argument or input field is invalid; the message names it.
    BadUserInput,
    /// The request clashes with the object's state (or an idempotency key's earlier use).
    Conflict,
    /// The processor refused or failed the request.
    ProcessorError,
    /// A dependency (database, processor) is unreachable or overloaded; retrying may work.
    Unavailable,
    /// A bug or an unexpected state; the detail is in the server's log.
    Internal,
    /// Too many requests from one principal (or one address); retry after a pause.
    RateLimited,
    /// A per-connection limit was reached (too many operations on one WebSocket).
    LimitExceeded,
}

impl ErrorCode {
    /// The code as sent in `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::ProcessorError => "PROCESSOR_ERROR",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
        }
    }

    /// The code a string names (as sent in `extensions.code`).
    pub fn parse(code: &str) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            Unauthenticated,
            Forbidden,
            NotFound,
            BadUserInput,
            Conflict,
            ProcessorError,
            Unavailable,
            Internal,
            RateLimited,
            LimitExceeded,
        ]
        .into_iter()
        .find(|c| c.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a request can end with. The message of the client-facing variants is safe
/// to show; `Internal` and `Unavailable` carry detail for the log only.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid credentials; the message says what was wrong (never the token).
    #[error("{0}")]
    Unauthenticated(String),
    /// The role or scope does not allow it; the message says which is needed.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing of this kind (`"app"`, `"operator"`, …) that the caller may see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An invalid argument; the message names it.
    #[error("{0}")]
    BadUserInput(String),
    /// A clash with the object's state; the message says which.
    #[error("{0}")]
    Conflict(String),
    /// Another ACTIVE session for the same vehicle in the same zone of the operator;
    /// says nothing about that session or its app.
    #[error("a session for this vehicle is already active in this zone")]
    DuplicateSession,
    /// The processor refused or failed the request; the message is safe to show.
    #[error("{0}")]
    Processor(String),
    /// A dependency (database, processor) is unreachable or overloaded; detail is logged.
    #[error("service unavailable: {0}")]
    Unavailable(Cow<'static, str>, #[source] Option<Cause>),
    /// A bug or an unexpected state; detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(Cow<'static, str>, #[source] Option<Cause>),
    /// The caller's request budget is spent; it refills within `retry_after`.
    #[error("too many requests: retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        /// How long until the budget allows another request.
        retry_after: std::time::Duration,
    },
    /// A usage limit of the connection was reached; the message names it.
    #[error("{0}")]
    LimitExceeded(String),
}

/// Whole seconds to wait, rounded up and at least 1 (the `Retry-After` header's unit).
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl ApiError {
    /// The stable code clients see in `extensions.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::BadUserInput(_) => ErrorCode::BadUserInput,
            ApiError::Conflict(_) | ApiError::DuplicateSession => ErrorCode::Conflict,
            ApiError::Processor(_) => ErrorCode::ProcessorError,
            ApiError::Unavailable(..) => ErrorCode::Unavailable,
            ApiError::Internal(..) => ErrorCode::Internal,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::LimitExceeded(_) => ErrorCode::LimitExceeded,
        }
    }

    /// A machine-readable refinement of the code (`extensions.reason`), when there is one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            ApiError::DuplicateSession => Some("DUPLICATE_SESSION"),
            _ => None,
        }
    }

    /// The message a client may see. Internal detail stays in the log.
    pub fn client_message(&self) -> String {
        match self {
            ApiError::Unavailable(..) => "The service is temporarily unavailable; retry the request.".to_owned(),
            ApiError::Internal(..) => "An internal error occurred.".to_owned(),
            other => other.to_string(),
        }
    }

    /// A BAD_USER_INPUT error with this message.
    pub fn bad_input(msg: impl Into<String>) -> Self {
        ApiError::BadUserInput(msg.into())
    }

    /// A CONFLICT error with this message.
    pub fn conflict(msg: impl Into<String>) -> Self {
        ApiError::Conflict(msg.into())
    }

    /// A FORBIDDEN error with this message.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError::Forbidden(msg.into())
    }

    /// A bug or an unexpected state, described for the log.
    pub fn internal(msg: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Internal(msg.into(), None)
    }

    /// A bug or an unexpected state caused by `cause`, which the log shows with its chain.
    pub fn internal_caused(msg: impl Into<Cow<'static, str>>, cause: impl Into<Cause>) -> Self {
        ApiError::Internal(msg.into(), Some(cause.into()))
    }

    /// A dependency that does not answer now, described for the log.
    pub fn unavailable(msg: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Unavailable(msg.into(), None)
    }

    /// A dependency that does not answer now, with the error that said so.
    pub fn unavailable_caused(msg: impl Into<Cow<'static, str>>, cause: impl Into<Cause>) -> Self {
        ApiError::Unavailable(msg.into(), Some(cause.into()))
    }
}

/// Displays an error with its chain of causes, `outer: cause: root cause`, for the log.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &err {
            Error::NotFound => ApiError::internal("row unexpectedly missing"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
                if info.constraint_name() == Some("parking_sessions_one_active_per_vehicle") =>
            {
                ApiError::DuplicateSession
            }
            Error::DatabaseError(DatabaseErrorKind::CheckViolation, info)
                if info.constraint_name() == Some("parking_sessions_refunded_le_captured") =>
            {
                ApiError::Conflict("the refund exceeds what is left to refund".into())
            }
            Error::DatabaseError(DatabaseErrorKind::CheckViolation, info)
                if info.constraint_name() == Some("parking_sessions_captured_le_held") =>
            {
                ApiError::Conflict("the capture exceeds the session's hold".into())
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _) => {
                ApiError::unavailable_caused("database connection", err)
            }
            Error::DatabaseError(_, info) if info.message().contains("statement timeout") => {
                ApiError::unavailable_caused("database statement timeout", err)
            }
            _ => ApiError::internal_caused("database", err),
        }
    }
}

/// The result of a request's steps: an [`ApiError`] carries its code to the client.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_code() {
        let cases = [
            (ApiError::Unauthenticated("x".into()), "UNAUTHENTICATED"),
            (ApiError::Forbidden("x".into()), "FORBIDDEN"),
            (ApiError::NotFound("link"), "NOT_FOUND"),
            (ApiError::BadUserInput("x".into()), "BAD_USER_INPUT"),
            (ApiError::Conflict("x".into()), "CONFLICT"),
            (ApiError::DuplicateSession, "CONFLICT"),
            (ApiError::Processor("x".into()), "PROCESSOR_ERROR"),
            (ApiError::unavailable("x"), "UNAVAILABLE"),
            (ApiError::internal("x"), "INTERNAL"),
            (ApiError::RateLimited { retry_after: std::time::Duration::from_millis(20) }, "RATE_LIMITED"),
            (ApiError::LimitExceeded("x".into()), "LIMIT_EXCEEDED"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code().as_str(), code);
        }
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let err = ApiError::internal("relation \"apps\" does not exist");
        assert_eq!(err.client_message(), "An internal error occurred.");
        let err = ApiError::unavailable("connection refused to 10.0.0.1");
        assert!(!err.client_message().contains("10.0.0.1"));
        assert_eq!(ApiError::NotFound("link").client_message(), "link not found");
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let err = ApiError::RateLimited { retry_after: std::time::Duration::from_millis(20) };
        assert_eq!(err.client_message(), "too many requests: retry in 1 s");
        assert_eq!(retry_after_secs(std::time::Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(std::time::Duration::from_secs(3)), 3);
    }

    #[test]
    fn database_errors_are_masked() {
        let err: ApiError = diesel::result::Error::NotFound.into();
        assert_eq!(err.code(), ErrorCode::Internal);
        let err: ApiError = diesel::result::Error::BrokenTransactionManager.into();
        assert_eq!(err.code(), ErrorCode::Internal);
    }

    #[test]
    fn the_log_keeps_the_chain_of_causes() {
        let io = std::io::Error::other("connection reset by peer");
        let err = ApiError::internal_caused("opening an app secret", io);
        assert_eq!(err.client_message(), "An internal error occurred.");
        assert_eq!(ErrorChain(&err).to_string(), "internal error: opening an app secret: connection reset by peer");
        let err: ApiError = diesel::result::Error::BrokenTransactionManager.into();
        assert!(ErrorChain(&err).to_string().starts_with("internal error: database: "), "{}", ErrorChain(&err));
    }
}
