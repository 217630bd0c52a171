//! Query roots, one per domain, merged into `QueryRoot`. Their reads go through
//! `read_db` and the loaders, so a query operation reads from the replica.

use async_graphql::{Context, ID, MergedObject, Object};

use super::connection::{self, Conn, CountQuery};
use super::types::{App, ChargeToken, Customer, Link, LinkStatus, Operator, ParkingSession, SessionStatus, Viewer};
use super::{parse_id, principal, read_db};
use crate::models::links::LinkFilter;
use crate::models::parking_sessions::SessionFilter;
use crate::models::{self};
use crate::payments::{customers, parties, policy};

/// The entry points for reads. Every field but `eventTypes` needs a bearer token; each
/// party sees only what concerns it (admins see everything). Lists are Relay connections, oldest first.
/// Queries may read from a replica, so right after a mutation read its own payload
/// rather than querying for what it wrote.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    ViewerQuery,
    PartyQuery,
    LinkQuery,
    CustomerQuery,
    SessionQuery,
    super::events::EventsQuery,
    super::webhooks::WebhookQuery,
);

/// The viewer query, merged into `Query`.
#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// Who the request is authenticated as.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        Ok(Viewer(principal(ctx)?.clone()))
    }
}

/// Apps and operators, merged into `Query`.
#[derive(Default)]
pub struct PartyQuery;

#[Object]
impl PartyQuery {
    /// An app: admins see all, an app itself, an operator the apps it is linked to.
    async fn app(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The app's id.")] id: ID,
    ) -> async_graphql::Result<Option<App>> {
        let viewer = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let mut conn = read_db(ctx).await?;
        if !parties::may_see_app(&mut conn, viewer, id).await? {
            return Ok(None);
        }
        Ok(models::App::find(&mut conn, id).await?.map(App))
    }

    /// The apps the viewer may see, oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn apps(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<App>> {
        let viewer = principal(ctx)?;
        let scope = policy::app_scope(viewer);
        let page = connection::page(first, after.as_deref())?;
        let mut conn = read_db(ctx).await?;
        let rows = models::App::list(&mut conn, scope, page).await?;
        Ok(connection::build(rows, page, |a| a.id, App, CountQuery::Apps(scope)))
    }

    /// An operator (operators form a directory every role can read).
    async fn operator(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The operator's id.")] id: ID,
    ) -> async_graphql::Result<Option<Operator>> {
        principal(ctx)?;
        let id = parse_id("id", &id)?;
        let mut conn = read_db(ctx).await?;
        Ok(models::Operator::find(&mut conn, id).await?.map(Operator))
    }

    /// All operators, oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn operators(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<Operator>> {
        principal(ctx)?;
        let page = connection::page(first, after.as_deref())?;
        let mut conn = read_db(ctx).await?;
        let rows = models::Operator::list(&mut conn, page).await?;
        Ok(connection::build(rows, page, |o| o.id, Operator, CountQuery::Operators))
    }
}

/// Links, merged into `Query`.
#[derive(Default)]
pub struct LinkQuery;

#[Object]
impl LinkQuery {
    /// A link the viewer is party to (admins: any).
    async fn link(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The link's id.")] id: ID,
    ) -> async_graphql::Result<Option<Link>> {
        let viewer = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let mut conn = read_db(ctx).await?;
        Ok(models::Link::find(&mut conn, id).await?.filter(|l| policy::may_see_link(viewer, l)).map(Link::new))
    }

    /// Links the viewer is party to, optionally filtered, oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn links(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the links of this app.")] app_id: Option<ID>,
        #[graphql(desc = "Only the links of this operator.")] operator_id: Option<ID>,
        #[graphql(desc = "Only the links in this status.")] status: Option<LinkStatus>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<Link>> {
        principal(ctx)?;
        let filter = LinkFilter {
            app_id: app_id.as_ref().map(|id| parse_id("appId", id)).transpose()?,
            operator_id: operator_id.as_ref().map(|id| parse_id("operatorId", id)).transpose()?,
            status: status.map(Into::into),
        };
        super::types::links_page(ctx, filter, first, after).await
    }
}

/// Customers, merged into `Query`.
#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// A customer: its app's, or (for an operator) one with a session there.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer's id.")] id: ID,
    ) -> async_graphql::Result<Option<Customer>> {
        let viewer = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let mut conn = read_db(ctx).await?;
        Ok(customers::visible(&mut conn, viewer, id).await?.map(Customer))
    }

    /// The customers the viewer may see, oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<Customer>> {
        let viewer = principal(ctx)?;
        let scope = policy::customer_scope(viewer);
        let page = connection::page(first, after.as_deref())?;
        let mut conn = read_db(ctx).await?;
        let rows = models::Customer::list(&mut conn, scope, page).await?;
        Ok(connection::build(rows, page, |c| c.id, Customer, CountQuery::Customers(scope)))
    }
}

/// Parking sessions and charge tokens, merged into `Query`.
#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// A parking session of the viewer's (its app's or its operator's).
    async fn parking_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session's id.")] id: ID,
    ) -> async_graphql::Result<Option<ParkingSession>> {
        let viewer = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let mut conn = read_db(ctx).await?;
        Ok(models::ParkingSession::find(&mut conn, id)
            .await?
            .filter(|s| policy::may_see_session(viewer, s))
            .map(ParkingSession::new))
    }

    /// The viewer's parking sessions, optionally by status, oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn parking_sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the sessions in this status.")] status: Option<SessionStatus>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<ParkingSession>> {
        let viewer = principal(ctx)?;
        let filter =
            policy::narrow_sessions(viewer, SessionFilter { status: status.map(Into::into), ..Default::default() });
        let page = connection::page(first, after.as_deref())?;
        let mut conn = read_db(ctx).await?;
        let rows = models::ParkingSession::list(&mut conn, filter, page).await?;
        Ok(connection::build(rows, page, |s| s.id, ParkingSession::new, CountQuery::Sessions(filter)))
    }

    /// A charge token: its operator's, or its session's app's (without the value).
    async fn charge_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The charge token's id.")] id: ID,
    ) -> async_graphql::Result<Option<ChargeToken>> {
        let viewer = principal(ctx)?;
        let id = parse_id("id", &id)?;
        let mut conn = read_db(ctx).await?;
        let Some(token) = models::ChargeToken::find(&mut conn, id).await? else {
            return Ok(None);
        };
        if token.status == models::ChargeTokenStatus::Pending {
            return Ok(None);
        }
        let Some(session) = models::ParkingSession::find(&mut conn, token.session_id).await? else {
            return Ok(None);
        };
        Ok(policy::may_see_token(viewer, &token, session.app_id).then_some(ChargeToken(token)))
    }
}
