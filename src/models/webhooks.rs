//! `webhook_endpoints`, `webhook_deliveries` (one per endpoint and event, claimed by
//! any server process) and `webhook_attempts` (every HTTP attempt, for the owner).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Integer, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::text_enum;
use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};

text_enum! {
    /// Whether an endpoint receives deliveries.
    EndpointStatus {
        /// Deliveries are made.
        Enabled = "ENABLED",
        /// Nothing is delivered (by its owner, a 410 Gone, or 5 days of failures).
        Disabled = "DISABLED",
    }
}

text_enum! {
    /// Where a delivery stands.
    DeliveryStatus {
        /// Waiting for its next attempt.
        Pending = "PENDING",
        /// An attempt succeeded.
        Delivered = "DELIVERED",
        /// Every attempt of the retry schedule failed; given up.
        Failed = "FAILED",
    }
}

/// A `webhook_endpoints` row: where an app's or an operator's events are delivered.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct Endpoint {
    /// The endpoint's id (UUIDv7).
    pub id: Uuid,
    /// The owning app (exactly one of `app_id` and `operator_id` is set).
    pub app_id: Option<Uuid>,
    /// The owning operator.
    pub operator_id: Option<Uuid>,
    /// The `https` URL deliveries are POSTed to.
    pub url: String,
    /// The event types delivered; empty: every type.
    pub event_types: Vec<String>,
    /// The owner's note on the endpoint.
    pub description: Option<String>,
    /// Whether deliveries are made.
    pub status: EndpointStatus,
    /// Why it was disabled (by its owner, a 410 Gone, or failures).
    pub disabled_reason: Option<String>,
    /// The signing secret, encrypted with the keyring (`crypto`).
    pub secret_ciphertext: Vec<u8>,
    /// The keyring key that encrypted `secret_ciphertext`.
    pub secret_key_id: String,
    /// After a rotation: the previous secret, encrypted; it signs too until it expires.
    pub previous_secret_ciphertext: Option<Vec<u8>>,
    /// The keyring key that encrypted `previous_secret_ciphertext`.
    pub previous_secret_key_id: Option<String>,
    /// Until when the previous secret still signs deliveries.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Since when every attempt has failed (null while deliveries succeed).
    pub failing_since: Option<DateTime<Utc>>,
    /// When the endpoint was registered.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// A new endpoint; its secret arrives already encrypted.
#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct NewEndpoint<'a> {
    /// The new endpoint's id (UUIDv7).
    pub id: Uuid,
    /// The owning app (exactly one of the owners is set).
    pub app_id: Option<Uuid>,
    /// The owning operator.
    pub operator_id: Option<Uuid>,
    /// The `https` URL deliveries are POSTed to.
    pub url: &'a str,
    /// The event types delivered; empty: every type.
    pub event_types: Vec<String>,
    /// The owner's note on the endpoint.
    pub description: Option<&'a str>,
    /// The signing secret, encrypted.
    pub secret_ciphertext: Vec<u8>,
    /// The keyring key of `secret_ciphertext`.
    pub secret_key_id: String,
}

/// Whose endpoints a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointScope {
    /// Every endpoint (admins).
    All,
    /// This app's endpoints.
    App(Uuid),
    /// This operator's endpoints.
    Operator(Uuid),
}

/// The changes `updateWebhookEndpoint` may make.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = webhook_endpoints)]
pub struct EndpointChanges {
    /// A new URL.
    pub url: Option<String>,
    /// New event types (empty: every type).
    pub event_types: Option<Vec<String>>,
    /// A new note; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Enabled or disabled.
    pub status: Option<EndpointStatus>,
    /// Why it is disabled; `Some(None)` clears it.
    pub disabled_reason: Option<Option<String>>,
    /// Since when deliveries fail; `Some(None)` clears the failure record.
    pub failing_since: Option<Option<DateTime<Utc>>>,
}

impl NewEndpoint<'_> {
    /// Inserts the endpoint.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Endpoint> {
        diesel::insert_into(webhook_endpoints::table)
            .values(self)
            .returning(Endpoint::as_returning())
            .get_result(conn)
            .await
    }
}

impl Endpoint {
    /// The endpoint with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Endpoint>> {
        webhook_endpoints::table.find(id).select(Endpoint::as_select()).first(conn).await.optional()
    }

    /// A page of the endpoints in `scope`, by id.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        scope: EndpointScope,
        page: super::Page,
    ) -> QueryResult<Vec<Endpoint>> {
        let mut query =
            webhook_endpoints::table.select(Endpoint::as_select()).order(webhook_endpoints::id).into_boxed();
        match scope {
            EndpointScope::All => {}
            EndpointScope::App(id) => query = query.filter(webhook_endpoints::app_id.eq(id)),
            EndpointScope::Operator(id) => query = query.filter(webhook_endpoints::operator_id.eq(id)),
        }
        if let Some(after) = page.after {
            query = query.filter(webhook_endpoints::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// Applies `changes` and stamps `updated_at`.
    pub async fn update(conn: &mut AsyncPgConnection, id: Uuid, changes: &EndpointChanges) -> QueryResult<Endpoint> {
        diesel::update(webhook_endpoints::table.find(id))
            .set((changes, webhook_endpoints::updated_at.eq(diesel::dsl::now)))
            .returning(Endpoint::as_returning())
            .get_result(conn)
            .await
    }

    /// A new current secret; the old one keeps signing until `previous_until`.
    pub async fn rotate_secret(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        ciphertext: Vec<u8>,
        key_id: String,
        previous: Option<(Vec<u8>, String)>,
        previous_until: DateTime<Utc>,
    ) -> QueryResult<Endpoint> {
        let (previous_ciphertext, previous_key_id) = previous.unzip();
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::secret_ciphertext.eq(ciphertext),
                webhook_endpoints::secret_key_id.eq(key_id),
                webhook_endpoints::previous_secret_ciphertext.eq(previous_ciphertext),
                webhook_endpoints::previous_secret_key_id.eq(previous_key_id),
                webhook_endpoints::previous_secret_expires_at.eq(Some(previous_until)),
                webhook_endpoints::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Endpoint::as_returning())
            .get_result(conn)
            .await
    }

    /// Deletes the endpoint; its deliveries and attempts go with it. Returns the rows deleted (0 or 1).
    pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::delete(webhook_endpoints::table.find(id)).execute(conn).await
    }

    /// After a 2xx: the endpoint is healthy again.
    pub async fn mark_healthy(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        diesel::update(webhook_endpoints::table.find(id).filter(webhook_endpoints::failing_since.is_not_null()))
            .set(webhook_endpoints::failing_since.eq(None::<DateTime<Utc>>))
            .execute(conn)
            .await
    }

    /// After a failed attempt: starts the failing run if none is running; returns when
    /// the run started.
    pub async fn mark_failing(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<DateTime<Utc>>> {
        diesel::update(webhook_endpoints::table.find(id))
            .set(
                webhook_endpoints::failing_since
                    .eq(diesel::dsl::sql::<Nullable<Timestamptz>>("coalesce(failing_since, now())")),
            )
            .returning(webhook_endpoints::failing_since)
            .get_result(conn)
            .await
    }

    /// Disables the endpoint with a reason its owner sees.
    pub async fn disable(conn: &mut AsyncPgConnection, id: Uuid, reason: &str) -> QueryResult<usize> {
        diesel::update(webhook_endpoints::table.find(id).filter(webhook_endpoints::status.eq(EndpointStatus::Enabled)))
            .set((
                webhook_endpoints::status.eq(EndpointStatus::Disabled),
                webhook_endpoints::disabled_reason.eq(Some(reason)),
                webhook_endpoints::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
    }
}

/// A delivery claimed by this process, with what is needed to send it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    /// The delivery's id.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// The endpoint to send to.
    #[diesel(sql_type = SqlUuid)]
    pub endpoint_id: Uuid,
    /// The event to send (its `events.seq`).
    #[diesel(sql_type = BigInt)]
    pub event_seq: i64,
    /// This attempt's number (1 for the first).
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// `'PENDING'` written into the statement's text rather than bound: only then can a
/// prepared statement's generic plan use the partial index `webhook_deliveries_due`
/// (`WHERE status = 'PENDING'`). With a bound value Postgres planned the statement anew on
/// every run. Unlike `diesel::dsl::sql`, it leaves the statement cacheable.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId, diesel::expression::ValidGrouping)]
struct PendingText;

impl Expression for PendingText {
    type SqlType = diesel::sql_types::Text;
}

impl<QS> AppearsOnTable<QS> for PendingText {}

impl<QS> SelectableExpression<QS> for PendingText {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for PendingText {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("'");
        out.push_sql(DeliveryStatus::Pending.as_str());
        out.push_sql("'");
        Ok(())
    }
}

/// Whether any delivery is pending and due (whoever holds it): a cheap, prepared check on
/// the partial index, so that a wake-up with nothing to send skips [`claim_due`], which is
/// planned on every run.
pub async fn any_due(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        webhook_deliveries::table
            .filter(webhook_deliveries::status.eq(PendingText))
            .filter(webhook_deliveries::next_attempt_at.le(diesel::dsl::now)),
    ))
    .get_result(conn)
    .await
}

/// Claims due deliveries of enabled endpoints: at most `per_endpoint` minus what this
/// process already has in flight to each endpoint (`busy`), at most `limit` in all.
/// `FOR UPDATE SKIP LOCKED` lets every server process claim at once without waiting
/// on or taking the same rows; the lease (`locked_until`) makes a claim survive the
/// transaction, and lapses if the process dies, so another retries it.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    busy: &[(Uuid, i32)],
    per_endpoint: i32,
    limit: i64,
    lease: std::time::Duration,
) -> QueryResult<Vec<Claimed>> {
    let (busy_ids, busy_counts): (Vec<Uuid>, Vec<i32>) = busy.iter().copied().unzip();
    diesel::sql_query(
        "WITH busy AS (SELECT * FROM unnest($1::uuid[], $2::int[]) AS b (endpoint_id, n)),
         ranked AS (
           SELECT d.id, d.endpoint_id,
                  row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS rn
           FROM webhook_deliveries d
           JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'ENABLED'
           WHERE d.status = 'PENDING' AND d.next_attempt_at <= now()
             AND (d.locked_until IS NULL OR d.locked_until < now())
         ),
         picked AS (
           SELECT r.id FROM ranked r LEFT JOIN busy b USING (endpoint_id)
           WHERE r.rn <= $3 - coalesce(b.n, 0)
           LIMIT $4
         ),
         locked AS (
           SELECT d.id FROM webhook_deliveries d
           WHERE d.id IN (SELECT id FROM picked) AND d.status = 'PENDING'
             AND (d.locked_until IS NULL OR d.locked_until < now())
           FOR UPDATE SKIP LOCKED
         )
         UPDATE webhook_deliveries d
         SET locked_until = now() + $5 * interval '1 millisecond', attempts = d.attempts + 1, updated_at = now()
         FROM locked WHERE d.id = locked.id
         RETURNING d.id, d.endpoint_id, d.event_seq, d.attempts",
    )
    .bind::<Array<SqlUuid>, _>(busy_ids)
    .bind::<Array<Int4>, _>(busy_counts)
    .bind::<Integer, _>(per_endpoint)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(lease.as_millis() as i64)
    .load(conn)
    .await
}

/// When the next delivery of enabled endpoints falls due (for the worker's sleep).
pub async fn next_due(conn: &mut AsyncPgConnection) -> QueryResult<Option<DateTime<Utc>>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending))
        .select(diesel::dsl::min(webhook_deliveries::next_attempt_at))
        .first(conn)
        .await
}

/// Records the outcome of attempt `attempt`. Only the claim holder's record counts: if
/// its lease lapsed and another process claimed the delivery again, the late result
/// changes nothing (returns false).
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    attempt: i32,
    status: DeliveryStatus,
    next_attempt_at: Option<DateTime<Utc>>,
) -> QueryResult<bool> {
    let n = diesel::update(
        webhook_deliveries::table
            .find(id)
            .filter(webhook_deliveries::attempts.eq(attempt))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending)),
    )
    .set((
        webhook_deliveries::status.eq(status),
        webhook_deliveries::next_attempt_at.eq(next_attempt_at.unwrap_or_else(Utc::now)),
        webhook_deliveries::locked_until.eq(None::<DateTime<Utc>>),
        webhook_deliveries::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// `redeliverEvent`: the (endpoint, event) delivery starts over with a fresh schedule,
/// created if the endpoint did not exist or want the type when the event happened.
pub async fn redeliver(conn: &mut AsyncPgConnection, endpoint_id: Uuid, event_seq: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_seq) VALUES ($1, $2)
         ON CONFLICT (endpoint_id, event_seq) DO UPDATE
         SET status = 'PENDING', attempts = 0, next_attempt_at = now(), locked_until = NULL, updated_at = now()",
    )
    .bind::<SqlUuid, _>(endpoint_id)
    .bind::<BigInt, _>(event_seq)
    .execute(conn)
    .await
}

/// A `webhook_attempts` row: one HTTP attempt to deliver an event to an endpoint.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts)]
pub struct Attempt {
    /// The attempt's id (UUIDv7).
    pub id: Uuid,
    /// The delivery it belongs to.
    pub delivery_id: Uuid,
    /// The endpoint it was sent to.
    pub endpoint_id: Uuid,
    /// The event sent (`webhook-id`).
    pub event_id: String,
    /// 1 for the first attempt; retries count up.
    pub attempt: i32,
    /// Whether the endpoint answered 2xx within the timeout.
    pub succeeded: bool,
    /// The HTTP status answered (null when there was no answer).
    pub http_status: Option<i32>,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: i32,
    /// What went wrong (a refused address, a timeout, the start of an error answer).
    pub error: Option<String>,
    /// When the attempt was made.
    pub created_at: DateTime<Utc>,
}

impl Attempt {
    /// Inserts the attempt.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<usize> {
        diesel::insert_into(webhook_attempts::table).values(self).execute(conn).await
    }

    /// A page of an endpoint's attempts, by id; `succeeded` keeps one outcome only.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        endpoint_id: Uuid,
        succeeded: Option<bool>,
        page: super::Page,
    ) -> QueryResult<Vec<Attempt>> {
        let mut query = webhook_attempts::table
            .filter(webhook_attempts::endpoint_id.eq(endpoint_id))
            .select(Attempt::as_select())
            .order(webhook_attempts::id)
            .into_boxed();
        if let Some(succeeded) = succeeded {
            query = query.filter(webhook_attempts::succeeded.eq(succeeded));
        }
        if let Some(after) = page.after {
            query = query.filter(webhook_attempts::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// Deletes the attempts made before `before` (retention). Returns how many.
    pub async fn prune(conn: &mut AsyncPgConnection, before: DateTime<Utc>) -> QueryResult<usize> {
        diesel::delete(webhook_attempts::table.filter(webhook_attempts::created_at.lt(before))).execute(conn).await
    }
}
