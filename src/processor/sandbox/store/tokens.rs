//! Charge tokens (`sandbox_tokens`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{sandbox_connections, sandbox_customers, sandbox_tokens};

/// What issuing a token needs to know, read in one statement: the token a key already
/// made (id, expiry), whether the customer is the platform's, and whether the account is
/// connected to it.
pub type TokenChecks = (Option<String>, Option<DateTime<Utc>>, bool, bool);

pub async fn token_checks(
    conn: &mut AsyncPgConnection,
    idempotency_key: &str,
    platform_account_id: &str,
    customer_id: &str,
    connected_account_id: &str,
) -> QueryResult<TokenChecks> {
    let by_key = || sandbox_tokens::table.filter(sandbox_tokens::idempotency_key.eq(idempotency_key));
    diesel::select((
        by_key().select(sandbox_tokens::id).single_value(),
        by_key().select(sandbox_tokens::expires_at).single_value(),
        diesel::dsl::exists(
            sandbox_customers::table.find(customer_id).filter(sandbox_customers::account_id.eq(platform_account_id)),
        ),
        diesel::dsl::exists(
            sandbox_connections::table
                .find((platform_account_id, connected_account_id))
                .filter(sandbox_connections::revoked_at.is_null()),
        ),
    ))
    .get_result(conn)
    .await
}

#[derive(Insertable)]
#[diesel(table_name = sandbox_tokens)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub platform_account_id: &'a str,
    pub connected_account_id: &'a str,
    pub customer_id: &'a str,
    pub idempotency_key: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// Inserts the token unless its key already made one (`None`).
pub async fn insert_token(
    conn: &mut AsyncPgConnection,
    token: &NewToken<'_>,
) -> QueryResult<Option<(String, DateTime<Utc>)>> {
    diesel::insert_into(sandbox_tokens::table)
        .values(token)
        .on_conflict(sandbox_tokens::idempotency_key)
        .do_nothing()
        .returning((sandbox_tokens::id, sandbox_tokens::expires_at))
        .get_result(conn)
        .await
        .optional()
}

/// The token a key made: its id and expiry.
pub async fn token_by_key(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<(String, DateTime<Utc>)> {
    sandbox_tokens::table
        .filter(sandbox_tokens::idempotency_key.eq(idempotency_key))
        .select((sandbox_tokens::id, sandbox_tokens::expires_at))
        .first(conn)
        .await
}

/// A token as a charge or hold reads it.
#[derive(Queryable)]
pub struct TokenRow {
    pub id: String,
    pub platform_account_id: String,
    pub customer_id: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

type TokenColumns = (
    sandbox_tokens::id,
    sandbox_tokens::platform_account_id,
    sandbox_tokens::customer_id,
    sandbox_tokens::expires_at,
    sandbox_tokens::used_at,
);

const TOKEN_COLUMNS: TokenColumns = (
    sandbox_tokens::id,
    sandbox_tokens::platform_account_id,
    sandbox_tokens::customer_id,
    sandbox_tokens::expires_at,
    sandbox_tokens::used_at,
);

/// A token on the connected account.
pub async fn token(
    conn: &mut AsyncPgConnection,
    token: &str,
    connected_account_id: &str,
) -> QueryResult<Option<TokenRow>> {
    sandbox_tokens::table
        .find(token)
        .filter(sandbox_tokens::connected_account_id.eq(connected_account_id))
        .select(TOKEN_COLUMNS)
        .first(conn)
        .await
        .optional()
}

/// A token on the connected account minted from the platform's customer, locked.
pub async fn lock_token(
    conn: &mut AsyncPgConnection,
    token: &str,
    connected_account_id: &str,
    platform_account_id: &str,
) -> QueryResult<Option<TokenRow>> {
    sandbox_tokens::table
        .find(token)
        .filter(sandbox_tokens::connected_account_id.eq(connected_account_id))
        .filter(sandbox_tokens::platform_account_id.eq(platform_account_id))
        .select(TOKEN_COLUMNS)
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn spend_token(conn: &mut AsyncPgConnection, token_id: &str) -> QueryResult<usize> {
    diesel::update(sandbox_tokens::table.find(token_id))
        .set(sandbox_tokens::used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
}
