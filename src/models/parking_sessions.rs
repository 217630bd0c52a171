//! `parking_sessions`: an end user parking at an operator, paid through the app's
//! customer. ACTIVE → ENDED (with an amount) → CHARGED or PAYMENT_FAILED; with a hold,
//! AUTHORIZING → ACTIVE or DECLINED first; CANCELED, refunds and disputes after (the
//! README's state diagram has every transition). The money totals are kept by the
//! database from the `payments` ledger: code here never writes them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{Page, text_enum};
use crate::db::schema::parking_sessions;

text_enum! {
    /// The state of a parking session.
    SessionStatus {
        /// Its hold is being authorized; not yet delivered to the operator.
        Authorizing = "AUTHORIZING",
        /// Parking; the operator holds a charge token.
        Active = "ACTIVE",
        /// The hold was refused; nothing was delivered or charged.
        Declined = "DECLINED",
        /// Parking ended with an amount owed; waiting for the charge.
        Ended = "ENDED",
        /// Paid.
        Charged = "CHARGED",
        /// The charge was declined.
        PaymentFailed = "PAYMENT_FAILED",
        /// Canceled while active: tokens voided, hold released, nothing charged.
        Canceled = "CANCELED",
        /// Part of the captured amount was refunded.
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        /// Everything captured was refunded.
        Refunded = "REFUNDED",
        /// The cardholder disputed the charge.
        Disputed = "DISPUTED",
    }
}

text_enum! {
    /// Who set a session's amount.
    AmountSetBy {
        /// The session's app.
        App = "APP",
        /// The session's operator (its amount stands).
        Operator = "OPERATOR",
        /// An admin.
        Admin = "ADMIN",
    }
}

text_enum! {
    /// Why a session was canceled (`EXPIRED`: by curbpay, after the maximum duration).
    CancelReason {
        /// The end user asked.
        RequestedByCustomer = "REQUESTED_BY_CUSTOMER",
        /// Started twice by mistake.
        Duplicate = "DUPLICATE",
        /// Any other reason.
        Other = "OTHER",
        /// Set by curbpay: still active after the maximum duration.
        Expired = "EXPIRED",
    }
}

/// A `parking_sessions` row: an end user parking at an operator, paid through the app's customer.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = parking_sessions)]
pub struct ParkingSession {
    /// The session's id (UUIDv7).
    pub id: Uuid,
    /// The app selling the session.
    pub app_id: Uuid,
    /// The operator where the vehicle parks.
    pub operator_id: Uuid,
    /// The paying customer.
    pub customer_id: Uuid,
    /// The link the session runs on.
    pub link_id: Uuid,
    /// The parking zone (the operator's own code).
    pub zone: String,
    /// The vehicle's plate.
    pub vehicle_plate: String,
    /// Current state.
    pub status: SessionStatus,
    /// The app's idempotency key of `startParkingSession`, unique per app.
    pub idempotency_key: String,
    /// When parking started.
    pub started_at: DateTime<Utc>,
    /// When parking ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The amount owed, in minor units of `currency`, once ended.
    pub amount: Option<i64>,
    /// The currency of `amount` (ISO 4217, upper case).
    pub currency: Option<String>,
    /// When the charge succeeded.
    pub charged_at: Option<DateTime<Utc>>,
    /// The processor's charge id, once charged.
    pub processor_charge_id: Option<String>,
    /// The processor's error code of the failed charge.
    pub failure_code: Option<String>,
    /// The issuer's decline code of the failed charge, when given.
    pub failure_decline_code: Option<String>,
    /// A message fit to show the end user, for the failed charge.
    pub failure_message: Option<String>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// When the app expects parking to end (extensions move it).
    pub expected_end_at: Option<DateTime<Utc>>,
    /// The hold's currency; `None` for a session without a hold.
    pub hold_currency: Option<String>,
    /// Whether the processor allows raising the hold in place (incremental authorization).
    pub hold_incremental: Option<bool>,
    /// Who set `amount`.
    pub amount_set_by: Option<AmountSetBy>,
    /// Why the session was canceled.
    pub cancel_reason: Option<CancelReason>,
    /// Ledger totals (minor units), maintained by the database.
    pub held_amount: i64,
    /// Everything captured or charged (minor units).
    pub captured_amount: i64,
    /// What was left of holds and given back (minor units).
    pub released_amount: i64,
    /// Everything refunded (minor units).
    pub refunded_amount: i64,
    /// Refunds asked for whose outcome is not known yet (minor units).
    pub refund_pending_amount: i64,
}

impl ParkingSession {
    /// The status a collected session's money gives it: after refunds (or a won dispute).
    pub fn status_after_refunds(&self) -> SessionStatus {
        if self.refunded_amount > 0 && self.refunded_amount >= self.captured_amount {
            SessionStatus::Refunded
        } else if self.refunded_amount > 0 {
            SessionStatus::PartiallyRefunded
        } else {
            SessionStatus::Charged
        }
    }

    /// Whether the session's money moves through a hold.
    pub fn has_hold(&self) -> bool {
        self.hold_currency.is_some()
    }

    /// The currency of the session's money, once known.
    pub fn money_currency(&self) -> Option<&str> {
        self.hold_currency.as_deref().or(self.currency.as_deref())
    }
}

/// A new session, inserted while its hold (if any) is authorized. A `None` is written
/// as NULL (each column's default is NULL anyway), so the statement's text never
/// varies and its prepared form is reused.
#[derive(Debug, Insertable)]
#[diesel(table_name = parking_sessions, treat_none_as_default_value = false)]
pub struct NewParkingSession<'a> {
    /// The new session's id (UUIDv7).
    pub id: Uuid,
    /// The app selling it.
    pub app_id: Uuid,
    /// The operator where the vehicle parks.
    pub operator_id: Uuid,
    /// The paying customer.
    pub customer_id: Uuid,
    /// The link it runs on.
    pub link_id: Uuid,
    /// The parking zone.
    pub zone: &'a str,
    /// The vehicle's plate.
    pub vehicle_plate: &'a str,
    /// The initial state.
    pub status: SessionStatus,
    /// The app's idempotency key, unique per app.
    pub idempotency_key: &'a str,
    /// When the app expects parking to end.
    pub expected_end_at: Option<DateTime<Utc>>,
    /// The hold's currency; `None` for a session without a hold.
    pub hold_currency: Option<&'a str>,
}

impl NewParkingSession<'_> {
    /// Inserts the session. An idempotency key the app already used fails with the
    /// unique violation of [`KEY_CONSTRAINT`] (and a vehicle with an active session in
    /// the zone with that of `parking_sessions_one_active_per_vehicle`): the caller then
    /// looks the key up. A plain insert, rather than `ON CONFLICT DO NOTHING`, is a
    /// statement the connection prepares once, and the key is checked by its unique
    /// index alone.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<ParkingSession> {
        diesel::insert_into(parking_sessions::table)
            .values(self)
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
    }
}

/// The unique constraint on an app's idempotency keys.
pub const KEY_CONSTRAINT: &str = "parking_sessions_app_id_idempotency_key_key";

/// Which sessions a query may return, and an optional status filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionFilter {
    /// Only this app's sessions.
    pub app_id: Option<Uuid>,
    /// Only this operator's sessions.
    pub operator_id: Option<Uuid>,
    /// Only sessions in this state.
    pub status: Option<SessionStatus>,
}

fn filtered(filter: SessionFilter) -> parking_sessions::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = parking_sessions::table.into_boxed();
    if let Some(id) = filter.app_id {
        query = query.filter(parking_sessions::app_id.eq(id));
    }
    if let Some(id) = filter.operator_id {
        query = query.filter(parking_sessions::operator_id.eq(id));
    }
    if let Some(status) = filter.status {
        query = query.filter(parking_sessions::status.eq(status));
    }
    query
}

/// How a charge attempt ended, as recorded on the session.
#[derive(Debug, Clone)]
pub enum ChargeRecord<'a> {
    /// The charge succeeded.
    Charged {
        /// The processor's charge id.
        processor_charge_id: &'a str,
    },
    /// The charge was declined or failed.
    Failed {
        /// The processor's error code.
        code: &'a str,
        /// The issuer's decline code, when given.
        decline_code: Option<&'a str>,
        /// A message fit to show the end user.
        message: &'a str,
    },
}

impl ParkingSession {
    /// The session with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ParkingSession>> {
        parking_sessions::table.find(id).select(ParkingSession::as_select()).first(conn).await.optional()
    }

    /// Like `find`, locking the row until the transaction ends.
    pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ParkingSession>> {
        parking_sessions::table.find(id).select(ParkingSession::as_select()).for_update().first(conn).await.optional()
    }

    /// The sessions with these ids (for the loaders), in no particular order.
    pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<ParkingSession>> {
        parking_sessions::table
            .filter(parking_sessions::id.eq_any(ids))
            .select(ParkingSession::as_select())
            .load(conn)
            .await
    }

    /// The app's session started with this idempotency key, if any.
    pub async fn find_by_key(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        idempotency_key: &str,
    ) -> QueryResult<Option<ParkingSession>> {
        parking_sessions::table
            .filter(parking_sessions::app_id.eq(app_id))
            .filter(parking_sessions::idempotency_key.eq(idempotency_key))
            .select(ParkingSession::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// A page of the sessions matching `filter`, by id.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        filter: SessionFilter,
        page: Page,
    ) -> QueryResult<Vec<ParkingSession>> {
        let mut query = filtered(filter).select(ParkingSession::as_select()).order(parking_sessions::id.asc());
        if let Some(after) = page.after {
            query = query.filter(parking_sessions::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// How many sessions match `filter`.
    pub async fn count(conn: &mut AsyncPgConnection, filter: SessionFilter) -> QueryResult<i64> {
        filtered(filter).count().get_result(conn).await
    }

    /// ACTIVE → ENDED with the amount owed, and who set it.
    pub async fn end(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        amount: i64,
        currency: &str,
        set_by: AmountSetBy,
    ) -> QueryResult<ParkingSession> {
        diesel::update(parking_sessions::table.find(id).filter(parking_sessions::status.eq(SessionStatus::Active)))
            .set((
                parking_sessions::status.eq(SessionStatus::Ended),
                parking_sessions::ended_at.eq(diesel::dsl::now),
                parking_sessions::amount.eq(amount),
                parking_sessions::currency.eq(currency),
                parking_sessions::amount_set_by.eq(set_by),
                parking_sessions::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
    }

    /// An ENDED (not yet charged) session's amount replaced.
    pub async fn replace_amount(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        amount: i64,
        set_by: AmountSetBy,
    ) -> QueryResult<ParkingSession> {
        diesel::update(parking_sessions::table.find(id).filter(parking_sessions::status.eq(SessionStatus::Ended)))
            .set((
                parking_sessions::amount.eq(amount),
                parking_sessions::amount_set_by.eq(set_by),
                parking_sessions::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
    }

    /// Moves a session to a status no other column depends on (ACTIVE after its hold,
    /// ENDED from the charged family never: see the CHECKs).
    pub async fn set_status(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        status: SessionStatus,
    ) -> QueryResult<ParkingSession> {
        diesel::update(parking_sessions::table.find(id))
            .set((parking_sessions::status.eq(status), parking_sessions::updated_at.eq(diesel::dsl::now)))
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
    }

    /// AUTHORIZING → ACTIVE, remembering whether the hold can grow in place.
    pub async fn activate_hold(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        incremental: bool,
    ) -> QueryResult<ParkingSession> {
        diesel::update(parking_sessions::table.find(id).filter(parking_sessions::status.eq(SessionStatus::Authorizing)))
            .set((
                parking_sessions::status.eq(SessionStatus::Active),
                parking_sessions::hold_incremental.eq(incremental),
                parking_sessions::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
    }

    /// AUTHORIZING → DECLINED with the processor's reason.
    pub async fn decline(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        code: &str,
        decline_code: Option<&str>,
        message: &str,
    ) -> QueryResult<ParkingSession> {
        diesel::update(parking_sessions::table.find(id).filter(parking_sessions::status.eq(SessionStatus::Authorizing)))
            .set((
                parking_sessions::status.eq(SessionStatus::Declined),
                parking_sessions::ended_at.eq(diesel::dsl::now),
                parking_sessions::failure_code.eq(code),
                parking_sessions::failure_decline_code.eq(decline_code),
                parking_sessions::failure_message.eq(message),
                parking_sessions::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
    }

    /// ACTIVE → CANCELED.
    pub async fn cancel(conn: &mut AsyncPgConnection, id: Uuid, reason: CancelReason) -> QueryResult<ParkingSession> {
        diesel::update(parking_sessions::table.find(id).filter(parking_sessions::status.eq(SessionStatus::Active)))
            .set((
                parking_sessions::status.eq(SessionStatus::Canceled),
                parking_sessions::cancel_reason.eq(reason),
                parking_sessions::ended_at.eq(diesel::dsl::now),
                parking_sessions::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
    }

    /// Moves the expected end (an extension succeeded).
    pub async fn set_expected_end(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        expected_end_at: Option<DateTime<Utc>>,
    ) -> QueryResult<usize> {
        diesel::update(parking_sessions::table.find(id))
            .set((
                parking_sessions::expected_end_at.eq(expected_end_at),
                parking_sessions::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
    }

    /// ACTIVE sessions started before `cutoff`, locked for the caller; rows another
    /// process holds are skipped, so each is acted on exactly once.
    pub async fn lock_abandoned(
        conn: &mut AsyncPgConnection,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> QueryResult<Vec<ParkingSession>> {
        parking_sessions::table
            .filter(parking_sessions::status.eq(SessionStatus::Active))
            .filter(parking_sessions::started_at.lt(cutoff))
            .select(ParkingSession::as_select())
            .order(parking_sessions::started_at.asc())
            .limit(limit)
            .for_update()
            .skip_locked()
            .load(conn)
            .await
    }

    /// ENDED → CHARGED or PAYMENT_FAILED. `None` when the session had left ENDED already
    /// (a concurrent attempt recorded the same outcome first).
    pub async fn record_charge(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        record: ChargeRecord<'_>,
    ) -> QueryResult<Option<ParkingSession>> {
        let target = parking_sessions::table.find(id).filter(parking_sessions::status.eq(SessionStatus::Ended));
        let query = match record {
            ChargeRecord::Charged { processor_charge_id } => {
                diesel::update(target)
                    .set((
                        parking_sessions::status.eq(SessionStatus::Charged),
                        parking_sessions::processor_charge_id.eq(processor_charge_id),
                        parking_sessions::charged_at.eq(diesel::dsl::now),
                        parking_sessions::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(ParkingSession::as_returning())
                    .get_result(conn)
                    .await
            }
            ChargeRecord::Failed { code, decline_code, message } => {
                diesel::update(target)
                    .set((
                        parking_sessions::status.eq(SessionStatus::PaymentFailed),
                        parking_sessions::failure_code.eq(code),
                        parking_sessions::failure_decline_code.eq(decline_code),
                        parking_sessions::failure_message.eq(message),
                        parking_sessions::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(ParkingSession::as_returning())
                    .get_result(conn)
                    .await
            }
        };
        query.optional()
    }
}

/// Records who set a session's amount to what (every end and every replacement).
pub async fn record_amount_change(
    conn: &mut AsyncPgConnection,
    session_id: Uuid,
    amount: i64,
    currency: &str,
    set_by: AmountSetBy,
) -> QueryResult<usize> {
    use crate::db::schema::session_amount_changes as changes;
    diesel::insert_into(changes::table)
        .values((
            changes::id.eq(Uuid::now_v7()),
            changes::session_id.eq(session_id),
            changes::amount.eq(amount),
            changes::currency.eq(currency),
            changes::set_by.eq(set_by),
        ))
        .execute(conn)
        .await
}
