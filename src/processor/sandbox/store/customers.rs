//! Customers and their test cards (`sandbox_customers`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::super::cards::{self, TestCard};
use crate::db::schema::sandbox_customers;

/// Makes a customer with the test card, unless the key already made one.
pub async fn insert_customer(
    conn: &mut AsyncPgConnection,
    id: &str,
    platform_account_id: &str,
    idempotency_key: &str,
    card: &TestCard,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_customers::table)
        .values((
            sandbox_customers::id.eq(id),
            sandbox_customers::account_id.eq(platform_account_id),
            sandbox_customers::idempotency_key.eq(idempotency_key),
            sandbox_customers::test_token.eq(card.token),
            sandbox_customers::brand.eq(card.brand),
            sandbox_customers::last4.eq(card.last4),
            sandbox_customers::exp_month.eq(cards::EXP_MONTH),
            sandbox_customers::exp_year.eq(cards::EXP_YEAR),
        ))
        .on_conflict(sandbox_customers::idempotency_key)
        .do_nothing()
        .execute(conn)
        .await
}

/// The customer a key made: its id and test token.
pub async fn customer_by_key(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<(String, String)> {
    sandbox_customers::table
        .filter(sandbox_customers::idempotency_key.eq(idempotency_key))
        .select((sandbox_customers::id, sandbox_customers::test_token))
        .first(conn)
        .await
}

/// Replaces the card of a customer on the platform account; 0 when there is no such one.
pub async fn update_customer_card(
    conn: &mut AsyncPgConnection,
    customer_id: &str,
    platform_account_id: &str,
    card: &TestCard,
) -> QueryResult<usize> {
    diesel::update(
        sandbox_customers::table.find(customer_id).filter(sandbox_customers::account_id.eq(platform_account_id)),
    )
    .set((
        sandbox_customers::test_token.eq(card.token),
        sandbox_customers::brand.eq(card.brand),
        sandbox_customers::last4.eq(card.last4),
        sandbox_customers::exp_month.eq(cards::EXP_MONTH),
        sandbox_customers::exp_year.eq(cards::EXP_YEAR),
        sandbox_customers::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// The test token behind a customer's card.
pub async fn customer_test_token(conn: &mut AsyncPgConnection, customer_id: &str) -> QueryResult<String> {
    sandbox_customers::table.find(customer_id).select(sandbox_customers::test_token).first(conn).await
}
