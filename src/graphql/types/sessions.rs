//! Parking sessions, money, and the charge tokens handed to operators.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::links::Link;
use super::parties::{App, Customer, Operator};
use crate::domain;
use crate::error::ApiError;
use crate::graphql::principal;
use crate::models::{self, ChargeTokenStatus as TokenState};
use crate::payments::policy;

/// The state of a parking session.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::SessionStatus")]
pub enum SessionStatus {
    /// Its hold is being authorized (a retry of `startParkingSession` with the same key
    /// finishes it); not yet delivered to the operator.
    Authorizing,
    /// Parking; the operator holds a charge token (`HELD` when the session has a hold).
    Active,
    /// The hold was refused; `failure` says why. Nothing was delivered or charged.
    Declined,
    /// Parking ended with an amount owed; waiting for the operator to charge.
    Ended,
    /// Paid.
    Charged,
    /// The charge was declined; `failure` says why.
    PaymentFailed,
    /// Canceled while active (`cancelReason`): tokens voided, hold released, nothing charged.
    Canceled,
    /// Part of the captured amount was refunded.
    PartiallyRefunded,
    /// Everything captured was refunded.
    Refunded,
    /// The cardholder disputed the charge (`dispute`).
    Disputed,
}

/// Why a session was canceled.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::CancelReason")]
pub enum CancelReason {
    /// The end user asked.
    RequestedByCustomer,
    /// Started twice by mistake.
    Duplicate,
    /// Any other reason.
    Other,
    /// Set by curbpay only: still active after `CURBPAY_SESSION_MAX_DURATION`.
    Expired,
}

/// Who set a session's amount.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::AmountSetBy")]
pub enum AmountSetBy {
    /// The session's app.
    App,
    /// The session's operator (its amount stands).
    Operator,
    /// An admin.
    Admin,
}

/// What a ledger row records.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::PaymentKind")]
pub enum PaymentKind {
    /// A hold placed on the card.
    Authorization,
    /// A hold raised in place (incremental authorization).
    Increment,
    /// Money taken from a hold.
    Capture,
    /// Money taken with a charge token (a session without a hold).
    Charge,
    /// What was left of a hold, given back to the card.
    Release,
    /// Money returned after a capture or charge.
    Refund,
    /// A dispute of a capture or charge: PENDING while open, SUCCEEDED when the
    /// cardholder won it, FAILED when it was decided for the operator.
    Dispute,
}

/// A ledger row's outcome.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::PaymentStatus")]
pub enum PaymentStatus {
    /// Sent to the processor (or, for a dispute, open); the outcome is not known yet.
    Pending,
    /// Done.
    Succeeded,
    /// Refused; `failure` says why.
    Failed,
}

/// Why money goes back.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::RefundReason")]
pub enum RefundReason {
    /// The end user paid twice.
    Duplicate,
    /// The end user asked.
    RequestedByCustomer,
    /// The payment was fraudulent.
    Fraudulent,
    /// Any other reason.
    Other,
}

/// A ledger row, as the API shows it.
pub struct Payment(pub models::Payment);

/// A stored amount as the published `Money`.
fn money(amount: i64, currency: &str) -> Result<Money, ApiError> {
    Money::try_from(domain::money::Money { amount, currency: currency.to_owned() })
}

/// One movement of a session's money (a row of its ledger), seen by whoever sees the
/// session. Rows never change, except a `PENDING` row's outcome, once.
#[Object]
impl Payment {
    /// The row's id (also the processor request's idempotency key).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// What the row records.
    async fn kind(&self) -> PaymentKind {
        self.0.kind.into()
    }
    /// The money moved, in minor units of the session's currency (positive whatever the
    /// direction; `kind` says which way it went).
    async fn amount(&self) -> async_graphql::Result<Money> {
        Ok(money(self.0.amount, &self.0.currency)?)
    }
    /// The outcome at the processor.
    async fn status(&self) -> PaymentStatus {
        self.0.status.into()
    }
    /// The processor's object: the hold (PaymentIntent), charge, refund or dispute id.
    async fn processor_reference(&self) -> Option<&str> {
        self.0.processor_reference.as_deref()
    }
    /// The app's fee taken (capture, charge) or returned (refund).
    async fn application_fee(&self) -> async_graphql::Result<Option<Money>> {
        Ok(self.0.application_fee.map(|fee| money(fee, &self.0.currency)).transpose()?)
    }
    /// A dispute's reason, as the processor reports it.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    /// When the row was written (the request was sent, or the processor reported it).
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the outcome was recorded.
    async fn settled_at(&self) -> Option<DateTime<Utc>> {
        self.0.settled_at
    }
    /// Why it failed (`FAILED`).
    async fn failure(&self) -> Option<PaymentFailure> {
        Some(PaymentFailure {
            code: self.0.failure_code.clone()?,
            decline_code: self.0.failure_decline_code.clone(),
            message: self.0.failure_message.clone().unwrap_or_default(),
        })
    }
}

/// A session's money, derived from its ledger by the database.
#[derive(SimpleObject)]
pub struct Balance {
    /// Everything authorized (holds and their increments).
    pub held: Money,
    /// Everything captured or charged.
    pub captured: Money,
    /// Everything refunded.
    pub refunded: Money,
    /// What remains on hold (held, less captured and released).
    pub capturable: Money,
}

/// A refund row, as the API shows it.
pub struct Refund(pub models::Refund);

/// A refund of (part of) a session's captured money, made with `refundSession`; seen by
/// whoever sees the session. Its movement of money is also in the session's `payments`
/// (kind `REFUND`).
#[Object]
impl Refund {
    /// The refund's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The money returned to the card, in minor units of the session's currency.
    async fn amount(&self) -> async_graphql::Result<Money> {
        Ok(money(self.0.amount, &self.0.currency)?)
    }
    /// Why the money goes back, as given to `refundSession`.
    async fn reason(&self) -> RefundReason {
        self.0.reason.into()
    }
    /// The refund's outcome at the processor: `PENDING` until it answers.
    async fn status(&self) -> PaymentStatus {
        self.0.status.into()
    }
    /// When the refund was asked for.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The state of a dispute.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DisputeStatus {
    /// Open: the processor has not decided.
    Open,
    /// Decided for the operator.
    Won,
    /// Decided for the cardholder: the money went back.
    Lost,
}

/// A dispute of the session's charge.
#[derive(SimpleObject)]
pub struct Dispute {
    /// The processor's dispute id.
    pub id: String,
    /// The money disputed, in minor units of the session's currency.
    pub amount: Money,
    /// The processor's reason (`fraudulent`, `product_not_received`, …).
    pub reason: Option<String>,
    /// Whether the dispute is open, won or lost.
    pub status: DisputeStatus,
    /// When the processor reported the dispute.
    pub created_at: DateTime<Utc>,
}

/// A charge token spent on its session's hold.
#[derive(SimpleObject)]
pub struct TokenHold {
    /// The session's total hold.
    pub amount: Money,
    /// When the processor drops the hold if it is not captured.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An amount of money in minor units (cents, pence, yen) of an ISO 4217 currency.
#[derive(SimpleObject)]
pub struct Money {
    /// Minor units: 250 with `USD` is $2.50.
    pub amount: i32,
    /// ISO 4217 code, upper case (`USD`).
    pub currency: String,
}

/// The published `amount` is an `Int` (32 bits) while curbpay's amounts are 64-bit; an
/// amount is at most eight digits, so one that does not fit is a bug, not a number to
/// clip.
impl TryFrom<domain::money::Money> for Money {
    type Error = ApiError;

    fn try_from(money: domain::money::Money) -> Result<Money, ApiError> {
        let amount = i32::try_from(money.amount)
            .map_err(|_| ApiError::internal(format!("amount {} does not fit the schema's Int", money.amount)))?;
        Ok(Money { amount, currency: money.currency })
    }
}

/// An amount of money in minor units.
#[derive(InputObject)]
pub struct MoneyInput {
    /// Minor units, greater than zero: 250 with `usd` is $2.50.
    pub amount: i32,
    /// ISO 4217 code in any case (`usd`, `EUR`).
    pub currency: String,
}

/// Why a charge failed, as the processor reported it.
#[derive(SimpleObject)]
pub struct PaymentFailure {
    /// The processor's error code (`card_declined`, `expired_card`, …).
    pub code: String,
    /// The issuer's decline code when given (`insufficient_funds`, `lost_card`, …).
    pub decline_code: Option<String>,
    /// A message fit to show the end user.
    pub message: String,
}

/// A session row, as the API shows it, with the charge token the request that returns
/// it issued (then `chargeToken` needs no read).
pub struct ParkingSession(pub models::ParkingSession, Option<models::ChargeToken>);

impl ParkingSession {
    /// The session as read or written.
    pub fn new(row: models::ParkingSession) -> ParkingSession {
        ParkingSession(row, None)
    }

    /// A session whose latest charge token is `issued` (just issued by this request).
    pub fn with_issued(row: models::ParkingSession, issued: Option<models::ChargeToken>) -> ParkingSession {
        ParkingSession(row, issued)
    }
}

/// An end user parking at an operator, paid through the app's customer. Its app, its
/// operator and admins see it.
#[Object]
impl ParkingSession {
    /// The session's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Current state.
    async fn status(&self) -> SessionStatus {
        self.0.status.into()
    }
    /// The parking zone (the operator's own code).
    async fn zone(&self) -> &str {
        &self.0.zone
    }
    /// The vehicle's plate.
    async fn vehicle_plate(&self) -> &str {
        &self.0.vehicle_plate
    }
    /// When parking started.
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// When parking ended.
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.ended_at
    }
    /// The amount owed, once ended.
    async fn amount(&self) -> async_graphql::Result<Option<Money>> {
        let (Some(amount), Some(currency)) = (self.0.amount, &self.0.currency) else {
            return Ok(None);
        };
        Ok(Some(money(amount, currency)?))
    }
    /// When the charge succeeded.
    async fn charged_at(&self) -> Option<DateTime<Utc>> {
        self.0.charged_at
    }
    /// The processor's charge id, once charged.
    async fn processor_charge_id(&self) -> Option<&str> {
        self.0.processor_charge_id.as_deref()
    }
    /// Why the charge failed (status `PAYMENT_FAILED`).
    async fn failure(&self) -> Option<PaymentFailure> {
        Some(PaymentFailure {
            code: self.0.failure_code.clone()?,
            decline_code: self.0.failure_decline_code.clone(),
            message: self.0.failure_message.clone().unwrap_or_default(),
        })
    }
    /// When the app expects parking to end (extensions move it).
    async fn expected_end_at(&self) -> Option<DateTime<Utc>> {
        self.0.expected_end_at
    }
    /// Who set `amount`.
    async fn amount_set_by(&self) -> Option<AmountSetBy> {
        self.0.amount_set_by.map(Into::into)
    }
    /// Why the session was canceled (status `CANCELED`).
    async fn cancel_reason(&self) -> Option<CancelReason> {
        self.0.cancel_reason.map(Into::into)
    }
    /// The session's money, once it has a currency (from its hold, or its amount).
    async fn balance(&self) -> async_graphql::Result<Option<Balance>> {
        let Some(currency) = self.0.money_currency() else {
            return Ok(None);
        };
        let s = &self.0;
        Ok(Some(Balance {
            held: money(s.held_amount, currency)?,
            captured: money(s.captured_amount, currency)?,
            refunded: money(s.refunded_amount, currency)?,
            capturable: money((s.held_amount - s.captured_amount - s.released_amount).max(0), currency)?,
        }))
    }
    /// Every movement of the session's money, oldest first.
    async fn payments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Payment>> {
        let rows = crate::graphql::loader_set(ctx).session_payments.load_one(self.0.id).await?;
        Ok(rows.unwrap_or_default().into_iter().map(Payment).collect())
    }
    /// The session's refunds, oldest first.
    async fn refunds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Refund>> {
        let rows = crate::graphql::loader_set(ctx).session_refunds.load_one(self.0.id).await?;
        Ok(rows.unwrap_or_default().into_iter().map(Refund).collect())
    }
    /// The latest dispute of the session's charge.
    async fn dispute(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Dispute>> {
        let rows = crate::graphql::loader_set(ctx).session_payments.load_one(self.0.id).await?;
        let dispute = rows.unwrap_or_default().into_iter().rev().find(|p| p.kind == models::PaymentKind::Dispute);
        Ok(dispute
            .map(|p| -> Result<Dispute, ApiError> {
                Ok(Dispute {
                    id: p.processor_reference.clone().unwrap_or_default(),
                    amount: money(p.amount, &p.currency)?,
                    reason: p.reason.clone(),
                    status: match p.status {
                        models::PaymentStatus::Pending => DisputeStatus::Open,
                        models::PaymentStatus::Succeeded => DisputeStatus::Lost,
                        models::PaymentStatus::Failed => DisputeStatus::Won,
                    },
                    created_at: p.created_at,
                })
            })
            .transpose()?)
    }
    /// The app selling the session.
    async fn app(&self, ctx: &Context<'_>) -> async_graphql::Result<App> {
        let row = crate::graphql::loader_set(ctx).apps.load_one(self.0.app_id).await?;
        row.map(App).ok_or_else(|| ApiError::NotFound("app").into())
    }
    /// The operator where the vehicle parks.
    async fn operator(&self, ctx: &Context<'_>) -> async_graphql::Result<Operator> {
        let row = crate::graphql::loader_set(ctx).operators.load_one(self.0.operator_id).await?;
        row.map(Operator).ok_or_else(|| ApiError::NotFound("operator").into())
    }
    /// The paying customer (its card facts, never a number).
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Customer> {
        let row = crate::graphql::loader_set(ctx).customers.load_one(self.0.customer_id).await?;
        row.map(Customer).ok_or_else(|| ApiError::NotFound("customer").into())
    }
    /// The link the session runs on.
    async fn link(&self, ctx: &Context<'_>) -> async_graphql::Result<Link> {
        let row = crate::graphql::loader_set(ctx).links.load_one(self.0.link_id).await?;
        row.map(Link::new).ok_or_else(|| ApiError::NotFound("link").into())
    }
    /// The latest charge token issued for the session.
    async fn charge_token(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ChargeToken>> {
        if let Some(issued) = &self.1 {
            return Ok(Some(ChargeToken(issued.clone())));
        }
        let tokens = crate::graphql::loader_set(ctx).session_tokens.load_one(self.0.id).await?;
        Ok(tokens.and_then(|mut t| t.pop()).map(ChargeToken))
    }
    /// Every charge token issued for the session, oldest first.
    async fn charge_tokens(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ChargeToken>> {
        let tokens = crate::graphql::loader_set(ctx).session_tokens.load_one(self.0.id).await?;
        Ok(tokens.unwrap_or_default().into_iter().map(ChargeToken).collect())
    }
}

/// The state of a charge token.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ChargeTokenStatus {
    /// Issued to the operator and usable.
    Issued,
    /// The operator confirmed it received the token; still usable.
    Acknowledged,
    /// Used for the session's charge.
    Consumed,
    /// Past its expiry unused; `reissueChargeToken` makes a fresh one.
    Expired,
    /// Spent on the session's hold: the operator is paid by capture (`chargeSession`),
    /// not with this token.
    Held,
    /// Voided because the link was revoked or the session canceled or declined.
    Voided,
}

/// A charge token row, as the API shows it.
pub struct ChargeToken(pub models::ChargeToken);

/// A single-use token on the operator's connected account, made from the app's
/// customer for one parking session. The operator it was issued to, the session's app
/// and admins see it; only that operator sees its value (`token`).
#[Object]
impl ChargeToken {
    /// The charge token's id (for `acknowledgeChargeToken`).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The processor's single-use token; only the operator it was issued to sees it.
    async fn token(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        let viewer = principal(ctx)?;
        Ok(policy::may_read_token_value(viewer, &self.0).then_some(self.0.token.as_deref()).flatten())
    }
    /// Current state (an unused token past `expiresAt` shows as `EXPIRED`).
    async fn status(&self) -> ChargeTokenStatus {
        match self.0.effective_status(Utc::now()) {
            TokenState::Issued | TokenState::Pending => ChargeTokenStatus::Issued,
            TokenState::Acknowledged => ChargeTokenStatus::Acknowledged,
            TokenState::Consumed => ChargeTokenStatus::Consumed,
            TokenState::Expired => ChargeTokenStatus::Expired,
            TokenState::Held => ChargeTokenStatus::Held,
            TokenState::Voided => ChargeTokenStatus::Voided,
        }
    }
    /// The hold the token was spent on (status `HELD`).
    async fn hold(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<TokenHold>> {
        if self.0.status != TokenState::Held {
            return Ok(None);
        }
        let session = crate::graphql::loader_set(ctx).sessions.load_one(self.0.session_id).await?;
        let Some((held, Some(currency))) = session.map(|s| (s.held_amount, s.hold_currency)) else {
            return Ok(None);
        };
        Ok(Some(TokenHold { amount: money(held, &currency)?, expires_at: self.0.expires_at }))
    }
    /// The token's position in the operator's delivery stream (`chargeTokenIssued(after:)`).
    async fn cursor(&self) -> Option<String> {
        self.0.cursor.map(|c| c.to_string())
    }
    /// When it was issued.
    async fn issued_at(&self) -> Option<DateTime<Utc>> {
        self.0.issued_at
    }
    /// When it stops being usable.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// When the operator acknowledged it.
    async fn acknowledged_at(&self) -> Option<DateTime<Utc>> {
        self.0.acknowledged_at
    }
    /// When it was used for the charge.
    async fn consumed_at(&self) -> Option<DateTime<Utc>> {
        self.0.consumed_at
    }
    /// When it was voided.
    async fn voided_at(&self) -> Option<DateTime<Utc>> {
        self.0.voided_at
    }
    /// The session it pays for.
    async fn session(&self, ctx: &Context<'_>) -> async_graphql::Result<ParkingSession> {
        let viewer = principal(ctx)?;
        let row = crate::graphql::loader_set(ctx).sessions.load_one(self.0.session_id).await?;
        row.filter(|session| policy::may_see_token(viewer, &self.0, session.app_id))
            .map(ParkingSession::new)
            .ok_or_else(|| ApiError::NotFound("parking session").into())
    }
    /// The operator it was issued to.
    async fn operator(&self, ctx: &Context<'_>) -> async_graphql::Result<Operator> {
        let row = crate::graphql::loader_set(ctx).operators.load_one(self.0.operator_id).await?;
        row.map(Operator).ok_or_else(|| ApiError::NotFound("operator").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_outside_the_schemas_int_is_an_internal_error() {
        let published = Money::try_from(domain::money::Money { amount: 250, currency: "USD".to_owned() }).unwrap();
        assert_eq!((published.amount, published.currency.as_str()), (250, "USD"));
        let too_big = domain::money::Money { amount: i64::from(i32::MAX) + 1, currency: "USD".to_owned() };
        assert!(matches!(Money::try_from(too_big), Err(ApiError::Internal(..))));
    }
}
