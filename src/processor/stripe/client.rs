//! The HTTP transport under async-stripe's request builders: one `StripeClient` per app
//! secret key, over reqwest. It owns the retry policy, because only the transport sees
//! what it needs: the `Stripe-Should-Retry` header, the `Request-Id` for the log, and
//! whether a failure happened before or after Stripe answered.
//!
//! Retries reuse the request's `Idempotency-Key` (set by the caller from curbpay's own
//! durable state), so Stripe executes a request at most once whatever happens here.
//! Retried: connection errors and timeouts (outcome unknown), 409 (a concurrent request
//! with the same key) and 429 (never saved by Stripe), and a 5xx whose
//! `Stripe-Should-Retry` is true. A 5xx without it has been saved by Stripe for the key:
//! the caller must reconcile before creating anything anew.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{Backoff, BackoffBuilder, ExponentialBuilder, Retryable};
use bytes::Bytes;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use stripe_client_core::{CustomizedStripeRequest, RequestStrategy, StripeClient, StripeClientErr, StripeMethod};

/// Attempts per request, and the backoff between them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (`CURBPAY_STRIPE_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// The backoff's unit: the first wait is up to twice this (`CURBPAY_STRIPE_RETRY_BASE_DELAY`).
    pub base_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(4),
            timeout: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The waits between a request's attempts (one fewer than the attempts): exponential
    /// from twice the base delay up to the cap, each with full jitter (anywhere from zero
    /// to that step's delay), which spreads retries of many requests apart.
    pub(crate) fn backoff(&self) -> impl Backoff {
        ExponentialBuilder::new()
            .with_min_delay(self.base_delay.saturating_mul(2).min(self.max_delay))
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
            .map(full_jitter)
    }
}

fn full_jitter(delay: Duration) -> Duration {
    Duration::from_millis(rand::rng().random_range(0..=delay.as_millis().max(1) as u64))
}

/// Why a Stripe call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Stripe answered with an error.
    #[error("stripe answered {status} ({kind}/{code}), request {request_id}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// Stripe's error `type` (`card_error`, `invalid_request_error`, `api_error`, …).
        kind: String,
        /// Stripe's error `code` (`resource_missing`, `card_declined`, …), empty when none.
        code: String,
        /// Stripe's `decline_code` on a card error, when given.
        decline_code: Option<String>,
        /// Stripe's message; shown to end users only for card errors.
        message: String,
        /// Stripe's `Request-Id`, for the log and for Stripe's support.
        request_id: String,
        /// False when Stripe said not to retry a 5xx: the outcome is unknown.
        should_retry: Option<bool>,
    },
    /// No answer (connection refused or dropped, timeout): the outcome is unknown.
    #[error("no answer from stripe: {0}")]
    Transport(String),
    /// The answer could not be read.
    #[error("unreadable stripe answer: {0}")]
    Decode(String),
}

impl StripeClientErr for CallError {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        CallError::Decode(msg.to_string())
    }
}

impl CallError {
    /// Stripe saved a 5xx for this idempotency key (it will replay it for 24 h): the
    /// outcome is unknown and the same key can never tell. Only then may the caller
    /// look the object up and, if it does not exist, retry under a new key. After a
    /// transport failure or a retryable 5xx the same key stays right: Stripe may still
    /// be executing the first request.
    pub fn saved_failure(&self) -> bool {
        matches!(self, CallError::Api { status, should_retry, .. } if *status >= 500 && *should_retry != Some(true))
    }
}

/// The shared HTTP client and settings.
#[derive(Clone)]
pub struct StripeHttp {
    http: reqwest::Client,
    api_base: url::Url,
    /// The retries of every request made through this client, Connect OAuth's included.
    pub policy: RetryPolicy,
}

impl StripeHttp {
    /// A client for the Stripe API at `api_base` (`CURBPAY_STRIPE_API_BASE`; a mock in
    /// tests), each attempt timing out after the policy's `timeout`.
    pub fn new(api_base: url::Url, policy: RetryPolicy) -> anyhow::Result<StripeHttp> {
        let http = reqwest::Client::builder().timeout(policy.timeout).build()?;
        Ok(StripeHttp { http, api_base, policy })
    }

    /// The underlying HTTP client, for the Connect OAuth calls that async-stripe does not
    /// cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A client acting with one platform account's secret key.
    pub fn with_key(&self, secret_key: SecretString) -> KeyedClient {
        KeyedClient { shared: self.clone(), secret_key }
    }
}

/// A Stripe client for one secret key.
pub struct KeyedClient {
    shared: StripeHttp,
    secret_key: SecretString,
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Reads Stripe's `{"error": {...}}` body.
fn api_error(status: u16, body: &[u8], request_id: String, should_retry: Option<bool>) -> CallError {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error = &value["error"];
    let text = |field: &str| error[field].as_str().map(str::to_owned);
    CallError::Api {
        status,
        kind: text("type").unwrap_or_else(|| "api_error".to_owned()),
        code: text("code").unwrap_or_default(),
        decline_code: text("decline_code"),
        message: text("message").unwrap_or_default(),
        request_id,
        should_retry,
    }
}

impl StripeClient for KeyedClient {
    type Err = CallError;

    async fn execute(&self, request: CustomizedStripeRequest) -> Result<Bytes, CallError> {
        let (request, config) = request.into_pieces();
        let key = match &config.request_strategy {
            Some(RequestStrategy::Idempotent(key)) => Some(key.as_str().to_owned()),
            _ => None,
        };
        let account = config.account_id.as_ref().map(|a| a.as_str().to_owned());
        let mut url = self
            .shared
            .api_base
            // Request paths are relative to the API version (`/customers`): `v1/customers`.
            .join(&format!("v1/{}", request.path.trim_start_matches('/')))
            .map_err(|e| CallError::Transport(format!("bad Stripe URL: {e}")))?;
        if let Some(query) = &request.query {
            url.set_query(Some(query));
        }
        let method = match request.method {
            StripeMethod::Get => reqwest::Method::GET,
            StripeMethod::Post => reqwest::Method::POST,
            StripeMethod::Delete => reqwest::Method::DELETE,
        };
        let attempts = AtomicU32::new(0);
        let send = || async {
            let mut builder = self
                .shared
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(self.secret_key.expose_secret())
                .header("Stripe-Version", stripe_client_core::VERSION.as_str());
            if let Some(account) = &account {
                builder = builder.header("Stripe-Account", account);
            }
            if let Some(key) = &key {
                builder = builder.header("Idempotency-Key", key);
            }
            if let Some(body) = &request.body {
                builder = builder.header("Content-Type", "application/x-www-form-urlencoded").body(body.clone());
            }
            let failure = match builder.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let request_id = header(&response, "request-id").unwrap_or_default();
                    let should_retry = header(&response, "stripe-should-retry").map(|v| v == "true");
                    match response.bytes().await {
                        Ok(body) if status < 300 => return Ok(body),
                        Ok(body) => api_error(status, &body, request_id, should_retry),
                        Err(err) => CallError::Transport(format!("reading the answer: {err}")),
                    }
                }
                Err(err) => CallError::Transport(err.to_string()),
            };
            let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            let retry = retryable(&failure) && attempt < self.shared.policy.max_attempts;
            if let CallError::Api { status, request_id, .. } = &failure {
                tracing::warn!(path = %request.path, status, %request_id, attempt, retry, "stripe request failed");
            } else {
                tracing::warn!(path = %request.path, error = %failure, attempt, retry, "stripe request failed");
            }
            Err(failure)
        };
        send.retry(self.shared.policy.backoff())
            .when(retryable)
            .notify(|_, _| crate::metrics::processor_retry("stripe"))
            .await
    }
}

/// Whether a failed request may be sent again with the same key.
fn retryable(failure: &CallError) -> bool {
    match failure {
        CallError::Transport(_) => true,
        CallError::Api { status: 409 | 429, .. } => true,
        CallError::Api { status, should_retry, .. } if *status >= 500 => *should_retry == Some(true),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
        let runs: Vec<Vec<Duration>> = (0..20).map(|_| policy.backoff().collect()).collect();
        for delays in &runs {
            assert_eq!(delays.len(), 9, "one wait between each two attempts");
            assert!(delays.iter().all(|d| *d <= policy.max_delay), "{delays:?}");
        }
        // The last waits are all capped at max_delay; full jitter spreads them below it.
        let last: std::collections::BTreeSet<Duration> = runs.iter().map(|d| d[8]).collect();
        assert!(last.len() > 1, "{last:?}");
    }

    #[test]
    fn only_saved_5xx_are_unknown_outcomes_to_reconcile() {
        assert!(!CallError::Transport("reset".into()).saved_failure());
        let api = |status, should_retry| CallError::Api {
            status,
            kind: "api_error".into(),
            code: String::new(),
            decline_code: None,
            message: String::new(),
            request_id: "req_1".into(),
            should_retry,
        };
        assert!(api(500, Some(false)).saved_failure());
        assert!(api(500, None).saved_failure());
        assert!(!api(500, Some(true)).saved_failure());
        assert!(!api(402, None).saved_failure());
    }
}
