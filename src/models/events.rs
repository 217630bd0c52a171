//! `events`: the durable event log behind the `events` query and subscription and the
//! outgoing webhooks. Rows are appended in the transaction of the change they describe.
//!
//! Order is `(tx, seq)`: the id of the appending transaction, then the row's sequence
//! number. A reader only reads rows whose transaction is older than every transaction
//! still running (`pg_snapshot_xmin`), so no row can later appear before a cursor it has
//! handed out, and appending needs no lock that would serialise commits.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::events;

/// Transactions older than this are finished: their rows are final.
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// An `events` row: one event, appended in the transaction of the change it describes.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    /// The row's position in insertion order (not commit order: see `tx`).
    pub seq: i64,
    /// The event's id (`evt_…`), the same in the API and in webhook deliveries.
    pub id: String,
    /// The event type (`session.charged`, …).
    pub type_: String,
    /// The id of the transaction that wrote the row; readers page by `(tx, seq)`.
    pub tx: i64,
    /// The app the event concerns, if any.
    pub app_id: Option<Uuid>,
    /// The operator the event concerns, if any.
    pub operator_id: Option<Uuid>,
    /// The object as the app (and admins) see it.
    pub data: serde_json::Value,
    /// The operator's copy when it differs (a charge token's value).
    pub operator_data: Option<serde_json::Value>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// A new event. A `None` is written as NULL (the columns' default), so the statement's
/// text never varies and its prepared form is reused.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct NewEvent {
    /// The event's id (`evt_…`).
    pub id: String,
    /// The event type.
    pub type_: String,
    /// The app the event concerns, if any.
    pub app_id: Option<Uuid>,
    /// The operator the event concerns, if any.
    pub operator_id: Option<Uuid>,
    /// The object as the app (and admins) see it.
    pub data: serde_json::Value,
    /// The operator's copy when it differs.
    pub operator_data: Option<serde_json::Value>,
}

/// Whose events a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    /// Every event (admins).
    All,
    /// This app's events.
    App(Uuid),
    /// This operator's events.
    Operator(Uuid),
}

/// A position in the log: after `(tx, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EventCursor {
    /// The writing transaction's id.
    pub tx: i64,
    /// The row's `seq` within the log.
    pub seq: i64,
}

impl EventRow {
    /// The position right after this event.
    pub fn cursor(&self) -> EventCursor {
        EventCursor { tx: self.tx, seq: self.seq }
    }

    /// The copy of `data` a reader in `scope` sees: the operator's own copy for the
    /// operator, the shared one for the app and admins.
    pub fn data_for(&self, scope: EventScope) -> &serde_json::Value {
        match (scope, &self.operator_data) {
            (EventScope::Operator(id), Some(own)) if self.operator_id == Some(id) => own,
            _ => &self.data,
        }
    }
}

impl NewEvent {
    /// Appends the event; call inside the transaction of the change it describes.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<EventRow> {
        diesel::insert_into(events::table).values(self).returning(EventRow::as_returning()).get_result(conn).await
    }

    /// Appends the event unless one with its id exists (`None` then).
    pub async fn insert_once(&self, conn: &mut AsyncPgConnection) -> QueryResult<Option<EventRow>> {
        diesel::insert_into(events::table)
            .values(self)
            .on_conflict(events::id)
            .do_nothing()
            .returning(EventRow::as_returning())
            .get_result(conn)
            .await
            .optional()
    }
}

fn scoped(scope: EventScope, types: Option<&[String]>) -> events::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = events::table.into_boxed();
    match scope {
        EventScope::All => {}
        EventScope::App(id) => query = query.filter(events::app_id.eq(id)),
        EventScope::Operator(id) => query = query.filter(events::operator_id.eq(id)),
    }
    if let Some(types) = types {
        query = query.filter(events::type_.eq_any(types.to_vec()));
    }
    query
}

impl EventRow {
    /// Final events after `cursor`, oldest first.
    pub async fn after(
        conn: &mut AsyncPgConnection,
        scope: EventScope,
        types: Option<&[String]>,
        cursor: EventCursor,
        limit: i64,
    ) -> QueryResult<Vec<EventRow>> {
        scoped(scope, types)
            .filter(events::tx.gt(cursor.tx).or(events::tx.eq(cursor.tx).and(events::seq.gt(cursor.seq))))
            .filter(sql::<Bool>(&format!("tx < {HORIZON}")))
            .order((events::tx.asc(), events::seq.asc()))
            .limit(limit)
            .select(EventRow::as_select())
            .load(conn)
            .await
    }

    /// A cursor before every event not yet final: a stream starting here delivers the
    /// next events to become final, and no earlier one.
    pub async fn head(conn: &mut AsyncPgConnection) -> QueryResult<EventCursor> {
        let horizon: i64 = diesel::select(sql::<BigInt>(HORIZON)).get_result(conn).await?;
        Ok(EventCursor { tx: horizon - 1, seq: i64::MAX })
    }

    /// The event with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<EventRow>> {
        events::table.filter(events::id.eq(id)).select(EventRow::as_select()).first(conn).await.optional()
    }

    /// The event at this `seq`, if any.
    pub async fn find_seq(conn: &mut AsyncPgConnection, seq: i64) -> QueryResult<Option<EventRow>> {
        events::table.find(seq).select(EventRow::as_select()).first(conn).await.optional()
    }

    /// How many events `scope` sees, of `types` when given.
    pub async fn count(conn: &mut AsyncPgConnection, scope: EventScope, types: Option<&[String]>) -> QueryResult<i64> {
        scoped(scope, types).count().get_result(conn).await
    }

    /// Deletes events created before `before` (their deliveries go with them).
    pub async fn prune(conn: &mut AsyncPgConnection, before: DateTime<Utc>, limit: i64) -> QueryResult<usize> {
        diesel::sql_query(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < $1 ORDER BY seq LIMIT $2)",
        )
        .bind::<diesel::sql_types::Timestamptz, _>(before)
        .bind::<BigInt, _>(limit)
        .execute(conn)
        .await
    }
}
