//! Disputes: a cardholder contests a session's capture or charge. The session becomes
//! DISPUTED with a DISPUTE ledger row (PENDING while open); when the dispute closes the
//! row is SUCCEEDED (the cardholder won: the money went back) or FAILED (decided for
//! the operator, who keeps it), and a won dispute returns the session to its status
//! before.

use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::event_log::{self, Event, EventType};
use super::ledger::Context;
use crate::broker::Broker;
use crate::error::{ApiError, ApiResult};
use crate::models::{NewPayment, ParkingSession, Payment, PaymentKind, SessionStatus, Settlement};
use crate::processor::OpenedDispute;

/// After a capture or charge: disputes the processor reports at once (the sandbox's
/// `tok_createDispute`).
pub async fn check_after_collection(
    broker: &Broker,
    ctx: &Context,
    session: ParkingSession,
) -> ApiResult<ParkingSession> {
    let Some(reference) = session.processor_charge_id.clone() else {
        return Ok(session);
    };
    let disputes = broker.processor.disputes_for(&ctx.platform, &reference).await?;
    let mut session = session;
    for dispute in disputes {
        if let Some(updated) = open(broker, &dispute).await? {
            session = updated;
        }
    }
    Ok(session)
}

/// Records an opened dispute on the session whose capture or charge it names; `None`
/// when no session of curbpay's has that charge. Recording it twice changes nothing.
pub async fn open(broker: &Broker, dispute: &OpenedDispute) -> ApiResult<Option<ParkingSession>> {
    let mut conn = broker.db().await?;
    let session = conn.transaction(async |conn| open_in(conn, dispute).await).await?;
    if let Some(session) = &session {
        event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
    }
    Ok(session)
}

/// `open` inside the caller's transaction (a webhook's, with its dedupe row).
pub async fn open_in(conn: &mut AsyncPgConnection, dispute: &OpenedDispute) -> ApiResult<Option<ParkingSession>> {
    {
        let Some(collection) = Payment::find_collection(conn, &dispute.payment_reference).await? else {
            return Ok(None);
        };
        let session = ParkingSession::lock(conn, collection.session_id).await?.ok_or(ApiError::NotFound("session"))?;
        if Payment::find_by_reference(conn, PaymentKind::Dispute, &dispute.dispute_id).await?.is_some() {
            return Ok(Some(session));
        }
        let mut row = NewPayment::pending(session.id, PaymentKind::Dispute, dispute.amount, &collection.currency);
        row.parent_id = Some(collection.id);
        row.processor_reference = Some(&dispute.dispute_id);
        row.reason = Some(&dispute.reason);
        row.insert(conn).await?;
        let session = ParkingSession::set_status(conn, session.id, SessionStatus::Disputed).await?;
        let view = serde_json::json!({
            "id": dispute.dispute_id,
            "amount": { "amount": dispute.amount, "currency": collection.currency },
            "reason": dispute.reason,
        });
        event_log::emit(conn, Event::session_with(EventType::SessionDisputed, &session, "dispute", view)).await?;
        tracing::info!(session_id = %session.id, "dispute opened");
        Ok(Some(session))
    }
}

/// Records a dispute's outcome (`lost`: the cardholder won it), in the caller's transaction.
pub async fn close_in(conn: &mut AsyncPgConnection, dispute_id: &str, lost: bool) -> ApiResult<Option<ParkingSession>> {
    let Some(row) = Payment::find_by_reference(conn, PaymentKind::Dispute, dispute_id).await? else {
        return Ok(None);
    };
    let session = ParkingSession::lock(conn, row.session_id).await?.ok_or(ApiError::NotFound("session"))?;
    let settlement = if lost {
        Settlement::Succeeded { processor_reference: None, application_fee: None }
    } else {
        Settlement::Failed {
            code: "dispute_won",
            decline_code: None,
            message: "The dispute was decided for the operator.",
        }
    };
    if Payment::settle(conn, row.id, settlement).await?.is_none() {
        return Ok(Some(session));
    }
    let session = if lost || session.status != SessionStatus::Disputed {
        session
    } else {
        ParkingSession::set_status(conn, session.id, session.status_after_refunds()).await?
    };
    tracing::info!(session_id = %session.id, lost, "dispute closed");
    Ok(Some(session))
}
