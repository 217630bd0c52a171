//! The one state object every request shares.

use std::sync::Arc;

use crate::auth::StateSigner;
use crate::auth::{JwtVerifier, KnownParties};
use crate::config::Config;
use crate::db::{DbConn, DbPool, StatementCounter};
use crate::error::ApiResult;
use crate::events::EventHub;
use crate::processor::Processor;
use crate::processor::sandbox::SandboxProcessor;

pub struct App {
    /// Postgres connections (bounded; a request that waits too long gets UNAVAILABLE).
    pub pool: DbPool,
    /// Turns true once the process was asked to stop (`/ready` answers 503, WebSockets
    /// close with 1012, background tasks stop).
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The payment processor every flow goes through.
    pub processor: Arc<dyn Processor>,
    /// The sandbox processor when it is the one in use: it also serves its consent page.
    pub sandbox: Option<Arc<SandboxProcessor>>,
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

pub type AppState = Arc<App>;

impl App {
    /// A pooled connection; pool exhaustion or a down database is UNAVAILABLE.
    pub async fn db(&self) -> ApiResult<DbConn> {
        timed("primary", &self.pool).await
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
