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
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use super::{SandboxProcessor, cards, object_id};
use crate::db::schema::{
    sandbox_authorizations, sandbox_charges, sandbox_customers, sandbox_refunds, sandbox_replies, sandbox_tokens,
};
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
    let reply: Option<Option<String>> =
        sandbox_replies::table.find(key).select(sandbox_replies::reply).first(conn).await.optional()?;
    match reply.flatten() {
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ProcessorError::Unavailable(format!("sandbox reply unreadable: {e}"))),
        None => Ok(None),
    }
}

/// Stores the reply in the request's transaction; `LostRace` when another request with
/// the key committed first (the caller's transaction then rolls back).
async fn store(conn: &mut AsyncPgConnection, key: &str, operation: &str, reply: &Reply) -> Result<(), TxError> {
    let text = serde_json::to_string(reply).map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
    let inserted = diesel::insert_into(sandbox_replies::table)
        .values((
            sandbox_replies::idempotency_key.eq(key),
            sandbox_replies::operation.eq(operation),
            sandbox_replies::reply.eq(text),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
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

/// A sandbox token: id, customer, expiry, when it was used.
type TokenRow = (String, String, DateTime<Utc>, Option<DateTime<Utc>>);

#[derive(Queryable)]
struct Hold {
    id: String,
    amount: i64,
    status: String,
    incremental: bool,
}

async fn lock_hold(conn: &mut AsyncPgConnection, account: &str, id: &str) -> Result<Hold, TxError> {
    sandbox_authorizations::table
        .find(id)
        .filter(sandbox_authorizations::connected_account_id.eq(account))
        .select((
            sandbox_authorizations::id,
            sandbox_authorizations::amount,
            sandbox_authorizations::status,
            sandbox_authorizations::incremental,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()?
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
                        let token: Option<TokenRow> = sandbox_tokens::table
                            .find(req.token)
                            .filter(sandbox_tokens::connected_account_id.eq(req.connected_account_id))
                            .filter(sandbox_tokens::platform_account_id.eq(&req.platform.account_id))
                            .select((
                                sandbox_tokens::id,
                                sandbox_tokens::customer_id,
                                sandbox_tokens::expires_at,
                                sandbox_tokens::used_at,
                            ))
                            .for_update()
                            .first(conn)
                            .await
                            .optional()?;
                        let Some((token_id, customer_id, expires_at, used_at)) = token else {
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
                        let test_token: String = sandbox_customers::table
                            .find(&customer_id)
                            .select(sandbox_customers::test_token)
                            .first(conn)
                            .await?;
                        diesel::update(sandbox_tokens::table.find(&token_id))
                            .set(sandbox_tokens::used_at.eq(diesel::dsl::now))
                            .execute(conn)
                            .await?;
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
                            diesel::insert_into(sandbox_authorizations::table)
                                .values((
                                    sandbox_authorizations::id.eq(&id),
                                    sandbox_authorizations::connected_account_id.eq(req.connected_account_id),
                                    sandbox_authorizations::token_id.eq(&token_id),
                                    sandbox_authorizations::test_token.eq(&test_token),
                                    sandbox_authorizations::amount.eq(req.amount),
                                    sandbox_authorizations::currency.eq(req.currency.to_ascii_lowercase()),
                                    sandbox_authorizations::application_fee.eq(req.application_fee),
                                    sandbox_authorizations::status.eq("requires_capture"),
                                    sandbox_authorizations::incremental.eq(incremental),
                                    sandbox_authorizations::expires_at.eq(expires_at),
                                ))
                                .execute(conn)
                                .await?;
                            Reply::Authorized { id, expires_at, incremental }
                        };
                        store(conn, key, "authorize", &reply).await?;
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
                            diesel::update(sandbox_authorizations::table.find(&hold.id))
                                .set((
                                    sandbox_authorizations::amount.eq(req.total),
                                    sandbox_authorizations::application_fee.eq(req.application_fee),
                                ))
                                .execute(conn)
                                .await?;
                            Reply::Incremented
                        };
                        store(conn, key, "increment_authorization", &reply).await?;
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
                        diesel::update(sandbox_authorizations::table.find(&hold.id))
                            .set((
                                sandbox_authorizations::status.eq("succeeded"),
                                sandbox_authorizations::amount_captured.eq(req.amount),
                                sandbox_authorizations::application_fee.eq(req.application_fee),
                            ))
                            .execute(conn)
                            .await?;
                        let reply = Reply::Captured { charge_id: hold.id };
                        store(conn, key, "capture", &reply).await?;
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
                        diesel::update(sandbox_authorizations::table.find(&hold.id))
                            .set(sandbox_authorizations::status.eq("canceled"))
                            .execute(conn)
                            .await?;
                    }
                    "canceled" => {}
                    _ => {
                        return Err(ProcessorError::InvalidRequest(
                            "a captured PaymentIntent cannot be canceled".to_owned(),
                        )
                        .into());
                    }
                }
                store(conn, key, "cancel", &Reply::Released).await?;
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
                        let refunded: Vec<i64> = sandbox_refunds::table
                            .filter(sandbox_refunds::payment_ref.eq(req.payment_reference))
                            .select(sandbox_refunds::amount)
                            .load(conn)
                            .await?;
                        if req.amount <= 0 || refunded.iter().sum::<i64>() + req.amount > collected {
                            return Err(ProcessorError::InvalidRequest(
                                "the refund exceeds what is left of the charge".to_owned(),
                            )
                            .into());
                        }
                        let id = object_id("re");
                        diesel::insert_into(sandbox_refunds::table)
                            .values((
                                sandbox_refunds::id.eq(&id),
                                sandbox_refunds::payment_ref.eq(req.payment_reference),
                                sandbox_refunds::amount.eq(req.amount),
                                sandbox_refunds::application_fee_refunded
                                    .eq(fee.map_or(0, |fee| fee * req.amount / collected)),
                            ))
                            .execute(conn)
                            .await?;
                        let reply = Reply::Refunded { id };
                        store(conn, key, "refund", &reply).await?;
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
        let from_hold: Option<(String, i64, String)> = sandbox_authorizations::table
            .find(payment_reference)
            .filter(sandbox_authorizations::status.eq("succeeded"))
            .select((
                sandbox_authorizations::test_token,
                sandbox_authorizations::amount_captured,
                sandbox_authorizations::currency,
            ))
            .first(&mut conn)
            .await
            .optional()?;
        let found = match from_hold {
            Some(found) => Some(found),
            None => sandbox_charges::table
                .inner_join(sandbox_tokens::table.inner_join(sandbox_customers::table))
                .filter(sandbox_charges::id.eq(payment_reference))
                .filter(sandbox_charges::status.eq("succeeded"))
                .select((sandbox_customers::test_token, sandbox_charges::amount, sandbox_charges::currency))
                .first(&mut conn)
                .await
                .optional()?,
        };
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
    let hold: Option<(i64, Option<i64>)> = sandbox_authorizations::table
        .find(reference)
        .filter(sandbox_authorizations::connected_account_id.eq(account))
        .filter(sandbox_authorizations::status.eq("succeeded"))
        .select((sandbox_authorizations::amount_captured, sandbox_authorizations::application_fee))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    if let Some(found) = hold {
        return Ok(found);
    }
    let charge: Option<i64> = sandbox_charges::table
        .find(reference)
        .filter(sandbox_charges::connected_account_id.eq(account))
        .filter(sandbox_charges::status.eq("succeeded"))
        .select(sandbox_charges::amount)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    charge
        .map(|amount| (amount, None))
        .ok_or_else(|| TxError::Processor(ProcessorError::InvalidRequest("no such charge".to_owned())))
}
