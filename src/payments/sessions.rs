//! Parking sessions: start (with the operator's charge token, and optionally a hold),
//! end with an amount, and charge: the operator's token, or a capture from the hold.

use uuid::Uuid;

use super::event_log::{self, Event, EventType};
use super::{policy, required_text, tokens};
use crate::auth::{Principal, Role};
use crate::broker::Broker;
use crate::domain::money::Money;
use crate::error::{ApiError, ApiResult};
use crate::models::parking_sessions::{ChargeRecord, KEY_CONSTRAINT, NewParkingSession, record_amount_change};
use crate::models::{
    self, AmountSetBy, ChargeToken, ChargeTokenStatus, Customer, Link, LinkStatus, NewPayment, ParkingSession, Payment,
    PaymentKind, SessionStatus, Settlement,
};
use crate::processor::{ChargeOutcome, ChargeRequest};
use diesel_async::AsyncConnection;

/// What `startParkingSession` asks for.
pub struct StartSession<'a> {
    /// The paying customer (one of the caller's).
    pub customer_id: Uuid,
    /// The operator where the vehicle parks (the session runs on the app's link to it).
    pub operator_id: Uuid,
    /// The parking zone (the operator's own code).
    pub zone: &'a str,
    /// The vehicle's plate.
    pub vehicle_plate: &'a str,
    /// The app's key for this request: a retry with it gets the original session.
    pub idempotency_key: &'a str,
    /// An amount to authorize before the session becomes ACTIVE.
    pub hold: Option<Money>,
    /// When the app expects parking to end.
    pub expected_end_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A started session, and whether it came from an earlier request with the same key.
pub struct Started {
    /// The session as it is now.
    pub session: ParkingSession,
    /// Whether an earlier request with the same idempotency key started it.
    pub replayed: bool,
    /// The charge token this request issued, if it issued one: the session's latest.
    pub issued: Option<ChargeToken>,
}

fn same_request(session: &ParkingSession, input: &StartSession<'_>, zone: &str, plate: &str) -> bool {
    session.customer_id == input.customer_id
        && session.operator_id == input.operator_id
        && session.zone == zone
        && session.vehicle_plate == plate
        && session.hold_currency.as_deref() == input.hold.as_ref().map(|h| h.currency.as_str())
}

/// The rows a key's first request read, which issuing its token needs.
struct Fresh {
    customer: Customer,
    link: Link,
    platform: models::App,
}

/// A key's first request: the app's customer (read with the app) and its active link to
/// the operator, then, in one transaction, the session with its PENDING charge token and
/// its event (and a hold's pending ledger row). The rows are handed on, so the token is
/// issued without reading them back.
async fn insert_fresh(
    conn: &mut diesel_async::AsyncPgConnection,
    app_id: uuid::Uuid,
    input: &StartSession<'_>,
    zone: &str,
    plate: &str,
    key: &str,
) -> ApiResult<(ParkingSession, ChargeToken, Fresh)> {
    let (customer, platform) = Customer::find_with_app(conn, input.customer_id)
        .await?
        .filter(|(c, _)| c.app_id == app_id && c.processor_customer_id.is_some())
        .ok_or(ApiError::NotFound("customer"))?;
    let link = match Link::find_pair(conn, app_id, input.operator_id).await? {
        Some(link) if link.status == LinkStatus::Active => link,
        // A link names its operator (a foreign key): only without one can the operator
        // be unknown.
        found => {
            if found.is_none() && models::Operator::find(conn, input.operator_id).await?.is_none() {
                return Err(ApiError::NotFound("operator"));
            }
            return Err(ApiError::conflict("the app has no active link to this operator"));
        }
    };
    let (session, token) = conn
        .transaction(async |conn| {
            let new = NewParkingSession {
                id: Uuid::now_v7(),
                app_id,
                operator_id: input.operator_id,
                customer_id: customer.id,
                link_id: link.id,
                zone,
                vehicle_plate: plate,
                status: if input.hold.is_some() { SessionStatus::Authorizing } else { SessionStatus::Active },
                idempotency_key: key,
                expected_end_at: input.expected_end_at,
                hold_currency: input.hold.as_ref().map(|h| h.currency.as_str()),
            };
            let session = new.insert(conn).await.map_err(|err| match &err {
                diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info)
                    if info.constraint_name() == Some(KEY_CONSTRAINT) =>
                {
                    ApiError::conflict("idempotencyKey was already used")
                }
                _ => ApiError::from(err),
            })?;
            let token = ChargeToken::insert_pending(conn, session.id, session.operator_id, session.link_id).await?;
            event_log::emit(conn, Event::session(EventType::SessionStarted, &session)).await?;
            if let Some(hold) = &input.hold {
                NewPayment::pending(session.id, PaymentKind::Authorization, hold.amount, &hold.currency)
                    .insert(conn)
                    .await?;
            }
            Ok::<_, ApiError>((session, token))
        })
        .await?;
    Ok((session, token, Fresh { customer, link, platform }))
}

/// `startParkingSession`. The session and its PENDING charge token are written in one
/// transaction; the token is then issued at the processor. A retry with the same key
/// returns the same session (finishing the token if a crash interrupted it); the same
/// key with different input is a CONFLICT.
pub async fn start(broker: &Broker, principal: &Principal, input: StartSession<'_>) -> ApiResult<Started> {
    let app_id = policy::require_app(principal)?;
    let zone = required_text("zone", input.zone, 100)?;
    let plate = required_text("vehiclePlate", input.vehicle_plate, 20)?;
    let key = required_text("idempotencyKey", input.idempotency_key, 255)?;
    if input.hold.is_some() && !broker.processor.supports_holds() {
        return Err(ApiError::bad_input("holds are not available with the configured processor"));
    }

    let mut conn = broker.db().await?;
    // The first request with a key reads the customer and the link and inserts; the key
    // is looked up only when that fails: a retry (its insert meets the key's unique
    // index), or a refusal, which a retry of a session that did start must not see.
    let (session, replayed, fresh) = match insert_fresh(&mut conn, app_id, &input, zone, plate, key).await {
        Ok((session, token, rows)) => (session, false, Some((token, rows))),
        Err(refused) => match ParkingSession::find_by_key(&mut conn, app_id, key).await? {
            Some(session) => (session, true, None),
            None => return Err(refused),
        },
    };
    if replayed && !same_request(&session, &input, zone, plate) {
        return Err(ApiError::conflict("idempotencyKey was already used for a different session request"));
    }
    if session.has_hold() {
        if replayed && let Some(hold) = &input.hold {
            let first = Payment::for_session(&mut conn, session.id)
                .await?
                .into_iter()
                .find(|p| p.kind == PaymentKind::Authorization);
            if first.is_some_and(|p| p.amount != hold.amount) {
                return Err(ApiError::conflict("idempotencyKey was already used for a different session request"));
            }
        }
        if !replayed {
            tracing::info!(session_id = %session.id, %app_id, operator_id = %session.operator_id, "held parking session started");
        }
        drop(conn);
        let session = super::holds::authorize_first(broker, session).await?;
        return Ok(Started { session, replayed, issued: None });
    }
    if !replayed {
        event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
        tracing::info!(session_id = %session.id, %app_id, operator_id = %session.operator_id, "parking session started");
    }
    // Issue the token: the first attempt, or (a retry after an interrupted one) finish it
    // if it is still pending.
    let mut issued = None;
    if let Some((token, Fresh { customer, link, platform })) = fresh {
        drop(conn);
        let token = tokens::issue_with(
            broker,
            &token,
            tokens::Parties { session: &session, customer: &customer, link: &link, platform: &platform },
        )
        .await?;
        issued = Some(token);
    } else if let Some(token) = ChargeToken::outstanding_for_session(&mut conn, session.id).await?
        && token.status == ChargeTokenStatus::Pending
    {
        drop(conn);
        tokens::issue(broker, &token).await?;
    } else if replayed {
        // The first attempt may have ended (a crash) between its commit and its wake-ups,
        // and a client retries after exactly that: announcing again costs each woken
        // subscriber one read from its cursor, never a duplicate.
        broker.events.publish(crate::events::Topic::OperatorTokens(session.operator_id));
        event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
    }
    Ok(Started { session, replayed, issued })
}

/// Who is setting an amount.
fn setter(principal: &Principal) -> AmountSetBy {
    match principal.role {
        Role::Admin => AmountSetBy::Admin,
        Role::App(_) => AmountSetBy::App,
        Role::Operator(_) => AmountSetBy::Operator,
    }
}

/// `endParkingSession`: ACTIVE → ENDED with the amount owed. Ending again with the same
/// amount returns the session. The operator's amount stands: while the session is not
/// charged, the operator (or an admin) may replace an amount (the change is recorded);
/// an app may never replace one, so another amount from it is a CONFLICT. With a hold,
/// the amount may not exceed the total hold.
pub async fn end(broker: &Broker, principal: &Principal, session_id: Uuid, money: Money) -> ApiResult<ParkingSession> {
    let set_by = setter(principal);
    let mut conn = broker.db().await?;
    let session = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, session_id)
                .await?
                .filter(|s| policy::may_see_session(principal, s))
                .ok_or(ApiError::NotFound("parking session"))?;
            let same =
                session.amount == Some(money.amount) && session.currency.as_deref() == Some(money.currency.as_str());
            if same {
                return Ok((session, false));
            }
            let replaceable = session.status == SessionStatus::Ended && set_by != AmountSetBy::App;
            if session.status != SessionStatus::Active && !replaceable {
                return Err(ApiError::conflict(match (session.status, session.amount_set_by) {
                    (SessionStatus::Ended, Some(AmountSetBy::Operator | AmountSetBy::Admin)) => {
                        "the operator set this session's amount; an app cannot replace it"
                    }
                    _ => "the session already ended with a different amount",
                }));
            }
            if let Some(currency) = &session.hold_currency {
                if *currency != money.currency {
                    return Err(ApiError::conflict(format!(
                        "the amount must be in the currency of the hold ({currency})"
                    )));
                }
                if money.amount > session.held_amount {
                    return Err(ApiError::conflict(format!(
                        "the amount exceeds the session's hold of {} {currency}; extend the session first",
                        session.held_amount
                    )));
                }
            }
            let newly_ended = session.status == SessionStatus::Active;
            let updated = if newly_ended {
                let ended = ParkingSession::end(conn, session.id, money.amount, &money.currency, set_by).await?;
                event_log::emit(conn, Event::session(EventType::SessionEnded, &ended)).await?;
                ended
            } else {
                if session.currency.as_deref() != Some(money.currency.as_str()) {
                    return Err(ApiError::conflict("a replaced amount must keep the session's currency"));
                }
                ParkingSession::replace_amount(conn, session.id, money.amount, set_by).await?
            };
            record_amount_change(conn, session.id, money.amount, &money.currency, set_by).await?;
            Ok((updated, newly_ended))
        })
        .await?;
    let (session, ended) = session;
    if ended {
        event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
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
    /// A held session: capture with these ledger rows.
    Capture(ParkingSession, Vec<Payment>),
}

/// `chargeSession`: the operator charges the ended session's amount with its token. A
/// decline is an outcome (PAYMENT_FAILED), not an error. The token is consumed before
/// the processor is called and the charge is keyed by the token's id, so retries and
/// concurrent requests resume the same charge: a session is never charged twice.
pub async fn charge(broker: &Broker, principal: &Principal, session_id: Uuid) -> ApiResult<ParkingSession> {
    let mut conn = broker.db().await?;
    let step = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, session_id)
                .await?
                .filter(|s| policy::may_see_session(principal, s))
                .ok_or(ApiError::NotFound("parking session"))?;
            if !policy::may_charge_session(principal) {
                return Err(ApiError::forbidden("chargeSession is for the session's operator"));
            }
            match session.status {
                SessionStatus::Ended => {}
                SessionStatus::Active | SessionStatus::Authorizing => {
                    return Err(ApiError::conflict("end the session before charging it"));
                }
                SessionStatus::Declined | SessionStatus::Canceled => {
                    return Err(ApiError::conflict("the session was never charged: it is declined or canceled"));
                }
                SessionStatus::Charged
                | SessionStatus::PaymentFailed
                | SessionStatus::PartiallyRefunded
                | SessionStatus::Refunded
                | SessionStatus::Disputed => return Ok(ChargeStep::Decided(session)),
            }
            if session.has_hold() {
                let plan = super::holds::plan_capture(conn, &session).await?;
                return Ok(ChargeStep::Capture(session, plan));
            }
            if let Some(consumed) = ChargeToken::consumed_for_session(conn, session.id).await? {
                charge_row(conn, &session, &consumed).await?;
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
                Some(consumed) => {
                    charge_row(conn, &session, &consumed).await?;
                    Ok(ChargeStep::Charge(session, consumed))
                }
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
        ChargeStep::Capture(session, plan) => {
            drop(conn);
            return super::holds::capture(broker, session, plan).await;
        }
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
    let application_fee = super::ledger::application_fee(platform.platform_fee_bps, amount);
    let platform = super::parties::platform(broker, &platform)?;
    let outcome = broker
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
    let settlement = match &outcome {
        ChargeOutcome::Succeeded { charge_id } => {
            Settlement::Succeeded { processor_reference: Some(charge_id), application_fee }
        }
        ChargeOutcome::Declined { code, decline_code, message } => {
            Settlement::Failed { code, decline_code: decline_code.as_deref(), message }
        }
    };
    let mut conn = broker.db().await?;
    let (recorded, newly) = conn
        .transaction(async |conn| {
            if let Some(row) = Payment::find_by_request_key(conn, session.id, &key).await? {
                Payment::settle(conn, row.id, settlement).await?;
            }
            let recorded = match ParkingSession::record_charge(conn, session.id, record).await? {
                Some(updated) => {
                    let kind = match updated.status {
                        SessionStatus::Charged => EventType::SessionCharged,
                        _ => EventType::SessionPaymentFailed,
                    };
                    event_log::emit(conn, Event::session(kind, &updated)).await?;
                    (updated, true)
                }
                None => {
                    (ParkingSession::find(conn, session.id).await?.ok_or(ApiError::NotFound("parking session"))?, false)
                }
            };
            Ok::<_, ApiError>(recorded)
        })
        .await?;
    if newly {
        event_log::announce_audience(broker, Some(recorded.app_id), Some(recorded.operator_id));
    }
    drop(conn);
    tracing::info!(session_id = %recorded.id, status = recorded.status.as_str(), "parking session charge recorded");
    if recorded.status != SessionStatus::Charged {
        return Ok(recorded);
    }
    let ctx = super::ledger::Context::load(broker, &recorded).await?;
    super::disputes::check_after_collection(broker, &ctx, recorded).await
}

/// The CHARGE ledger row of a token charge, written with the token's consumption (once:
/// it is named by the charge's processor key).
async fn charge_row(
    conn: &mut diesel_async::AsyncPgConnection,
    session: &ParkingSession,
    token: &ChargeToken,
) -> ApiResult<Payment> {
    let key = format!("charge:{}", token.id);
    if let Some(row) = Payment::find_by_request_key(conn, session.id, &key).await? {
        return Ok(row);
    }
    let (Some(amount), Some(currency)) = (session.amount, session.currency.as_deref()) else {
        return Err(ApiError::internal("ended session without an amount"));
    };
    let mut row = NewPayment::pending(session.id, PaymentKind::Charge, amount, currency);
    row.request_key = Some(&key);
    Ok(row.insert(conn).await?)
}
