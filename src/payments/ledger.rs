//! Carrying out ledger rows at the processor. A flow writes its rows PENDING in a
//! transaction (with the session's status change), then calls [`execute`] for each:
//! the processor request is keyed by the row's id (`<kind>:<row id>`), so a retry of
//! the mutation after a timeout or crash repeats the request with the same key and
//! gets the processor's first answer. The outcome is then recorded on the row, once.

use uuid::Uuid;

use crate::broker::Broker;
use crate::error::{ApiError, ApiResult};
use crate::models::{
    self, ChargeToken, Customer, Link, ParkingSession, Payment, PaymentKind, PaymentStatus, Settlement,
};
use crate::processor::{
    AuthorizeOutcome, AuthorizeRequest, CaptureRequest, IncrementOutcome, IncrementRequest, Platform, RefundRequest,
    RefundState, ReleaseRequest,
};

/// The app's cut of an amount, rounded down to whole minor units.
pub fn application_fee(platform_fee_bps: Option<i32>, amount: i64) -> Option<i64> {
    platform_fee_bps.filter(|bps| *bps > 0).map(|bps| amount * i64::from(bps) / 10_000)
}

/// What the processor needs to act on a session's money.
pub struct Context {
    /// The app's platform account (and its credentials).
    pub platform: Platform,
    /// The app's cut of each charge, in basis points.
    pub platform_fee_bps: Option<i32>,
    /// The operator's connected account at the processor.
    pub connected_account_id: String,
    /// The customer's id on the platform account.
    pub customer_ref: String,
}

impl Context {
    /// Reads the session's app, link and customer; CONFLICT while the link or the customer is not ready for payments.
    pub async fn load(broker: &Broker, session: &ParkingSession) -> ApiResult<Context> {
        let mut conn = broker.db().await?;
        let platform = models::App::find(&mut conn, session.app_id).await?.ok_or(ApiError::NotFound("app"))?;
        let link = Link::find(&mut conn, session.link_id).await?.ok_or(ApiError::NotFound("link"))?;
        let customer = Customer::find(&mut conn, session.customer_id).await?.ok_or(ApiError::NotFound("customer"))?;
        let (Some(account), Some(customer_ref)) = (link.connected_account_id, customer.processor_customer_id) else {
            return Err(ApiError::conflict("the session's link or customer is not ready for payments"));
        };
        Ok(Context {
            platform: super::parties::platform(broker, &platform)?,
            platform_fee_bps: platform.platform_fee_bps,
            connected_account_id: account,
            customer_ref,
        })
    }
}

/// The hold an AUTHORIZATION row placed, with its succeeded increments.
pub fn hold_total(ledger: &[Payment], authorization: &Payment) -> i64 {
    authorization.amount
        + ledger
            .iter()
            .filter(|p| {
                p.kind == PaymentKind::Increment
                    && p.status == PaymentStatus::Succeeded
                    && p.parent_id == Some(authorization.id)
            })
            .map(|p| p.amount)
            .sum::<i64>()
}

/// What a row's execution ended with, for the flow to act on.
pub enum Executed {
    /// The processor decided; the row has its outcome.
    Settled(Payment),
    /// The processor accepted the request and decides later (a refund in progress).
    Pending(Payment),
}

impl Executed {
    /// The row, whatever its state.
    pub fn row(&self) -> &Payment {
        match self {
            Executed::Settled(row) | Executed::Pending(row) => row,
        }
    }
}

/// Records a PENDING row's outcome; when a concurrent attempt recorded it first, returns that row.
pub async fn settle(broker: &Broker, id: Uuid, settlement: Settlement<'_>) -> ApiResult<Payment> {
    let mut conn = broker.db().await?;
    match Payment::settle(&mut conn, id, settlement).await? {
        Some(row) => Ok(row),
        // A concurrent attempt recorded the outcome first.
        None => Payment::find(&mut conn, id).await?.ok_or(ApiError::NotFound("payment")),
    }
}

fn failed<'a>(code: &'a str, decline_code: Option<&'a str>, message: &'a str) -> Settlement<'a> {
    Settlement::Failed { code, decline_code, message }
}

/// Carries out one PENDING row. `token_key` is the idempotency key of the token an
/// AUTHORIZATION pays with (the session's charge token for the first hold).
pub async fn execute(broker: &Broker, ctx: &Context, row: &Payment, token_key: Option<&str>) -> ApiResult<Executed> {
    if row.status != PaymentStatus::Pending {
        return Ok(Executed::Settled(row.clone()));
    }
    let account = ctx.connected_account_id.as_str();
    let platform = &ctx.platform;
    let parent = match row.parent_id {
        Some(id) => {
            let mut conn = broker.db().await?;
            Some(Payment::find(&mut conn, id).await?.ok_or(ApiError::NotFound("payment"))?)
        }
        None => None,
    };
    let parent_ref = parent.as_ref().and_then(|p| p.processor_reference.clone());
    match row.kind {
        PaymentKind::Authorization => {
            let default_key = format!("hold-token:{}", row.id);
            let token_key = token_key.unwrap_or(&default_key);
            let token =
                broker.processor.issue_charge_token(platform, &ctx.customer_ref, account, token_key).await?.token;
            let outcome = broker
                .processor
                .authorize(&AuthorizeRequest {
                    platform,
                    connected_account_id: account,
                    token: &token,
                    amount: row.amount,
                    currency: &row.currency,
                    application_fee: application_fee(ctx.platform_fee_bps, row.amount),
                    reference: &row.id.to_string(),
                    idempotency_key: &format!("authorization:{}", row.id),
                })
                .await?;
            let settled = match &outcome {
                AuthorizeOutcome::Authorized { authorization_id, .. } => {
                    settle(
                        broker,
                        row.id,
                        Settlement::Succeeded { processor_reference: Some(authorization_id), application_fee: None },
                    )
                    .await?
                }
                AuthorizeOutcome::Declined { code, decline_code, message } => {
                    settle(broker, row.id, failed(code, decline_code.as_deref(), message)).await?
                }
            };
            Ok(Executed::Settled(settled))
        }
        PaymentKind::Increment => {
            let (Some(parent), Some(parent_ref)) = (&parent, &parent_ref) else {
                return Err(ApiError::internal("increment without a placed hold"));
            };
            let mut conn = broker.db().await?;
            let ledger = Payment::for_session(&mut conn, row.session_id).await?;
            drop(conn);
            let total = hold_total(&ledger, parent) + row.amount;
            let outcome = broker
                .processor
                .increment_authorization(&IncrementRequest {
                    platform,
                    connected_account_id: account,
                    authorization_id: parent_ref,
                    total,
                    application_fee: application_fee(ctx.platform_fee_bps, total),
                    idempotency_key: &format!("increment:{}", row.id),
                })
                .await;
            let settled = match outcome {
                Ok(IncrementOutcome::Incremented) => {
                    settle(
                        broker,
                        row.id,
                        Settlement::Succeeded { processor_reference: Some(parent_ref), application_fee: None },
                    )
                    .await?
                }
                Ok(IncrementOutcome::Declined { code, decline_code, message }) => {
                    settle(broker, row.id, failed(&code, decline_code.as_deref(), &message)).await?
                }
                Err(crate::processor::ProcessorError::InvalidRequest(message)) => {
                    settle(broker, row.id, failed("incremental_authorization_unavailable", None, &message)).await?
                }
                Err(err) => return Err(err.into()),
            };
            Ok(Executed::Settled(settled))
        }
        PaymentKind::Capture => {
            let Some(parent_ref) = &parent_ref else {
                return Err(ApiError::internal("capture without a placed hold"));
            };
            let fee = application_fee(ctx.platform_fee_bps, row.amount);
            let captured = broker
                .processor
                .capture(&CaptureRequest {
                    platform,
                    connected_account_id: account,
                    authorization_id: parent_ref,
                    amount: row.amount,
                    application_fee: fee,
                    idempotency_key: &format!("capture:{}", row.id),
                })
                .await?;
            let settled = settle(
                broker,
                row.id,
                Settlement::Succeeded { processor_reference: Some(&captured.charge_id), application_fee: fee },
            )
            .await?;
            Ok(Executed::Settled(settled))
        }
        PaymentKind::Release => {
            let Some(parent_ref) = &parent_ref else {
                return Err(ApiError::internal("release without a placed hold"));
            };
            let mut conn = broker.db().await?;
            let ledger = Payment::for_session(&mut conn, row.session_id).await?;
            drop(conn);
            // A partial capture releases the rest of its hold at the processor itself.
            let captured_from_parent =
                ledger.iter().any(|p| p.kind == PaymentKind::Capture && p.parent_id == row.parent_id);
            if !captured_from_parent {
                broker
                    .processor
                    .release(&ReleaseRequest {
                        platform,
                        connected_account_id: account,
                        authorization_id: parent_ref,
                        idempotency_key: &format!("release:{}", row.id),
                    })
                    .await?;
            }
            let settled = settle(
                broker,
                row.id,
                Settlement::Succeeded { processor_reference: Some(parent_ref), application_fee: None },
            )
            .await?;
            Ok(Executed::Settled(settled))
        }
        PaymentKind::Refund => {
            let Some(parent_ref) = &parent_ref else {
                return Err(ApiError::internal("refund of nothing collected"));
            };
            let mut conn = broker.db().await?;
            let reason = match row.refund_id {
                Some(id) => models::Refund::find(&mut conn, id).await?.map(|r| r.reason),
                None => None,
            };
            drop(conn);
            let outcome = broker
                .processor
                .refund(&RefundRequest {
                    platform,
                    connected_account_id: account,
                    payment_reference: parent_ref,
                    amount: row.amount,
                    reason: reason.and_then(stripe_reason),
                    idempotency_key: &format!("refund:{}", row.id),
                })
                .await?;
            // The app's fee goes back in proportion to the refunded share.
            let fee = match (parent.as_ref().and_then(|p| p.application_fee), parent.as_ref()) {
                (Some(fee), Some(parent)) => Some(fee * row.amount / parent.amount),
                _ => None,
            };
            match outcome.state {
                RefundState::Succeeded => Ok(Executed::Settled(
                    settle(
                        broker,
                        row.id,
                        Settlement::Succeeded { processor_reference: Some(&outcome.refund_id), application_fee: fee },
                    )
                    .await?,
                )),
                RefundState::Failed { message } => {
                    let mut conn = broker.db().await?;
                    Payment::set_reference(&mut conn, row.id, &outcome.refund_id).await?;
                    drop(conn);
                    Ok(Executed::Settled(settle(broker, row.id, failed("refund_failed", None, &message)).await?))
                }
                RefundState::Pending => {
                    let mut conn = broker.db().await?;
                    Payment::set_reference(&mut conn, row.id, &outcome.refund_id).await?;
                    let row = Payment::find(&mut conn, row.id).await?.ok_or(ApiError::NotFound("payment"))?;
                    Ok(Executed::Pending(row))
                }
            }
        }
        PaymentKind::Charge | PaymentKind::Dispute => Ok(Executed::Pending(row.clone())),
    }
}

/// Stripe's refund reason for ours (`OTHER` sends none).
fn stripe_reason(reason: models::RefundReason) -> Option<&'static str> {
    match reason {
        models::RefundReason::Duplicate => Some("duplicate"),
        models::RefundReason::RequestedByCustomer => Some("requested_by_customer"),
        models::RefundReason::Fraudulent => Some("fraudulent"),
        models::RefundReason::Other => None,
    }
}

/// The idempotency key of the token that pays for a session's first hold: its charge
/// token row's, as for every charge token.
pub async fn first_hold_token_key(broker: &Broker, session_id: Uuid) -> ApiResult<Option<String>> {
    let mut conn = broker.db().await?;
    let token = ChargeToken::outstanding_for_session(&mut conn, session_id).await?;
    Ok(token.map(|t| format!("charge-token:{}", t.id)))
}
