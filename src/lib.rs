//! curbpay: a payments broker between parking apps and parking operators.
//!
//! Data flows one way: HTTP/WebSocket (`http`) → GraphQL resolvers (`graphql`) → domain
//! services (`payments`) → storage (`models`, `db`) and the processor (`processor`).
//!
//! - [`config`]: every setting, read once from the environment.
//! - [`broker`]: the shared state (`Broker`): pools (primary, read replica), processor, event
//!   hub, JWT verifier.
//! - [`auth`]: JWT verification into a `Principal`.
//! - [`db`]: pool, migrations, embedded Postgres; [`models`]: rows and queries.
//! - [`payments`]: the flows (links, customers, sessions, charge tokens) and `policy`.
//! - [`processor`]: the `Processor` trait (Stripe Connect's flows) and the sandbox.
//! - [`events`]: wakes subscribers after commits, across processes (LISTEN/NOTIFY).
//! - [`graphql`]: the schema; [`http`]: the axum router; [`http_graphql`]: GraphQL over
//!   HTTP (negotiation, parameters, status codes); [`ws`]: one GraphQL WebSocket and its
//!   limits; [`server`]: the connection loop (timeouts, connection cap).
//! - [`webhooks`]: outgoing webhooks (signing, an SSRF-checked client, the delivery worker).
//! - [`crypto`]: the AES-256-GCM keyring for secrets at rest.
//! - [`limits`]: rate limits per principal and open WebSockets per principal.
//! - [`error`]: the one error type and its stable codes.
//! - [`domain`]: the values every layer shares (money, card facts), at the bottom with `error`.
//! - [`metrics`]: Prometheus metrics (`/metrics`); [`telemetry`]: OpenTelemetry traces
//!   (off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set).

#![warn(missing_docs)]

pub mod auth;
pub mod broker;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod http_graphql;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod payments;
pub mod processor;
pub mod server;
pub mod telemetry;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use secrecy::ExposeSecret;

pub use broker::{Broker, BrokerState};
pub use config::Config;

/// Builds the shared state for a database that is already migrated: the pool, the
/// processor, the event hub. Shared by `main` and the tests.
pub async fn build_broker(config: Config, generated_jwt_secret: Option<&[u8]>) -> anyhow::Result<BrokerState> {
    let database_url = config
        .database_url
        .as_ref()
        .map(|url| url.expose_secret().to_owned())
        .ok_or_else(|| anyhow::anyhow!("no database URL"))?;
    let statements = db::StatementCounter::default();
    let pool = db::pool(
        &database_url,
        &db::PoolSettings {
            max_size: config.db_pool_size,
            wait_timeout: config.db_pool_timeout,
            statement_timeout: config.db_statement_timeout,
            prepared_statements: config.db_prepared_statements,
            trace_statements: telemetry::enabled(),
        },
        statements.clone(),
    )?;
    metrics::install();
    let replica = match &config.read_database_url {
        Some(url) => Some(db::replica::Replica::new(
            db::pool(
                url.expose_secret(),
                &db::PoolSettings {
                    max_size: config.read_db_pool_size,
                    wait_timeout: config.db_pool_timeout,
                    statement_timeout: config.db_statement_timeout,
                    prepared_statements: config.db_prepared_statements,
                    trace_statements: telemetry::enabled(),
                },
                statements.clone(),
            )?,
            config.read_max_lag,
        )),
        None => None,
    };
    let (stopping, _) = tokio::sync::watch::channel(false);
    if let Some(replica) = &replica {
        replica.spawn_monitor(pool.clone(), stopping.subscribe());
    }
    let jwt = auth::JwtVerifier::new(&config.jwt, generated_jwt_secret)?;
    let state_secret: Vec<u8> = match (&config.state_secret, &config.jwt.key) {
        (Some(secret), _) => secret.expose_secret().as_bytes().to_vec(),
        (None, config::JwtKey::Secret(secret)) => secret.expose_secret().as_bytes().to_vec(),
        (None, config::JwtKey::Generate) => {
            generated_jwt_secret.ok_or_else(|| anyhow::anyhow!("no JWT key configured"))?.to_vec()
        }
        (None, config::JwtKey::PublicKeyPem { .. }) => anyhow::bail!(
            "CURBPAY_STATE_SECRET is required when JWTs are verified with a public key \
             (it signs link authorizations and must be the same on every server)"
        ),
    };
    let keyring = match &config.encryption_key {
        Some(key) => Some(Arc::new(crypto::Keyring::new(key, &config.previous_encryption_keys)?)),
        None => None,
    };
    // Webhook secrets are sealed like the Stripe secrets. Without an encryption key
    // (sandbox mode only), a key derived from the state secret seals them: the same on
    // every server of the deployment, and never stored.
    let webhook_keyring = match &keyring {
        Some(keyring) => keyring.clone(),
        None => {
            use base64::Engine;
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            hasher.update(b"curbpay webhook secrets v1\0");
            hasher.update(&state_secret);
            let derived = base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
            Arc::new(crypto::Keyring::new(&derived.into(), &[])?)
        }
    };
    let processor: Arc<dyn processor::Processor> = match config.processor {
        config::ProcessorKind::Sandbox => Arc::new(processor::sandbox::SandboxProcessor::new(
            pool.clone(),
            config.public_url.clone(),
            config.charge_token_ttl,
        )),
        config::ProcessorKind::Stripe => {
            if keyring.is_none() {
                anyhow::bail!("Stripe mode needs CURBPAY_ENCRYPTION_KEY");
            }
            let policy = processor::stripe::client::RetryPolicy {
                max_attempts: config.stripe.max_attempts,
                base_delay: config.stripe.retry_base_delay,
                max_delay: std::time::Duration::from_secs(4),
                timeout: config.stripe.timeout,
            };
            let http = processor::stripe::client::StripeHttp::new(config.stripe.api_base.clone(), policy)?;
            let stripe = processor::stripe::StripeProcessor::new(
                http,
                config.stripe.connect_base.clone(),
                pool.clone(),
                config.charge_token_ttl,
            );
            Arc::new(stripe)
        }
    };
    let processor: Arc<dyn processor::Processor> = Arc::new(processor::observed::Observed(processor));
    let listen_url =
        config.listen_database_url.as_ref().map(|url| url.expose_secret().to_owned()).unwrap_or(database_url);
    let events = events::EventHub::start(pool.clone(), listen_url, stopping.subscribe());
    payments::event_log::spawn_pruner(pool.clone(), config.events.retention);
    let broker = Arc::new(Broker {
        pool,
        replica,
        stopping,
        processor,
        keyring,
        webhook_keyring,
        events,
        jwt,
        known_parties: Default::default(),
        state_signer: auth::StateSigner::new(&state_secret),
        statements,
        config: Arc::new(config),
    });
    webhooks::worker::start(broker.clone())?;
    // Every process sweeps; row locks make each session's cancellation happen once.
    payments::sweeper::spawn(&broker);
    Ok(broker)
}
