//! `refundSession`: money of a charged session back to the card.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::domain::money::Money;
use crate::graphql::types::{MoneyInput, ParkingSession, Refund, RefundReason};
use crate::graphql::{broker, parse_id, principal};
use crate::payments::refunds;

/// Input of `refundSession`.
#[derive(InputObject)]
pub struct RefundSessionInput {
    /// The charged session.
    pub session_id: ID,
    /// How much to return, in the session's currency; omitted: everything not yet refunded.
    pub amount: Option<MoneyInput>,
    /// Why.
    pub reason: RefundReason,
    /// The caller's key for this refund: the same key returns the same refund; the
    /// same key with other input is a CONFLICT.
    pub idempotency_key: String,
}

/// Result of `refundSession`.
#[derive(SimpleObject)]
pub struct RefundSessionPayload {
    /// The session, `PARTIALLY_REFUNDED` or `REFUNDED` once the refund succeeded.
    pub session: ParkingSession,
    /// The refund.
    pub refund: Refund,
}

#[derive(Default)]
pub struct RefundMutation;

#[Object]
impl RefundMutation {
    /// Returns (part of) a charged session's money to the card; the app's fee goes back
    /// in proportion. The session's operator or an admin, and its app when the link
    /// allows it (`Link.appMayRefund`).
    async fn refund_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The session, the amount to return (omitted: all that is left), why, and the idempotency key."
        )]
        input: RefundSessionInput,
    ) -> async_graphql::Result<RefundSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let amount = input.amount.map(|m| Money::parse(m.amount.into(), &m.currency)).transpose()?;
        let (session, refund) = refunds::refund(
            broker(ctx),
            principal(ctx)?,
            refunds::RefundInput {
                session_id,
                amount,
                reason: input.reason.into(),
                idempotency_key: &input.idempotency_key,
            },
        )
        .await?;
        Ok(RefundSessionPayload { session: ParkingSession::new(session), refund: Refund(refund) })
    }
}
