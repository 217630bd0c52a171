//! The one state object every request shares.

use std::sync::Arc;

use crate::auth::StateSigner;
use crate::auth::{JwtVerifier, KnownParties};
use crate::config::Config;
use crate::db::replica::{Replica, Unusable};
use crate::db::{DbConn, DbPool, ReadConn, StatementCounter};
use crate::error::ApiResult;
use crate::events::EventHub;
use crate::processor::Processor;

/// The state every request and background task shares: pools, processor, event hub, verifiers and settings.
pub struct Broker {
    /// Postgres connections to the primary (bounded; a request that waits too long gets
    /// UNAVAILABLE).
    pub pool: DbPool,
    /// The read replica (`CURBPAY_READ_DATABASE_URL`) and whether it serves now; `None`:
    /// every read goes to the primary.
    pub replica: Option<Arc<Replica>>,
    /// Turns true once the process was asked to stop (`/ready` answers 503, WebSockets
    /// close with 1012, background tasks stop).
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The payment processor every flow goes through.
    pub processor: Arc<dyn Processor>,
    /// Wakes subscribers after commits, across server processes.
    pub events: EventHub,
    /// Verifies API tokens.
    pub jwt: JwtVerifier,
    /// Parties that tokens named and that exist (no lookup per request for them).
    pub known_parties: KnownParties,
    /// Seals and opens the apps' processor secrets (Stripe mode).
    pub keyring: Option<Arc<crate::crypto::Keyring>>,
    /// Seals and opens webhook endpoint secrets: the keyring above, or (sandbox mode
    /// without `CURBPAY_ENCRYPTION_KEY`) a key derived from the state secret.
    pub webhook_keyring: Arc<crate::crypto::Keyring>,
    /// Signs and checks the `state` of link authorizations.
    pub state_signer: StateSigner,
    /// SQL statements sent so far (tests count a request's cost with it).
    pub statements: StatementCounter,
    /// The settings the server started with.
    pub config: Arc<Config>,
}

/// The shared [`Broker`], as handlers and tasks hold it.
pub type BrokerState = Arc<Broker>;

/// What a read must see. The GraphQL layer decides it per operation
/// (`graphql::read_db`); everything else (services, workers, subscriptions' catch-up
/// reads) reads and writes through [`Broker::db`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Freshness {
    /// Every committed write: the primary.
    Latest,
    /// What the read replica has replayed, which may be behind by its lag.
    MayLag,
}

impl Broker {
    /// A connection to the primary, for every write and every read that must see
    /// committed writes (idempotency lookups, the checks guarding a write, catch-up
    /// reads). Pool exhaustion or a down database is UNAVAILABLE.
    pub async fn db(&self) -> ApiResult<DbConn> {
        timed("primary", &self.pool).await
    }

    /// A connection for reads of the given freshness. `MayLag` goes to the replica while
    /// it serves, and to the primary when there is none, or it is down or too far behind
    /// (`curbpay_db_read_fallbacks_total` counts those reads). A busy replica is
    /// UNAVAILABLE, as a busy primary is.
    pub async fn read_db(&self, freshness: Freshness) -> ApiResult<ReadConn> {
        if freshness == Freshness::MayLag
            && let Some(replica) = &self.replica
        {
            match replica.get().await {
                Ok(conn) => return Ok(ReadConn::new(conn)),
                Err(Unusable::Busy(err)) => return Err(err.into()),
                Err(Unusable::PassedOver(state)) => crate::metrics::read_fallback(state.fallback_reason()),
            }
        }
        Ok(ReadConn::new(self.db().await?))
    }

    /// Whether the process is shutting down.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Starts the shutdown: `/ready` turns 503 and WebSockets and background tasks stop.
    pub fn begin_shutdown(&self) {
        crate::metrics::shutting_down();
        self.stopping.send_replace(true);
    }
}

async fn timed(name: &'static str, pool: &DbPool) -> ApiResult<DbConn> {
    let started = std::time::Instant::now();
    let conn = pool.get().await;
    crate::metrics::pool_wait(name, started.elapsed());
    Ok(conn?)
}
