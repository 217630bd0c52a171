//! The sandbox's holds and refunds: PaymentIntents with `capture_method=manual` as
//! Stripe models them, deterministic, with their state in Postgres.
//!
//! Every request is keyed: its reply is stored in `sandbox_replies` in the same
//! transaction as its effects, so a retry with the same key gets the first reply and
//! two concurrent requests with one key act once.
//!
//! Rules (documented in the README): Stripe's approving test tokens authorize, the
//! decline tokens refuse the hold; `tok_visa_debit` takes no incremental authorization;
//! a hold whose total would exceed [`CREDIT_LIMIT`] declines with `insufficient_funds`;
//! `tok_createDispute` captures and then has a dispute opened on it.

use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::{Deserialize, Serialize};

use super::store::{self, Hold};
use super::{SandboxProcessor, cards, object_id};
use crate::processor::{
    AuthorizeOutcome, AuthorizeRequest, CaptureRequest, Captured, IncrementOutcome, IncrementRequest, OpenedDispute,
    ProcessorError, ProcessorResult, RefundOutcome, RefundRequest, RefundState, ReleaseRequest,
};

/// A card's credit in the sandbox: a hold above it (at start or extended) declines.
pub const CREDIT_LIMIT: i64 = 1_000_000;
/// How long an uncaptured sandbox hold lasts (Stripe: 7 days for online card payments).
const HOLD_LIFETIME_DAYS: i64 = 7;

/// What a keyed request answered, stored for replays.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Reply {
    Authorized { id: String, expires_at: DateTime<Utc>, incremental: bool },
    Declined { code: String, decline_code: Option<String>, message: String },
    Incremented,
    Captured { charge_id: String },
    Released,
    Refunded { id: String },
}

/// Why a keyed transaction did not commit.
enum TxError {
    /// A concurrent request with the same key committed first: replay its reply.
    LostRace,
    Processor(ProcessorError),
}

impl From<diesel::result::Error> for TxError {
    fn from(err: diesel::result::Error) -> Self {
        TxError::Processor(err.into())
    }
}

impl From<ProcessorError> for TxError {
    fn from(err: ProcessorError) -> Self {
        TxError::Processor(err)
    }
}

async fn stored(conn: &mut AsyncPgConnection, key: &str) -> ProcessorResult<Option<Reply>> {
    match store::reply(conn, key).await?.flatten() {
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ProcessorError::Unavailable(format!("sandbox reply unreadable: {e}"))),
        None => Ok(None),
    }
}

/// Stores the reply in the request's transaction; `LostRace` when another request with
/// the key committed first (the caller's transaction then rolls back).
async fn save_reply(conn: &mut AsyncPgConnection, key: &str, operation: &str, reply: &Reply) -> Result<(), TxError> {
    let text = serde_json::to_string(reply).map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
    let inserted = store::insert_reply(conn, key, operation, &text).await?;
    if inserted == 0 { Err(TxError::LostRace) } else { Ok(()) }
}

async fn finish(conn: &mut AsyncPgConnection, key: &str, result: Result<Reply, TxError>) -> ProcessorResult<Reply> {
    match result {
        Ok(reply) => Ok(reply),
        Err(TxError::Processor(err)) => Err(err),
        Err(TxError::LostRace) => {
            stored(conn, key).await?.ok_or_else(|| ProcessorError::Unavailable("sandbox reply vanished".to_owned()))
        }
    }
}

async fn lock_hold(conn: &mut AsyncPgConnection, account: &str, id: &str) -> Result<Hold, TxError> {
    store::lock_hold(conn, account, id)
        .await?
        .ok_or_else(|| TxError::Processor(ProcessorError::InvalidRequest("no such PaymentIntent".to_owned())))
}

/// Locks a hold that must still await capture (increments and captures need one).
async fn lock_capturable_hold(conn: &mut AsyncPgConnection, account: &str, id: &str) -> Result<Hold, TxError> {
    let hold = lock_hold(conn, account, id).await?;
    if hold.status != "requires_capture" {
        return Err(ProcessorError::InvalidRequest("the PaymentIntent is no longer awaiting capture".to_owned()).into());
    }
    Ok(hold)
}

fn unexpected(reply: Reply) -> ProcessorError {
    ProcessorError::Unavailable(format!("sandbox replayed an unexpected reply: {reply:?}"))
}

impl SandboxProcessor {
    pub(super) async fn sandbox_authorize(&self, req: &AuthorizeRequest<'_>) -> ProcessorResult<AuthorizeOutcome> {
        let mut conn = self.conn().await?;
        let key = req.idempotency_key;
        let reply = match stored(&mut conn, key).await? {
            Some(reply) => reply,
            None => {
                let result = conn
                    .transaction(async |conn| {
                        let token =
                            store::lock_token(conn, req.token, req.connected_account_id, &req.platform.account_id)
                                .await?;
                        let Some(store::TokenRow { id: token_id, customer_id, expires_at, used_at, .. }) = token else {
                            return Err(ProcessorError::InvalidRequest(
                                "no such token on the operator's account".to_owned(),
                            )
                            .into());
                        };
                        if used_at.is_some() {
                            return Err(
                                ProcessorError::InvalidRequest("a token can be used only once".to_owned()).into()
                            );
                        }
                        if expires_at <= Utc::now() {
                            return Err(ProcessorError::InvalidRequest("the token has expired".to_owned()).into());
                        }
                        let test_token = store::customer_test_token(conn, &customer_id).await?;
                        store::spend_token(conn, &token_id).await?;
                        let reply = if let Some(decline) = cards::decline_of(&test_token) {
                            Reply::Declined {
                                code: decline.code.to_owned(),
                                decline_code: decline.decline_code.map(str::to_owned),
                                message: decline.message.to_owned(),
                            }
                        } else if req.amount > CREDIT_LIMIT {
                            insufficient_funds()
                        } else {
                            let id = object_id("pi");
                            let expires_at = Utc::now() + Duration::days(HOLD_LIFETIME_DAYS);
                            let incremental = cards::supports_incremental(&test_token);
                            let currency = req.currency.to_ascii_lowercase();
                            let hold = store::NewHold {
                                id: &id,
                                connected_account_id: req.connected_account_id,
                                token_id: &token_id,
                                test_token: &test_token,
                                amount: req.amount,
                                currency: &currency,
                                application_fee: req.application_fee,
                                status: "requires_capture",
                                incremental,
                                expires_at,
                            };
                            store::insert_hold(conn, &hold).await?;
                            Reply::Authorized { id, expires_at, incremental }
                        };
                        save_reply(conn, key, "authorize", &reply).await?;
                        Ok(reply)
                    })
                    .await;
                finish(&mut conn, key, result).await?
            }
        };
        match reply {
            Reply::Authorized { id, expires_at, incremental } => {
                Ok(AuthorizeOutcome::Authorized { authorization_id: id, expires_at, incremental })
            }
            Reply::Declined { code, decline_code, message } => {
                Ok(AuthorizeOutcome::Declined { code, decline_code, message })
            }
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn sandbox_increment(&self, req: &IncrementRequest<'_>) -> ProcessorResult<IncrementOutcome> {
        let mut conn = self.conn().await?;
        let key = req.idempotency_key;
        let reply = match stored(&mut conn, key).await? {
            Some(reply) => reply,
            None => {
                let result = conn
                    .transaction(async |conn| {
                        let hold = lock_capturable_hold(conn, req.connected_account_id, req.authorization_id).await?;
                        if !hold.incremental {
                            return Err(ProcessorError::InvalidRequest(
                                "this card does not support incremental authorization".to_owned(),
                            )
                            .into());
                        }
                        if req.total <= hold.amount {
                            return Err(ProcessorError::InvalidRequest(
                                "the new amount must exceed the authorized amount".to_owned(),
                            )
                            .into());
                        }
                        let reply = if req.total > CREDIT_LIMIT {
                            insufficient_funds()
                        } else {
                            store::increment_hold(conn, &hold.id, req.total, req.application_fee).await?;
                            Reply::Incremented
                        };
                        save_reply(conn, key, "increment_authorization", &reply).await?;
                        Ok(reply)
                    })
                    .await;
                finish(&mut conn, key, result).await?
            }
        };
        match reply {
            Reply::Incremented => Ok(IncrementOutcome::Incremented),
            Reply::Declined { code, decline_code, message } => {
                Ok(IncrementOutcome::Declined { code, decline_code, message })
            }
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn sandbox_capture(&self, req: &CaptureRequest<'_>) -> ProcessorResult<Captured> {
        let mut conn = self.conn().await?;
        let key = req.idempotency_key;
        let reply = match stored(&mut conn, key).await? {
            Some(reply) => reply,
            None => {
                let result = conn
                    .transaction(async |conn| {
                        let hold = lock_capturable_hold(conn, req.connected_account_id, req.authorization_id).await?;
                        if req.amount <= 0 || req.amount > hold.amount {
                            return Err(ProcessorError::InvalidRequest(
                                "amount_to_capture exceeds the authorized amount".to_owned(),
                            )
                            .into());
                        }
                        store::capture_hold(conn, &hold.id, req.amount, req.application_fee).await?;
                        let reply = Reply::Captured { charge_id: hold.id };
                        save_reply(conn, key, "capture", &reply).await?;
                        Ok(reply)
                    })
                    .await;
                finish(&mut conn, key, result).await?
            }
        };
        match reply {
            Reply::Captured { charge_id } => Ok(Captured { charge_id }),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn sandbox_release(&self, req: &ReleaseRequest<'_>) -> ProcessorResult<()> {
        let mut conn = self.conn().await?;
        let key = req.idempotency_key;
        if stored(&mut conn, key).await?.is_some() {
            return Ok(());
        }
        let result = conn
            .transaction(async |conn| {
                let hold = lock_hold(conn, req.connected_account_id, req.authorization_id).await?;
                match hold.status.as_str() {
                    "requires_capture" => {
                        store::cancel_hold(conn, &hold.id).await?;
                    }
                    "canceled" => {}
                    _ => {
                        return Err(ProcessorError::InvalidRequest(
                            "a captured PaymentIntent cannot be canceled".to_owned(),
                        )
                        .into());
                    }
                }
                save_reply(conn, key, "cancel", &Reply::Released).await?;
                Ok(Reply::Released)
            })
            .await;
        finish(&mut conn, key, result).await.map(|_| ())
    }

    pub(super) async fn sandbox_refund(&self, req: &RefundRequest<'_>) -> ProcessorResult<RefundOutcome> {
        let mut conn = self.conn().await?;
        let key = req.idempotency_key;
        let reply = match stored(&mut conn, key).await? {
            Some(reply) => reply,
            None => {
                let result = conn
                    .transaction(async |conn| {
                        let (collected, fee) = collected(conn, req.connected_account_id, req.payment_reference).await?;
                        let refunded = store::refunded(conn, req.payment_reference).await?;
                        if req.amount <= 0 || refunded.iter().sum::<i64>() + req.amount > collected {
                            return Err(ProcessorError::InvalidRequest(
                                "the refund exceeds what is left of the charge".to_owned(),
                            )
                            .into());
                        }
                        let id = object_id("re");
                        let fee_refunded = fee.map_or(0, |fee| fee * req.amount / collected);
                        store::insert_refund(conn, &id, req.payment_reference, req.amount, fee_refunded).await?;
                        let reply = Reply::Refunded { id };
                        save_reply(conn, key, "refund", &reply).await?;
                        Ok(reply)
                    })
                    .await;
                finish(&mut conn, key, result).await?
            }
        };
        match reply {
            Reply::Refunded { id } => Ok(RefundOutcome { refund_id: id, state: RefundState::Succeeded }),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn sandbox_disputes_for(&self, payment_reference: &str) -> ProcessorResult<Vec<OpenedDispute>> {
        let mut conn = self.conn().await?;
        let found = store::collected_payment(&mut conn, payment_reference).await?;
        Ok(found
            .filter(|(test_token, _, _)| cards::opens_dispute(test_token))
            .map(|(_, amount, currency)| OpenedDispute {
                // One dispute per charge, so its id follows from the charge's.
                dispute_id: format!("dp_{}", payment_reference.split_once('_').map_or(payment_reference, |(_, r)| r)),
                payment_reference: payment_reference.to_owned(),
                amount,
                currency: currency.to_ascii_uppercase(),
                reason: "fraudulent".to_owned(),
            })
            .into_iter()
            .collect())
    }
}

fn insufficient_funds() -> Reply {
    Reply::Declined {
        code: "card_declined".to_owned(),
        decline_code: Some("insufficient_funds".to_owned()),
        message: "Your card has insufficient funds.".to_owned(),
    }
}

/// What a capture or charge collected, and the app's fee on it.
async fn collected(
    conn: &mut AsyncPgConnection,
    account: &str,
    reference: &str,
) -> Result<(i64, Option<i64>), TxError> {
    if let Some(found) = store::lock_captured_hold(conn, account, reference).await? {
        return Ok(found);
    }
    let charge = store::lock_succeeded_charge(conn, account, reference).await?;
    charge
        .map(|amount| (amount, None))
        .ok_or_else(|| TxError::Processor(ProcessorError::InvalidRequest("no such charge".to_owned())))
}
