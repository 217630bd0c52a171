//! `parking_sessions`: an end user parking at an operator, paid through the app's
//! customer. ACTIVE → ENDED (with an amount) → CHARGED or PAYMENT_FAILED.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{Page, text_enum};
use crate::db::schema::parking_sessions;

text_enum! {
    /// The state of a parking session.
    SessionStatus {
        Active = "ACTIVE",
        Ended = "ENDED",
        Charged = "CHARGED",
        PaymentFailed = "PAYMENT_FAILED",
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = parking_sessions)]
pub struct ParkingSession {
    pub id: Uuid,
    pub app_id: Uuid,
    pub operator_id: Uuid,
    pub customer_id: Uuid,
    pub link_id: Uuid,
    pub zone: String,
    pub vehicle_plate: String,
    pub status: SessionStatus,
    pub idempotency_key: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub charged_at: Option<DateTime<Utc>>,
    pub processor_charge_id: Option<String>,
    pub failure_code: Option<String>,
    pub failure_decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = parking_sessions)]
pub struct NewParkingSession<'a> {
    pub id: Uuid,
    pub app_id: Uuid,
    pub operator_id: Uuid,
    pub customer_id: Uuid,
    pub link_id: Uuid,
    pub zone: &'a str,
    pub vehicle_plate: &'a str,
    pub status: SessionStatus,
    pub idempotency_key: &'a str,
}

impl NewParkingSession<'_> {
    /// Inserts the session unless the app already used this idempotency key; returns
    /// `None` then (the caller loads the original).
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Option<ParkingSession>> {
        diesel::insert_into(parking_sessions::table)
            .values(self)
            .on_conflict((parking_sessions::app_id, parking_sessions::idempotency_key))
            .do_nothing()
            .returning(ParkingSession::as_returning())
            .get_result(conn)
            .await
            .optional()
    }
}

/// Which sessions a query may return, and an optional status filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionFilter {
    pub app_id: Option<Uuid>,
    pub operator_id: Option<Uuid>,
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
    Charged { processor_charge_id: &'a str },
    Failed { code: &'a str, decline_code: Option<&'a str>, message: &'a str },
}

impl ParkingSession {
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ParkingSession>> {
        parking_sessions::table.find(id).select(ParkingSession::as_select()).first(conn).await.optional()
    }

    /// Like `find`, locking the row until the transaction ends.
    pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ParkingSession>> {
        parking_sessions::table.find(id).select(ParkingSession::as_select()).for_update().first(conn).await.optional()
    }

    pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<ParkingSession>> {
        parking_sessions::table
            .filter(parking_sessions::id.eq_any(ids))
            .select(ParkingSession::as_select())
            .load(conn)
            .await
    }

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

    pub async fn list(
        conn: &mut AsyncPgConnection,
        filter: SessionFilter,
        page: Page,
    ) -> QueryResult<Vec<ParkingSession>> {
        let mut query =
            filtered(filter).select(ParkingSession::as_select()).order(parking_sessions::id.asc()).limit(page.limit);
        if let Some(after) = page.after {
            query = query.filter(parking_sessions::id.gt(after));
        }
        query.load(conn).await
    }

    pub async fn count(conn: &mut AsyncPgConnection, filter: SessionFilter) -> QueryResult<i64> {
        filtered(filter).count().get_result(conn).await
    }

    /// ACTIVE → ENDED with the amount owed.
    pub async fn end(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        amount: i64,
        currency: &str,
    ) -> QueryResult<ParkingSession> {
        diesel::update(parking_sessions::table.find(id).filter(parking_sessions::status.eq(SessionStatus::Active)))
            .set((
                parking_sessions::status.eq(SessionStatus::Ended),
                parking_sessions::ended_at.eq(diesel::dsl::now),
                parking_sessions::amount.eq(amount),
                parking_sessions::currency.eq(currency),
                parking_sessions::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ParkingSession::as_returning())
            .get_result(conn)
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
