//! Traces: OpenTelemetry spans sent by OTLP over HTTP (protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! Three kinds of span are exported, and nothing else (the filter below):
//!
//! - `graphql.operation`: one per GraphQL operation, over HTTP (a child of the caller's
//!   span when the request carries W3C `traceparent`/`tracestate`) and over WebSocket
//!   (a root). Attributes `graphql.operation.name`, `graphql.operation.type`, `code`
//!   (`OK` or the first error's `extensions.code`), `http.response.status_code`.
//! - `processor`: each processor call (`processor`, `flow`, `outcome`), from
//!   `processor::observed`.
//! - `db.query`: each SQL statement run within one of those two, from the pool's
//!   instrumentation: `db.system` and `db.statement`, the SQL text with `$n`
//!   placeholders (never the values bound to them).
//!
//! Off (the default), nothing here runs: no layer is installed, no header is parsed,
//! the pool's connections get no statement tracing, and none of these spans but
//! `processor` (which the logs had before) is created.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_http::{Bytes, HeaderExtractor, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::TracesConfig;

/// The span of one GraphQL operation.
pub const OPERATION: &str = "graphql.operation";
/// The span of one processor call (`processor::observed`).
pub const PROCESSOR: &str = "processor";
/// The span of one SQL statement.
pub const STATEMENT: &str = "db.query";

/// Set once, when the exporter is installed at start.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (decided once at start).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The installed exporter; `shutdown` sends what is still buffered.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Flushes the batch and stops the exporter (after the server drained). The SDK
    /// blocks while it flushes, so it runs where blocking is allowed; the export itself
    /// runs on the runtime, which is still up.
    pub async fn shutdown(self) {
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing traces"),
            Err(err) => tracing::warn!(error = %err, "flushing traces"),
        }
    }
}

/// Builds the exporter (batched, OTLP/HTTP protobuf through our reqwest client) and the
/// tracing layer that feeds it. Must run on the tokio runtime: exports are sent from it.
pub fn install(config: &TracesConfig) -> anyhow::Result<(Box<dyn Layer<Registry> + Send + Sync>, Traces)> {
    let client = ExportClient {
        client: reqwest::Client::builder().timeout(config.export_timeout).build()?,
        runtime: tokio::runtime::Handle::try_current()?,
    };
    // The exporter reads the endpoint, headers and timeout from the environment itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_http_client(client).build()?;
    // The batch processor reads OTEL_BSP_*; the provider OTEL_TRACES_SAMPLER*.
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("curbpay"))
        // Lean spans: no thread, source location, target or busy/idle attributes, and no
        // OpenTelemetry context switched on every poll (nothing here reads it).
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(tracing_subscriber::filter::filter_fn(exported))
        .boxed();
    ENABLED.store(true, Ordering::Relaxed);
    Ok((layer, Traces { provider }))
}

/// What reaches the exporter: our three spans, and warnings and errors logged within
/// them (as span events). The HTTP layer's own span and everything of other crates stay
/// in the logs only.
fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    if !metadata.target().starts_with("curbpay") {
        return false;
    }
    if metadata.is_span() {
        [OPERATION, PROCESSOR, STATEMENT].contains(&metadata.name())
    } else {
        *metadata.level() <= tracing::Level::WARN
    }
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), named `curbpay`
/// unless either names the service.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder();
    if unnamed {
        builder = builder.with_service_name("curbpay");
    }
    if detected.get(&opentelemetry::Key::from_static_str("service.version")).is_none() {
        builder = builder.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    builder.build()
}

/// The span of a GraphQL operation received over HTTP: a child of the caller's span
/// when `traceparent` (and `tracestate`) name one. `Span::none()` when traces are off.
pub fn http_operation_span(headers: &axum::http::HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "graphql.operation",
        otel.kind = "server",
        graphql.operation.name = Empty,
        graphql.operation.type = Empty,
        code = Empty,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Only fails for a span this layer does not see, which cannot be the case here.
        let _ = span.set_parent(parent);
    }
    span
}

/// The span of an operation received over a WebSocket: a trace of its own.
pub fn websocket_operation_span() -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        parent: None,
        "graphql.operation",
        otel.kind = "server",
        graphql.operation.name = Empty,
        graphql.operation.type = Empty,
        code = Empty,
        otel.status_code = Empty,
    )
}

/// The operation span the caller runs in, when traces are on.
pub fn current_operation() -> Option<Span> {
    if !enabled() {
        return None;
    }
    let span = Span::current();
    (span.metadata()?.name() == OPERATION).then_some(span)
}

/// Records what the operation was and how it ended.
pub fn record_operation(span: &Span, name: Option<&str>, kind: Option<&str>, code: &str) {
    if let Some(name) = name {
        span.record("graphql.operation.name", name);
    }
    if let Some(kind) = kind {
        span.record("graphql.operation.type", kind);
    }
    record_code(span, code);
}

/// Records the operation's outcome code; codes that mean the server failed make the
/// span an error (a refusal of the caller's request does not).
pub fn record_code(span: &Span, code: &str) {
    span.record("code", code);
    if matches!(code, "INTERNAL" | "UNAVAILABLE" | "PROCESSOR_ERROR") {
        span.record("otel.status_code", "ERROR");
    }
}

/// A span for a statement about to run, when traces are on and the statement belongs to
/// an operation or a processor call (background work is not traced statement by
/// statement). Its text is recorded when it finishes (`finish_statement`).
pub fn statement_span() -> Option<Span> {
    let current = Span::current();
    let name = current.metadata()?.name();
    if name != OPERATION && name != PROCESSOR {
        return None;
    }
    Some(tracing::debug_span!(
        "db.query",
        otel.kind = "client",
        otel.name = Empty,
        db.system = "postgresql",
        db.statement = Empty,
        otel.status_code = Empty,
    ))
}

/// Ends a statement's span with its SQL text (bind values cut off, should the text
/// carry them) and whether it failed.
pub fn finish_statement(span: Span, text: &str, failed: bool) {
    let sql = statement_text(text);
    let keyword = sql.split_whitespace().next().unwrap_or_default();
    if !keyword.is_empty() && keyword.bytes().all(|b| b.is_ascii_alphabetic()) {
        span.record("otel.name", keyword.to_ascii_uppercase().as_str());
    } else {
        span.record("otel.name", "postgresql");
    }
    span.record("db.statement", sql);
    if failed {
        span.record("otel.status_code", "ERROR");
    }
}

/// The SQL of a statement's text: diesel renders bound values after ` -- binds: `. The
/// first occurrence is cut, so a value that itself holds those characters cannot
/// leave part of the values behind.
fn statement_text(text: &str) -> &str {
    match text.find(" -- binds: ") {
        Some(at) => text[..at].trim_end(),
        None => text.trim_end(),
    }
}

/// Sends the exporter's requests with the reqwest client the server already has. The
/// SDK's batch processor exports from a thread of its own, outside the runtime, so each
/// request is run on the runtime and awaited from there.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Collector answers are small; a larger one is refused rather than read whole.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let mut response = client.execute(reqwest::Request::try_from(request)?).await?;
            let mut answer = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err("the collector's answer is larger than 1 MiB".into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(body))?)
        };
        self.runtime.spawn(exchange).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_lose_their_bound_values() {
        assert_eq!(statement_text("SELECT 1"), "SELECT 1");
        assert_eq!(
            statement_text(r#"SELECT "a" FROM "t" WHERE "id" = $1 -- binds: ["secret"]"#),
            r#"SELECT "a" FROM "t" WHERE "id" = $1"#
        );
        // A value spelling the separator again cannot leave values behind.
        assert_eq!(statement_text(r#"SELECT $1 -- binds: ["x -- binds: y"]"#), "SELECT $1");
    }
}
