//! The `curbpay` binary: `serve` (the default), `migrate`, `token`, `schema`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use curbpay::auth::{Claims, Role};
use curbpay::config::{Config, JwtKey};
use curbpay::db::embedded::EmbeddedPostgres;
use secrecy::ExposeSecret;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "curbpay", version, about = "A payments broker between parking apps and parking operators")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (the default). Without DATABASE_URL it starts an embedded
    /// Postgres with data under CURBPAY_DATA_DIR.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Mint a JWT with the configured HS256 secret (for development).
    Token {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Required with --role app.
        #[arg(long)]
        app_id: Option<Uuid>,
        /// Required with --role operator.
        #[arg(long)]
        operator_id: Option<Uuid>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The `sub` claim (default: dev-<role>).
        #[arg(long)]
        sub: Option<String>,
        /// The `scope` claim: `read` mints a read-only token (queries and
        /// subscriptions), for a partner frontend; omitted, the token may do everything
        /// its role allows.
        #[arg(long, value_parser = ["read", "write", "read write"])]
        scope: Option<String>,
    },
    /// Print the GraphQL schema (SDL), as published in schema.graphql.
    Schema,
    /// Re-seal every app secret sealed with an older encryption key under the current
    /// CURBPAY_ENCRYPTION_KEY (older keys in CURBPAY_ENCRYPTION_PREVIOUS_KEYS).
    RotateKeys,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    App,
    Operator,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Schema => {
            print!("{}", curbpay::graphql::sdl());
            Ok(())
        }
        Command::Token { role, app_id, operator_id, ttl, sub, scope } => {
            let config = Config::from_env()?;
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::App => Role::App(app_id.context("--role app needs --app-id")?),
                RoleArg::Operator => Role::Operator(operator_id.context("--role operator needs --operator-id")?),
            };
            let secret = signing_secret(&config, false)?;
            let mut claims = Claims::new(role, sub, ttl);
            claims.scope = scope;
            claims.iss = config.jwt.issuer.clone();
            claims.aud = config.jwt.audience.clone();
            println!("{}", curbpay::auth::mint(&secret, &claims)?);
            Ok(())
        }
        Command::Migrate => runtime()?.block_on(async {
            init_tracing(false)?;
            let config = Config::from_env()?;
            let (url, embedded) = database(&config).await?;
            let applied = curbpay::db::migrate(&url).await?;
            tracing::info!(count = applied.len(), "migrations applied");
            if let Some(pg) = embedded {
                pg.stop().await?;
            }
            Ok(())
        }),
        Command::RotateKeys => runtime()?.block_on(async {
            init_tracing(false)?;
            let config = Config::from_env()?;
            let (url, embedded) = database(&config).await?;
            curbpay::db::migrate(&url).await?;
            let key = config.encryption_key.as_ref().context("CURBPAY_ENCRYPTION_KEY is not set")?;
            let keyring = curbpay::crypto::Keyring::new(key, &config.previous_encryption_keys)?;
            let mut conn = <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url).await?;
            let changed = curbpay::payments::parties::rotate_keys(&mut conn, &keyring)
                .await
                .map_err(|e| anyhow::anyhow!("rotating keys: {e}"))?;
            println!("re-sealed the secrets of {changed} app(s) with key {}", keyring.current_key_id());
            if let Some(pg) = embedded {
                pg.stop().await?;
            }
            Ok(())
        }),
        Command::Serve => runtime()?.block_on(async {
            let traces = init_tracing(true)?;
            let result = match Config::from_env() {
                Ok(config) => serve(config).await,
                Err(err) => Err(err),
            };
            // After the server drained: what its last requests traced is sent too.
            if let Some(traces) = traces {
                traces.shutdown().await;
            }
            result
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Logs to stderr: human-readable, or one JSON object per line with
/// `CURBPAY_LOG_FORMAT=json` (an invalid value is reported and the default used). With
/// `traces` and an OTLP endpoint configured, spans are exported too; the returned
/// handle flushes them at the end.
fn init_tracing(traces: bool) -> anyhow::Result<Option<curbpay::telemetry::Traces>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let (format, problem) = match curbpay::config::LogFormat::from_env() {
        Ok(format) => (format, None),
        Err(err) => (curbpay::config::LogFormat::Text, Some(err)),
    };
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // Each layer filters for itself: RUST_LOG decides what is logged, not what is traced.
    let mut layers = vec![match format {
        curbpay::config::LogFormat::Json => {
            logs.json().with_current_span(true).with_span_list(false).with_filter(filter).boxed()
        }
        curbpay::config::LogFormat::Text => logs.with_filter(filter).boxed(),
    }];
    let config = if traces { curbpay::config::TracesConfig::from_env()? } else { None };
    let exporter = match &config {
        Some(config) => {
            let (layer, exporter) = curbpay::telemetry::install(config)?;
            layers.push(layer);
            Some(exporter)
        }
        None => None,
    };
    tracing_subscriber::registry().with(layers).init();
    if let Some(err) = problem {
        tracing::warn!(error = %err, "using human-readable logs");
    }
    if let Some(config) = &config {
        tracing::info!(endpoint = %redacted(&config.endpoint), "exporting traces (OTLP over HTTP)");
    }
    Ok(exporter)
}

/// An endpoint without the credentials a URL may carry.
fn redacted(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The database URL: `DATABASE_URL`, or an embedded Postgres started here.
async fn database(config: &Config) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    match &config.database_url {
        Some(url) => Ok((url.expose_secret().to_owned(), None)),
        None => {
            let dir = curbpay::db::embedded::cluster_dir(&config.data_dir.join("postgres"));
            let pg = EmbeddedPostgres::start(&dir, "curbpay")
                .await
                .context("starting the embedded Postgres (set DATABASE_URL to use an existing one)")?;
            Ok((pg.database_url().to_owned(), Some(pg)))
        }
    }
}

/// The HS256 secret to sign with: the configured one, or the development secret kept
/// in the data folder (made on first use when `create`).
fn signing_secret(config: &Config, create: bool) -> anyhow::Result<Vec<u8>> {
    match &config.jwt.key {
        JwtKey::Secret(secret) => Ok(secret.expose_secret().as_bytes().to_vec()),
        JwtKey::PublicKeyPem { .. } => {
            anyhow::bail!("JWTs are verified with a public key here; mint them with the matching private key")
        }
        JwtKey::Generate => {
            let path = config.data_dir.join("dev-jwt-secret");
            match std::fs::read(&path) {
                Ok(secret) => Ok(secret),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
                    use rand::RngCore;
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut bytes = [0u8; 32];
                    rand::rng().fill_bytes(&mut bytes);
                    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    std::fs::create_dir_all(&config.data_dir)?;
                    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                    file.write_all(secret.as_bytes())?;
                    Ok(secret.into_bytes())
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                    "no JWT secret: set CURBPAY_JWT_SECRET, or run `curbpay serve` once to create the development secret"
                ),
                Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let (url, embedded) = database(&config).await?;
    let result = run(config, url).await;
    if let Some(pg) = embedded
        && let Err(err) = pg.stop().await
    {
        tracing::warn!(error = %err, "stopping the embedded Postgres");
    }
    result
}

async fn run(mut config: Config, database_url: String) -> anyhow::Result<()> {
    // A pooler in front of Postgres that loses prepared statements or notifications would fail
    // requests (migrations first) at random or leave subscribers waiting: refuse to start,
    // saying what to change.
    let listen_url = config.listen_database_url.as_ref().map(|url| url.expose_secret().to_owned());
    curbpay::db::pooler::check(&database_url, listen_url.as_deref().unwrap_or(&database_url), listen_url.is_some())
        .await?;
    let applied = curbpay::db::migrate(&database_url).await?;
    if !applied.is_empty() {
        tracing::info!(count = applied.len(), "migrations applied");
    }
    let generated = matches!(config.jwt.key, JwtKey::Generate);
    let dev_secret = if generated { Some(signing_secret(&config, true)?) } else { None };
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    let bound = listener.local_addr()?;
    if !config.public_url_set {
        // Port 0 picks a free port: the public URL must name the real one.
        config.public_url = curbpay::config::default_public_url(bound);
    }
    config.database_url = Some(database_url.into());
    let public_url = config.public_url.clone();
    let settings = curbpay::server::ServerSettings::from(&config);
    let (metrics_addr, shutdown_timeout) = (config.metrics_addr, config.shutdown_timeout);
    let broker = curbpay::build_broker(config, dev_secret.as_deref()).await?;
    let router = curbpay::http::router(broker.clone());
    let signalled = shutdown_signal()?;
    tracing::info!(%bound, "curbpay listening");
    println!("curbpay is serving GraphQL at {public_url}graphql");
    println!("GraphiQL: {public_url}graphiql");
    if let Some(secret) = &dev_secret {
        let claims = Claims::new(Role::Admin, Some("dev-admin".to_owned()), Duration::from_secs(24 * 3600));
        println!("Development admin token (valid 24h; the secret is in the data folder):");
        println!("  {{\"Authorization\": \"Bearer {}\"}}", curbpay::auth::mint(secret, &claims)?);
    }
    if let Some(addr) = metrics_addr {
        let metrics = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "serving /metrics");
        let router = curbpay::http::metrics_router(broker.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(metrics, router).await {
                tracing::error!(error = %err, "the metrics listener failed");
            }
        });
    }
    // On SIGTERM: /ready turns 503 and WebSockets close (1012) at once, the listener
    // stops accepting, requests in flight finish; past the timeout, exit regardless.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping_broker = broker.clone();
    let server = curbpay::server::serve(listener, router, settings, async move {
        signalled.await;
        tracing::info!(timeout = ?shutdown_timeout, "shutting down");
        stopping_broker.begin_shutdown();
        let _ = stopping_tx.send(());
    });
    let drained = async {
        server.await?;
        // Sockets got their close frames; give them a moment to flush.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while curbpay::ws::open_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, std::io::Error>(())
    };
    let deadline = async {
        let _ = stopping_rx.await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    let mut deadline = std::pin::pin!(deadline);
    let timed_out = tokio::select! {
        result = drained => {
            result?;
            false
        }
        _ = &mut deadline => true,
    };
    // The last requests' changes still wake the subscribers on the other processes.
    if timed_out || tokio::select! { () = broker.events.flush() => false, _ = &mut deadline => true } {
        tracing::warn!("shutdown timeout reached; closing the remaining connections");
    }
    tracing::info!("curbpay stopped");
    Ok(())
}

/// Registers for SIGTERM and SIGINT (Ctrl-C) at once and returns what waits for either.
/// Registered before the server says it is serving: until then a signal has its default,
/// fatal effect, and the server loop may not poll its shutdown future for a while.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
