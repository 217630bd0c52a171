//! Links between apps and operators.

use std::borrow::Cow;

use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};

use super::parties::{App, Operator};
use crate::error::ApiError;
use crate::graphql::{broker, principal};
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

/// A link row, as the API shows it.
pub struct Link {
    row: models::Link,
    /// Both sides' rows, when the list that holds the link fetched them with it (in
    /// the same statement); otherwise `app` and `operator` go through the loaders.
    parties: Option<(App, Operator)>,
}

impl Link {
    /// A link whose app and operator are read through the loaders.
    pub fn new(row: models::Link) -> Link {
        Link { row, parties: None }
    }

    /// A link whose app and operator rows were read with it.
    pub fn with_parties((row, app, operator): (models::Link, models::App, models::Operator)) -> Link {
        Link { row, parties: Some((App(app), Operator(operator))) }
    }
}

/// A connection between an operator's processor account and an app's platform
/// account: once `ACTIVE`, the app can start sessions at the operator and charge them to
/// its customers' cards. Its app, its operator and admins see it.
#[Object]
impl Link {
    /// The link's id.
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// Current state.
    async fn status(&self) -> LinkStatus {
        self.row.status.into()
    }
    /// The app side.
    async fn app(&self, ctx: &Context<'_>) -> async_graphql::Result<Cow<'_, App>> {
        if let Some((app, _)) = &self.parties {
            return Ok(Cow::Borrowed(app));
        }
        let row = crate::graphql::loader_set(ctx).apps.load_one(self.row.app_id).await?;
        row.map(|row| Cow::Owned(App(row))).ok_or_else(|| ApiError::NotFound("app").into())
    }
    /// The operator side.
    async fn operator(&self, ctx: &Context<'_>) -> async_graphql::Result<Cow<'_, Operator>> {
        if let Some((_, operator)) = &self.parties {
            return Ok(Cow::Borrowed(operator));
        }
        let row = crate::graphql::loader_set(ctx).operators.load_one(self.row.operator_id).await?;
        row.map(|row| Cow::Owned(Operator(row))).ok_or_else(|| ApiError::NotFound("operator").into())
    }
    /// Where the operator authorizes the app's platform (Connect OAuth). Set while the
    /// link is `PENDING`, for the link's operator and admins only (null for the app:
    /// it asks for a link, the operator authorizes it). Following it ends at this
    /// server's `/connect/callback`, which activates the link. Single-use, valid for an
    /// hour; read it again for a fresh one.
    async fn authorization_url(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let viewer = principal(ctx)?;
        if self.row.status != models::LinkStatus::Pending {
            return Ok(None);
        }
        let Some(platform) = crate::graphql::loader_set(ctx).apps.load_one(self.row.app_id).await? else {
            return Ok(None);
        };
        Ok(links::authorization_url(broker(ctx), viewer, &self.row, &platform)?)
    }
    /// The operator's connected account id at the processor, once `ACTIVE`.
    async fn connected_account_id(&self) -> Option<&str> {
        self.row.connected_account_id.as_deref()
    }
    /// While `PENDING`: the processor account the last authorization yielded, held
    /// because it is not the account the operator is known by (the first it connected)
    /// or is another operator's; an admin's `acceptLinkAccount` activates the link on it.
    async fn held_account_id(&self) -> Option<&str> {
        self.row.held_account_id.as_deref()
    }
    /// Whether the app may refund the link's sessions (`refundSession`); set by the
    /// link's operator or an admin with `updateLink`.
    async fn app_may_refund(&self) -> bool {
        self.row.app_may_refund
    }
    /// Whether the connected account can take charges, as the app's processor last
    /// reported it (unknown until it reports).
    async fn charges_enabled(&self) -> Option<bool> {
        self.row.charges_enabled
    }
    /// Whether the connected account can receive payouts, as last reported.
    async fn payouts_enabled(&self) -> Option<bool> {
        self.row.payouts_enabled
    }
    /// Why the last authorization attempt failed (for example, the operator declined).
    async fn failure_reason(&self) -> Option<&str> {
        self.row.failure_reason.as_deref()
    }
    /// When the link was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    /// When the link last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
    /// When the operator authorized it.
    async fn activated_at(&self) -> Option<DateTime<Utc>> {
        self.row.activated_at
    }
    /// When it was revoked.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.row.revoked_at
    }
}
