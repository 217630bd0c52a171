//! `links`: an operator's processor account connected to an app's platform account.
//! PENDING until the operator authorizes, ACTIVE after, REVOKED when either side ends it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{App, Operator, Page, text_enum};
use crate::db::schema::{apps, links, operators};

text_enum! {
    /// The state of a link.
    LinkStatus {
        /// Waiting for the operator to authorize the app's platform.
        Pending = "PENDING",
        /// Authorized: sessions can start and tokens are issued.
        Active = "ACTIVE",
        /// Ended by either side.
        Revoked = "REVOKED",
    }
}

/// A `links` row: an app's platform account linked to an operator's processor account.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = links)]
pub struct Link {
    /// The link's id (UUIDv7).
    pub id: Uuid,
    /// The app side.
    pub app_id: Uuid,
    /// The operator side.
    pub operator_id: Uuid,
    /// Current state.
    pub status: LinkStatus,
    /// The operator's connected account id at the processor, once ACTIVE.
    pub connected_account_id: Option<String>,
    /// The OAuth `state` nonce of the pending authorization (single use); cleared when it ends.
    pub state_nonce: Option<Uuid>,
    /// Why the last authorization attempt failed.
    pub failure_reason: Option<String>,
    /// When the link was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// When the operator authorized it.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether the connected account can take charges, as the processor last reported (null: unknown).
    pub charges_enabled: Option<bool>,
    /// Whether the connected account can receive payouts, as last reported (null: unknown).
    pub payouts_enabled: Option<bool>,
    /// A processor account an authorization yielded that is not the operator's known
    /// one; the link stays PENDING until an admin accepts it.
    pub held_account_id: Option<String>,
    /// Whether the app may refund the link's sessions (set by the operator or an admin).
    pub app_may_refund: bool,
}

/// What the processor last reported on one active link (see `Link::capabilities`).
#[derive(Debug, Clone, Queryable)]
pub struct LinkCapabilities {
    /// The link's operator.
    pub operator_id: Uuid,
    /// The link's app.
    pub app_id: Uuid,
    /// Whether the account can take charges (null: unknown).
    pub charges_enabled: Option<bool>,
    /// Whether the account can receive payouts (null: unknown).
    pub payouts_enabled: Option<bool>,
}

/// Filters of a links listing; the scope fields come from the caller's role.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkFilter {
    /// Only this app's links.
    pub app_id: Option<Uuid>,
    /// Only this operator's links.
    pub operator_id: Option<Uuid>,
    /// Only links in this state.
    pub status: Option<LinkStatus>,
}

/// Narrows a boxed query over `links` (alone or joined) to what `filter` asks for.
macro_rules! filter_links {
    ($query:expr, $filter:expr) => {{
        let (mut query, filter) = ($query, $filter);
        if let Some(app_id) = filter.app_id {
            query = query.filter(links::app_id.eq(app_id));
        }
        if let Some(operator_id) = filter.operator_id {
            query = query.filter(links::operator_id.eq(operator_id));
        }
        if let Some(status) = filter.status {
            query = query.filter(links::status.eq(status));
        }
        query
    }};
}

fn filtered(filter: LinkFilter) -> links::BoxedQuery<'static, diesel::pg::Pg> {
    filter_links!(links::table.into_boxed(), filter)
}

impl Link {
    /// Sets whether the link's app may refund its sessions.
    pub async fn set_app_may_refund(conn: &mut AsyncPgConnection, id: Uuid, allowed: bool) -> QueryResult<Link> {
        diesel::update(links::table.find(id))
            .set((links::app_may_refund.eq(allowed), links::updated_at.eq(diesel::dsl::now)))
            .returning(Link::as_returning())
            .get_result(conn)
            .await
    }

    /// The link with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Link>> {
        links::table.find(id).select(Link::as_select()).first(conn).await.optional()
    }

    /// Like `find`, locking the row until the transaction ends.
    pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Link>> {
        links::table.find(id).select(Link::as_select()).for_update().first(conn).await.optional()
    }

    /// The links with these ids (for the loaders), in no particular order.
    pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Link>> {
        links::table.filter(links::id.eq_any(ids)).select(Link::as_select()).load(conn).await
    }

    /// The link between this app and this operator, if any (there is at most one).
    pub async fn find_pair(conn: &mut AsyncPgConnection, app_id: Uuid, operator_id: Uuid) -> QueryResult<Option<Link>> {
        links::table
            .filter(links::app_id.eq(app_id))
            .filter(links::operator_id.eq(operator_id))
            .select(Link::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// A page of the links matching `filter`, by id.
    pub async fn list(conn: &mut AsyncPgConnection, filter: LinkFilter, page: Page) -> QueryResult<Vec<Link>> {
        let mut query = filtered(filter).select(Link::as_select()).order(links::id.asc());
        if let Some(after) = page.after {
            query = query.filter(links::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// Like `list`, with each link's app and operator rows, in one statement.
    pub async fn list_with_parties(
        conn: &mut AsyncPgConnection,
        filter: LinkFilter,
        page: Page,
    ) -> QueryResult<Vec<(Link, App, Operator)>> {
        let joined = links::table
            .inner_join(apps::table)
            .inner_join(operators::table)
            .select((Link::as_select(), App::as_select(), Operator::as_select()))
            .order(links::id.asc())
            .into_boxed();
        let mut query = filter_links!(joined, filter);
        if let Some(after) = page.after {
            query = query.filter(links::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// How many links match `filter`.
    pub async fn count(conn: &mut AsyncPgConnection, filter: LinkFilter) -> QueryResult<i64> {
        filtered(filter).count().get_result(conn).await
    }

    /// Creates the pair's link as PENDING, or returns the existing one untouched; the
    /// flag says whether it was created.
    pub async fn insert_pending(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        app_id: Uuid,
        operator_id: Uuid,
    ) -> QueryResult<(Link, bool)> {
        let inserted = diesel::insert_into(links::table)
            .values((
                links::id.eq(id),
                links::app_id.eq(app_id),
                links::operator_id.eq(operator_id),
                links::status.eq(LinkStatus::Pending),
                links::state_nonce.eq(Uuid::new_v4()),
            ))
            .on_conflict((links::app_id, links::operator_id))
            .do_nothing()
            .execute(conn)
            .await?;
        let link = Link::find_pair(conn, app_id, operator_id).await?.ok_or(diesel::result::Error::NotFound)?;
        Ok((link, inserted == 1))
    }

    /// A revoked link asks for authorization again.
    pub async fn restart(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Link> {
        diesel::update(links::table.find(id))
            .set((
                links::status.eq(LinkStatus::Pending),
                links::state_nonce.eq(Uuid::new_v4()),
                links::connected_account_id.eq(None::<String>),
                links::held_account_id.eq(None::<String>),
                links::failure_reason.eq(None::<String>),
                links::revoked_at.eq(None::<DateTime<Utc>>),
                links::activated_at.eq(None::<DateTime<Utc>>),
                links::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Link::as_returning())
            .get_result(conn)
            .await
    }

    /// The operator authorized: the link is live on `connected_account_id`. The state
    /// nonce is spent, so the same authorization cannot complete twice.
    pub async fn activate(conn: &mut AsyncPgConnection, id: Uuid, connected_account_id: &str) -> QueryResult<Link> {
        diesel::update(links::table.find(id))
            .set((
                links::status.eq(LinkStatus::Active),
                links::connected_account_id.eq(connected_account_id),
                links::held_account_id.eq(None::<String>),
                links::state_nonce.eq(None::<Uuid>),
                links::failure_reason.eq(None::<String>),
                links::activated_at.eq(diesel::dsl::now),
                links::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Link::as_returning())
            .get_result(conn)
            .await
    }

    /// The operator declined or the authorization failed: stays PENDING with the reason.
    pub async fn record_failure(conn: &mut AsyncPgConnection, id: Uuid, reason: &str) -> QueryResult<Link> {
        diesel::update(links::table.find(id))
            .set((links::failure_reason.eq(reason), links::updated_at.eq(diesel::dsl::now)))
            .returning(Link::as_returning())
            .get_result(conn)
            .await
    }

    /// The authorization yielded a processor account other than the operator's known
    /// one: the link stays PENDING with the account held for an admin and the reason.
    /// The state nonce is renewed, so the spent authorization cannot be replayed and the
    /// operator can authorize again (with its known account).
    pub async fn hold(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        held_account_id: &str,
        reason: &str,
    ) -> QueryResult<Link> {
        diesel::update(links::table.find(id))
            .set((
                links::held_account_id.eq(held_account_id),
                links::failure_reason.eq(reason),
                links::state_nonce.eq(Uuid::new_v4()),
                links::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Link::as_returning())
            .get_result(conn)
            .await
    }

    /// The capabilities reported on the ACTIVE links of these operators.
    pub async fn capabilities(
        conn: &mut AsyncPgConnection,
        operator_ids: &[Uuid],
    ) -> QueryResult<Vec<LinkCapabilities>> {
        links::table
            .filter(links::operator_id.eq_any(operator_ids))
            .filter(links::status.eq(LinkStatus::Active))
            .select((links::operator_id, links::app_id, links::charges_enabled, links::payouts_enabled))
            .load(conn)
            .await
    }

    /// The app's link to the operator owning this connected account.
    pub async fn find_by_account(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        connected_account_id: &str,
    ) -> QueryResult<Option<Link>> {
        links::table
            .filter(links::app_id.eq(app_id))
            .filter(links::connected_account_id.eq(connected_account_id))
            .select(Link::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Records what the processor reports of the connected account.
    pub async fn set_capabilities(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        charges: bool,
        payouts: bool,
    ) -> QueryResult<Link> {
        diesel::update(links::table.find(id))
            .set((
                links::charges_enabled.eq(charges),
                links::payouts_enabled.eq(payouts),
                links::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Link::as_returning())
            .get_result(conn)
            .await
    }

    /// Revokes the link: clears its pending authorization and held account.
    pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Link> {
        diesel::update(links::table.find(id))
            .set((
                links::status.eq(LinkStatus::Revoked),
                links::state_nonce.eq(None::<Uuid>),
                links::held_account_id.eq(None::<String>),
                links::revoked_at.eq(diesel::dsl::now),
                links::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Link::as_returning())
            .get_result(conn)
            .await
    }
}
