//! `operators`: the supply side. Operators keep their own processor accounts; links
//! connect them to apps.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Page;
use crate::db::schema::operators;

/// An `operators` row: a parking operator.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = operators)]
pub struct Operator {
    /// The operator's id (UUIDv7).
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The last delivery cursor handed out to the operator's charge tokens (see `next_cursor`).
    pub token_seq: i64,
    /// When the operator was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// The processor account the operator is known by: the first it ever connected, or
    /// one an admin accepted. Another account from a later authorization waits for an
    /// admin.
    pub processor_account_id: Option<String>,
}

/// A new operator.
#[derive(Debug, Insertable)]
#[diesel(table_name = operators)]
pub struct NewOperator<'a> {
    /// The new operator's id (UUIDv7).
    pub id: Uuid,
    /// Display name.
    pub name: &'a str,
}

impl NewOperator<'_> {
    /// Inserts the operator.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Operator> {
        diesel::insert_into(operators::table).values(self).returning(Operator::as_returning()).get_result(conn).await
    }
}

impl Operator {
    /// Whether an operator with this id exists.
    pub async fn exists(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(operators::table.find(id))).get_result(conn).await
    }

    /// The operator with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Operator>> {
        operators::table.find(id).select(Operator::as_select()).first(conn).await.optional()
    }

    /// The operators with these ids (for the loaders), in no particular order.
    pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Operator>> {
        operators::table.filter(operators::id.eq_any(ids)).select(Operator::as_select()).load(conn).await
    }

    /// A page of all operators, by id.
    pub async fn list(conn: &mut AsyncPgConnection, page: Page) -> QueryResult<Vec<Operator>> {
        let mut query = operators::table.select(Operator::as_select()).order(operators::id.asc()).into_boxed();
        if let Some(after) = page.after {
            query = query.filter(operators::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// How many operators there are.
    pub async fn count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
        operators::table.count().get_result(conn).await
    }

    /// Takes the next delivery cursor for this operator. The row stays locked until the
    /// caller's transaction ends, so cursors become visible in the order they were taken.
    pub async fn next_token_cursor(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<i64> {
        diesel::update(operators::table.find(id))
            .set(operators::token_seq.eq(operators::token_seq + 1))
            .returning(operators::token_seq)
            .get_result(conn)
            .await
    }

    /// Like `find`, locking the row until the transaction ends (so two authorizations of
    /// the same operator decide its known account one after the other).
    pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Operator>> {
        operators::table.find(id).select(Operator::as_select()).for_update().first(conn).await.optional()
    }

    /// Another operator known by this processor account, if any.
    pub async fn other_with_account(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        processor_account_id: &str,
    ) -> QueryResult<Option<Uuid>> {
        operators::table
            .filter(operators::processor_account_id.eq(processor_account_id))
            .filter(operators::id.ne(id))
            .select(operators::id)
            .first(conn)
            .await
            .optional()
    }

    /// Records the operator's known processor account (the first it connects).
    pub async fn set_processor_account(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        processor_account_id: &str,
    ) -> QueryResult<usize> {
        diesel::update(operators::table.find(id))
            .set((operators::processor_account_id.eq(processor_account_id), operators::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await
    }

    /// The last cursor handed out: a subscription without `after` starts here.
    pub async fn last_token_cursor(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<i64> {
        operators::table.find(id).select(operators::token_seq).first(conn).await
    }
}
