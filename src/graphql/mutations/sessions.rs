//! A parking session's life: `startParkingSession`, `endParkingSession`, `chargeSession`,
//! `extendParkingSession`, `cancelParkingSession`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::domain::money::Money;
use crate::graphql::types::{CancelReason, MoneyInput, ParkingSession, PaymentFailure};
use crate::graphql::{broker, parse_id, principal};
use crate::models::SessionStatus;
use crate::payments::sessions::StartSession;
use crate::payments::{holds, sessions};

/// Input of `startParkingSession`.
#[derive(InputObject)]
pub struct StartParkingSessionInput {
    /// The app's customer who pays.
    pub customer_id: ID,
    /// Where the vehicle parks; the app needs an `ACTIVE` link to it.
    pub operator_id: ID,
    /// The operator's zone code, 1–100 characters.
    pub zone: String,
    /// The vehicle's plate, 1–20 characters.
    pub vehicle_plate: String,
    /// The app's key for this request (1–255 characters): a retry with the same key
    /// returns the same session; the same key with different input is a CONFLICT.
    pub idempotency_key: String,
    /// An amount to authorize on the card before the session becomes `ACTIVE`. A
    /// refused hold is a result: the session comes back `DECLINED` with `failure`.
    /// Without it, the operator receives a usable charge token as before.
    pub hold: Option<MoneyInput>,
    /// When the app expects parking to end.
    pub expected_end_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Result of `startParkingSession`.
#[derive(SimpleObject)]
pub struct StartParkingSessionPayload {
    /// The session, `ACTIVE` (the operator has received its charge token), or
    /// `DECLINED` when its hold was refused (`session.failure` says why).
    pub session: ParkingSession,
    /// True when this answers an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// Input of `endParkingSession`.
#[derive(InputObject)]
pub struct EndParkingSessionInput {
    /// The session to end.
    pub session_id: ID,
    /// What the parking cost.
    pub amount: MoneyInput,
}

/// Result of `endParkingSession`.
#[derive(SimpleObject)]
pub struct EndParkingSessionPayload {
    /// The session, `ENDED` with its amount.
    pub session: ParkingSession,
}

/// Input of `chargeSession`.
#[derive(InputObject)]
pub struct ChargeSessionInput {
    /// The ended session to charge.
    pub session_id: ID,
}

/// Result of `chargeSession`. A declined card is a result, not an error.
#[derive(SimpleObject)]
pub struct ChargeSessionPayload {
    /// The session, `CHARGED` or `PAYMENT_FAILED`.
    pub session: ParkingSession,
    /// Whether the money was collected.
    pub succeeded: bool,
    /// Why not, when the charge failed.
    pub failure: Option<PaymentFailure>,
}

/// Input of `extendParkingSession`.
#[derive(InputObject)]
pub struct ExtendParkingSessionInput {
    /// The `ACTIVE` held session.
    pub session_id: ID,
    /// The new expected end.
    pub expected_end_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How much to add to the hold, in its currency.
    pub additional_hold: MoneyInput,
    /// The app's key for this request: the same key returns the same result; the same
    /// key with other input is a CONFLICT.
    pub idempotency_key: String,
}

/// Result of `extendParkingSession`. A declined extension is a result, not an error.
#[derive(SimpleObject)]
pub struct ExtendParkingSessionPayload {
    /// The session, still `ACTIVE`; its hold raised unless the extension was declined.
    pub session: ParkingSession,
    /// Why the extension was declined (the session keeps its old hold).
    pub failure: Option<PaymentFailure>,
}

/// Input of `cancelParkingSession`.
#[derive(InputObject)]
pub struct CancelParkingSessionInput {
    /// The `ACTIVE` session to cancel.
    pub session_id: ID,
    /// Why (`EXPIRED` is curbpay's own and refused here).
    pub reason: CancelReason,
}

/// Result of `cancelParkingSession`.
#[derive(SimpleObject)]
pub struct CancelParkingSessionPayload {
    /// The session, `CANCELED`.
    pub session: ParkingSession,
}

#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Starts a parking session and issues the operator's charge token (delivered on
    /// `chargeTokenIssued`). Role app; needs an `ACTIVE` link to the operator.
    async fn start_parking_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer, operator, zone and vehicle, with the idempotency key of this start.")]
        input: StartParkingSessionInput,
    ) -> async_graphql::Result<StartParkingSessionPayload> {
        let started = sessions::start(
            broker(ctx),
            principal(ctx)?,
            StartSession {
                customer_id: parse_id("customerId", &input.customer_id)?,
                operator_id: parse_id("operatorId", &input.operator_id)?,
                zone: &input.zone,
                vehicle_plate: &input.vehicle_plate,
                idempotency_key: &input.idempotency_key,
                hold: input.hold.map(|h| Money::parse(h.amount.into(), &h.currency)).transpose()?,
                expected_end_at: input.expected_end_at,
            },
        )
        .await?;
        Ok(StartParkingSessionPayload {
            session: ParkingSession::with_issued(started.session, started.issued),
            replayed: started.replayed,
        })
    }

    /// Ends a session with the amount owed. The session's app or operator (or admin).
    async fn end_parking_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session and the amount owed.")] input: EndParkingSessionInput,
    ) -> async_graphql::Result<EndParkingSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let money = Money::parse(input.amount.amount.into(), &input.amount.currency)?;
        let session = sessions::end(broker(ctx), principal(ctx)?, session_id, money).await?;
        Ok(EndParkingSessionPayload { session: ParkingSession::new(session) })
    }

    /// Charges an ended session's amount with its token on the operator's account. The
    /// session's operator (or admin). Charging again returns the first outcome: a
    /// session is never charged twice.
    async fn charge_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The ended session to charge.")] input: ChargeSessionInput,
    ) -> async_graphql::Result<ChargeSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let session = sessions::charge(broker(ctx), principal(ctx)?, session_id).await?;
        let succeeded = session.status == SessionStatus::Charged;
        let failure = session.failure_code.clone().map(|code| PaymentFailure {
            code,
            decline_code: session.failure_decline_code.clone(),
            message: session.failure_message.clone().unwrap_or_default(),
        });
        Ok(ChargeSessionPayload { session: ParkingSession::new(session), succeeded, failure })
    }

    /// Raises an `ACTIVE` held session's hold and moves its expected end. The session's
    /// app. In place where the card allows it (incremental authorization), otherwise a
    /// second hold for the difference.
    async fn extend_parking_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The session, the hold to add, its new expected end, and the idempotency key of this change."
        )]
        input: ExtendParkingSessionInput,
    ) -> async_graphql::Result<ExtendParkingSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let additional = Money::parse(input.additional_hold.amount.into(), &input.additional_hold.currency)?;
        let (session, row) = holds::extend(
            broker(ctx),
            principal(ctx)?,
            holds::Extend {
                session_id,
                expected_end_at: input.expected_end_at,
                additional,
                idempotency_key: &input.idempotency_key,
            },
        )
        .await?;
        let failure = row.failure_code.clone().map(|code| PaymentFailure {
            code,
            decline_code: row.failure_decline_code.clone(),
            message: row.failure_message.clone().unwrap_or_default(),
        });
        Ok(ExtendParkingSessionPayload { session: ParkingSession::new(session), failure })
    }

    /// Cancels an `ACTIVE` session: its charge tokens become `VOIDED`, its hold is
    /// released, nothing is charged. The session's app or operator (or admin).
    async fn cancel_parking_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session and why it is canceled.")] input: CancelParkingSessionInput,
    ) -> async_graphql::Result<CancelParkingSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let reason: crate::models::CancelReason = input.reason.into();
        if reason == crate::models::CancelReason::Expired {
            return Err(crate::error::ApiError::bad_input("EXPIRED is set by curbpay only").into());
        }
        let session = holds::cancel(broker(ctx), principal(ctx)?, session_id, reason).await?;
        Ok(CancelParkingSessionPayload { session: ParkingSession::new(session) })
    }
}
