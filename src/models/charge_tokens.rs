//! `charge_tokens`: single-use tokens on an operator's connected account, minted from
//! an app's customer for one parking session. A token row is written PENDING first (its
//! id names the processor request), then ISSUED with the processor's token and the
//! operator's next delivery cursor.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::events::NewEvent;
use super::text_enum;
use crate::db::schema::charge_tokens;

text_enum! {
    /// The state of a charge token. PENDING is internal: such tokens are never shown.
    ChargeTokenStatus {
        /// Reserved while the processor makes the token; never shown.
        Pending = "PENDING",
        /// Issued to the operator and usable.
        Issued = "ISSUED",
        /// The operator confirmed receipt; still usable.
        Acknowledged = "ACKNOWLEDGED",
        /// Spent on the session's hold: the operator is paid by capture.
        Held = "HELD",
        /// Used for the session's charge.
        Consumed = "CONSUMED",
        /// Past its expiry unused.
        Expired = "EXPIRED",
        /// Voided: the link was revoked, or the session canceled or declined.
        Voided = "VOIDED",
    }
}

/// A `charge_tokens` row: a single-use token on the operator's connected account for one session.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = charge_tokens)]
pub struct ChargeToken {
    /// The token's id (UUIDv7).
    pub id: Uuid,
    /// The session it pays for.
    pub session_id: Uuid,
    /// The operator it is issued to.
    pub operator_id: Uuid,
    /// The link it was made on.
    pub link_id: Uuid,
    /// The stored state; `effective_status` also counts an unused token past its expiry as expired.
    pub status: ChargeTokenStatus,
    /// The processor's single-use token; null while PENDING. Only its operator may read it.
    pub token: Option<String>,
    /// Its position in the operator's delivery stream (from `operators.token_seq`).
    pub cursor: Option<i64>,
    /// When it was issued.
    pub issued_at: Option<DateTime<Utc>>,
    /// When it stops being usable.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the operator acknowledged it.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was used for the charge.
    pub consumed_at: Option<DateTime<Utc>>,
    /// When it was voided.
    pub voided_at: Option<DateTime<Utc>>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// What the processor issued, as [`ChargeToken::issue`] records it. The times are given
/// (at microsecond precision, as stored) so the event written with the token shows the
/// row exactly.
#[derive(Debug, Clone, Copy)]
pub struct IssuedValue<'a> {
    /// The processor's token.
    pub token: &'a str,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
}

const OUTSTANDING: [ChargeTokenStatus; 3] =
    [ChargeTokenStatus::Pending, ChargeTokenStatus::Issued, ChargeTokenStatus::Acknowledged];

impl ChargeToken {
    /// The status as clients see it: an issued token past its expiry is EXPIRED even
    /// before any write marks it so.
    pub fn effective_status(&self, now: DateTime<Utc>) -> ChargeTokenStatus {
        match self.status {
            ChargeTokenStatus::Issued | ChargeTokenStatus::Acknowledged
                if self.expires_at.is_some_and(|at| at <= now) =>
            {
                ChargeTokenStatus::Expired
            }
            status => status,
        }
    }

    /// Whether the operator can still charge with it.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        matches!(self.effective_status(now), ChargeTokenStatus::Issued | ChargeTokenStatus::Acknowledged)
    }

    /// Reserves a PENDING token for the session before the processor makes it.
    pub async fn insert_pending(
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
        operator_id: Uuid,
        link_id: Uuid,
    ) -> QueryResult<ChargeToken> {
        diesel::insert_into(charge_tokens::table)
            .values((
                charge_tokens::id.eq(Uuid::now_v7()),
                charge_tokens::session_id.eq(session_id),
                charge_tokens::operator_id.eq(operator_id),
                charge_tokens::link_id.eq(link_id),
                charge_tokens::status.eq(ChargeTokenStatus::Pending),
            ))
            .returning(ChargeToken::as_returning())
            .get_result(conn)
            .await
    }

    /// The token with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ChargeToken>> {
        charge_tokens::table.find(id).select(ChargeToken::as_select()).first(conn).await.optional()
    }

    /// The tokens with these ids (for the loaders), in no particular order.
    pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<ChargeToken>> {
        charge_tokens::table.filter(charge_tokens::id.eq_any(ids)).select(ChargeToken::as_select()).load(conn).await
    }

    /// Every token of these sessions, oldest first (for `ParkingSession.chargeTokens`).
    pub async fn for_sessions(conn: &mut AsyncPgConnection, session_ids: &[Uuid]) -> QueryResult<Vec<ChargeToken>> {
        charge_tokens::table
            .filter(charge_tokens::session_id.eq_any(session_ids))
            .filter(charge_tokens::status.ne(ChargeTokenStatus::Pending))
            .select(ChargeToken::as_select())
            .order(charge_tokens::id.asc())
            .load(conn)
            .await
    }

    /// The session's token in flight (PENDING, ISSUED or ACKNOWLEDGED), if any.
    pub async fn outstanding_for_session(
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
    ) -> QueryResult<Option<ChargeToken>> {
        charge_tokens::table
            .filter(charge_tokens::session_id.eq(session_id))
            .filter(charge_tokens::status.eq_any(OUTSTANDING))
            .select(ChargeToken::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// The session's consumed token, if a charge was attempted.
    pub async fn consumed_for_session(
        conn: &mut AsyncPgConnection,
        session_id: Uuid,
    ) -> QueryResult<Option<ChargeToken>> {
        charge_tokens::table
            .filter(charge_tokens::session_id.eq(session_id))
            .filter(charge_tokens::status.eq(ChargeTokenStatus::Consumed))
            .select(ChargeToken::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Tokens delivered to an operator after `cursor`, in cursor order.
    pub async fn delivered_after(
        conn: &mut AsyncPgConnection,
        operator_id: Uuid,
        cursor: i64,
        limit: i64,
    ) -> QueryResult<Vec<ChargeToken>> {
        let query = charge_tokens::table
            .filter(charge_tokens::operator_id.eq(operator_id))
            .filter(charge_tokens::cursor.gt(cursor))
            .select(ChargeToken::as_select())
            .order(charge_tokens::cursor.asc());
        super::limited(query, limit).load(conn).await
    }

    /// PENDING → ISSUED in one statement, committed on its own: takes the operator's next
    /// delivery cursor (`operators.token_seq`, whose row lock makes cursors commit in
    /// order, so a reader never skips one) and appends `event` (`charge_token.issued`).
    /// The lock is held only for this statement and its commit. `None` (and nothing
    /// written) when the token is no longer PENDING: a concurrent request issued it, or
    /// it was voided.
    pub async fn issue(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        issued: IssuedValue<'_>,
        event: &NewEvent,
    ) -> QueryResult<Option<ChargeToken>> {
        use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
        diesel::sql_query(
            "WITH pending AS (
               SELECT id, operator_id FROM charge_tokens WHERE id = $1 AND status = 'PENDING' FOR UPDATE
             ), next AS (
               UPDATE operators o SET token_seq = o.token_seq + 1 FROM pending
               WHERE o.id = pending.operator_id RETURNING o.token_seq
             ), issued AS (
               UPDATE charge_tokens t
               SET status = 'ISSUED', token = $2, cursor = next.token_seq, issued_at = $3, expires_at = $4
               FROM next WHERE t.id = $1
               RETURNING t.*
             ), event AS (
               INSERT INTO events (id, type, app_id, operator_id, data, operator_data)
               SELECT $5, $6, $7, $8, $9, $10 FROM issued
             )
             SELECT * FROM issued",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(issued.token)
        .bind::<Timestamptz, _>(issued.issued_at)
        .bind::<Timestamptz, _>(issued.expires_at)
        .bind::<Text, _>(&event.id)
        .bind::<Text, _>(&event.type_)
        .bind::<Nullable<SqlUuid>, _>(event.app_id)
        .bind::<Nullable<SqlUuid>, _>(event.operator_id)
        .bind::<Jsonb, _>(&event.data)
        .bind::<Nullable<Jsonb>, _>(&event.operator_data)
        .get_result(conn)
        .await
        .optional()
    }

    /// ISSUED → ACKNOWLEDGED; a token in any other state only records the first
    /// acknowledgement time.
    pub async fn acknowledge(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<ChargeToken> {
        use diesel::dsl::case_when;
        diesel::update(charge_tokens::table.find(id))
            .set((
                charge_tokens::status.eq(case_when(
                    charge_tokens::status.eq(ChargeTokenStatus::Issued),
                    ChargeTokenStatus::Acknowledged.into_sql::<diesel::sql_types::Text>(),
                )
                .otherwise(charge_tokens::status)),
                charge_tokens::acknowledged_at.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                >("coalesce(acknowledged_at, now())")),
            ))
            .returning(ChargeToken::as_returning())
            .get_result(conn)
            .await
    }

    /// ISSUED/ACKNOWLEDGED (and unexpired) → CONSUMED. `None` if it was not usable.
    pub async fn consume(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ChargeToken>> {
        diesel::update(
            charge_tokens::table
                .find(id)
                .filter(charge_tokens::status.eq_any([ChargeTokenStatus::Issued, ChargeTokenStatus::Acknowledged]))
                .filter(charge_tokens::expires_at.gt(diesel::dsl::now)),
        )
        .set((charge_tokens::status.eq(ChargeTokenStatus::Consumed), charge_tokens::consumed_at.eq(diesel::dsl::now)))
        .returning(ChargeToken::as_returning())
        .get_result(conn)
        .await
        .optional()
    }

    /// Marks an outstanding token that has passed its expiry as EXPIRED.
    pub async fn expire(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(
            charge_tokens::table
                .find(id)
                .filter(charge_tokens::status.eq_any([ChargeTokenStatus::Issued, ChargeTokenStatus::Acknowledged]))
                .filter(charge_tokens::expires_at.le(diesel::dsl::now)),
        )
        .set(charge_tokens::status.eq(ChargeTokenStatus::Expired))
        .execute(conn)
        .await
    }

    /// PENDING → HELD: the token was spent on the session's hold; it is delivered to
    /// the operator (with a cursor) but cannot be charged.
    pub async fn mark_held(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        token: &str,
        cursor: i64,
        expires_at: DateTime<Utc>,
    ) -> QueryResult<Option<ChargeToken>> {
        diesel::update(charge_tokens::table.find(id).filter(charge_tokens::status.eq(ChargeTokenStatus::Pending)))
            .set((
                charge_tokens::status.eq(ChargeTokenStatus::Held),
                charge_tokens::token.eq(token),
                charge_tokens::cursor.eq(cursor),
                charge_tokens::issued_at.eq(diesel::dsl::now),
                charge_tokens::expires_at.eq(expires_at),
            ))
            .returning(ChargeToken::as_returning())
            .get_result(conn)
            .await
            .optional()
    }

    /// The token spent on the session's hold, if any.
    pub async fn held_for_session(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<Option<ChargeToken>> {
        charge_tokens::table
            .filter(charge_tokens::session_id.eq(session_id))
            .filter(charge_tokens::status.eq(ChargeTokenStatus::Held))
            .select(ChargeToken::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Voids the session's outstanding and held tokens (the session was canceled or
    /// its hold declined).
    pub async fn void_for_session(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<usize> {
        diesel::update(charge_tokens::table.filter(charge_tokens::session_id.eq(session_id)).filter(
            charge_tokens::status.eq_any([
                ChargeTokenStatus::Pending,
                ChargeTokenStatus::Issued,
                ChargeTokenStatus::Acknowledged,
                ChargeTokenStatus::Held,
            ]),
        ))
        .set((charge_tokens::status.eq(ChargeTokenStatus::Voided), charge_tokens::voided_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
    }

    /// Voids the link's outstanding tokens (the link was revoked).
    pub async fn void_for_link(conn: &mut AsyncPgConnection, link_id: Uuid) -> QueryResult<usize> {
        diesel::update(
            charge_tokens::table
                .filter(charge_tokens::link_id.eq(link_id))
                .filter(charge_tokens::status.eq_any(OUTSTANDING)),
        )
        .set((charge_tokens::status.eq(ChargeTokenStatus::Voided), charge_tokens::voided_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
    }
}
