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
    PublicKeyPem {
        /// The key file's contents.
        pem: Vec<u8>,
        /// The file it was read from (for messages).
        path: PathBuf,
    },
    /// No key configured: the server generates one for development (and prints an
    /// admin token). Never the case in tests or production.
    Generate,
}

/// The JWT settings.
#[derive(Clone)]
pub struct JwtConfig {
    /// How signatures are checked (`CURBPAY_JWT_SECRET` or `CURBPAY_JWT_PUBLIC_KEY_FILE`).
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

/// Every setting, read once from the environment (`Config::from_env`).
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
    /// Whether `CURBPAY_PUBLIC_URL` was set; when not, the server derives the public URL
    /// from the address it actually bound (port 0 picks a free one).
    pub public_url_set: bool,
    /// How API tokens are verified.
    pub jwt: JwtConfig,
    /// `CURBPAY_STATE_SECRET`: signs the OAuth `state` of link authorizations (it names
    /// the link, its operator and a single-use nonce). Default: the HS256 JWT secret.
    /// Must be the same on every server process.
    pub state_secret: Option<SecretString>,
    /// `CURBPAY_PROCESSOR`: `sandbox` (the default) or `stripe` (the default when
    /// `CURBPAY_STRIPE_API_BASE` or `CURBPAY_STRIPE_CONNECT_BASE` is set; the retry and
    /// timeout settings alone select nothing).
    pub processor: ProcessorKind,
    /// The Stripe settings (used in Stripe mode).
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
    /// `CURBPAY_WS_MAX_SUBSCRIPTIONS` (default 100): operations running at once on one
    /// WebSocket; one more is refused with an `error` message (code LIMIT_EXCEEDED).
    pub ws_max_subscriptions: usize,
    /// `CURBPAY_WS_MAX_CONNECTIONS_PER_PRINCIPAL` (default 20): open WebSockets per
    /// principal (an app, an operator, an admin subject) in one server process; one more
    /// is closed at `connection_init` with 1013 (try again later).
    pub ws_max_connections_per_principal: usize,
    /// `CURBPAY_RATE_LIMIT_PER_SECOND` (default 50; 0 turns rate limiting off): the
    /// sustained rate of GraphQL requests and WebSocket operations per principal (per
    /// client IP address for unauthenticated requests).
    pub rate_limit_per_second: u32,
    /// `CURBPAY_RATE_LIMIT_BURST` (default 100): how many requests a principal may send
    /// at once before the sustained rate applies.
    pub rate_limit_burst: u32,
    /// `CURBPAY_HTTP_HEADER_READ_TIMEOUT` (default `10s`): a connection that has not sent
    /// a complete request head by then (from its opening, or from the first byte of its
    /// next request) is closed.
    pub http_header_read_timeout: Duration,
    /// `CURBPAY_HTTP_IDLE_TIMEOUT` (default `60s`): a keep-alive connection with no
    /// request for this long is closed.
    pub http_idle_timeout: Duration,
    /// `CURBPAY_HTTP_MAX_CONNECTIONS` (default 10000): open connections (WebSockets
    /// included); further ones wait in the listen backlog until one closes.
    pub http_max_connections: usize,
    /// `CURBPAY_GRAPHQL_SUGGESTIONS` (default `false`): whether validation errors suggest
    /// field and argument names ("Did you mean …"), which reveals the schema.
    pub graphql_suggestions: bool,
    /// `CURBPAY_GRAPHQL_INTROSPECTION` (default `true`; GraphiQL and code generators need
    /// it): `false` refuses `__schema` and `__type` queries.
    pub graphql_introspection: bool,
    /// `CURBPAY_LISTEN_DATABASE_URL` (default: the primary's URL): the Postgres the
    /// `LISTEN` connection for cross-process wake-ups goes to. Behind a transaction
    /// pooler (pgbouncer) point it at Postgres directly: LISTEN does not survive
    /// transaction pooling. At start a notification sent through `DATABASE_URL` must
    /// reach it, or curbpay refuses to start.
    pub listen_database_url: Option<SecretString>,
    /// `CURBPAY_READ_DATABASE_URL` (default unset): a streaming replica of the primary.
    /// Query operations (lists, lookups and their loaders) read from it; everything that
    /// writes, locks or must see its own writes stays on the primary. Unset: every read
    /// goes to the primary.
    pub read_database_url: Option<SecretString>,
    /// `CURBPAY_READ_DB_POOL_SIZE` (default: `CURBPAY_DB_POOL_SIZE`): connections in the
    /// replica's pool.
    pub read_db_pool_size: usize,
    /// `CURBPAY_READ_MAX_LAG` (default `10s`; `0` turns the check off): a replica further
    /// behind the primary than this is passed over (reads go to the primary) until it
    /// catches up. Measured about once a second (more often for a bound under 4 s).
    pub read_max_lag: Option<Duration>,
    /// `CURBPAY_DB_PREPARED_STATEMENTS` (default `true`): cache prepared statements per
    /// connection; `false` prepares, runs and closes each statement (one more round trip).
    /// It does not make a transaction pooler without prepared-statement support usable:
    /// every statement is prepared by name either way, so pgbouncer in transaction mode
    /// needs 1.21+ with `max_prepared_statements` > 0 regardless (checked at start).
    pub db_prepared_statements: bool,
    /// `CURBPAY_METRICS_ADDR` (default unset): serve `/metrics` on this address too
    /// (e.g. `0.0.0.0:9100` for a scraper on a private network); it is always served
    /// on the main listener.
    pub metrics_addr: Option<SocketAddr>,
    /// `CURBPAY_SHUTDOWN_TIMEOUT` (default `30s`): after SIGTERM, how long in-flight
    /// requests may take before the process exits regardless.
    pub shutdown_timeout: Duration,
    /// `CURBPAY_SESSION_MAX_DURATION` (default `24h`): a session still ACTIVE this long
    /// after it started is canceled by curbpay (reason EXPIRED) and its hold released.
    /// Must stay below the processor's authorization lifetime (7 days for card holds),
    /// so a hold is always released by curbpay before it lapses.
    pub session_max_duration: Duration,
    /// `CURBPAY_SESSION_SWEEP_INTERVAL` (default `1m`): how often each server process
    /// looks for such sessions.
    pub session_sweep_interval: Duration,
    /// The event log and outgoing webhook settings.
    pub events: EventsConfig,
}

/// `CURBPAY_LOG_FORMAT` (default `text`): `json` writes one JSON object per log line
/// (read before the rest of the configuration, by the logger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `CURBPAY_LOG_FORMAT`.
    pub fn from_env() -> anyhow::Result<LogFormat> {
        match var("CURBPAY_LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => bail!("CURBPAY_LOG_FORMAT: expected text or json: {other:?}"),
        }
    }
}

/// Traces, configured by OpenTelemetry's own environment variables rather than settings
/// of ours (read before the rest of the configuration, by the logger). The exporter and
/// the SDK read the others themselves: `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`,
/// `OTEL_SERVICE_NAME` (curbpay's default: `curbpay`), `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` (the batch),
/// `OTEL_SPAN_*_COUNT_LIMIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesConfig {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended): where spans are sent, by
    /// OTLP over HTTP in protobuf. Neither set: no traces, and nothing of them runs.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds,
    /// default 10000): how long one export request may take.
    pub export_timeout: Duration,
}

impl TracesConfig {
    /// `None` unless an OTLP endpoint is set; also `None` with `OTEL_SDK_DISABLED=true`
    /// or `OTEL_TRACES_EXPORTER=none`. Only OTLP over HTTP in protobuf is built in:
    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` may only say `http/protobuf`.
    pub fn from_env() -> anyhow::Result<Option<TracesConfig>> {
        TracesConfig::from_vars(var)
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<TracesConfig>> {
        let signal_or_general = |name: &str| {
            var(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .map(|v| (format!("OTEL_EXPORTER_OTLP_TRACES_{name}"), v))
                .or_else(|| {
                    var(&format!("OTEL_EXPORTER_OTLP_{name}")).map(|v| (format!("OTEL_EXPORTER_OTLP_{name}"), v))
                })
        };
        let Some((_, endpoint)) = signal_or_general("ENDPOINT") else { return Ok(None) };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => bail!("OTEL_TRACES_EXPORTER: curbpay exports traces by otlp (or none): {other:?}"),
        }
        if let Some((name, protocol)) = signal_or_general("PROTOCOL")
            && protocol.trim() != "http/protobuf"
        {
            bail!("{name}: curbpay sends OTLP over HTTP in protobuf only (http/protobuf, port 4318): {protocol:?}");
        }
        let export_timeout = match signal_or_general("TIMEOUT") {
            None => Duration::from_secs(10),
            Some((name, raw)) => Duration::from_millis(
                raw.trim().parse().with_context(|| format!("{name}: expected milliseconds: {raw:?}"))?,
            ),
        };
        Ok(Some(TracesConfig { endpoint: endpoint.trim().to_owned(), export_timeout }))
    }
}

/// The event log and outgoing webhooks.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// `CURBPAY_EVENT_RETENTION` (default `30days`): events (and their deliveries) older
    /// than this are pruned in the background.
    pub retention: Duration,
    /// `CURBPAY_WEBHOOK_ALLOW_PRIVATE` (default `false`): allow webhook URLs that
    /// resolve to loopback, private, link-local, multicast or unique-local addresses,
    /// and plain `http`. For development and tests only.
    pub allow_private: bool,
    /// `CURBPAY_WEBHOOK_RETRY_SCHEDULE` (default `0s,5s,5m,30m,2h,5h,10h,10h`): the delay
    /// before each attempt (the first is normally immediate); after the last, the
    /// delivery is failed. Each delay gets up to 10% of jitter.
    pub retry_schedule: Vec<Duration>,
    /// `CURBPAY_WEBHOOK_TIMEOUT` (default `10s`): an attempt that has no 2xx by then failed.
    pub timeout: Duration,
    /// `CURBPAY_WEBHOOK_DISABLE_AFTER` (default `5days`): an endpoint whose every attempt
    /// has failed for this long is disabled.
    pub disable_after: Duration,
    /// `CURBPAY_WEBHOOK_ENDPOINT_CONCURRENCY` (default 4): attempts in flight to one
    /// endpoint per server process, so one slow receiver cannot starve the others.
    pub endpoint_concurrency: usize,
    /// `CURBPAY_WEBHOOK_CONCURRENCY` (default 64): attempts in flight per server process.
    pub concurrency: usize,
    /// `CURBPAY_WEBHOOK_WORKER` (default `true`): this process delivers webhooks. Any
    /// number of processes may; each delivery is claimed by one.
    pub worker: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention: Duration::from_secs(30 * 86_400),
            allow_private: false,
            retry_schedule: DEFAULT_RETRY_SCHEDULE
                .split(',')
                .map(|d| humantime::parse_duration(d).expect("static schedule"))
                .collect(),
            timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(5 * 86_400),
            endpoint_concurrency: 4,
            concurrency: 64,
            worker: true,
        }
    }
}

/// The Standard Webhooks specification's suggested schedule.
pub const DEFAULT_RETRY_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

fn count_var(name: &str, default: usize) -> anyhow::Result<usize> {
    match var(name) {
        Some(raw) => {
            raw.trim().parse().ok().filter(|n| *n >= 1).with_context(|| format!("{name}: a number, at least 1"))
        }
        None => Ok(default),
    }
}

impl EventsConfig {
    fn from_env() -> anyhow::Result<EventsConfig> {
        let schedule_raw = var("CURBPAY_WEBHOOK_RETRY_SCHEDULE").unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_owned());
        let retry_schedule = schedule_raw
            .split(',')
            .map(|d| humantime::parse_duration(d.trim()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("CURBPAY_WEBHOOK_RETRY_SCHEDULE: not a list of durations: {schedule_raw:?}"))?;
        if retry_schedule.is_empty() {
            bail!("CURBPAY_WEBHOOK_RETRY_SCHEDULE: at least one attempt");
        }
        let defaults = EventsConfig::default();
        Ok(EventsConfig {
            retention: duration_or("CURBPAY_EVENT_RETENTION", defaults.retention)?,
            allow_private: bool_var("CURBPAY_WEBHOOK_ALLOW_PRIVATE", defaults.allow_private)?,
            retry_schedule,
            timeout: duration_or("CURBPAY_WEBHOOK_TIMEOUT", defaults.timeout)?,
            disable_after: duration_or("CURBPAY_WEBHOOK_DISABLE_AFTER", defaults.disable_after)?,
            endpoint_concurrency: count_var("CURBPAY_WEBHOOK_ENDPOINT_CONCURRENCY", defaults.endpoint_concurrency)?,
            concurrency: count_var("CURBPAY_WEBHOOK_CONCURRENCY", defaults.concurrency)?,
            worker: bool_var("CURBPAY_WEBHOOK_WORKER", defaults.worker)?,
        })
    }
}

/// Card holds lapse after 7 days at the processor; abandoned sessions are canceled
/// before that.
pub const MAX_SESSION_DURATION_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600 - 3600);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number_var<T>(name: &str, default: T, at_least: T) -> anyhow::Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(n) if n >= at_least => Ok(n),
            _ => bail!("{name}: expected a whole number, at least {at_least}: {raw:?}"),
        },
    }
}

fn bool_var(name: &str, default: bool) -> anyhow::Result<bool> {
    match var(name).map(|raw| raw.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => bail!("{name}: expected true or false: {other:?}"),
    }
}

fn duration_var(name: &str, default: &str) -> anyhow::Result<Duration> {
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(&raw).with_context(|| format!("{name}: not a duration: {raw:?}"))
}

/// A duration setting whose default is a value of a `Default` impl (stated once, there).
fn duration_or(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(raw) => humantime::parse_duration(raw.trim()).with_context(|| format!("{name}: not a duration: {raw:?}")),
    }
}

/// A duration where `0` means "off" (`None`).
fn duration_or_off(name: &str, default: &str) -> anyhow::Result<Option<Duration>> {
    let value = duration_var(name, default)?;
    Ok((!value.is_zero()).then_some(value))
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> anyhow::Result<Config> {
        let listen_addr: SocketAddr = var("CURBPAY_LISTEN_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
            .parse()
            .context("CURBPAY_LISTEN_ADDR: expected host:port, e.g. 127.0.0.1:8080")?;
        let public_url_raw = var("CURBPAY_PUBLIC_URL");
        let public_url_set = public_url_raw.is_some();
        let public_url = match public_url_raw {
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
            retry_base_delay: duration_or("CURBPAY_STRIPE_RETRY_BASE_DELAY", defaults.retry_base_delay)?,
            timeout: duration_or("CURBPAY_STRIPE_TIMEOUT", defaults.timeout)?,
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
            public_url_set,
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
            ws_max_subscriptions: number_var("CURBPAY_WS_MAX_SUBSCRIPTIONS", 100, 1)?,
            ws_max_connections_per_principal: number_var("CURBPAY_WS_MAX_CONNECTIONS_PER_PRINCIPAL", 20, 1)?,
            rate_limit_per_second: number_var("CURBPAY_RATE_LIMIT_PER_SECOND", 50, 0)?,
            rate_limit_burst: number_var("CURBPAY_RATE_LIMIT_BURST", 100, 1)?,
            http_header_read_timeout: positive(
                duration_var("CURBPAY_HTTP_HEADER_READ_TIMEOUT", "10s")?,
                "CURBPAY_HTTP_HEADER_READ_TIMEOUT",
            )?,
            http_idle_timeout: positive(
                duration_var("CURBPAY_HTTP_IDLE_TIMEOUT", "60s")?,
                "CURBPAY_HTTP_IDLE_TIMEOUT",
            )?,
            http_max_connections: number_var("CURBPAY_HTTP_MAX_CONNECTIONS", 10_000, 1)?,
            graphql_suggestions: bool_var("CURBPAY_GRAPHQL_SUGGESTIONS", false)?,
            graphql_introspection: bool_var("CURBPAY_GRAPHQL_INTROSPECTION", true)?,
            listen_database_url: var("CURBPAY_LISTEN_DATABASE_URL").map(SecretString::from),
            read_database_url: var("CURBPAY_READ_DATABASE_URL").map(SecretString::from),
            read_db_pool_size: number_var("CURBPAY_READ_DB_POOL_SIZE", db_pool_size, 1)?,
            read_max_lag: duration_or_off("CURBPAY_READ_MAX_LAG", "10s")?,
            db_prepared_statements: bool_var("CURBPAY_DB_PREPARED_STATEMENTS", true)?,
            metrics_addr: var("CURBPAY_METRICS_ADDR")
                .map(|raw| raw.trim().parse().context("CURBPAY_METRICS_ADDR: expected host:port, e.g. 0.0.0.0:9100"))
                .transpose()?,
            shutdown_timeout: duration_var("CURBPAY_SHUTDOWN_TIMEOUT", "30s")?,
            events: EventsConfig::from_env()?,
            session_max_duration: session_max_duration(duration_var("CURBPAY_SESSION_MAX_DURATION", "24h")?)?,
            session_sweep_interval: positive(
                duration_var("CURBPAY_SESSION_SWEEP_INTERVAL", "1m")?,
                "CURBPAY_SESSION_SWEEP_INTERVAL",
            )?,
        })
    }

    /// A configuration for tests and tools: sandbox processor, the given database and
    /// JWT secret, everything else at its default, except that rate limiting is off
    /// (tests and benchmarks drive one principal far harder than 50 requests a second).
    pub fn for_database(database_url: &str, jwt_secret: &str) -> Config {
        let listen_addr: SocketAddr = "127.0.0.1:0".parse().expect("static address");
        Config {
            database_url: Some(database_url.to_owned().into()),
            data_dir: PathBuf::from(".curbpay"),
            listen_addr,
            public_url: default_public_url(listen_addr),
            public_url_set: false,
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
            ws_max_subscriptions: 100,
            ws_max_connections_per_principal: 20,
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
            http_header_read_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            http_max_connections: 10_000,
            graphql_suggestions: false,
            graphql_introspection: true,
            listen_database_url: None,
            read_database_url: None,
            read_db_pool_size: 8,
            read_max_lag: Some(Duration::from_secs(10)),
            db_prepared_statements: true,
            metrics_addr: None,
            shutdown_timeout: Duration::from_secs(30),
            events: EventsConfig::default(),
            session_max_duration: Duration::from_secs(24 * 3600),
            session_sweep_interval: Duration::from_secs(60),
        }
    }
}

fn positive(value: Duration, name: &str) -> anyhow::Result<Duration> {
    if value.is_zero() {
        bail!("{name} must be longer than zero");
    }
    Ok(value)
}

fn session_max_duration(value: Duration) -> anyhow::Result<Duration> {
    let value = positive(value, "CURBPAY_SESSION_MAX_DURATION")?;
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

    /// The README's configuration table is where operators look: every setting this file
    /// reads is there.
    #[test]
    fn every_setting_is_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        let source = include_str!("config.rs");
        let mut missing = Vec::new();
        for (start, _) in source.match_indices("\"CURBPAY_") {
            let name: String =
                source[start + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            if !name.starts_with("CURBPAY_TEST_") && !name.ends_with('_') && !readme.contains(&format!("`{name}`")) {
                missing.push(name);
            }
        }
        assert!(missing.is_empty(), "settings missing from the README: {missing:?}");
    }

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

    #[test]
    fn traces_are_off_without_an_endpoint() {
        fn traces(pairs: &[(&str, &str)]) -> anyhow::Result<Option<TracesConfig>> {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            TracesConfig::from_vars(|name| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
        }
        assert_eq!(traces(&[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            traces(&[endpoint]).unwrap(),
            Some(TracesConfig {
                endpoint: "http://collector:4318".to_owned(),
                export_timeout: Duration::from_secs(10)
            })
        );
        let signal = traces(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a/v1/traces"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "x"),
        ]);
        assert_eq!(signal.unwrap().unwrap().export_timeout, Duration::from_millis(2500));
        assert_eq!(traces(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]).unwrap(), None);
        assert_eq!(traces(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(), None);
        assert!(traces(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap().is_some());
        for refused in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ] {
            assert!(traces(&[endpoint, refused]).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn numbers_and_switches() {
        // SAFETY: this test owns these variable names; no other test reads them.
        unsafe {
            std::env::set_var("CURBPAY_TEST_NUMBER", "7");
            std::env::set_var("CURBPAY_TEST_SWITCH", "TRUE");
        }
        assert_eq!(number_var("CURBPAY_TEST_NUMBER", 1u32, 1).unwrap(), 7);
        assert_eq!(number_var("CURBPAY_TEST_UNSET", 5u32, 1).unwrap(), 5);
        assert!(number_var("CURBPAY_TEST_NUMBER", 1u32, 8).is_err());
        assert!(bool_var("CURBPAY_TEST_SWITCH", false).unwrap());
        assert!(!bool_var("CURBPAY_TEST_UNSET", false).unwrap());
        unsafe { std::env::set_var("CURBPAY_TEST_SWITCH", "maybe") };
        assert!(bool_var("CURBPAY_TEST_SWITCH", false).is_err());
    }

    #[test]
    fn zero_turns_a_duration_off() {
        // SAFETY: this test owns these variable names; no other test reads them.
        unsafe {
            std::env::set_var("CURBPAY_TEST_LAG_OFF", "0");
            std::env::set_var("CURBPAY_TEST_LAG_SET", "250ms");
        }
        assert_eq!(duration_or_off("CURBPAY_TEST_LAG_OFF", "10s").unwrap(), None);
        assert_eq!(duration_or_off("CURBPAY_TEST_LAG_SET", "10s").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(duration_or_off("CURBPAY_TEST_LAG_UNSET", "10s").unwrap(), Some(Duration::from_secs(10)));
    }
}
