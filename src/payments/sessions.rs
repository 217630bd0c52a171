//! Parking sessions: start (with the operator's charge token), end with an amount, and
//! charge the operator's token.

use uuid::Uuid;

use super::event_log::{self, Event, EventType};
use super::money::Money;
use super::{policy, required_text, tokens};
use crate::app::App;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::models::parking_sessions::{ChargeRecord, NewParkingSession};
use crate::models::{self, ChargeToken, ChargeTokenStatus, Customer, Link, LinkStatus, ParkingSession, SessionStatus};
use crate::processor::{ChargeOutcome, ChargeRequest};
use diesel_async::AsyncConnection;

/// What `startParkingSession` asks for.
pub struct StartSession<'a> {
    pub customer_id: Uuid,
    pub operator_id: Uuid,
    pub zone: &'a str,
    pub vehicle_plate: &'a str,
    pub idempotency_key: &'a str,
}

/// A started session, and whether it came from an earlier request with the same key.
pub struct Started {
    pub session: ParkingSession,
    pub replayed: bool,
}

fn same_request(session: &ParkingSession, input: &StartSession<'_>, zone: &str, plate: &str) -> bool {
    session.customer_id == input.customer_id
        && session.operator_id == input.operator_id
        && session.zone == zone
        && session.vehicle_plate == plate
}

/// `startParkingSession`. The session and its PENDING charge token are written in one
/// transaction; the token is then issued at the processor. A retry with the same key
/// returns the same session (finishing the token if a crash interrupted it); the same
/// key with different input is a CONFLICT.
pub async fn start(app: &App, principal: &Principal, input: StartSession<'_>) -> ApiResult<Started> {
    let app_id = policy::require_app(principal)?;
    let zone = required_text("zone", input.zone, 100)?;
    let plate = required_text("vehiclePlate", input.vehicle_plate, 20)?;
    let key = required_text("idempotencyKey", input.idempotency_key, 255)?;

    let mut conn = app.db().await?;
    let existing = ParkingSession::find_by_key(&mut conn, app_id, key).await?;
    let (session, replayed) = match existing {
        Some(session) => (session, true),
        None => {
            let customer = Customer::find(&mut conn, input.customer_id)
                .await?
                .filter(|c| c.app_id == app_id && c.processor_customer_id.is_some())
                .ok_or(ApiError::NotFound("customer"))?;
            if models::Operator::find(&mut conn, input.operator_id).await?.is_none() {
                return Err(ApiError::NotFound("operator"));
            }
            let link = Link::find_pair(&mut conn, app_id, input.operator_id)
                .await?
                .filter(|l| l.status == LinkStatus::Active)
                .ok_or_else(|| ApiError::conflict("the app has no active link to this operator"))?;
            conn.transaction(async |conn| {
                let new = NewParkingSession {
                    id: Uuid::now_v7(),
                    app_id,
                    operator_id: input.operator_id,
                    customer_id: customer.id,
                    link_id: link.id,
                    zone,
                    vehicle_plate: plate,
                    status: SessionStatus::Active,
                    idempotency_key: key,
                };
                match new.insert(conn).await? {
                    Some(session) => {
                        ChargeToken::insert_pending(conn, session.id, session.operator_id, session.link_id).await?;
                        event_log::emit(conn, Event::session(EventType::SessionStarted, &session)).await?;
                        Ok::<_, ApiError>((session, false))
                    }
                    // A concurrent request with the same key committed first.
                    None => Ok((
                        ParkingSession::find_by_key(conn, app_id, key).await?.ok_or(ApiError::NotFound("session"))?,
                        true,
                    )),
                }
            })
            .await?
        }
    };
    if replayed && !same_request(&session, &input, zone, plate) {
        return Err(ApiError::conflict("idempotencyKey was already used for a different session request"));
    }
    if !replayed {
        event_log::announce_audience(app, Some(session.app_id), Some(session.operator_id));
        tracing::info!(session_id = %session.id, %app_id, operator_id = %session.operator_id, "parking session started");
    }
    // Finish the token if it is still pending: the first attempt, or a retry after an
    // interrupted one.
    if let Some(token) = ChargeToken::outstanding_for_session(&mut conn, session.id).await?
        && token.status == ChargeTokenStatus::Pending
    {
        drop(conn);
        tokens::issue(app, &token).await?;
    }
    Ok(Started { session, replayed })
}

/// `endParkingSession`: ACTIVE → ENDED with the amount owed. Ending again with the same
/// amount returns the session; a different amount is a CONFLICT.
pub async fn end(app: &App, principal: &Principal, session_id: Uuid, money: Money) -> ApiResult<ParkingSession> {
    let mut conn = app.db().await?;
    let session = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, session_id)
                .await?
                .filter(|s| policy::may_see_session(principal, s))
                .ok_or(ApiError::NotFound("parking session"))?;
            if session.status == SessionStatus::Active {
                let ended = ParkingSession::end(conn, session.id, money.amount, &money.currency).await?;
                event_log::emit(conn, Event::session(EventType::SessionEnded, &ended)).await?;
                return Ok((ended, true));
            }
            if session.amount == Some(money.amount) && session.currency.as_deref() == Some(money.currency.as_str()) {
                return Ok((session, false));
            }
            Err(ApiError::conflict("the session already ended with a different amount"))
        })
        .await?;
    let (session, ended) = session;
    if ended {
        event_log::announce_audience(app, Some(session.app_id), Some(session.operator_id));
    }
    tracing::info!(session_id = %session.id, amount = ?session.amount, currency = ?session.currency, "parking session ended");
    Ok(session)
}

/// Where a charge attempt stands after its first transaction.
enum ChargeStep {
    /// Charged or failed already: the stored outcome is the answer.
    Decided(ParkingSession),
    /// Charge with this (consumed) token.
    Charge(ParkingSession, ChargeToken),
    /// The token expired; it is now marked so.
    Expired,
}

/// `chargeSession`: the operator charges the ended session's amount with its token. A
/// decline is an outcome (PAYMENT_FAILED), not an error. The token is consumed before
/// the processor is called and the charge is keyed by the token's id, so retries and
/// concurrent requests resume the same charge: a session is never charged twice.
pub async fn charge(app: &App, principal: &Principal, session_id: Uuid) -> ApiResult<ParkingSession> {
    let mut conn = app.db().await?;
    let step = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, session_id)
                .await?
                .filter(|s| policy::may_see_session(principal, s))
                .ok_or(ApiError::NotFound("parking session"))?;
            if let Role::App(_) = principal.role {
                return Err(ApiError::forbidden("chargeSession is for the session's operator"));
            }
            match session.status {
                SessionStatus::Charged | SessionStatus::PaymentFailed => return Ok(ChargeStep::Decided(session)),
                SessionStatus::Active => return Err(ApiError::conflict("end the session before charging it")),
                SessionStatus::Ended => {}
            }
            if let Some(consumed) = ChargeToken::consumed_for_session(conn, session.id).await? {
                return Ok(ChargeStep::Charge(session, consumed));
            }
            let outstanding = ChargeToken::outstanding_for_session(conn, session.id).await?;
            let Some(token) = outstanding else {
                return Err(ApiError::conflict("the session has no charge token; call reissueChargeToken"));
            };
            if token.status == ChargeTokenStatus::Pending {
                return Err(ApiError::conflict("the session's charge token is still being issued; retry"));
            }
            match ChargeToken::consume(conn, token.id).await? {
                Some(consumed) => Ok(ChargeStep::Charge(session, consumed)),
                None => {
                    ChargeToken::expire(conn, token.id).await?;
                    Ok(ChargeStep::Expired)
                }
            }
        })
        .await?;
    let (session, token) = match step {
        ChargeStep::Charge(session, token) => (session, token),
        ChargeStep::Decided(session) => return Ok(session),
        ChargeStep::Expired => {
            return Err(ApiError::conflict("the session's charge token has expired; call reissueChargeToken"));
        }
    };
    let platform = models::App::find(&mut conn, session.app_id).await?.ok_or(ApiError::NotFound("app"))?;
    let link = Link::find(&mut conn, session.link_id).await?.ok_or(ApiError::NotFound("link"))?;
    drop(conn);
    let (Some(value), Some(account), Some(amount), Some(currency)) =
        (&token.token, &link.connected_account_id, session.amount, &session.currency)
    else {
        return Err(ApiError::internal("ended session without token, account or amount"));
    };
    let key = format!("charge:{}", token.id);
    // The app's cut, rounded down to whole minor units.
    let application_fee = platform.platform_fee_bps.filter(|bps| *bps > 0).map(|bps| amount * i64::from(bps) / 10_000);
    let platform = super::parties::platform(app, &platform)?;
    let outcome = app
        .processor
        .charge(&ChargeRequest {
            platform: &platform,
            connected_account_id: account,
            token: value,
            amount,
            currency,
            application_fee,
            idempotency_key: &key,
        })
        .await?;
    let record = match &outcome {
        ChargeOutcome::Succeeded { charge_id } => ChargeRecord::Charged { processor_charge_id: charge_id },
        ChargeOutcome::Declined { code, decline_code, message } => {
            ChargeRecord::Failed { code, decline_code: decline_code.as_deref(), message }
        }
    };
    let mut conn = app.db().await?;
    let (recorded, newly) = conn
        .transaction(async |conn| match ParkingSession::record_charge(conn, session.id, record).await? {
            Some(updated) => {
                let kind = match updated.status {
                    SessionStatus::Charged => EventType::SessionCharged,
                    _ => EventType::SessionPaymentFailed,
                };
                event_log::emit(conn, Event::session(kind, &updated)).await?;
                Ok::<_, ApiError>((updated, true))
            }
            None => {
                Ok((ParkingSession::find(conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))?, false))
            }
        })
        .await?;
    if newly {
        event_log::announce_audience(app, Some(recorded.app_id), Some(recorded.operator_id));
    }
    tracing::info!(session_id = %recorded.id, status = recorded.status.as_str(), "parking session charge recorded");
    Ok(recorded)
}
