//! Charges and the stored replies of keyed requests (`sandbox_charges`, `sandbox_replies`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{sandbox_charges, sandbox_replies};

#[derive(Insertable)]
#[diesel(table_name = sandbox_charges)]
pub struct NewCharge<'a> {
    pub id: &'a str,
    pub connected_account_id: &'a str,
    pub token_id: &'a str,
    pub idempotency_key: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub status: &'a str,
    pub failure_code: Option<&'a str>,
    pub decline_code: Option<&'a str>,
    pub failure_message: Option<&'a str>,
}

/// Inserts the charge unless it conflicts with one already made (0).
pub async fn insert_charge(conn: &mut AsyncPgConnection, charge: &NewCharge<'_>) -> QueryResult<usize> {
    diesel::insert_into(sandbox_charges::table).values(charge).on_conflict_do_nothing().execute(conn).await
}

/// A stored charge: id, status, failure code, decline code, failure message.
pub type ChargeRow = (String, String, Option<String>, Option<String>, Option<String>);

pub async fn charge_by_key(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<Option<ChargeRow>> {
    sandbox_charges::table
        .filter(sandbox_charges::idempotency_key.eq(idempotency_key))
        .select((
            sandbox_charges::id,
            sandbox_charges::status,
            sandbox_charges::failure_code,
            sandbox_charges::decline_code,
            sandbox_charges::failure_message,
        ))
        .first(conn)
        .await
        .optional()
}

// Replies of keyed requests.

/// The reply stored for a key, if any (`Some(None)`: a row without one).
pub async fn reply(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<Option<Option<String>>> {
    sandbox_replies::table.find(idempotency_key).select(sandbox_replies::reply).first(conn).await.optional()
}

/// Stores a reply unless the key has one (0).
pub async fn insert_reply(
    conn: &mut AsyncPgConnection,
    idempotency_key: &str,
    operation: &str,
    reply: &str,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_replies::table)
        .values((
            sandbox_replies::idempotency_key.eq(idempotency_key),
            sandbox_replies::operation.eq(operation),
            sandbox_replies::reply.eq(reply),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}
