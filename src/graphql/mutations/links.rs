//! Linking an operator's processor account to an app: `linkOperator`, `completeLink`,
//! `acceptLinkAccount`, `updateLink`, `unlinkOperator`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::graphql::types::Link;
use crate::graphql::{broker, parse_id, principal};
use crate::payments::links;

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
        #[graphql(desc = "The app and the operator to link.")] input: LinkOperatorInput,
    ) -> async_graphql::Result<LinkOperatorPayload> {
        let app_id = parse_id("appId", &input.app_id)?;
        let operator_id = parse_id("operatorId", &input.operator_id)?;
        let link = links::link_operator(broker(ctx), principal(ctx)?, app_id, operator_id).await?;
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
        #[graphql(desc = "The link and the authorization code the processor's redirect carried.")]
        input: CompleteLinkInput,
    ) -> async_graphql::Result<CompleteLinkPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::complete_link(broker(ctx), principal(ctx)?, link_id, &input.authorization_code).await?;
        Ok(CompleteLinkPayload { link: Link::new(link) })
    }

    /// Activates a pending link on the processor account its last authorization yielded
    /// and curbpay held because it is not the account the operator is known by (see
    /// `Link.heldAccountId`). Admin only, after checking with the operator that the
    /// account is theirs. `CONFLICT` when the link holds no account.
    async fn accept_link_account(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The link whose held account to accept.")] input: AcceptLinkAccountInput,
    ) -> async_graphql::Result<AcceptLinkAccountPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::accept_held_account(broker(ctx), principal(ctx)?, link_id).await?;
        Ok(AcceptLinkAccountPayload { link: Link::new(link) })
    }

    /// Changes a link's settings. The link's operator or an admin (`FORBIDDEN` for the app).
    async fn update_link(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The link and the settings to change.")] input: UpdateLinkInput,
    ) -> async_graphql::Result<UpdateLinkPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::update_link(broker(ctx), principal(ctx)?, link_id, input.app_may_refund).await?;
        Ok(UpdateLinkPayload { link: Link::new(link) })
    }

    /// Revokes a link at the processor and here; its outstanding charge tokens become
    /// `VOIDED`. Admin, or a party to the link. Revoking twice is harmless.
    async fn unlink_operator(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The link to revoke.")] input: UnlinkOperatorInput,
    ) -> async_graphql::Result<UnlinkOperatorPayload> {
        let link_id = parse_id("linkId", &input.link_id)?;
        let link = links::unlink(broker(ctx), principal(ctx)?, link_id).await?;
        Ok(UnlinkOperatorPayload { link: Link::new(link) })
    }
}
