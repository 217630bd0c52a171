//! Refunds (`sandbox_refunds`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::sandbox_refunds;

/// The amounts refunded so far of a capture or charge.
pub async fn refunded(conn: &mut AsyncPgConnection, payment_ref: &str) -> QueryResult<Vec<i64>> {
    sandbox_refunds::table
        .filter(sandbox_refunds::payment_ref.eq(payment_ref))
        .select(sandbox_refunds::amount)
        .load(conn)
        .await
}

pub async fn insert_refund(
    conn: &mut AsyncPgConnection,
    id: &str,
    payment_ref: &str,
    amount: i64,
    application_fee_refunded: i64,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_refunds::table)
        .values((
            sandbox_refunds::id.eq(id),
            sandbox_refunds::payment_ref.eq(payment_ref),
            sandbox_refunds::amount.eq(amount),
            sandbox_refunds::application_fee_refunded.eq(application_fee_refunded),
        ))
        .execute(conn)
        .await
}
