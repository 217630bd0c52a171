//! Mutation roots, one per domain, merged into `MutationRoot`. Each mutation takes an
//! input object and returns a payload object, so both can grow without breaking clients.

use async_graphql::{Context, ID, InputObject, MergedObject, Object, SimpleObject};

use super::types::{
    App, CancelReason, ChargeToken, Customer, Link, MoneyInput, Operator, ParkingSession, PaymentFailure, Refund,
    RefundReason,
};
use super::{app, parse_id, principal};
use crate::models::SessionStatus;
use crate::payments::money::Money;
use crate::payments::sessions::StartSession;
use crate::payments::{customers, holds, links, parties, refunds, sessions, tokens};

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    PartyMutation,
    LinkMutation,
    CustomerMutation,
    SessionMutation,
    super::webhooks::WebhookMutation,
);

/// Input of `createApp`.
#[derive(InputObject)]
pub struct CreateAppInput {
    /// Display name, 1–200 characters.
    pub name: String,
    /// The app's Stripe platform account. Required in Stripe mode; omit it with the
    /// sandbox processor, which makes its own accounts.
    pub stripe: Option<StripeCredentialsInput>,
    /// The app's cut of each charge, in basis points of the amount (250 = 2.5 %), taken
    /// as Stripe's `application_fee_amount`.
    pub platform_fee_bps: Option<i32>,
}

/// Credentials of an app's Stripe platform account. The secrets are stored encrypted
/// and never returned.
#[derive(InputObject)]
pub struct StripeCredentialsInput {
    /// The platform account's secret API key (`sk_…`).
    #[graphql(secret)]
    pub secret_key: String,
    /// The platform account's publishable key (`pk_…`), for the app's frontend.
    pub publishable_key: String,
    /// The platform's Connect client id (`ca_…`), for operators' OAuth.
    pub connect_client_id: String,
    /// The signing secret (`whsec_…`) of the platform's Connect webhook endpoint.
    #[graphql(secret)]
    pub webhook_secret: String,
}

/// Result of `createApp`.
#[derive(SimpleObject)]
pub struct CreateAppPayload {
    /// The new app, with the publishable key of its platform account.
    pub app: App,
}

/// Input of `createOperator`.
#[derive(InputObject)]
pub struct CreateOperatorInput {
    /// Display name, 1–200 characters.
    pub name: String,
}

/// Result of `createOperator`.
#[derive(SimpleObject)]
pub struct CreateOperatorPayload {
    /// The new operator.
    pub operator: Operator,
}

#[derive(Default)]
pub struct PartyMutation;

#[Object]
impl PartyMutation {
    /// Creates an app and its platform account at the processor. Admin only.
    async fn create_app(&self, ctx: &Context<'_>, input: CreateAppInput) -> async_graphql::Result<CreateAppPayload> {
        let credentials = input.stripe.map(|s| crate::processor::PlatformCredentials {
            secret_key: s.secret_key.into(),
            publishable_key: s.publishable_key,
            connect_client_id: s.connect_client_id,
            webhook_secret: s.webhook_secret.into(),
        });
        let request =
            parties::NewAppRequest { name: &input.name, credentials, platform_fee_bps: input.platform_fee_bps };
        let created = parties::create_app(app(ctx), principal(ctx)?, request).await?;
        Ok(CreateAppPayload { app: App(created) })
    }

    /// Creates an operator. Admin only.
    async fn create_operator(
        &self,
        ctx: &Context<'_>,
        input: CreateOperatorInput,
    ) -> async_graphql::Result<CreateOperatorPayload> {
        let created = parties::create_operator(app(ctx), principal(ctx)?, &input.name).await?;
        Ok(CreateOperatorPayload { operator: Operator(created) })
    }
}

/// Input of `linkOperator`.
#[derive(InputObject)]
pub struct LinkOperatorInput {
    /// The app to link (an app may only link itself).
    pub app_id: ID,
    /// The operator to link.
    pub operator_id: ID,
}

/// Result of `linkOperator`.
#[derive(SimpleObject)]
pub struct LinkOperatorPayload {
    /// The link: `PENDING` with an `authorizationUrl` for the operator, or already `ACTIVE`.
    pub link: Link,
}

/// Input of `completeLink`.
#[derive(InputObject)]
pub struct CompleteLinkInput {
    /// The pending link.
    pub link_id: ID,
    /// The `code` the processor's authorization redirect carried.
    pub authorization_code: String,
}

/// Result of `completeLink`.
#[derive(SimpleObject)]
pub struct CompleteLinkPayload {
    /// The link: `ACTIVE` with the operator's connected account id, or still `PENDING`
    /// with `heldAccountId` and `failureReason` when the account is not the one the
    /// operator is known by (an admin then decides with `acceptLinkAccount`).
    pub link: Link,
}

/// Input of `acceptLinkAccount`.
#[derive(InputObject)]
pub struct AcceptLinkAccountInput {
    /// The pending link whose held account to accept.
    pub link_id: ID,
}

/// Result of `acceptLinkAccount`.
#[derive(SimpleObject)]
pub struct AcceptLinkAccountPayload {
    /// The link, now `ACTIVE` on the accepted account.
    pub link: Link,
}

/// Input of `unlinkOperator`.
#[derive(InputObject)]
pub struct UnlinkOperatorInput {
    /// The link to revoke.
    pub link_id: ID,
}

/// Result of `unlinkOperator`.
#[derive(SimpleObject)]
pub struct UnlinkOperatorPayload {
    /// The link, now `REVOKED`.
    pub link: Link,
}

/// Input of `updateLink`.
#[derive(InputObject)]
pub struct UpdateLinkInput {
    /// The link to change.
    pub link_id: ID,
    /// Whether the app may refund the link's sessions; omitted: unchanged.
    pub app_may_refund: Option<bool>,
}

/// Result of `updateLink`.
#[derive(SimpleObject)]
pub struct UpdateLinkPayload {
    /// The link as changed.
    pub link: Link,
}

#[derive(Default)]
pub struct LinkMutation;

#[Object]
impl LinkMutation {
    /// Starts linking an operator's processor account to an app's platform. Admin, or
    /// the app itself. Idempotent: an existing pending or active link is returned; a
    /// revoked one asks for authorization again.
    async fn link_operator(
        &self,
        ctx: &Context<'_>,
        input: LinkOperatorInput,
    ) -> async_graphql::Result<LinkOperatorPayload> {
        let app_id = parse_id("appId", &input.app_id)?;
        let operator_id = parse_id("operatorId", &input.operator_id)?;
        let link = links::link_operator(app(ctx), principal(ctx)?, app_id, operator_id).await?;
        Ok(LinkOperatorPayload { link: Link::new(link) })
    }

    /// Completes a pending link with the authorization code from the processor's
    /// redirect (the same step `/connect/callback` performs). Admin, or the link's
    /// operator: an app asks for links but never authorizes them (`FORBIDDEN`). A code
    /// issued for another link or operator is refused (`BAD_USER_INPUT`); an account
    /// other than the operator's known one (the first it connected) is held for an
    /// admin, and the link stays `PENDING`.
    async fn complete_link(
        &self,
        ctx: &Context<'_>,
        input: CompleteLinkInput,
    ) -> async_graphql::Result<CompleteLinkPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::complete_link(app(ctx), principal(ctx)?, link_id, &input.authorization_code).await?;
        Ok(CompleteLinkPayload { link: Link::new(link) })
    }

    /// Activates a pending link on the processor account its last authorization yielded
    /// and curbpay held because it is not the account the operator is known by (see
    /// `Link.heldAccountId`). Admin only, after checking with the operator that the
    /// account is theirs. `CONFLICT` when the link holds no account.
    async fn accept_link_account(
        &self,
        ctx: &Context<'_>,
        input: AcceptLinkAccountInput,
    ) -> async_graphql::Result<AcceptLinkAccountPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::accept_held_account(app(ctx), principal(ctx)?, link_id).await?;
        Ok(AcceptLinkAccountPayload { link: Link::new(link) })
    }

    /// Changes a link's settings. The link's operator or an admin (`FORBIDDEN` for the app).
    async fn update_link(&self, ctx: &Context<'_>, input: UpdateLinkInput) -> async_graphql::Result<UpdateLinkPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::update_link(app(ctx), principal(ctx)?, link_id, input.app_may_refund).await?;
        Ok(UpdateLinkPayload { link: Link::new(link) })
    }

    /// Revokes a link at the processor and here; its outstanding charge tokens become
    /// `VOIDED`. Admin, or a party to the link. Revoking twice is harmless.
    async fn unlink_operator(
        &self,
        ctx: &Context<'_>,
        input: UnlinkOperatorInput,
    ) -> async_graphql::Result<UnlinkOperatorPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::unlink(app(ctx), principal(ctx)?, link_id).await?;
        Ok(UnlinkOperatorPayload { link: Link::new(link) })
    }
}

/// Input of `tokenizeCustomer`.
#[derive(InputObject)]
pub struct TokenizeCustomerInput {
    /// The app's own reference for the user (unique per app, 1–255 characters).
    pub external_ref: String,
    /// A card token made by the app's frontend with the app's publishable key
    /// (`tok_…`). Never a card number.
    pub card_token: String,
}

/// Result of `tokenizeCustomer`.
#[derive(SimpleObject)]
pub struct TokenizeCustomerPayload {
    /// The customer with its card facts.
    pub customer: Customer,
    /// True when the customer was new; false when its card was replaced.
    pub created: bool,
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Creates the app's customer at the processor from a card token, or replaces the
    /// card of the customer with the same `externalRef`. Role app.
    async fn tokenize_customer(
        &self,
        ctx: &Context<'_>,
        input: TokenizeCustomerInput,
    ) -> async_graphql::Result<TokenizeCustomerPayload> {
        let (customer, created) =
            customers::tokenize(app(ctx), principal(ctx)?, &input.external_ref, &input.card_token).await?;
        Ok(TokenizeCustomerPayload { customer: Customer(customer), created })
    }
}

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

/// Input of `reissueChargeToken`.
#[derive(InputObject)]
pub struct ReissueChargeTokenInput {
    /// The session whose token expired or was voided.
    pub session_id: ID,
}

/// Result of `reissueChargeToken`.
#[derive(SimpleObject)]
pub struct ReissueChargeTokenPayload {
    /// The fresh token (its value is visible to the operator only).
    pub charge_token: ChargeToken,
}

/// Input of `acknowledgeChargeToken`.
#[derive(InputObject)]
pub struct AcknowledgeChargeTokenInput {
    /// The token the operator received.
    pub charge_token_id: ID,
}

/// Result of `acknowledgeChargeToken`.
#[derive(SimpleObject)]
pub struct AcknowledgeChargeTokenPayload {
    /// The token, `ACKNOWLEDGED` (unless already consumed, expired or voided).
    pub charge_token: ChargeToken,
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
        input: StartParkingSessionInput,
    ) -> async_graphql::Result<StartParkingSessionPayload> {
        let started = sessions::start(
            app(ctx),
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
        Ok(StartParkingSessionPayload { session: ParkingSession(started.session), replayed: started.replayed })
    }

    /// Ends a session with the amount owed. The session's app or operator (or admin).
    async fn end_parking_session(
        &self,
        ctx: &Context<'_>,
        input: EndParkingSessionInput,
    ) -> async_graphql::Result<EndParkingSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let money = Money::parse(input.amount.amount.into(), &input.amount.currency)?;
        let session = sessions::end(app(ctx), principal(ctx)?, session_id, money).await?;
        Ok(EndParkingSessionPayload { session: ParkingSession(session) })
    }

    /// Charges an ended session's amount with its token on the operator's account. The
    /// session's operator (or admin). Charging again returns the first outcome: a
    /// session is never charged twice.
    async fn charge_session(
        &self,
        ctx: &Context<'_>,
        input: ChargeSessionInput,
    ) -> async_graphql::Result<ChargeSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let session = sessions::charge(app(ctx), principal(ctx)?, session_id).await?;
        let succeeded = session.status == SessionStatus::Charged;
        let failure = session.failure_code.clone().map(|code| PaymentFailure {
            code,
            decline_code: session.failure_decline_code.clone(),
            message: session.failure_message.clone().unwrap_or_default(),
        });
        Ok(ChargeSessionPayload { session: ParkingSession(session), succeeded, failure })
    }

    /// Raises an `ACTIVE` held session's hold and moves its expected end. The session's
    /// app. In place where the card allows it (incremental authorization), otherwise a
    /// second hold for the difference.
    async fn extend_parking_session(
        &self,
        ctx: &Context<'_>,
        input: ExtendParkingSessionInput,
    ) -> async_graphql::Result<ExtendParkingSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let additional = Money::parse(input.additional_hold.amount.into(), &input.additional_hold.currency)?;
        let (session, row) = holds::extend(
            app(ctx),
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
        Ok(ExtendParkingSessionPayload { session: ParkingSession(session), failure })
    }

    /// Cancels an `ACTIVE` session: its charge tokens become `VOIDED`, its hold is
    /// released, nothing is charged. The session's app or operator (or admin).
    async fn cancel_parking_session(
        &self,
        ctx: &Context<'_>,
        input: CancelParkingSessionInput,
    ) -> async_graphql::Result<CancelParkingSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let reason: crate::models::CancelReason = input.reason.into();
        if reason == crate::models::CancelReason::Expired {
            return Err(crate::error::ApiError::bad_input("EXPIRED is set by curbpay only").into());
        }
        let session = holds::cancel(app(ctx), principal(ctx)?, session_id, reason).await?;
        Ok(CancelParkingSessionPayload { session: ParkingSession(session) })
    }

    /// Returns (part of) a charged session's money to the card; the app's fee goes back
    /// in proportion. The session's operator or an admin, and its app when the link
    /// allows it (`Link.appMayRefund`).
    async fn refund_session(
        &self,
        ctx: &Context<'_>,
        input: RefundSessionInput,
    ) -> async_graphql::Result<RefundSessionPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let amount = input.amount.map(|m| Money::parse(m.amount.into(), &m.currency)).transpose()?;
        let (session, refund) = refunds::refund(
            app(ctx),
            principal(ctx)?,
            refunds::RefundInput {
                session_id,
                amount,
                reason: input.reason.into(),
                idempotency_key: &input.idempotency_key,
            },
        )
        .await?;
        Ok(RefundSessionPayload { session: ParkingSession(session), refund: Refund(refund) })
    }

    /// Issues a fresh charge token when the session's last one expired or was voided.
    /// The session's app or operator (or admin).
    async fn reissue_charge_token(
        &self,
        ctx: &Context<'_>,
        input: ReissueChargeTokenInput,
    ) -> async_graphql::Result<ReissueChargeTokenPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let viewer = principal(ctx)?;
        let token = tokens::reissue(app(ctx), viewer, session_id).await?;
        Ok(ReissueChargeTokenPayload { charge_token: ChargeToken(token) })
    }

    /// Confirms the operator received a charge token. Role operator.
    async fn acknowledge_charge_token(
        &self,
        ctx: &Context<'_>,
        input: AcknowledgeChargeTokenInput,
    ) -> async_graphql::Result<AcknowledgeChargeTokenPayload> {
        let token_id = parse_id("chargeTokenId", &input.charge_token_id)?;
        let viewer = principal(ctx)?;
        let token = tokens::acknowledge(app(ctx), viewer, token_id).await?;
        Ok(AcknowledgeChargeTokenPayload { charge_token: ChargeToken(token) })
    }
}
