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
        /// A hold placed on the card.
        Authorization = "AUTHORIZATION",
        /// A hold raised in place (incremental authorization).
        Increment = "INCREMENT",
        /// Money taken from a hold.
        Capture = "CAPTURE",
        /// Money taken with a charge token (a session without a hold).
        Charge = "CHARGE",
        /// What was left of a hold, given back to the card.
        Release = "RELEASE",
        /// Money returned after a capture or charge.
        Refund = "REFUND",
        /// A dispute: PENDING while open, SUCCEEDED when the cardholder won, FAILED when lost.
        Dispute = "DISPUTE",
    }
}

text_enum! {
    /// A ledger row's outcome; only PENDING ever changes, once.
    PaymentStatus {
        /// Sent to the processor (a dispute: open); outcome not known yet.
        Pending = "PENDING",
        /// Done.
        Succeeded = "SUCCEEDED",
        /// Refused by the processor.
        Failed = "FAILED",
    }
}

/// A `payments` row: one movement of a session's money. Append-only but for a PENDING row's outcome.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = payments)]
pub struct Payment {
    /// The row's id (UUIDv7; also the processor request's idempotency key).
    pub id: Uuid,
    /// The session whose money moved.
    pub session_id: Uuid,
    /// What the row records.
    pub kind: PaymentKind,
    /// The money moved, in minor units of `currency` (greater than zero).
    pub amount: i64,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// The outcome; PENDING changes once.
    pub status: PaymentStatus,
    /// The authorization an INCREMENT, CAPTURE or RELEASE acts on; the capture or charge a REFUND or DISPUTE acts on.
    pub parent_id: Option<Uuid>,
    /// The refund a REFUND row carries out.
    pub refund_id: Option<Uuid>,
    /// The processor's object (PaymentIntent, charge, refund or dispute id).
    pub processor_reference: Option<String>,
    /// The app's fee taken (CAPTURE, CHARGE) or returned (REFUND), in minor units.
    pub application_fee: Option<i64>,
    /// The processor's error code, when FAILED.
    pub failure_code: Option<String>,
    /// The issuer's decline code, when given.
    pub failure_decline_code: Option<String>,
    /// A message fit to show the end user, when FAILED.
    pub failure_message: Option<String>,
    /// A dispute's reason, as the processor reports it.
    pub reason: Option<String>,
    /// The client's key of the request that wrote the row (extensions), unique per session.
    pub request_key: Option<String>,
    /// The expected end an extension moves the session to.
    pub expected_end_at: Option<DateTime<Utc>>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
    /// When the outcome was recorded (null while PENDING).
    pub settled_at: Option<DateTime<Utc>>,
}

/// A new ledger row.
#[derive(Debug, Insertable)]
#[diesel(table_name = payments)]
pub struct NewPayment<'a> {
    /// The row's id (UUIDv7; also the processor request's idempotency key).
    pub id: Uuid,
    /// The session whose money moves.
    pub session_id: Uuid,
    /// What the row records.
    pub kind: PaymentKind,
    /// The money, in minor units of `currency` (greater than zero).
    pub amount: i64,
    /// ISO 4217 code, upper case.
    pub currency: &'a str,
    /// The initial outcome (PENDING unless already known).
    pub status: PaymentStatus,
    /// The row it acts on (see `Payment::parent_id`).
    pub parent_id: Option<Uuid>,
    /// The refund it carries out.
    pub refund_id: Option<Uuid>,
    /// The processor's object, when already known.
    pub processor_reference: Option<&'a str>,
    /// A dispute's reason.
    pub reason: Option<&'a str>,
    /// The client's request key (extensions).
    pub request_key: Option<&'a str>,
    /// The expected end an extension moves the session to.
    pub expected_end_at: Option<DateTime<Utc>>,
    /// When the outcome was recorded (null while PENDING).
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

    /// Inserts the row.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Payment> {
        diesel::insert_into(payments::table).values(self).returning(Payment::as_returning()).get_result(conn).await
    }
}

/// A PENDING row's outcome.
#[derive(Debug, Clone)]
pub enum Settlement<'a> {
    /// Done.
    Succeeded {
        /// The processor's object, when the row did not have it yet.
        processor_reference: Option<&'a str>,
        /// The app's fee taken or returned, in minor units.
        application_fee: Option<i64>,
    },
    /// Refused by the processor.
    Failed {
        /// The processor's error code.
        code: &'a str,
        /// The issuer's decline code, when given.
        decline_code: Option<&'a str>,
        /// A message fit to show the end user.
        message: &'a str,
    },
}

impl Payment {
    /// The row with this id, if any.
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

    /// The session's row written by the request with this key, if any.
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
