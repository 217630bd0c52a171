//! Held sessions: the hold placed at start, extensions, capture at charge time and
//! release on cancel. Each flow writes its ledger rows PENDING with the session's
//! status change in one transaction, then carries them out at the processor
//! (`ledger::execute`) and records the outcome; a retry of the mutation resumes the
//! rows still PENDING with the same processor keys.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use uuid::Uuid;

use super::event_log::{self, Event, EventType};
use super::ledger::{self, Context, Executed};
use super::{disputes, policy};
use crate::auth::Principal;
use crate::broker::Broker;
use crate::domain::money::{MAX_AMOUNT, Money};
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::models::Settlement;
use crate::models::{
    CancelReason, ChargeToken, NewPayment, Operator, ParkingSession, Payment, PaymentKind, PaymentStatus,
    SessionStatus, parking_sessions::ChargeRecord,
};
use crate::processor::AuthorizeOutcome;

/// Places the first hold of an AUTHORIZING session and decides it: ACTIVE with the
/// token HELD and delivered to the operator, or DECLINED with the token void (the
/// operator's stream gets nothing).
pub async fn authorize_first(broker: &Broker, session: ParkingSession) -> ApiResult<ParkingSession> {
    if session.status != SessionStatus::Authorizing {
        return Ok(session);
    }
    let mut conn = broker.db().await?;
    let ledger = Payment::for_session(&mut conn, session.id).await?;
    let token = ChargeToken::outstanding_for_session(&mut conn, session.id).await?;
    drop(conn);
    let (Some(row), Some(token)) = (ledger.iter().find(|p| p.kind == PaymentKind::Authorization), token) else {
        return Err(ApiError::internal("authorizing session without its hold or token"));
    };
    let ctx = Context::load(broker, &session).await?;
    let token_key = format!("charge-token:{}", token.id);
    // The token value is needed to record it HELD; asking again with its key returns
    // the same token.
    let issued = broker
        .processor
        .issue_charge_token(&ctx.platform, &ctx.customer_ref, &ctx.connected_account_id, &token_key)
        .await?;
    let outcome = if row.status == PaymentStatus::Pending {
        Some(
            broker
                .processor
                .authorize(&crate::processor::AuthorizeRequest {
                    platform: &ctx.platform,
                    connected_account_id: &ctx.connected_account_id,
                    token: &issued.token,
                    amount: row.amount,
                    currency: &row.currency,
                    application_fee: ledger::application_fee(ctx.platform_fee_bps, row.amount),
                    reference: &row.id.to_string(),
                    idempotency_key: &format!("authorization:{}", row.id),
                })
                .await?,
        )
    } else {
        None
    };
    let (row, expires_at) = match &outcome {
        Some(AuthorizeOutcome::Authorized { authorization_id, expires_at, incremental }) => (
            ledger::settle(
                broker,
                row.id,
                Settlement::Succeeded { processor_reference: Some(authorization_id), application_fee: None },
            )
            .await?,
            Some((*expires_at, *incremental)),
        ),
        Some(AuthorizeOutcome::Declined { code, decline_code, message }) => (
            ledger::settle(broker, row.id, Settlement::Failed { code, decline_code: decline_code.as_deref(), message })
                .await?,
            None,
        ),
        // Decided by a concurrent request, which also moves the session on.
        None => (row.clone(), None),
    };
    let mut conn = broker.db().await?;
    let (session, delivered) = conn
        .transaction(async |conn| {
            let current = ParkingSession::lock(conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))?;
            if current.status != SessionStatus::Authorizing {
                return Ok::<_, ApiError>((current, false));
            }
            match (row.status, expires_at) {
                (PaymentStatus::Succeeded, Some((expires_at, incremental))) => {
                    let cursor = Operator::next_token_cursor(conn, current.operator_id).await?;
                    if let Some(held) =
                        ChargeToken::mark_held(conn, token.id, &issued.token, cursor, expires_at).await?
                    {
                        event_log::emit(conn, Event::charge_token_issued(&held, current.app_id)).await?;
                    }
                    Ok((ParkingSession::activate_hold(conn, current.id, incremental).await?, true))
                }
                (PaymentStatus::Failed, _) => {
                    ChargeToken::void_for_session(conn, current.id).await?;
                    let session = ParkingSession::decline(
                        conn,
                        current.id,
                        row.failure_code.as_deref().unwrap_or("card_declined"),
                        row.failure_decline_code.as_deref(),
                        row.failure_message.as_deref().unwrap_or("Your card was declined."),
                    )
                    .await?;
                    event_log::emit(conn, Event::session(EventType::SessionDeclined, &session)).await?;
                    Ok((session, false))
                }
                _ => Ok((current, false)),
            }
        })
        .await?;
    if delivered {
        broker.events.publish(Topic::OperatorTokens(session.operator_id));
    }
    event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
    tracing::info!(session_id = %session.id, status = session.status.as_str(), "hold decided");
    Ok(session)
}

/// What `extendParkingSession` asks for.
pub struct Extend<'a> {
    /// The session to extend.
    pub session_id: Uuid,
    /// The new expected end, if it moves.
    pub expected_end_at: Option<DateTime<Utc>>,
    /// The amount to add to the hold.
    pub additional: Money,
    /// The caller's key for this request: a retry with it gets the original result.
    pub idempotency_key: &'a str,
}

/// `extendParkingSession`: raises the hold by the additional amount (in place where the
/// hold allows it, else a second hold for the difference) and moves the expected end.
/// A declined extension leaves the session ACTIVE with its old hold; the row says why.
pub async fn extend(broker: &Broker, principal: &Principal, input: Extend<'_>) -> ApiResult<(ParkingSession, Payment)> {
    let app_id = policy::require_app(principal)?;
    let key = super::required_text("idempotencyKey", input.idempotency_key, 255)?;
    let request_key = format!("extend:{key}");
    let mut conn = broker.db().await?;
    let (session, row) = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, input.session_id)
                .await?
                .filter(|s| s.app_id == app_id)
                .ok_or(ApiError::NotFound("parking session"))?;
            if let Some(existing) = Payment::find_by_request_key(conn, session.id, &request_key).await? {
                if existing.amount != input.additional.amount
                    || existing.currency != input.additional.currency
                    || existing.expected_end_at != input.expected_end_at
                {
                    return Err(ApiError::conflict("idempotencyKey was already used for a different extension"));
                }
                return Ok((session, existing));
            }
            if session.status != SessionStatus::Active || !session.has_hold() {
                return Err(ApiError::conflict("only an ACTIVE session with a hold can be extended"));
            }
            if session.hold_currency.as_deref() != Some(input.additional.currency.as_str()) {
                return Err(ApiError::bad_input("additionalHold must be in the currency of the session's hold"));
            }
            if session.held_amount + input.additional.amount > MAX_AMOUNT {
                return Err(ApiError::bad_input(format!("the total hold may not exceed {MAX_AMOUNT}")));
            }
            let ledger = Payment::for_session(conn, session.id).await?;
            if ledger.iter().any(|p| {
                p.status == PaymentStatus::Pending
                    && matches!(p.kind, PaymentKind::Increment | PaymentKind::Authorization)
            }) {
                return Err(ApiError::conflict("another extension of this session is in progress; retry"));
            }
            let first = ledger
                .iter()
                .find(|p| p.kind == PaymentKind::Authorization && p.status == PaymentStatus::Succeeded)
                .ok_or_else(|| ApiError::internal("active held session without a hold"))?;
            let kind = if session.hold_incremental == Some(true) {
                PaymentKind::Increment
            } else {
                PaymentKind::Authorization
            };
            let mut new = NewPayment::pending(session.id, kind, input.additional.amount, &input.additional.currency);
            new.parent_id = (kind == PaymentKind::Increment).then_some(first.id);
            new.request_key = Some(&request_key);
            new.expected_end_at = input.expected_end_at;
            let row = new.insert(conn).await?;
            Ok((session, row))
        })
        .await?;
    drop(conn);
    let row = if row.status == PaymentStatus::Pending {
        let ctx = Context::load(broker, &session).await?;
        let row = ledger::execute(broker, &ctx, &row, None).await?.row().clone();
        tracing::info!(session_id = %session.id, payment_id = %row.id, status = row.status.as_str(), "hold extension decided");
        row
    } else {
        row
    };
    if row.status == PaymentStatus::Succeeded {
        // Also on a retry: a request cut off after the hold succeeded leaves this step
        // for the retry, and the event's id (from the row's) keeps it to one.
        let mut conn = broker.db().await?;
        let extended = conn
            .transaction(async |conn| {
                let session =
                    ParkingSession::lock(conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))?;
                let session = match row.expected_end_at {
                    Some(end) if session.expected_end_at != Some(end) => {
                        ParkingSession::set_expected_end(conn, session.id, Some(end)).await?;
                        ParkingSession::find(conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))?
                    }
                    _ => session,
                };
                let event =
                    Event::session_with(EventType::SessionExtended, &session, "extension", extension_view(&row));
                let emitted = event_log::emit_once(conn, format!("evt_{}", row.id.simple()), event).await?;
                Ok::<_, ApiError>((session, emitted.is_some()))
            })
            .await?;
        if extended.1 {
            event_log::announce_audience(broker, Some(extended.0.app_id), Some(extended.0.operator_id));
        }
        return Ok((extended.0, row));
    }
    let mut conn = broker.db().await?;
    let session = ParkingSession::find(&mut conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))?;
    Ok((session, row))
}

/// The `extension` object of a `session.extended` event.
fn extension_view(row: &Payment) -> serde_json::Value {
    serde_json::json!({
        "paymentId": row.id,
        "amount": { "amount": row.amount, "currency": row.currency },
        "expectedEndAt": row.expected_end_at,
    })
}

/// The ledger rows that capture an ended held session's amount from its holds (oldest
/// first) and release what is left of each.
pub async fn plan_capture(
    conn: &mut diesel_async::AsyncPgConnection,
    session: &ParkingSession,
) -> ApiResult<Vec<Payment>> {
    let ledger = Payment::for_session(conn, session.id).await?;
    let planned: Vec<Payment> =
        ledger.iter().filter(|p| matches!(p.kind, PaymentKind::Capture | PaymentKind::Release)).cloned().collect();
    if !planned.is_empty() {
        return Ok(planned);
    }
    let (Some(amount), Some(currency)) = (session.amount, session.currency.as_deref()) else {
        return Err(ApiError::internal("ended held session without an amount"));
    };
    let mut remaining = amount;
    let mut rows = Vec::new();
    for hold in ledger.iter().filter(|p| p.kind == PaymentKind::Authorization && p.status == PaymentStatus::Succeeded) {
        let total = ledger::hold_total(&ledger, hold);
        let take = remaining.min(total);
        remaining -= take;
        if take > 0 {
            let mut capture = NewPayment::pending(session.id, PaymentKind::Capture, take, currency);
            capture.parent_id = Some(hold.id);
            rows.push(capture.insert(conn).await?);
        }
        if total > take {
            let mut release = NewPayment::pending(session.id, PaymentKind::Release, total - take, currency);
            release.parent_id = Some(hold.id);
            rows.push(release.insert(conn).await?);
        }
    }
    if remaining > 0 {
        return Err(ApiError::conflict("the amount exceeds the session's hold"));
    }
    Ok(rows)
}

/// Carries out a held session's capture plan and records the session CHARGED.
pub async fn capture(broker: &Broker, session: ParkingSession, plan: Vec<Payment>) -> ApiResult<ParkingSession> {
    let ctx = Context::load(broker, &session).await?;
    let mut first_capture = None;
    // Captures first: a partial capture releases the rest of its hold by itself.
    let mut ordered = plan;
    ordered.sort_by_key(|p| p.kind != PaymentKind::Capture);
    for row in &ordered {
        let done = ledger::execute(broker, &ctx, row, None).await?;
        if let Executed::Settled(row) = done
            && row.kind == PaymentKind::Capture
            && first_capture.is_none()
        {
            first_capture = row.processor_reference.clone();
        }
    }
    let charge_id = first_capture.ok_or_else(|| ApiError::internal("capture without a processor reference"))?;
    let mut conn = broker.db().await?;
    let (recorded, emitted) = conn
        .transaction(async |conn| {
            let charged = ChargeRecord::Charged { processor_charge_id: &charge_id };
            match ParkingSession::record_charge(conn, session.id, charged).await? {
                Some(updated) => {
                    event_log::emit(conn, Event::session(EventType::SessionCharged, &updated)).await?;
                    Ok::<_, ApiError>((updated, true))
                }
                None => Ok((
                    ParkingSession::find(conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))?,
                    false,
                )),
            }
        })
        .await?;
    drop(conn);
    if emitted {
        event_log::announce_audience(broker, Some(recorded.app_id), Some(recorded.operator_id));
    }
    tracing::info!(session_id = %recorded.id, "held session captured");
    disputes::check_after_collection(broker, &ctx, recorded).await
}

/// `cancelParkingSession`: an ACTIVE session becomes CANCELED: outstanding and held
/// tokens are voided and the hold released; nothing is charged. Canceling again
/// returns the session.
pub async fn cancel(
    broker: &Broker,
    principal: &Principal,
    session_id: Uuid,
    reason: CancelReason,
) -> ApiResult<ParkingSession> {
    let mut conn = broker.db().await?;
    let (session, releases) = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, session_id)
                .await?
                .filter(|s| policy::may_see_session(principal, s))
                .ok_or(ApiError::NotFound("parking session"))?;
            match session.status {
                SessionStatus::Active => cancel_locked(conn, &session, reason).await,
                SessionStatus::Canceled => {
                    let pending = Payment::for_session(conn, session.id)
                        .await?
                        .into_iter()
                        .filter(|p| p.kind == PaymentKind::Release && p.status == PaymentStatus::Pending)
                        .collect();
                    Ok((session, pending))
                }
                _ => Err(ApiError::conflict("only an ACTIVE session can be canceled")),
            }
        })
        .await?;
    drop(conn);
    // Canceling again announces nothing new; waking the streams once more is harmless.
    event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
    release_all(broker, session, releases).await
}

/// The cancel transition of a locked ACTIVE session, with the RELEASE rows of its holds.
pub async fn cancel_locked(
    conn: &mut diesel_async::AsyncPgConnection,
    session: &ParkingSession,
    reason: CancelReason,
) -> ApiResult<(ParkingSession, Vec<Payment>)> {
    let canceled = ParkingSession::cancel(conn, session.id, reason).await?;
    ChargeToken::void_for_session(conn, session.id).await?;
    event_log::emit(conn, Event::session(EventType::SessionCanceled, &canceled)).await?;
    let ledger = Payment::for_session(conn, session.id).await?;
    let mut releases = Vec::new();
    for hold in ledger.iter().filter(|p| p.kind == PaymentKind::Authorization && p.status == PaymentStatus::Succeeded) {
        let mut release =
            NewPayment::pending(session.id, PaymentKind::Release, ledger::hold_total(&ledger, hold), &hold.currency);
        release.parent_id = Some(hold.id);
        releases.push(release.insert(conn).await?);
    }
    tracing::info!(session_id = %session.id, reason = reason.as_str(), "parking session canceled");
    Ok((canceled, releases))
}

/// Releases the holds a cancel planned, then returns the session as it stands.
pub async fn release_all(
    broker: &Broker,
    session: ParkingSession,
    releases: Vec<Payment>,
) -> ApiResult<ParkingSession> {
    if !releases.is_empty() {
        let ctx = Context::load(broker, &session).await?;
        for row in &releases {
            ledger::execute(broker, &ctx, row, None).await?;
        }
    }
    let mut conn = broker.db().await?;
    ParkingSession::find(&mut conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))
}

/// The processor canceled a hold itself (it lapsed): an ACTIVE session is canceled
/// (`EXPIRED`) and that hold's release recorded as done; other holds of the session are
/// returned for the caller to release after commit. `None` when curbpay does not know
/// the hold.
pub async fn hold_canceled_in(
    conn: &mut diesel_async::AsyncPgConnection,
    authorization_id: &str,
) -> ApiResult<Option<(ParkingSession, Vec<Payment>)>> {
    let Some(hold) = Payment::find_by_reference(conn, PaymentKind::Authorization, authorization_id).await? else {
        return Ok(None);
    };
    let session = ParkingSession::lock(conn, hold.session_id).await?.ok_or(ApiError::NotFound("parking session"))?;
    if session.status != SessionStatus::Active {
        return Ok(Some((session, Vec::new())));
    }
    let (session, releases) = cancel_locked(conn, &session, CancelReason::Expired).await?;
    let mut rest = Vec::new();
    for release in releases {
        if release.parent_id == Some(hold.id) {
            Payment::settle(
                conn,
                release.id,
                Settlement::Succeeded { processor_reference: Some(authorization_id), application_fee: None },
            )
            .await?;
        } else {
            rest.push(release);
        }
    }
    Ok(Some((session, rest)))
}
