//! The attempt behind each idempotency key, and the one recovery every keyed Stripe
//! request shares: when Stripe saved a 500 for the key, look the object up, and only when
//! the request truly did not take effect send it again under the next attempt.

use std::future::Future;

use super::StripeProcessor;
use super::client::CallError;
use super::store;
use crate::processor::{ProcessorError, ProcessorResult};

/// Why a keyed request failed.
pub(super) enum KeyedError {
    /// Stripe refused the request outright (not a saved failure), on its first send.
    Refused(CallError),
    /// The request sent again under the next attempt failed as well.
    Resent(CallError),
    /// The attempt store or the reconciliation failed.
    Failed(ProcessorError),
}

impl From<ProcessorError> for KeyedError {
    fn from(err: ProcessorError) -> Self {
        KeyedError::Failed(err)
    }
}

impl From<KeyedError> for ProcessorError {
    fn from(err: KeyedError) -> Self {
        match err {
            KeyedError::Refused(err) | KeyedError::Resent(err) => err.into(),
            KeyedError::Failed(err) => err,
        }
    }
}

fn unavailable(err: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::Unavailable(err.to_string())
}

impl StripeProcessor {
    /// The Idempotency-Key for `base`'s current attempt.
    async fn key(&self, base: &str) -> ProcessorResult<String> {
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let attempt = store::attempt(&mut conn, base).await.map_err(unavailable)?;
        Ok(format!("{base}:a{}", attempt.unwrap_or(1)))
    }

    /// Stripe saved an unknown outcome for the current key and the object does not
    /// exist: the next request for `base` uses a new key.
    async fn next_attempt(&self, base: &str) -> ProcessorResult<String> {
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let attempt = store::next_attempt(&mut conn, base).await.map_err(unavailable)?;
        tracing::warn!(scope = base, attempt, "stripe outcome unknown and nothing found; retrying under a new key");
        Ok(format!("{base}:a{attempt}"))
    }

    /// Sends a request keyed by `base` (its current attempt). On a saved 500, awaits
    /// `reconcile`, which says what the request did if it took effect after all; when it
    /// did not, sends it again under the next attempt. `reconcile` runs only then.
    ///
    /// `send` takes the key by value, so the futures it returns borrow nothing of it and
    /// stay `Send` for the processor's futures.
    pub(super) async fn keyed<T, S, F, R>(&self, base: &str, send: S, reconcile: R) -> Result<T, KeyedError>
    where
        S: Fn(String) -> F,
        F: Future<Output = Result<T, CallError>>,
        R: Future<Output = ProcessorResult<Option<T>>>,
    {
        let key = self.key(base).await?;
        match send(key).await {
            Ok(done) => Ok(done),
            Err(err) if err.saved_failure() => match reconcile.await? {
                Some(done) => Ok(done),
                None => {
                    let key = self.next_attempt(base).await?;
                    send(key).await.map_err(KeyedError::Resent)
                }
            },
            Err(err) => Err(KeyedError::Refused(err)),
        }
    }
}
