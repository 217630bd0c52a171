//! Charge tokens in the sandbox: single-use, on the operator's connected account, minted
//! from the platform's customer; a replayed key answers with its token.

use chrono::Utc;

use super::{SandboxProcessor, object_id, store};
use crate::processor::{IssuedToken, Platform, ProcessorError, ProcessorResult};

impl SandboxProcessor {
    pub(super) async fn sandbox_issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<IssuedToken> {
        let platform_account_id = platform.account_id.as_str();
        let mut conn = self.conn().await?;
        // The replay and both checks in one statement: a replayed key answers with its
        // token, as Stripe's idempotency does, whatever the checks say now.
        let (replay_token, replay_expires_at, customer_known, connected) =
            store::token_checks(&mut conn, idempotency_key, platform_account_id, customer_id, connected_account_id)
                .await?;
        if let (Some(token), Some(expires_at)) = (replay_token, replay_expires_at) {
            return Ok(IssuedToken { token, expires_at });
        }
        if !customer_known {
            return Err(ProcessorError::Failed("no such customer on the app's platform account".to_owned()));
        }
        if !connected {
            return Err(ProcessorError::Failed(
                "the operator's account is not connected to the app's platform".to_owned(),
            ));
        }
        let id = object_id("tok");
        let new = store::NewToken {
            id: &id,
            platform_account_id,
            connected_account_id,
            customer_id,
            idempotency_key,
            expires_at: Utc::now() + self.token_ttl,
        };
        // None: a concurrent request with the same key inserted first; its token stands.
        let (token, expires_at) = match store::insert_token(&mut conn, &new).await? {
            Some(row) => row,
            None => store::token_by_key(&mut conn, idempotency_key).await?,
        };
        Ok(IssuedToken { token, expires_at })
    }
}
