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

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = link_events)]
pub struct LinkEvent {
    pub seq: i64,
    pub link_id: Uuid,
    pub app_id: Uuid,
    pub operator_id: Uuid,
    pub status: LinkStatus,
    pub occurred_at: DateTime<Utc>,
}

/// Whose link events a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEventScope {
    All,
    App(Uuid),
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
            .limit(limit)
            .into_boxed();
        match scope {
            LinkEventScope::All => {}
            LinkEventScope::App(id) => query = query.filter(link_events::app_id.eq(id)),
            LinkEventScope::Operator(id) => query = query.filter(link_events::operator_id.eq(id)),
        }
        query.load(conn).await
    }

    pub async fn last_seq(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
        link_events::table
            .select(diesel::dsl::max(link_events::seq))
            .first::<Option<i64>>(conn)
            .await
            .map(|seq| seq.unwrap_or(0))
    }
}
