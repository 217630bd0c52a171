//! The Stripe processor's SQL: the attempt number behind each idempotency key
//! (`processor_attempts`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::processor_attempts;

/// The attempt number stored for `scope`; `None` until a first attempt was given up.
pub async fn attempt(conn: &mut AsyncPgConnection, scope: &str) -> QueryResult<Option<i32>> {
    processor_attempts::table.find(scope).select(processor_attempts::attempt).first(conn).await.optional()
}

/// Moves `scope` to its next attempt (the second, when none is stored) and returns it.
pub async fn next_attempt(conn: &mut AsyncPgConnection, scope: &str) -> QueryResult<i32> {
    diesel::insert_into(processor_attempts::table)
        .values((processor_attempts::scope.eq(scope), processor_attempts::attempt.eq(2)))
        .on_conflict(processor_attempts::scope)
        .do_update()
        .set((
            processor_attempts::attempt.eq(processor_attempts::attempt + 1),
            processor_attempts::updated_at.eq(diesel::dsl::now),
        ))
        .returning(processor_attempts::attempt)
        .get_result(conn)
        .await
}
