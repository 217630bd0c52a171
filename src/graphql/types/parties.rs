//! The viewer, apps, operators and customers.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::links::{Link, LinkStatus};
use crate::auth::{Principal, Role as AuthRole};
use crate::graphql::connection::{self, Conn, CountQuery};
use crate::graphql::loaders::CapabilitiesKey;
use crate::graphql::principal;
use crate::models::links::LinkFilter;
use crate::models::{self};
use crate::payments::parties::Capabilities;
use crate::payments::policy;

/// The role a token grants.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Role {
    /// Operates curbpay: sees and does everything.
    Admin,
    /// A parking app (the demand side).
    App,
    /// A parking operator (the supply side).
    Operator,
}

/// The authenticated principal, as the API shows it.
pub struct Viewer(pub Principal);

/// Who the request is authenticated as: the role, the party and the scopes its bearer
/// token grants.
#[Object]
impl Viewer {
    /// The token's role.
    async fn role(&self) -> Role {
        match self.0.role {
            AuthRole::Admin => Role::Admin,
            AuthRole::App(_) => Role::App,
            AuthRole::Operator(_) => Role::Operator,
        }
    }
    /// The app the token acts as (role `APP`).
    async fn app_id(&self) -> Option<ID> {
        self.0.app_id().map(|id| ID(id.to_string()))
    }
    /// The operator the token acts as (role `OPERATOR`).
    async fn operator_id(&self) -> Option<ID> {
        self.0.operator_id().map(|id| ID(id.to_string()))
    }
    /// The token's subject (`sub`).
    async fn subject(&self) -> &str {
        &self.0.subject
    }
    /// When the token expires; subscriptions end then.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    /// What the token may do within its role: `["read"]` (queries and subscriptions
    /// only) or `["read", "write"]` (everything the role allows; also tokens without a
    /// `scope` claim).
    async fn scopes(&self) -> Vec<&'static str> {
        self.0.scopes.names()
    }
}

/// An app row, as the API shows it.
#[derive(Clone)]
pub struct App(pub models::App);

/// A parking app. curbpay manages a platform account at the processor for it; its
/// frontend tokenizes cards with that account's publishable key. Admins see every app,
/// an app sees itself, and an operator sees the apps it is linked to.
#[Object]
impl App {
    /// The app's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The publishable key of the app's platform account, for tokenizing cards in the
    /// app's frontend. Public by design.
    async fn publishable_key(&self) -> &str {
        &self.0.publishable_key
    }
    /// The processor holding the platform account (`sandbox` or `stripe`).
    async fn processor(&self) -> &str {
        &self.0.processor
    }
    /// The app's cut of each charge, in basis points of the amount.
    async fn platform_fee_bps(&self) -> Option<i32> {
        self.0.platform_fee_bps
    }
    /// The platform account's id at the processor (the app itself and admins only).
    async fn processor_account_id(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        let viewer = principal(ctx)?;
        Ok(policy::may_act_for_app(viewer, self.0.id).then_some(self.0.processor_account_id.as_str()))
    }
    /// When the app was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The app's links to operators (an operator sees only its own).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn links(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the links in this status.")] status: Option<LinkStatus>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<Link>> {
        let filter = LinkFilter { app_id: Some(self.0.id), operator_id: None, status: status.map(Into::into) };
        links_page(ctx, filter, first, after).await
    }
}

/// Lists the links matching `filter` that the viewer may see.
pub(crate) async fn links_page(
    ctx: &Context<'_>,
    filter: LinkFilter,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Conn<Link>> {
    let narrowed = policy::narrow_links(principal(ctx)?, filter);
    let page = connection::page(first, after.as_deref())?;
    let Some(filter) = narrowed else {
        return Ok(connection::empty());
    };
    let mut conn = crate::graphql::read_db(ctx).await?;
    // A page that shows its links' apps or operators reads them with the links, in the
    // same statement: one statement per page whatever its size, and no loader work
    // per edge. The rows are the loaders' (by id; the links are the viewer's).
    let node = ctx.look_ahead().field("edges").field("node");
    if node.field("app").exists() || node.field("operator").exists() {
        let rows = models::Link::list_with_parties(&mut conn, filter, page).await?;
        return Ok(connection::build(rows, page, |(l, _, _)| l.id, Link::with_parties, CountQuery::Links(filter)));
    }
    let rows = models::Link::list(&mut conn, filter, page).await?;
    Ok(connection::build(rows, page, |l| l.id, Link::new, CountQuery::Links(filter)))
}

/// An operator row, as the API shows it.
#[derive(Clone)]
pub struct Operator(pub models::Operator);

/// A parking operator. It keeps its own processor account and links it to apps.
/// Operators form a directory every role can read; what the processor reports about
/// an operator's account is shown only to the parties of its links.
#[Object]
impl Operator {
    /// The operator's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// When the operator was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Whether the operator's account can take charges, as the processor last reported
    /// it on the operator's active links the viewer can see (an app: its own link; the
    /// operator and admins: all of them, when they agree). Unknown (null) until reported,
    /// when reports differ, and for other operators. Stripe: `account.updated`.
    async fn charges_enabled(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<bool>> {
        Ok(capabilities(ctx, self.0.id).await?.charges_enabled)
    }
    /// Whether the operator's account can receive payouts; seen as `chargesEnabled` is.
    async fn payouts_enabled(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<bool>> {
        Ok(capabilities(ctx, self.0.id).await?.payouts_enabled)
    }
    /// The operator's links to apps (an app sees only its own).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn links(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the links in this status.")] status: Option<LinkStatus>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<Link>> {
        let filter = LinkFilter { app_id: None, operator_id: Some(self.0.id), status: status.map(Into::into) };
        links_page(ctx, filter, first, after).await
    }
}

/// The operator's capabilities as reported on the links the viewer can see.
async fn capabilities(ctx: &Context<'_>, operator_id: uuid::Uuid) -> async_graphql::Result<Capabilities> {
    let Some(app_id) = policy::capability_reporters(principal(ctx)?, operator_id) else {
        return Ok(Capabilities::default());
    };
    let key = CapabilitiesKey { operator_id, app_id };
    Ok(crate::graphql::loader_set(ctx).capabilities.load_one(key).await?.unwrap_or_default())
}

/// Non-sensitive facts of a customer's card. curbpay never sees or stores a number.
#[derive(SimpleObject)]
pub struct Card {
    /// Card brand as the processor names it (`Visa`, `MasterCard`, `American Express`, …).
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month, 1–12.
    pub exp_month: i32,
    /// Expiry year, four digits.
    pub exp_year: i32,
}

/// A customer row, as the API shows it.
pub struct Customer(pub models::Customer);

/// An app's end user, as a customer on the app's platform account. Its app and admins
/// see it; an operator sees the customers with a session at it.
#[Object]
impl Customer {
    /// The customer's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The app's own reference for this user (unique per app).
    async fn external_ref(&self) -> &str {
        &self.0.external_ref
    }
    /// The card on file.
    async fn card(&self) -> Option<Card> {
        self.0.card().map(|card| Card {
            brand: card.brand,
            last4: card.last4,
            exp_month: card.exp_month.into(),
            exp_year: card.exp_year.into(),
        })
    }
    /// The customer's id at the processor (its app and admins only).
    async fn processor_customer_id(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        let viewer = principal(ctx)?;
        Ok((policy::customer_visibility(viewer, self.0.app_id) == policy::CustomerVisibility::Visible)
            .then_some(self.0.processor_customer_id.as_deref())
            .flatten())
    }
    /// When the customer was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the customer (or its card) last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}
