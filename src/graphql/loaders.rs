//! Batching loaders, one per to-one (and per-session to-many) edge. They are created
//! per request (per connection for subscriptions) and do not cache, so a long-lived
//! subscription never serves stale rows; within one request they collapse N lookups
//! into one `= ANY($1)` query. They fetch rows by id only: whether the caller may see a
//! row is decided by the resolver that holds the parent. There is one set per
//! freshness, so a query's loaders read from the replica and a mutation's or a
//! subscription's from the primary (`graphql::loaders` picks by the operation).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::runtime::TokioTimer;
use futures_util::future::FutureObj;
use futures_util::task::{Spawn, SpawnError};
use tracing::Instrument;
use uuid::Uuid;

use crate::broker::{BrokerState, Freshness};
use crate::db::ReadConn;
use crate::error::ApiResult;
use crate::models::{self, ChargeToken, Customer, Link, Operator, ParkingSession};
use crate::payments::parties::{Capabilities, agreed_capabilities};

/// Batching window. Short: on two cores the default 1 ms added more latency than the
/// batching saved.
const DELAY: Duration = Duration::from_micros(200);

/// Loader errors must be `Clone`; the message is the `ApiError` text for the log.
#[derive(Clone, Debug)]
pub struct LoadError(Arc<crate::error::ApiError>);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<LoadError> for crate::error::ApiError {
    fn from(err: LoadError) -> Self {
        match Arc::try_unwrap(err.0) {
            Ok(inner) => inner,
            Err(shared) => crate::error::ApiError::internal(shared.to_string()),
        }
    }
}

impl From<crate::error::ApiError> for LoadError {
    fn from(err: crate::error::ApiError) -> Self {
        LoadError(Arc::new(err))
    }
}

/// Where a loader reads: the app's primary or replica, as its operation's freshness says.
pub struct Reader {
    broker: BrokerState,
    freshness: Freshness,
}

impl Reader {
    async fn db(&self) -> ApiResult<ReadConn> {
        self.broker.read_db(self.freshness).await
    }
}

macro_rules! by_id_loader {
    ($(#[$meta:meta])* $name:ident, $row:ty) => {
        $(#[$meta])*
        pub struct $name(pub Reader);

        impl Loader<Uuid> for $name {
            type Value = $row;
            type Error = LoadError;

            async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, $row>, LoadError> {
                let mut conn = self.0.db().await?;
                // One key (a single object's edge) is looked up by `id = $1`: Postgres
                // plans `id = ANY($1)` anew on every run (its generic plan assumes ten
                // elements), the single lookup once per connection.
                let rows = match keys {
                    [key] => <$row>::find(&mut conn, *key).await.map(|row| row.into_iter().collect()),
                    _ => <$row>::find_many(&mut conn, keys).await,
                }
                .map_err(crate::error::ApiError::from)?;
                Ok(rows.into_iter().map(|row| (row.id, row)).collect::<HashMap<Uuid, $row>>())
            }
        }
    };
}

by_id_loader!(
    /// Apps by id.
    AppLoader,
    models::App
);
by_id_loader!(
    /// Operators by id.
    OperatorLoader,
    Operator
);
by_id_loader!(
    /// Links by id.
    LinkLoader,
    Link
);
by_id_loader!(
    /// Customers by id.
    CustomerLoader,
    Customer
);
by_id_loader!(
    /// Parking sessions by id.
    SessionLoader,
    ParkingSession
);

/// A session's issued charge tokens, oldest first.
pub struct SessionTokensLoader(pub Reader);

impl Loader<Uuid> for SessionTokensLoader {
    type Value = Vec<ChargeToken>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<ChargeToken>>, LoadError> {
        let mut conn = self.0.db().await?;
        let rows = ChargeToken::for_sessions(&mut conn, keys).await.map_err(crate::error::ApiError::from)?;
        let mut by_session: HashMap<Uuid, Vec<ChargeToken>> = keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_session.entry(row.session_id).or_default().push(row);
        }
        Ok(by_session)
    }
}

/// A session's ledger rows, oldest first.
pub struct SessionPaymentsLoader(pub Reader);

impl Loader<Uuid> for SessionPaymentsLoader {
    type Value = Vec<models::Payment>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<models::Payment>>, LoadError> {
        let mut conn = self.0.db().await?;
        let rows = models::Payment::for_sessions(&mut conn, keys).await.map_err(crate::error::ApiError::from)?;
        let mut by_session: HashMap<Uuid, Vec<models::Payment>> = keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_session.entry(row.session_id).or_default().push(row);
        }
        Ok(by_session)
    }
}

/// A session's refunds, oldest first.
pub struct SessionRefundsLoader(pub Reader);

impl Loader<Uuid> for SessionRefundsLoader {
    type Value = Vec<models::Refund>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<models::Refund>>, LoadError> {
        let mut conn = self.0.db().await?;
        let rows = models::Refund::for_sessions(&mut conn, keys).await.map_err(crate::error::ApiError::from)?;
        let mut by_session: HashMap<Uuid, Vec<models::Refund>> = keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_session.entry(row.session_id).or_default().push(row);
        }
        Ok(by_session)
    }
}

/// Whose capability reports to combine for one operator (see
/// `policy::capability_reporters`): all its active links, or one app's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapabilitiesKey {
    /// The operator.
    pub operator_id: Uuid,
    /// The one app whose reports count; `None`: all of the operator's active links.
    pub app_id: Option<Uuid>,
}

/// An operator's account capabilities as the reporting links agree on them.
pub struct CapabilitiesLoader(pub Reader);

impl Loader<CapabilitiesKey> for CapabilitiesLoader {
    type Value = Capabilities;
    type Error = LoadError;

    async fn load(&self, keys: &[CapabilitiesKey]) -> Result<HashMap<CapabilitiesKey, Capabilities>, LoadError> {
        let mut operators: Vec<Uuid> = keys.iter().map(|k| k.operator_id).collect();
        operators.sort_unstable();
        operators.dedup();
        let mut conn = self.0.db().await?;
        let reports = Link::capabilities(&mut conn, &operators).await.map_err(crate::error::ApiError::from)?;
        Ok(keys
            .iter()
            .map(|key| {
                let mine = reports
                    .iter()
                    .filter(|r| r.operator_id == key.operator_id && key.app_id.is_none_or(|app| app == r.app_id));
                (*key, agreed_capabilities(mine))
            })
            .collect())
    }
}

/// The loaders of one request (or of one WebSocket connection): a set per freshness,
/// each made on first use. Boxed, so a connection whose subscriptions never resolve
/// an edge (most of them, most of the time) holds two empty cells, not two
/// kilobyte-sized sets' worth of space.
pub struct Loaders {
    broker: BrokerState,
    latest: OnceLock<Box<LoaderSet>>,
    may_lag: OnceLock<Box<LoaderSet>>,
}

impl Loaders {
    /// Loaders for one request (or one WebSocket connection) on `broker`.
    pub fn new(broker: &BrokerState) -> Loaders {
        Loaders { broker: broker.clone(), latest: OnceLock::new(), may_lag: OnceLock::new() }
    }

    /// The set whose loaders read with `freshness`.
    pub fn get(&self, freshness: Freshness) -> &LoaderSet {
        let cell = match freshness {
            Freshness::Latest => &self.latest,
            Freshness::MayLag => &self.may_lag,
        };
        cell.get_or_init(|| Box::new(LoaderSet::new(&self.broker, freshness)))
    }
}

/// One loader per edge, all reading with one freshness.
pub struct LoaderSet {
    /// Apps by id.
    pub apps: DataLoader<AppLoader>,
    /// Operators by id.
    pub operators: DataLoader<OperatorLoader>,
    /// Links by id.
    pub links: DataLoader<LinkLoader>,
    /// Customers by id.
    pub customers: DataLoader<CustomerLoader>,
    /// Sessions by id.
    pub sessions: DataLoader<SessionLoader>,
    /// A session's charge tokens, oldest first.
    pub session_tokens: DataLoader<SessionTokensLoader>,
    /// A session's ledger, oldest first.
    pub session_payments: DataLoader<SessionPaymentsLoader>,
    /// A session's refunds, oldest first.
    pub session_refunds: DataLoader<SessionRefundsLoader>,
    /// An operator's capabilities, as the reporting links agree on them.
    pub capabilities: DataLoader<CapabilitiesLoader>,
}

fn loader<K: Send + Sync + std::hash::Hash + Eq + Clone + 'static, T: Loader<K>>(inner: T) -> DataLoader<T> {
    DataLoader::new(inner, BatchSpawner, TokioTimer::default()).delay(DELAY)
}

/// Runs a loader's batch as a task of its own, which with traces on stays in the span
/// of the operation that asked first, so the batch's statements show under it.
/// (async-graphql's `tracing` feature would do that with spans of its own per batch
/// and per key, at a cost paid on every field; it is off.)
struct BatchSpawner;

impl Spawn for BatchSpawner {
    fn spawn_obj(&self, future: FutureObj<'static, ()>) -> Result<(), SpawnError> {
        if crate::telemetry::enabled() {
            tokio::spawn(future.in_current_span());
        } else {
            tokio::spawn(future);
        }
        Ok(())
    }
}

impl LoaderSet {
    fn new(broker: &BrokerState, freshness: Freshness) -> LoaderSet {
        let reader = || Reader { broker: broker.clone(), freshness };
        LoaderSet {
            apps: loader(AppLoader(reader())),
            operators: loader(OperatorLoader(reader())),
            links: loader(LinkLoader(reader())),
            customers: loader(CustomerLoader(reader())),
            sessions: loader(SessionLoader(reader())),
            session_tokens: loader(SessionTokensLoader(reader())),
            session_payments: loader(SessionPaymentsLoader(reader())),
            session_refunds: loader(SessionRefundsLoader(reader())),
            capabilities: loader(CapabilitiesLoader(reader())),
        }
    }
}
