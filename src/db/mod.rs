//! Storage plumbing: the connection pool (with limits and a statement counter),
//! embedded migrations, and the embedded Postgres used when no `DATABASE_URL` is set.

pub mod embedded;
pub mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// Counts the SQL statements the server sends, for tests and benchmarks that check
/// how many statements a request costs (the loaders' batching, for instance).
#[derive(Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Each connection's instrumentation: counts statements and, with traces on, gives each
/// statement run within an operation or a processor call a span of its own.
struct Instrument {
    counter: StatementCounter,
    trace: bool,
    /// The span of the statement running. One at a time: a connection runs one
    /// statement after another here (nothing pipelines them), so a span still open
    /// when the next starts belonged to a statement whose future was dropped; it ends
    /// then.
    running: Option<tracing::Span>,
}

impl Instrumentation for Instrument {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                self.counter.0.fetch_add(1, Ordering::Relaxed);
                if self.trace {
                    self.running = crate::telemetry::statement_span();
                }
            }
            // The finished query is rendered as its SQL alone (the start event's
            // rendering carries the bound values, so it is not read).
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                if let Some(span) = self.running.take() {
                    crate::telemetry::finish_statement(span, &query.to_string(), error.is_some());
                }
            }
            _ => {}
        }
    }
}

/// Pool settings.
pub struct PoolSettings {
    pub max_size: usize,
    pub wait_timeout: Duration,
    pub statement_timeout: Duration,
    /// Keep a prepared-statement cache per connection (`CURBPAY_DB_PREPARED_STATEMENTS`).
    pub prepared_statements: bool,
    /// Give statements spans (traces are on); off, the instrumentation only counts.
    pub trace_statements: bool,
}

/// Builds the pool. Connections are made lazily; each gets a `statement_timeout` and
/// the statement counter (and, with traces on, statement spans). Recycling is `Fast` (no `SELECT 1` per checkout: it halved
/// the database CPU per request); a broken connection fails its request once and is
/// then discarded by the pool.
pub fn pool(url: &str, settings: &PoolSettings, counter: StatementCounter) -> anyhow::Result<DbPool> {
    let timeout_ms = settings.statement_timeout.as_millis();
    let prepared = settings.prepared_statements;
    let trace = settings.trace_statements;
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let counter = counter.clone();
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            diesel_async::RunQueryDsl::execute(
                diesel::sql_query(format!("SET statement_timeout = {timeout_ms}")),
                &mut conn,
            )
            .await
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            conn.set_instrumentation(Instrument { counter, trace, running: None });
            if !prepared {
                conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
            }
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Ok(Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.wait_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

/// Applies pending migrations. Concurrent servers starting on one database serialise
/// on an advisory lock, so exactly one of them applies each migration.
pub async fn migrate(url: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT pg_advisory_lock(7274148913)"), &mut conn).await?;
    // The harness is synchronous: run it where blocking is allowed.
    let (conn, applied) = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .map_err(|e| anyhow::anyhow!("applying migrations: {e}"));
        (harness.into_inner(), applied)
    })
    .await?;
    let mut conn = conn;
    diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT pg_advisory_unlock(7274148913)"), &mut conn).await?;
    applied
}

/// Whether every embedded migration has been applied (for `/health`).
pub async fn migrations_applied(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    use diesel::sql_types::BigInt;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let expected = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map(|m| m.len() as i64)
        .unwrap_or(i64::MAX);
    let row: Count = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM __diesel_schema_migrations"),
        conn,
    )
    .await?;
    Ok(row.n >= expected)
}
