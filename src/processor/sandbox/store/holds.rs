//! Holds: placed, incremented, captured, canceled (`sandbox_authorizations`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{sandbox_authorizations, sandbox_charges, sandbox_customers, sandbox_tokens};

#[derive(Queryable)]
pub struct Hold {
    pub id: String,
    pub amount: i64,
    pub status: String,
    pub incremental: bool,
}

/// A hold on the connected account, locked.
pub async fn lock_hold(
    conn: &mut AsyncPgConnection,
    connected_account_id: &str,
    id: &str,
) -> QueryResult<Option<Hold>> {
    sandbox_authorizations::table
        .find(id)
        .filter(sandbox_authorizations::connected_account_id.eq(connected_account_id))
        .select((
            sandbox_authorizations::id,
            sandbox_authorizations::amount,
            sandbox_authorizations::status,
            sandbox_authorizations::incremental,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()
}

#[derive(Insertable)]
#[diesel(table_name = sandbox_authorizations)]
pub struct NewHold<'a> {
    pub id: &'a str,
    pub connected_account_id: &'a str,
    pub token_id: &'a str,
    pub test_token: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub application_fee: Option<i64>,
    pub status: &'a str,
    pub incremental: bool,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_hold(conn: &mut AsyncPgConnection, hold: &NewHold<'_>) -> QueryResult<usize> {
    diesel::insert_into(sandbox_authorizations::table).values(hold).execute(conn).await
}

/// Raises a hold to a new total.
pub async fn increment_hold(
    conn: &mut AsyncPgConnection,
    id: &str,
    total: i64,
    application_fee: Option<i64>,
) -> QueryResult<usize> {
    diesel::update(sandbox_authorizations::table.find(id))
        .set((sandbox_authorizations::amount.eq(total), sandbox_authorizations::application_fee.eq(application_fee)))
        .execute(conn)
        .await
}

pub async fn capture_hold(
    conn: &mut AsyncPgConnection,
    id: &str,
    amount: i64,
    application_fee: Option<i64>,
) -> QueryResult<usize> {
    diesel::update(sandbox_authorizations::table.find(id))
        .set((
            sandbox_authorizations::status.eq("succeeded"),
            sandbox_authorizations::amount_captured.eq(amount),
            sandbox_authorizations::application_fee.eq(application_fee),
        ))
        .execute(conn)
        .await
}

pub async fn cancel_hold(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<usize> {
    diesel::update(sandbox_authorizations::table.find(id))
        .set(sandbox_authorizations::status.eq("canceled"))
        .execute(conn)
        .await
}

/// A captured hold's amount and the app's fee on it, locked.
pub async fn lock_captured_hold(
    conn: &mut AsyncPgConnection,
    connected_account_id: &str,
    id: &str,
) -> QueryResult<Option<(i64, Option<i64>)>> {
    sandbox_authorizations::table
        .find(id)
        .filter(sandbox_authorizations::connected_account_id.eq(connected_account_id))
        .filter(sandbox_authorizations::status.eq("succeeded"))
        .select((sandbox_authorizations::amount_captured, sandbox_authorizations::application_fee))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A succeeded charge's amount, locked.
pub async fn lock_succeeded_charge(
    conn: &mut AsyncPgConnection,
    connected_account_id: &str,
    id: &str,
) -> QueryResult<Option<i64>> {
    sandbox_charges::table
        .find(id)
        .filter(sandbox_charges::connected_account_id.eq(connected_account_id))
        .filter(sandbox_charges::status.eq("succeeded"))
        .select(sandbox_charges::amount)
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The card (test token), amount and currency of a captured hold or a succeeded charge.
pub async fn collected_payment(
    conn: &mut AsyncPgConnection,
    reference: &str,
) -> QueryResult<Option<(String, i64, String)>> {
    let from_hold = sandbox_authorizations::table
        .find(reference)
        .filter(sandbox_authorizations::status.eq("succeeded"))
        .select((
            sandbox_authorizations::test_token,
            sandbox_authorizations::amount_captured,
            sandbox_authorizations::currency,
        ))
        .first(conn)
        .await
        .optional()?;
    match from_hold {
        Some(found) => Ok(Some(found)),
        None => sandbox_charges::table
            .inner_join(sandbox_tokens::table.inner_join(sandbox_customers::table))
            .filter(sandbox_charges::id.eq(reference))
            .filter(sandbox_charges::status.eq("succeeded"))
            .select((sandbox_customers::test_token, sandbox_charges::amount, sandbox_charges::currency))
            .first(conn)
            .await
            .optional(),
    }
}
