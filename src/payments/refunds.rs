//! Refunds: money of a charged session goes back to the card, in one or more parts.
//! The parts never add up to more than was captured: the service checks under the
//! session's row lock, and the database refuses it anyway (a CHECK on the ledger
//! totals the payments trigger maintains).

use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::event_log::{self, Event, EventType};
use super::ledger::{self, Context, Executed};
use super::policy;
use crate::auth::Principal;
use crate::broker::Broker;
use crate::domain::money::Money;
use crate::error::{ApiError, ApiResult};
use crate::models::{
    Link, NewPayment, ParkingSession, Payment, PaymentKind, PaymentStatus, Refund, RefundReason, SessionStatus,
    Settlement,
};
use crate::processor::RefundState;

/// What `refundSession` asks for.
pub struct RefundInput<'a> {
    /// The session to refund.
    pub session_id: Uuid,
    /// `None`: everything not yet refunded.
    pub amount: Option<Money>,
    /// Why the money goes back.
    pub reason: RefundReason,
    /// The caller's key for this request: a retry with it gets the original refund.
    pub idempotency_key: &'a str,
}

/// `refundSession`. Same key, same refund; same key with other input: CONFLICT.
pub async fn refund(
    broker: &Broker,
    principal: &Principal,
    input: RefundInput<'_>,
) -> ApiResult<(ParkingSession, Refund)> {
    let key = super::required_text("idempotencyKey", input.idempotency_key, 255)?;
    if !broker.processor.supports_holds() {
        return Err(ApiError::bad_input("refunds are not available with the configured processor"));
    }
    let mut conn = broker.db().await?;
    let (session, refund, rows) = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, input.session_id)
                .await?
                .filter(|s| policy::may_see_session(principal, s))
                .ok_or(ApiError::NotFound("parking session"))?;
            if policy::refund_needs_link_permission(principal) {
                let link = Link::find(conn, session.link_id).await?.ok_or(ApiError::NotFound("link"))?;
                if !link.app_may_refund {
                    return Err(ApiError::forbidden("the link does not allow the app to refund; ask the operator"));
                }
            }
            let ledger = Payment::for_session(conn, session.id).await?;
            if let Some(existing) = Refund::find_by_key(conn, session.id, key).await? {
                let same_amount = input
                    .amount
                    .as_ref()
                    .is_none_or(|m| m.amount == existing.amount && m.currency == existing.currency);
                if !same_amount || existing.reason != input.reason {
                    return Err(ApiError::conflict("idempotencyKey was already used for a different refund"));
                }
                let rows = ledger.into_iter().filter(|p| p.refund_id == Some(existing.id)).collect();
                return Ok((session, existing, rows));
            }
            if !matches!(session.status, SessionStatus::Charged | SessionStatus::PartiallyRefunded) {
                return Err(ApiError::conflict(match session.status {
                    SessionStatus::Refunded => "the session is fully refunded",
                    SessionStatus::Disputed => "the session's charge is disputed; it cannot be refunded",
                    _ => "only a charged session can be refunded",
                }));
            }
            let currency = session.money_currency().unwrap_or_default().to_owned();
            let left = session.captured_amount - session.refunded_amount - session.refund_pending_amount;
            let amount = match &input.amount {
                Some(money) if money.currency != currency => {
                    return Err(ApiError::bad_input(format!(
                        "the refund must be in the session's currency ({currency})"
                    )));
                }
                Some(money) => money.amount,
                None => left,
            };
            if left <= 0 {
                return Err(ApiError::conflict("nothing is left to refund"));
            }
            if amount > left {
                return Err(ApiError::conflict(format!(
                    "the refund exceeds what is left to refund ({left} {currency})"
                )));
            }
            let refund = Refund::insert(conn, session.id, amount, &currency, input.reason, key).await?;
            let mut remaining = amount;
            let mut rows = Vec::new();
            for collected in ledger.iter().filter(|p| {
                matches!(p.kind, PaymentKind::Capture | PaymentKind::Charge) && p.status == PaymentStatus::Succeeded
            }) {
                let taken: i64 = ledger
                    .iter()
                    .filter(|p| {
                        p.kind == PaymentKind::Refund
                            && p.parent_id == Some(collected.id)
                            && p.status != PaymentStatus::Failed
                    })
                    .map(|p| p.amount)
                    .sum();
                let part = remaining.min(collected.amount - taken);
                if part <= 0 {
                    continue;
                }
                remaining -= part;
                let mut row = NewPayment::pending(session.id, PaymentKind::Refund, part, &currency);
                row.parent_id = Some(collected.id);
                row.refund_id = Some(refund.id);
                rows.push(row.insert(conn).await?);
                if remaining == 0 {
                    break;
                }
            }
            if remaining > 0 {
                return Err(ApiError::internal("refundable parts do not add up to the session's totals"));
            }
            Ok((session, refund, rows))
        })
        .await?;
    drop(conn);
    let pending: Vec<&Payment> =
        rows.iter().filter(|p| p.status == PaymentStatus::Pending && p.processor_reference.is_none()).collect();
    if !pending.is_empty() {
        let ctx = Context::load(broker, &session).await?;
        for row in pending {
            if let Executed::Settled(row) = ledger::execute(broker, &ctx, row, None).await? {
                tracing::info!(session_id = %session.id, refund_id = %refund.id, payment_id = %row.id, status = row.status.as_str(), "refund part settled");
            }
        }
    }
    let (session, refund) = record_outcome(broker, session.id, refund.id).await?;
    Ok((session, refund))
}

/// Brings a refund's status and its session's status in line with its ledger rows.
pub async fn record_outcome(broker: &Broker, session_id: Uuid, refund_id: Uuid) -> ApiResult<(ParkingSession, Refund)> {
    let mut conn = broker.db().await?;
    let (session, refund) = conn.transaction(async |conn| record_outcome_in(conn, session_id, refund_id).await).await?;
    event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
    Ok((session, refund))
}

/// A refund the processor decided later (a webhook): settles its ledger row, then its
/// refund and session, in the caller's transaction. The session as it stands after, or
/// `None` when curbpay does not know the refund.
pub async fn settle_from_processor(
    conn: &mut AsyncPgConnection,
    processor_refund_id: &str,
    state: &RefundState,
) -> ApiResult<Option<ParkingSession>> {
    let Some(row) = Payment::find_by_reference(conn, PaymentKind::Refund, processor_refund_id).await? else {
        return Ok(None);
    };
    let settlement = match state {
        RefundState::Pending => return Ok(ParkingSession::find(conn, row.session_id).await?),
        RefundState::Succeeded => Settlement::Succeeded { processor_reference: None, application_fee: None },
        RefundState::Failed { message } => Settlement::Failed { code: "refund_failed", decline_code: None, message },
    };
    Payment::settle(conn, row.id, settlement).await?;
    if let Some(refund_id) = row.refund_id {
        return Ok(Some(record_outcome_in(conn, row.session_id, refund_id).await?.0));
    }
    Ok(ParkingSession::find(conn, row.session_id).await?)
}

async fn record_outcome_in(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    refund_id: Uuid,
) -> ApiResult<(ParkingSession, Refund)> {
    {
        let session = ParkingSession::lock(conn, session_id).await?.ok_or(ApiError::NotFound("parking session"))?;
        let refund = Refund::find(conn, refund_id).await?.ok_or(ApiError::NotFound("refund"))?;
        let rows: Vec<Payment> = Payment::for_session(conn, session_id)
            .await?
            .into_iter()
            .filter(|p| p.refund_id == Some(refund_id))
            .collect();
        let status = if rows.iter().any(|p| p.status == PaymentStatus::Failed) {
            PaymentStatus::Failed
        } else if rows.iter().all(|p| p.status == PaymentStatus::Succeeded) {
            PaymentStatus::Succeeded
        } else {
            PaymentStatus::Pending
        };
        let settled_now = refund.status != status && status == PaymentStatus::Succeeded;
        let refund = if refund.status != status { Refund::set_status(conn, refund.id, status).await? } else { refund };
        let session = match session.status {
            SessionStatus::Charged | SessionStatus::PartiallyRefunded | SessionStatus::Refunded => {
                let target = session.status_after_refunds();
                if target != session.status {
                    ParkingSession::set_status(conn, session.id, target).await?
                } else {
                    session
                }
            }
            _ => session,
        };
        if settled_now {
            // Once: only the transaction that moves the refund to SUCCEEDED gets here.
            let event = Event::session_with(EventType::SessionRefunded, &session, "refund", refund_view(&refund));
            event_log::emit(conn, event).await?;
        }
        Ok((session, refund))
    }
}

/// The `refund` object of a `session.refunded` event.
fn refund_view(refund: &Refund) -> serde_json::Value {
    serde_json::json!({
        "id": refund.id,
        "amount": { "amount": refund.amount, "currency": refund.currency },
        "reason": refund.reason.as_str(),
        "status": refund.status.as_str(),
        "createdAt": refund.created_at,
    })
}
