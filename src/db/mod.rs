//! Storage plumbing: the connection pool (with limits and a statement counter), the
//! read replica, embedded migrations, the embedded Postgres used when no `DATABASE_URL`
//! is set, and the checks for a connection pooler in between (`pooler`).

pub mod embedded;
pub mod pooler;
pub mod replica;
#[allow(missing_docs)]
pub mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ApiError;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

/// The migrations, embedded in the binary (run at start and by `curbpay migrate`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A pool of Postgres connections.
pub type DbPool = Pool<AsyncPgConnection>;
/// A connection taken from a [`DbPool`].
pub type DbConn = Object<AsyncPgConnection>;
/// Why no connection could be taken from a pool.
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// A connection for reads that may lag behind the primary: from the read replica when
/// one serves, else from the primary (see `App::read_db`). Never write through one, and
/// never count on it to show a write just committed; functions that take one say by
/// their signature that stale data is fine for them.
pub struct ReadConn(DbConn);

impl ReadConn {
    pub(crate) fn new(conn: DbConn) -> ReadConn {
        ReadConn(conn)
    }
}

impl std::ops::Deref for ReadConn {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.0
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.0
    }
}

/// Counts the SQL statements the server sends, for tests and benchmarks that check
/// how many statements a request costs (the loaders' batching, for instance).
#[derive(Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    /// The statements sent so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Each connection's instrumentation: counts statements, reports failures that show a
/// pooler losing prepared statements, and, with traces on, gives each statement run
/// within an operation or a processor call a span of its own.
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
                if let Some(diesel::result::Error::DatabaseError(_, info)) = error
                    && pooler::is_lost_statement(info.message())
                {
                    pooler::report_lost_statement(info.message());
                }
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
    /// The most connections the pool opens.
    pub max_size: usize,
    /// How long a request waits for a connection before it is UNAVAILABLE.
    pub wait_timeout: Duration,
    /// Each connection's `statement_timeout`.
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

/// Applies pending migrations, all in one transaction under a transaction-scoped advisory
/// lock: concurrent servers starting on one database serialise on it, so exactly one of them
/// applies each migration. A session-level lock would not do behind a transaction pooler
/// (lock and unlock could run on different server connections, leaving it held). A migration
/// that cannot run inside a transaction (`CREATE INDEX CONCURRENTLY`) has no place here.
pub async fn migrate(url: &str) -> anyhow::Result<Vec<String>> {
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    let conn = AsyncPgConnection::establish(url).await?;
    // The harness is synchronous: run it where blocking is allowed.
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        diesel::Connection::transaction::<_, anyhow::Error, _>(&mut conn, |conn| {
            diesel::RunQueryDsl::execute(diesel::sql_query("SELECT pg_advisory_xact_lock(7274148913)"), conn)?;
            let applied =
                conn.run_pending_migrations(MIGRATIONS).map_err(|e| anyhow::anyhow!("applying migrations: {e}"))?;
            Ok(applied.iter().map(|v| v.to_string()).collect())
        })
    })
    .await?
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

impl From<PoolError> for ApiError {
    fn from(err: PoolError) -> Self {
        ApiError::unavailable_caused("database pool", err)
    }
}
