//! `createApp` and `createOperator`: the two sides of the marketplace.

use async_graphql::{Context, InputObject, Object, SimpleObject};

use crate::graphql::types::{App, Operator};
use crate::graphql::{broker, principal};
use crate::payments::parties;

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
    async fn create_app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app's name, its platform fee and (Stripe mode) its platform account's keys.")]
        input: CreateAppInput,
    ) -> async_graphql::Result<CreateAppPayload> {
        let credentials = input.stripe.as_ref().map(|s| parties::StripeCredentials {
            secret_key: &s.secret_key,
            publishable_key: &s.publishable_key,
            connect_client_id: &s.connect_client_id,
            webhook_secret: &s.webhook_secret,
        });
        let request =
            parties::NewAppRequest { name: &input.name, credentials, platform_fee_bps: input.platform_fee_bps };
        let created = parties::create_app(broker(ctx), principal(ctx)?, request).await?;
        Ok(CreateAppPayload { app: App(created) })
    }

    /// Creates an operator. Admin only.
    async fn create_operator(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The operator's name.")] input: CreateOperatorInput,
    ) -> async_graphql::Result<CreateOperatorPayload> {
        let created = parties::create_operator(broker(ctx), principal(ctx)?, &input.name).await?;
        Ok(CreateOperatorPayload { operator: Operator(created) })
    }
}
