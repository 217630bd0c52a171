//! Parking sessions, money, and the charge tokens handed to operators.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::links::Link;
use super::parties::{App, Customer, Operator};
use crate::error::ApiError;
use crate::graphql::loaders::Loaders;
use crate::graphql::principal;
use crate::models::{self, ChargeTokenStatus as TokenState};
use crate::payments::policy;

/// The state of a parking session.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::SessionStatus")]
pub enum SessionStatus {
    /// Parking; the operator holds a charge token.
    Active,
    /// Parking ended with an amount owed; waiting for the operator to charge.
    Ended,
    /// Paid.
    Charged,
    /// The charge was declined; `failure` says why.
    PaymentFailed,
}

/// An amount of money in minor units (cents, pence, yen) of an ISO 4217 currency.
#[derive(SimpleObject)]
pub struct Money {
    /// Minor units: 250 with `USD` is $2.50.
    pub amount: i32,
    /// ISO 4217 code, upper case (`USD`).
    pub currency: String,
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

/// An end user parking at an operator, paid through the app's customer.
pub struct ParkingSession(pub models::ParkingSession);

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
    async fn amount(&self) -> Option<Money> {
        Some(Money { amount: i32::try_from(self.0.amount?).unwrap_or(i32::MAX), currency: self.0.currency.clone()? })
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
    /// The app selling the session.
    async fn app(&self, ctx: &Context<'_>) -> async_graphql::Result<App> {
        let row = ctx.data_unchecked::<Loaders>().apps.load_one(self.0.app_id).await?;
        row.map(App).ok_or_else(|| ApiError::NotFound("app").into())
    }
    /// The operator where the vehicle parks.
    async fn operator(&self, ctx: &Context<'_>) -> async_graphql::Result<Operator> {
        let row = ctx.data_unchecked::<Loaders>().operators.load_one(self.0.operator_id).await?;
        row.map(Operator).ok_or_else(|| ApiError::NotFound("operator").into())
    }
    /// The paying customer (its card facts, never a number).
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Customer> {
        let row = ctx.data_unchecked::<Loaders>().customers.load_one(self.0.customer_id).await?;
        row.map(Customer).ok_or_else(|| ApiError::NotFound("customer").into())
    }
    /// The link the session runs on.
    async fn link(&self, ctx: &Context<'_>) -> async_graphql::Result<Link> {
        let row = ctx.data_unchecked::<Loaders>().links.load_one(self.0.link_id).await?;
        row.map(Link).ok_or_else(|| ApiError::NotFound("link").into())
    }
    /// The latest charge token issued for the session.
    async fn charge_token(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ChargeToken>> {
        let tokens = ctx.data_unchecked::<Loaders>().session_tokens.load_one(self.0.id).await?;
        Ok(tokens.and_then(|mut t| t.pop()).map(ChargeToken))
    }
    /// Every charge token issued for the session, oldest first.
    async fn charge_tokens(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ChargeToken>> {
        let tokens = ctx.data_unchecked::<Loaders>().session_tokens.load_one(self.0.id).await?;
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
    /// Voided because the link was revoked.
    Voided,
}

/// A single-use token on the operator's connected account, made from the app's
/// customer for one parking session. Only the operator it was issued to sees its value.
pub struct ChargeToken(pub models::ChargeToken);

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
            TokenState::Voided => ChargeTokenStatus::Voided,
        }
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
        let row = ctx.data_unchecked::<Loaders>().sessions.load_one(self.0.session_id).await?;
        row.filter(|session| policy::may_see_token(viewer, &self.0, session.app_id))
            .map(ParkingSession)
            .ok_or_else(|| ApiError::NotFound("parking session").into())
    }
    /// The operator it was issued to.
    async fn operator(&self, ctx: &Context<'_>) -> async_graphql::Result<Operator> {
        let row = ctx.data_unchecked::<Loaders>().operators.load_one(self.0.operator_id).await?;
        row.map(Operator).ok_or_else(|| ApiError::NotFound("operator").into())
    }
}
