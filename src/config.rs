//! Every setting, read once from the environment. Each one is documented here and in
//! the README's configuration table; secrets are wrapped so they never print.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;

/// How API tokens (JWTs) are verified.
#[derive(Clone)]
pub enum JwtKey {
    /// `CURBPAY_JWT_SECRET`: HS256 with a shared secret.
    Secret(SecretString),
    /// `CURBPAY_JWT_PUBLIC_KEY_FILE`: RS256, ES256 or EdDSA with a PEM public key.
    PublicKeyPem { pem: Vec<u8>, path: PathBuf },
    /// No key configured: the server generates one for development (and prints an
    /// admin token). Never the case in tests or production.
    Generate,
}

/// The JWT settings.
#[derive(Clone)]
pub struct JwtConfig {
    pub key: JwtKey,
    /// `CURBPAY_JWT_ISSUER`: when set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// `CURBPAY_JWT_AUDIENCE`: when set, tokens must carry this `aud`.
    pub audience: Option<String>,
}

/// Which processor serves payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessorKind {
    /// The built-in, deterministic sandbox; its state lives in Postgres.
    Sandbox,
    /// Stripe Connect: each app brings its own platform account.
    Stripe,
}

/// Stripe mode's settings.
#[derive(Clone)]
pub struct StripeConfig {
    /// `CURBPAY_STRIPE_API_BASE` (default `https://api.stripe.com/`).
    pub api_base: url::Url,
    /// `CURBPAY_STRIPE_CONNECT_BASE` (default `https://connect.stripe.com`).
    pub connect_base: url::Url,
    /// `CURBPAY_STRIPE_MAX_ATTEMPTS` (default 4): tries per Stripe request, all with
    /// the same idempotency key.
    pub max_attempts: u32,
    /// `CURBPAY_STRIPE_RETRY_BASE_DELAY` (default `200ms`): first backoff step; doubles
    /// per retry (full jitter, capped at 4 s).
    pub retry_base_delay: Duration,
    /// `CURBPAY_STRIPE_TIMEOUT` (default `20s`): per attempt.
    pub timeout: Duration,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            api_base: url::Url::parse("https://api.stripe.com/").expect("static URL"),
            connect_base: url::Url::parse("https://connect.stripe.com/").expect("static URL"),
            max_attempts: 4,
            retry_base_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: an existing Postgres. Unset: curbpay starts its own embedded
    /// Postgres with data under `CURBPAY_DATA_DIR`.
    pub database_url: Option<SecretString>,
    /// `CURBPAY_DATA_DIR` (default `.curbpay`): the embedded Postgres cluster and the
    /// generated development JWT secret live here.
    pub data_dir: PathBuf,
    /// `CURBPAY_LISTEN_ADDR` (default `127.0.0.1:8080`).
    pub listen_addr: SocketAddr,
    /// `CURBPAY_PUBLIC_URL`: the base URL for links handed out (OAuth redirect URLs).
    /// Default: `http://` + the listen address.
    pub public_url: url::Url,
    pub jwt: JwtConfig,
    /// `CURBPAY_STATE_SECRET`: signs the OAuth `state` of link authorizations (it names
    /// the link, its operator and a single-use nonce). Default: the HS256 JWT secret.
    /// Must be the same on every server process.
    pub state_secret: Option<SecretString>,
    /// `CURBPAY_PROCESSOR`: `sandbox` (the default) or `stripe` (the default when any
    /// `CURBPAY_STRIPE_*` setting is present).
    pub processor: ProcessorKind,
    pub stripe: StripeConfig,
    /// `CURBPAY_ENCRYPTION_KEY`: base64 of 32 random bytes; seals the apps' Stripe
    /// secrets at rest. Required in Stripe mode.
    pub encryption_key: Option<SecretString>,
    /// `CURBPAY_ENCRYPTION_PREVIOUS_KEYS`: comma-separated older keys, still accepted for
    /// opening secrets until `curbpay rotate-keys` re-seals them.
    pub previous_encryption_keys: Vec<SecretString>,
    /// `CURBPAY_CHARGE_TOKEN_TTL` (default `15m`): how long a sandbox charge token is valid.
    pub charge_token_ttl: Duration,
    /// `CURBPAY_CORS_ALLOWED_ORIGINS` (default `*`): browser origins allowed to call the
    /// API, comma-separated. Credentials travel in the `Authorization` header (never
    /// cookies), so any origin is safe by default; list origins to narrow it.
    pub cors_allowed_origins: Vec<String>,
    /// `CURBPAY_WS_INIT_TIMEOUT` (default `10s`): a WebSocket that has not authenticated
    /// (`connection_init`) by then is closed.
    pub ws_init_timeout: Duration,
    /// `CURBPAY_GRAPHIQL` (default `true`): serve the GraphiQL page at `/graphiql`;
    /// `false` for deployments that do not want it public.
    pub graphiql: bool,
    /// `CURBPAY_DB_POOL_SIZE` (default 8): connections in the pool.
    pub db_pool_size: usize,
    /// `CURBPAY_DB_POOL_TIMEOUT` (default `5s`): how long a request waits for a
    /// connection before it fails with UNAVAILABLE.
    pub db_pool_timeout: Duration,
    /// `CURBPAY_DB_STATEMENT_TIMEOUT` (default `10s`): Postgres `statement_timeout`.
    pub db_statement_timeout: Duration,
    /// `CURBPAY_SESSION_MAX_DURATION` (default `24h`): a session still ACTIVE this long
    /// after it started is canceled by curbpay (reason EXPIRED) and its hold released.
    /// Must stay below the processor's authorization lifetime (7 days for card holds),
    /// so a hold is always released by curbpay before it lapses.
    pub session_max_duration: Duration,
    /// `CURBPAY_SESSION_SWEEP_INTERVAL` (default `1m`): how often each server process
    /// looks for such sessions.
    pub session_sweep_interval: Duration,
}

/// Card holds lapse after 7 days at the processor; abandoned sessions are canceled
/// before that.
pub const MAX_SESSION_DURATION_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600 - 3600);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn bool_var(name: &str, default: bool) -> anyhow::Result<bool> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(v) => anyhow::bail!("{name}: expected true or false, got {v:?}"),
    }
}

fn duration_var(name: &str, default: &str) -> anyhow::Result<Duration> {
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(&raw).with_context(|| format!("{name}: not a duration: {raw:?}"))
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        let listen_addr: SocketAddr = var("CURBPAY_LISTEN_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
            .parse()
            .context("CURBPAY_LISTEN_ADDR: expected host:port, e.g. 127.0.0.1:8080")?;
        let public_url = match var("CURBPAY_PUBLIC_URL") {
            Some(raw) => url::Url::parse(&raw).context("CURBPAY_PUBLIC_URL: not a URL")?,
            None => default_public_url(listen_addr),
        };
        let key = match (var("CURBPAY_JWT_SECRET"), var("CURBPAY_JWT_PUBLIC_KEY_FILE")) {
            (Some(_), Some(_)) => {
                bail!("set either CURBPAY_JWT_SECRET or CURBPAY_JWT_PUBLIC_KEY_FILE, not both")
            }
            (Some(secret), None) => {
                if secret.len() < 32 {
                    bail!("CURBPAY_JWT_SECRET must be at least 32 bytes long");
                }
                JwtKey::Secret(secret.into())
            }
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let pem = std::fs::read(&path)
                    .with_context(|| format!("CURBPAY_JWT_PUBLIC_KEY_FILE: reading {}", path.display()))?;
                JwtKey::PublicKeyPem { pem, path }
            }
            (None, None) => JwtKey::Generate,
        };
        let stripe_settings =
            ["CURBPAY_STRIPE_API_BASE", "CURBPAY_STRIPE_CONNECT_BASE"].iter().any(|v| var(v).is_some());
        let processor = match var("CURBPAY_PROCESSOR").as_deref() {
            None if stripe_settings => ProcessorKind::Stripe,
            None | Some("sandbox") => ProcessorKind::Sandbox,
            Some("stripe") => ProcessorKind::Stripe,
            Some(other) => bail!("CURBPAY_PROCESSOR: unknown processor {other:?} (expected `sandbox` or `stripe`)"),
        };
        let url_var = |name: &str, default: &url::Url| -> anyhow::Result<url::Url> {
            match var(name) {
                // A base with a path must end in `/` for joins to keep the path.
                Some(raw) => url::Url::parse(&if raw.ends_with('/') { raw.clone() } else { format!("{raw}/") })
                    .with_context(|| format!("{name}: not a URL")),
                None => Ok(default.clone()),
            }
        };
        let defaults = StripeConfig::default();
        let stripe = StripeConfig {
            api_base: url_var("CURBPAY_STRIPE_API_BASE", &defaults.api_base)?,
            connect_base: url_var("CURBPAY_STRIPE_CONNECT_BASE", &defaults.connect_base)?,
            max_attempts: match var("CURBPAY_STRIPE_MAX_ATTEMPTS") {
                Some(raw) => {
                    raw.parse().ok().filter(|n| *n >= 1).context("CURBPAY_STRIPE_MAX_ATTEMPTS: a number, at least 1")?
                }
                None => defaults.max_attempts,
            },
            retry_base_delay: duration_var("CURBPAY_STRIPE_RETRY_BASE_DELAY", "200ms")?,
            timeout: duration_var("CURBPAY_STRIPE_TIMEOUT", "20s")?,
        };
        let encryption_key = var("CURBPAY_ENCRYPTION_KEY").map(SecretString::from);
        if processor == ProcessorKind::Stripe && encryption_key.is_none() {
            bail!(
                "Stripe mode needs CURBPAY_ENCRYPTION_KEY (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)"
            );
        }
        let previous_encryption_keys = var("CURBPAY_ENCRYPTION_PREVIOUS_KEYS")
            .map(|keys| {
                keys.split(',')
                    .filter(|k| !k.trim().is_empty())
                    .map(|k| SecretString::from(k.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let db_pool_size = match var("CURBPAY_DB_POOL_SIZE") {
            Some(raw) => raw.parse().context("CURBPAY_DB_POOL_SIZE: expected a number")?,
            None => 8,
        };
        if db_pool_size == 0 {
            bail!("CURBPAY_DB_POOL_SIZE must be at least 1");
        }
        Ok(Config {
            database_url: var("DATABASE_URL").map(SecretString::from),
            data_dir: PathBuf::from(var("CURBPAY_DATA_DIR").unwrap_or_else(|| ".curbpay".to_owned())),
            listen_addr,
            public_url,
            jwt: JwtConfig { key, issuer: var("CURBPAY_JWT_ISSUER"), audience: var("CURBPAY_JWT_AUDIENCE") },
            state_secret: var("CURBPAY_STATE_SECRET").map(SecretString::from),
            processor,
            stripe,
            encryption_key,
            previous_encryption_keys,
            cors_allowed_origins: var("CURBPAY_CORS_ALLOWED_ORIGINS")
                .unwrap_or_else(|| "*".to_owned())
                .split(',')
                .map(|origin| origin.trim().to_owned())
                .filter(|origin| !origin.is_empty())
                .collect(),
            charge_token_ttl: duration_var("CURBPAY_CHARGE_TOKEN_TTL", "15m")?,
            ws_init_timeout: duration_var("CURBPAY_WS_INIT_TIMEOUT", "10s")?,
            graphiql: bool_var("CURBPAY_GRAPHIQL", true)?,
            db_pool_size,
            db_pool_timeout: duration_var("CURBPAY_DB_POOL_TIMEOUT", "5s")?,
            db_statement_timeout: duration_var("CURBPAY_DB_STATEMENT_TIMEOUT", "10s")?,
            session_max_duration: session_max_duration(duration_var("CURBPAY_SESSION_MAX_DURATION", "24h")?)?,
            session_sweep_interval: positive(
                "CURBPAY_SESSION_SWEEP_INTERVAL",
                duration_var("CURBPAY_SESSION_SWEEP_INTERVAL", "1m")?,
            )?,
        })
    }

    /// A configuration for tests and tools: sandbox processor, the given database and
    /// JWT secret, everything else at its default.
    pub fn for_database(database_url: &str, jwt_secret: &str) -> Config {
        let listen_addr: SocketAddr = "127.0.0.1:0".parse().expect("static address");
        Config {
            database_url: Some(database_url.to_owned().into()),
            data_dir: PathBuf::from(".curbpay"),
            listen_addr,
            public_url: default_public_url(listen_addr),
            jwt: JwtConfig { key: JwtKey::Secret(jwt_secret.to_owned().into()), issuer: None, audience: None },
            state_secret: None,
            processor: ProcessorKind::Sandbox,
            stripe: StripeConfig::default(),
            encryption_key: None,
            previous_encryption_keys: Vec::new(),
            cors_allowed_origins: vec!["*".to_owned()],
            charge_token_ttl: Duration::from_secs(15 * 60),
            ws_init_timeout: Duration::from_secs(10),
            graphiql: true,
            db_pool_size: 8,
            db_pool_timeout: Duration::from_secs(5),
            db_statement_timeout: Duration::from_secs(10),
            session_max_duration: Duration::from_secs(24 * 3600),
            session_sweep_interval: Duration::from_secs(60),
        }
    }
}

fn positive(name: &str, value: Duration) -> anyhow::Result<Duration> {
    anyhow::ensure!(!value.is_zero(), "{name} must be greater than zero");
    Ok(value)
}

fn session_max_duration(value: Duration) -> anyhow::Result<Duration> {
    let value = positive("CURBPAY_SESSION_MAX_DURATION", value)?;
    anyhow::ensure!(
        value <= MAX_SESSION_DURATION_LIMIT,
        "CURBPAY_SESSION_MAX_DURATION must be at most 167h: card holds lapse at the processor after 7 days"
    );
    Ok(value)
}

/// `http://<listen addr>`, with an unspecified address (0.0.0.0) shown as localhost.
pub fn default_public_url(addr: SocketAddr) -> url::Url {
    let host = if addr.ip().is_unspecified() { "localhost".to_owned() } else { addr.ip().to_string() };
    let host = if addr.is_ipv6() && !addr.ip().is_unspecified() { format!("[{host}]") } else { host };
    url::Url::parse(&format!("http://{host}:{}/", addr.port())).expect("valid URL from a socket address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_max_duration_stays_below_the_hold_lifetime() {
        assert!(session_max_duration(Duration::from_secs(24 * 3600)).is_ok());
        assert!(session_max_duration(Duration::from_secs(7 * 24 * 3600)).is_err());
        assert!(session_max_duration(Duration::ZERO).is_err());
    }

    #[test]
    fn public_url_defaults_from_the_listen_address() {
        assert_eq!(default_public_url("127.0.0.1:8080".parse().unwrap()).as_str(), "http://127.0.0.1:8080/");
        assert_eq!(default_public_url("0.0.0.0:9000".parse().unwrap()).as_str(), "http://localhost:9000/");
        assert_eq!(default_public_url("[::1]:8080".parse().unwrap()).as_str(), "http://[::1]:8080/");
    }
}
