//! `refunds`: a refund as requested of a session; its REFUND ledger rows carry it out
//! (one per capture it draws on) and its status follows theirs.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::payments::PaymentStatus;
use super::text_enum;
use crate::db::schema::refunds;

text_enum! {
    /// Why money goes back (Stripe's refund reasons, and OTHER).
    RefundReason {
        /// The end user paid twice.
        Duplicate = "DUPLICATE",
        /// The end user asked.
        RequestedByCustomer = "REQUESTED_BY_CUSTOMER",
        /// The payment was fraudulent.
        Fraudulent = "FRAUDULENT",
        /// Any other reason.
        Other = "OTHER",
    }
}

/// A `refunds` row: one refund of a session's captured money.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = refunds)]
pub struct Refund {
    /// The refund's id (UUIDv7).
    pub id: Uuid,
    /// The session refunded.
    pub session_id: Uuid,
    /// The amount returned, in minor units of `currency` (greater than zero).
    pub amount: i64,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// Why the money goes back.
    pub reason: RefundReason,
    /// The outcome at the processor; PENDING changes once.
    pub status: PaymentStatus,
    /// The caller's idempotency key, unique per session: a retry finds this row.
    pub idempotency_key: String,
    /// When the refund was asked for.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

impl Refund {
    /// The refund with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Refund>> {
        refunds::table.find(id).select(Refund::as_select()).first(conn).await.optional()
    }

    /// The session's refund made with this idempotency key, if any.
    pub async fn find_by_key(conn: &mut AsyncPgConnection, session_id: Uuid, key: &str) -> QueryResult<Option<Refund>> {
        refunds::table
            .filter(refunds::session_id.eq(session_id))
            .filter(refunds::idempotency_key.eq(key))
            .select(Refund::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// The refunds of these sessions (for the loaders), oldest first.
    pub async fn for_sessions(conn: &mut AsyncPgConnection, session_ids: &[Uuid]) -> QueryResult<Vec<Refund>> {
        refunds::table
            .filter(refunds::session_id.eq_any(session_ids))
            .select(Refund::as_select())
            .order((refunds::created_at.asc(), refunds::id.asc()))
            .load(conn)
            .await
    }

    /// Inserts a PENDING refund.
    pub async fn insert(
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
        amount: i64,
        currency: &str,
        reason: RefundReason,
        key: &str,
    ) -> QueryResult<Refund> {
        diesel::insert_into(refunds::table)
            .values((
                refunds::id.eq(Uuid::now_v7()),
                refunds::session_id.eq(session_id),
                refunds::amount.eq(amount),
                refunds::currency.eq(currency),
                refunds::reason.eq(reason),
                refunds::status.eq(PaymentStatus::Pending),
                refunds::idempotency_key.eq(key),
            ))
            .returning(Refund::as_returning())
            .get_result(conn)
            .await
    }

    /// Records the processor's outcome.
    pub async fn set_status(conn: &mut AsyncPgConnection, id: Uuid, status: PaymentStatus) -> QueryResult<Refund> {
        diesel::update(refunds::table.find(id))
            .set((refunds::status.eq(status), refunds::updated_at.eq(diesel::dsl::now)))
            .returning(Refund::as_returning())
            .get_result(conn)
            .await
    }
}
