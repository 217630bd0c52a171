//! `link_events`: the outbox of link status changes that `linkStatusChanged` streams.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{Link, LinkStatus};
use crate::db::schema::link_events;

/// Serialises writers of link events, so `seq` order is commit order and a reader that
/// has seen `seq` N never later finds a smaller one committed.
const LINK_EVENTS_LOCK: i64 = 7274148914;

/// A `link_events` row: one change of a link's status, in commit order (`seq`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = link_events)]
pub struct LinkEvent {
    /// The change's position in the log (the subscription cursor).
    pub seq: i64,
    /// The link that changed.
    pub link_id: Uuid,
    /// The link's app.
    pub app_id: Uuid,
    /// The link's operator.
    pub operator_id: Uuid,
    /// The status it changed to.
    pub status: LinkStatus,
    /// When it changed.
    pub occurred_at: DateTime<Utc>,
}

/// Whose link events a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEventScope {
    /// Every link's changes (admins).
    All,
    /// This app's links' changes.
    App(Uuid),
    /// This operator's links' changes.
    Operator(Uuid),
}

impl LinkEvent {
    /// Records the link's current status; call inside the transaction that changed it.
    pub async fn record(conn: &mut AsyncPgConnection, link: &Link) -> QueryResult<LinkEvent> {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "pg_advisory_xact_lock({LINK_EVENTS_LOCK}) IS NOT NULL"
        )))
        .execute(conn)
        .await?;
        diesel::insert_into(link_events::table)
            .values((
                link_events::link_id.eq(link.id),
                link_events::app_id.eq(link.app_id),
                link_events::operator_id.eq(link.operator_id),
                link_events::status.eq(link.status),
            ))
            .returning(LinkEvent::as_returning())
            .get_result(conn)
            .await
    }

    /// At most `limit` changes after `after` in `scope`, in order.
    pub async fn after(
        conn: &mut AsyncPgConnection,
        scope: LinkEventScope,
        after: i64,
        limit: i64,
    ) -> QueryResult<Vec<LinkEvent>> {
        let mut query = link_events::table
            .filter(link_events::seq.gt(after))
            .select(LinkEvent::as_select())
            .order(link_events::seq.asc())
            .into_boxed();
        match scope {
            LinkEventScope::All => {}
            LinkEventScope::App(id) => query = query.filter(link_events::app_id.eq(id)),
            LinkEventScope::Operator(id) => query = query.filter(link_events::operator_id.eq(id)),
        }
        super::limited(query, limit).load(conn).await
    }

    /// The latest change's `seq` (0 when there is none): where a new subscriber starts.
    pub async fn last_seq(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
        link_events::table
            .select(diesel::dsl::max(link_events::seq))
            .first::<Option<i64>>(conn)
            .await
            .map(|seq| seq.unwrap_or(0))
    }
}
