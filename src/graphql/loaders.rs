//! Batching loaders, one per to-one (and per-session to-many) edge. They are created
//! per request (per connection for subscriptions) and do not cache, so a long-lived
//! subscription never serves stale rows; within one request they collapse N lookups
//! into one `= ANY($1)` query. They fetch rows by id only: whether the caller may see a
//! row is decided by the resolver that holds the parent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::runtime::{TokioSpawner, TokioTimer};
use uuid::Uuid;

use crate::app::AppState;
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

macro_rules! by_id_loader {
    ($(#[$meta:meta])* $name:ident, $row:ty) => {
        $(#[$meta])*
        pub struct $name(pub AppState);

        impl Loader<Uuid> for $name {
            type Value = $row;
            type Error = LoadError;

            async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, $row>, LoadError> {
                let mut conn = self.0.db().await?;
                let rows = <$row>::find_many(&mut conn, keys).await.map_err(crate::error::ApiError::from)?;
                Ok(rows.into_iter().map(|row| (row.id, row)).collect())
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
pub struct SessionTokensLoader(pub AppState);

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
pub struct SessionPaymentsLoader(pub AppState);

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
pub struct SessionRefundsLoader(pub AppState);

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
    pub operator_id: Uuid,
    pub app_id: Option<Uuid>,
}

/// An operator's account capabilities as the reporting links agree on them.
pub struct CapabilitiesLoader(pub AppState);

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

/// All loaders of one request.
pub struct Loaders {
    pub apps: DataLoader<AppLoader>,
    pub operators: DataLoader<OperatorLoader>,
    pub links: DataLoader<LinkLoader>,
    pub customers: DataLoader<CustomerLoader>,
    pub sessions: DataLoader<SessionLoader>,
    pub session_tokens: DataLoader<SessionTokensLoader>,
    pub session_payments: DataLoader<SessionPaymentsLoader>,
    pub session_refunds: DataLoader<SessionRefundsLoader>,
    pub capabilities: DataLoader<CapabilitiesLoader>,
}

fn loader<K: Send + Sync + std::hash::Hash + Eq + Clone + 'static, T: Loader<K>>(inner: T) -> DataLoader<T> {
    DataLoader::new(inner, TokioSpawner::current(), TokioTimer::default()).delay(DELAY)
}

impl Loaders {
    pub fn new(app: &AppState) -> Loaders {
        Loaders {
            apps: loader(AppLoader(app.clone())),
            operators: loader(OperatorLoader(app.clone())),
            links: loader(LinkLoader(app.clone())),
            customers: loader(CustomerLoader(app.clone())),
            sessions: loader(SessionLoader(app.clone())),
            session_tokens: loader(SessionTokensLoader(app.clone())),
            session_payments: loader(SessionPaymentsLoader(app.clone())),
            session_refunds: loader(SessionRefundsLoader(app.clone())),
            capabilities: loader(CapabilitiesLoader(app.clone())),
        }
    }
}
