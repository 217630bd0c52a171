//! `payments`: the ledger. Every movement of a session's money is one row, written
//! PENDING before the processor is called (the row's id keys the processor request)
//! and given its outcome once; the database refuses any other change (a trigger) and
//! keeps the session's totals from these rows (another trigger, whose CHECKs refuse an
//! impossible balance).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::text_enum;
use crate::db::schema::payments;

text_enum! {
    /// What a ledger row records.
    PaymentKind {
        Authorization = "AUTHORIZATION",
        Increment = "INCREMENT",
        Capture = "CAPTURE",
        Charge = "CHARGE",
        Release = "RELEASE",
        Refund = "REFUND",
        Dispute = "DISPUTE",
    }
}

text_enum! {
    /// A ledger row's outcome; only PENDING ever changes, once.
    PaymentStatus {
        Pending = "PENDING",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = payments)]
pub struct Payment {
    pub id: Uuid,
    pub session_id: Uuid,
    pub kind: PaymentKind,
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub parent_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub processor_reference: Option<String>,
    pub application_fee: Option<i64>,
    pub failure_code: Option<String>,
    pub failure_decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub reason: Option<String>,
    pub request_key: Option<String>,
    pub expected_end_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = payments)]
pub struct NewPayment<'a> {
    pub id: Uuid,
    pub session_id: Uuid,
    pub kind: PaymentKind,
    pub amount: i64,
    pub currency: &'a str,
    pub status: PaymentStatus,
    pub parent_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub processor_reference: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub request_key: Option<&'a str>,
    pub expected_end_at: Option<DateTime<Utc>>,
    pub settled_at: Option<DateTime<Utc>>,
}

impl<'a> NewPayment<'a> {
    /// A PENDING row of `kind` for the session.
    pub fn pending(session_id: Uuid, kind: PaymentKind, amount: i64, currency: &'a str) -> NewPayment<'a> {
        NewPayment {
            id: Uuid::now_v7(),
            session_id,
            kind,
            amount,
            currency,
            status: PaymentStatus::Pending,
            parent_id: None,
            refund_id: None,
            processor_reference: None,
            reason: None,
            request_key: None,
            expected_end_at: None,
            settled_at: None,
        }
    }

    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Payment> {
        diesel::insert_into(payments::table).values(self).returning(Payment::as_returning()).get_result(conn).await
    }
}

/// A PENDING row's outcome.
#[derive(Debug, Clone)]
pub enum Settlement<'a> {
    Succeeded { processor_reference: Option<&'a str>, application_fee: Option<i64> },
    Failed { code: &'a str, decline_code: Option<&'a str>, message: &'a str },
}

impl Payment {
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Payment>> {
        payments::table.find(id).select(Payment::as_select()).first(conn).await.optional()
    }

    /// A session's ledger, oldest first.
    pub async fn for_session(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<Vec<Payment>> {
        payments::table
            .filter(payments::session_id.eq(session_id))
            .select(Payment::as_select())
            .order((payments::created_at.asc(), payments::id.asc()))
            .load(conn)
            .await
    }

    /// The ledgers of many sessions (the GraphQL loader).
    pub async fn for_sessions(conn: &mut AsyncPgConnection, session_ids: &[Uuid]) -> QueryResult<Vec<Payment>> {
        payments::table
            .filter(payments::session_id.eq_any(session_ids))
            .select(Payment::as_select())
            .order((payments::created_at.asc(), payments::id.asc()))
            .load(conn)
            .await
    }

    pub async fn find_by_request_key(
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
        request_key: &str,
    ) -> QueryResult<Option<Payment>> {
        payments::table
            .filter(payments::session_id.eq(session_id))
            .filter(payments::request_key.eq(request_key))
            .select(Payment::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// The row of a processor object curbpay learned of by webhook (a refund, a dispute).
    pub async fn find_by_reference(
        conn: &mut AsyncPgConnection,
        kind: PaymentKind,
        reference: &str,
    ) -> QueryResult<Option<Payment>> {
        payments::table
            .filter(payments::kind.eq(kind))
            .filter(payments::processor_reference.eq(reference))
            .select(Payment::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// The capture or charge with this processor reference (what a refund or dispute
    /// webhook names).
    pub async fn find_collection(conn: &mut AsyncPgConnection, reference: &str) -> QueryResult<Option<Payment>> {
        payments::table
            .filter(payments::kind.eq_any([PaymentKind::Capture, PaymentKind::Charge]))
            .filter(payments::processor_reference.eq(reference))
            .select(Payment::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Records a PENDING row's processor reference before its outcome is known (a
    /// refund the processor is still working on).
    pub async fn set_reference(conn: &mut AsyncPgConnection, id: Uuid, reference: &str) -> QueryResult<usize> {
        diesel::update(
            payments::table
                .find(id)
                .filter(payments::status.eq(PaymentStatus::Pending))
                .filter(payments::processor_reference.is_null()),
        )
        .set(payments::processor_reference.eq(reference))
        .execute(conn)
        .await
    }

    /// PENDING → SUCCEEDED or FAILED. `None` when the row was settled already (a
    /// concurrent attempt recorded the same outcome first).
    pub async fn settle(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        settlement: Settlement<'_>,
    ) -> QueryResult<Option<Payment>> {
        let target = payments::table.find(id).filter(payments::status.eq(PaymentStatus::Pending));
        let result = match settlement {
            Settlement::Succeeded { processor_reference, application_fee } => {
                diesel::update(target)
                    .set((
                        payments::status.eq(PaymentStatus::Succeeded),
                        payments::processor_reference.eq(diesel::dsl::sql::<
                            diesel::sql_types::Nullable<diesel::sql_types::Text>,
                        >("coalesce(processor_reference, ")
                        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(processor_reference)
                        .sql(")")),
                        payments::application_fee.eq(application_fee),
                        payments::settled_at.eq(diesel::dsl::now),
                    ))
                    .returning(Payment::as_returning())
                    .get_result(conn)
                    .await
            }
            Settlement::Failed { code, decline_code, message } => {
                diesel::update(target)
                    .set((
                        payments::status.eq(PaymentStatus::Failed),
                        payments::failure_code.eq(code),
                        payments::failure_decline_code.eq(decline_code),
                        payments::failure_message.eq(message),
                        payments::settled_at.eq(diesel::dsl::now),
                    ))
                    .returning(Payment::as_returning())
                    .get_result(conn)
                    .await
            }
        };
        result.optional()
    }
}
