//! Links between apps and operators.

use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};

use super::parties::{App, Operator};
use crate::error::ApiError;
use crate::graphql::{app, principal};
use crate::models;
use crate::payments::links;

/// The state of a link.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::models::LinkStatus")]
pub enum LinkStatus {
    /// Waiting for the operator to authorize the app's platform.
    Pending,
    /// Authorized: sessions can start and charge tokens are issued.
    Active,
    /// Ended by either side; outstanding charge tokens were voided.
    Revoked,
}

/// A connection between an operator's processor account and an app's platform account.
pub struct Link(pub models::Link);

#[Object]
impl Link {
    /// The link's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Current state.
    async fn status(&self) -> LinkStatus {
        self.0.status.into()
    }
    /// The app side.
    async fn app(&self, ctx: &Context<'_>) -> async_graphql::Result<App> {
        let row = crate::graphql::loader_set(ctx).apps.load_one(self.0.app_id).await?;
        row.map(App).ok_or_else(|| ApiError::NotFound("app").into())
    }
    /// The operator side.
    async fn operator(&self, ctx: &Context<'_>) -> async_graphql::Result<Operator> {
        let row = crate::graphql::loader_set(ctx).operators.load_one(self.0.operator_id).await?;
        row.map(Operator).ok_or_else(|| ApiError::NotFound("operator").into())
    }
    /// Where the operator authorizes the app's platform (Connect OAuth). Set while the
    /// link is `PENDING`, for the link's operator and admins only (null for the app:
    /// it asks for a link, the operator authorizes it). Following it ends at this
    /// server's `/connect/callback`, which activates the link. Single-use, valid for an
    /// hour; read it again for a fresh one.
    async fn authorization_url(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let viewer = principal(ctx)?;
        if self.0.status != models::LinkStatus::Pending {
            return Ok(None);
        }
        let Some(platform) = crate::graphql::loader_set(ctx).apps.load_one(self.0.app_id).await? else {
            return Ok(None);
        };
        Ok(links::authorization_url(app(ctx), viewer, &self.0, &platform)?)
    }
    /// The operator's connected account id at the processor, once `ACTIVE`.
    async fn connected_account_id(&self) -> Option<&str> {
        self.0.connected_account_id.as_deref()
    }
    /// While `PENDING`: the processor account the last authorization yielded, held
    /// because it is not the account the operator is known by (the first it connected)
    /// or is another operator's; an admin's `acceptLinkAccount` activates the link on it.
    async fn held_account_id(&self) -> Option<&str> {
        self.0.held_account_id.as_deref()
    }
    /// Whether the app may refund the link's sessions (`refundSession`); set by the
    /// link's operator or an admin with `updateLink`.
    async fn app_may_refund(&self) -> bool {
        self.0.app_may_refund
    }
    /// Whether the connected account can take charges, as the app's processor last
    /// reported it (unknown until it reports).
    async fn charges_enabled(&self) -> Option<bool> {
        self.0.charges_enabled
    }
    /// Whether the connected account can receive payouts, as last reported.
    async fn payouts_enabled(&self) -> Option<bool> {
        self.0.payouts_enabled
    }
    /// Why the last authorization attempt failed (for example, the operator declined).
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    /// When the link was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the link last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When the operator authorized it.
    async fn activated_at(&self) -> Option<DateTime<Utc>> {
        self.0.activated_at
    }
    /// When it was revoked.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}
