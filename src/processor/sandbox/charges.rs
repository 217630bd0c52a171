//! Charges in the sandbox: a token spent once, with the outcome its test card has; a
//! replayed key answers with the charge it made.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::{SandboxProcessor, cards, object_id, store};
use crate::processor::{ChargeOutcome, ChargeRequest, ProcessorError, ProcessorResult};

/// The outcome of the charge a key made, if any.
async fn charge_by_key(conn: &mut AsyncPgConnection, key: &str) -> ProcessorResult<Option<ChargeOutcome>> {
    let row = store::charge_by_key(conn, key).await?;
    Ok(row.map(|(charge_id, status, code, decline_code, message)| {
        if status == "succeeded" {
            ChargeOutcome::Succeeded { charge_id }
        } else {
            ChargeOutcome::Declined {
                code: code.unwrap_or_else(|| "card_declined".to_owned()),
                decline_code,
                message: message.unwrap_or_else(|| "Your card was declined.".to_owned()),
            }
        }
    }))
}

impl SandboxProcessor {
    pub(super) async fn sandbox_charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome> {
        let mut conn = self.conn().await?;
        if let Some(outcome) = charge_by_key(&mut conn, request.idempotency_key).await? {
            return Ok(outcome);
        }
        let token = store::token(&mut conn, request.token, request.connected_account_id).await?;
        let Some(token) = token else {
            return Err(ProcessorError::InvalidRequest("no such token on the operator's account".to_owned()));
        };
        if token.platform_account_id != request.platform.account_id {
            return Err(ProcessorError::InvalidRequest("no such token on the operator's account".to_owned()));
        }
        if token.used_at.is_some() {
            // Spent: by a concurrent request with this key that has just committed (its
            // outcome is the answer), or by another charge.
            return match charge_by_key(&mut conn, request.idempotency_key).await? {
                Some(outcome) => Ok(outcome),
                None => Err(ProcessorError::InvalidRequest("a token can be used only once".to_owned())),
            };
        }
        if token.expires_at <= Utc::now() {
            return Err(ProcessorError::InvalidRequest("the token has expired".to_owned()));
        }
        let test_token = store::customer_test_token(&mut conn, &token.customer_id).await?;
        let decline = cards::decline_of(&test_token);
        let request = request.clone();
        let key = request.idempotency_key.to_owned();
        let recorded = conn
            .transaction(async move |conn| {
                let id = object_id("ch");
                let currency = request.currency.to_ascii_lowercase();
                let charge = store::NewCharge {
                    id: &id,
                    connected_account_id: request.connected_account_id,
                    token_id: &token.id,
                    idempotency_key: request.idempotency_key,
                    amount: request.amount,
                    currency: &currency,
                    status: if decline.is_some() { "failed" } else { "succeeded" },
                    failure_code: decline.map(|d| d.code),
                    decline_code: decline.and_then(|d| d.decline_code),
                    failure_message: decline.map(|d| d.message),
                };
                let inserted = store::insert_charge(conn, &charge).await?;
                if inserted == 1 {
                    store::spend_token(conn, &token.id).await?;
                }
                Ok::<_, diesel::result::Error>(inserted == 1)
            })
            .await?;
        // Lost a race: a concurrent request with the same key charged first (replay its
        // outcome), or another key already spent the token.
        match charge_by_key(&mut conn, &key).await? {
            Some(outcome) => Ok(outcome),
            None if !recorded => Err(ProcessorError::InvalidRequest("a token can be used only once".to_owned())),
            None => Err(ProcessorError::Unavailable("sandbox charge vanished after commit".to_owned())),
        }
    }
}
