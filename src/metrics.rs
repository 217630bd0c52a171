//! Prometheus metrics. Code anywhere records through the `metrics` facade (the macros);
//! this module installs the recorder once per process and renders the text format for
//! `GET /metrics` (on the main listener, or on `CURBPAY_METRICS_ADDR`).
//!
//! Names follow Prometheus' conventions: the `curbpay_` prefix, base units (`_seconds`),
//! `_total` counters. Label values come from small fixed sets (error codes, flows,
//! kinds) or, for GraphQL operation names, from a capped set of valid names: never an
//! id, a token or a tenant.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Distinct GraphQL operation names kept as label values; later ones count as `other`.
pub const MAX_OPERATION_NAMES: usize = 200;
/// Longest operation name kept as a label value.
const MAX_OPERATION_NAME_LEN: usize = 64;

/// Latency buckets (seconds): 0.5 ms … 30 s.
const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static OPERATION_NAMES: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle. When another
/// recorder was installed first (an embedding program's), ours renders nothing.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "curbpay_graphql_operations_total",
        "GraphQL operations by operation name, type and outcome code."
    );
    describe_histogram!("curbpay_graphql_operation_duration_seconds", "Time to answer a GraphQL operation.");
    describe_counter!("curbpay_processor_calls_total", "Processor calls by processor, flow and outcome.");
    describe_histogram!("curbpay_processor_call_duration_seconds", "Processor call latency, retries included.");
    describe_counter!("curbpay_processor_retries_total", "Processor requests retried (same idempotency key).");
    describe_counter!("curbpay_charge_tokens_issued_total", "Charge tokens issued (committed with a cursor).");
    describe_counter!("curbpay_charge_tokens_delivered_total", "Charge tokens sent to a subscribed operator.");
    describe_histogram!(
        "curbpay_charge_token_delivery_seconds",
        "From a charge token's commit to its send on an operator's subscription."
    );
    describe_gauge!("curbpay_websockets_open", "Open GraphQL WebSockets in this process.");
    describe_gauge!("curbpay_subscriptions_active", "Running subscriptions in this process by kind.");
    describe_gauge!("curbpay_db_pool_connections", "Database pool connections by pool and state (idle, in_use).");
    describe_counter!(
        "curbpay_db_statements_total",
        "SQL statements sent to Postgres by this process (both pools, the event hub's included)."
    );
    describe_gauge!("curbpay_db_pool_max_connections", "Database pool size limit by pool.");
    describe_gauge!("curbpay_db_pool_waiting", "Requests waiting for a database connection, by pool.");
    describe_histogram!("curbpay_db_pool_wait_seconds", "Time spent waiting for a database connection.");
    describe_gauge!(
        "curbpay_db_replica_serving",
        "1 while the read replica serves reads; 0 while it is down or lagging."
    );
    describe_gauge!(
        "curbpay_db_replica_lag_seconds",
        "How far the read replica was behind the primary when last measured (with CURBPAY_READ_MAX_LAG)."
    );
    describe_counter!(
        "curbpay_db_read_fallbacks_total",
        "Reads that could have gone to the replica but went to the primary, by reason (down, lagging)."
    );
    describe_gauge!("curbpay_listen_connected", "1 while the LISTEN connection for cross-process wake-ups is up.");
    describe_counter!("curbpay_listen_reconnects_total", "Times the LISTEN connection was re-established.");
    describe_counter!("curbpay_rate_limited_total", "Requests and WebSocket operations refused by the rate limit.");
    describe_gauge!("curbpay_shutting_down", "1 once the process has been asked to stop.");
}

/// The label value for a client-chosen operation name: the name when it is a valid
/// GraphQL name among the first `MAX_OPERATION_NAMES` seen, `anonymous` for none,
/// `other` for anything else.
pub fn operation_label(name: Option<&str>) -> String {
    let Some(name) = name else { return "anonymous".to_owned() };
    let valid = !name.is_empty()
        && name.len() <= MAX_OPERATION_NAME_LEN
        && name.bytes().enumerate().all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if !valid {
        return "other".to_owned();
    }
    let mut names = OPERATION_NAMES.get_or_init(Default::default).lock().expect("operation names lock");
    if names.contains(name) {
        return name.to_owned();
    }
    if names.len() < MAX_OPERATION_NAMES {
        names.insert(name.to_owned());
        return name.to_owned();
    }
    "other".to_owned()
}

/// One GraphQL operation answered. `code` is `OK` or the first error's code.
pub fn graphql_operation(operation: String, kind: &'static str, code: &'static str, elapsed: Duration) {
    counter!("curbpay_graphql_operations_total", "operation" => operation.clone(), "type" => kind, "code" => code)
        .increment(1);
    histogram!("curbpay_graphql_operation_duration_seconds", "operation" => operation, "type" => kind)
        .record(elapsed.as_secs_f64());
}

/// One processor flow finished with `outcome` (`ok`, `declined`, `refused`, `unavailable`).
pub fn processor_call(processor: &'static str, flow: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!("curbpay_processor_calls_total", "processor" => processor, "flow" => flow, "outcome" => outcome)
        .increment(1);
    histogram!("curbpay_processor_call_duration_seconds", "processor" => processor, "flow" => flow)
        .record(elapsed.as_secs_f64());
}

/// A processor request is being retried with the same idempotency key.
pub fn processor_retry(processor: &'static str) {
    counter!("curbpay_processor_retries_total", "processor" => processor).increment(1);
}

/// A charge token was issued.
pub fn charge_token_issued() {
    counter!("curbpay_charge_tokens_issued_total").increment(1);
}

/// A charge token went out on a subscription, `since_commit` after it was issued.
pub fn charge_token_delivered(since_commit: Option<Duration>) {
    counter!("curbpay_charge_tokens_delivered_total").increment(1);
    if let Some(latency) = since_commit {
        histogram!("curbpay_charge_token_delivery_seconds").record(latency.as_secs_f64());
    }
}

/// A request or WebSocket operation refused by the rate limit.
pub fn rate_limited(transport: &'static str) {
    counter!("curbpay_rate_limited_total", "transport" => transport).increment(1);
}

/// How long a request waited for a connection of `pool`.
pub fn pool_wait(pool: &'static str, waited: Duration) {
    histogram!("curbpay_db_pool_wait_seconds", "pool" => pool).record(waited.as_secs_f64());
}

/// Whether the read replica serves reads.
pub fn replica_serving(serving: bool) {
    gauge!("curbpay_db_replica_serving").set(if serving { 1.0 } else { 0.0 });
}

/// How far the read replica is behind the primary.
pub fn replica_lag(lag: Duration) {
    gauge!("curbpay_db_replica_lag_seconds").set(lag.as_secs_f64());
}

/// A read went to the primary because the replica was `reason` (`down`, `lagging`).
pub fn read_fallback(reason: &'static str) {
    counter!("curbpay_db_read_fallbacks_total", "reason" => reason).increment(1);
}

/// Whether the LISTEN connection is up; `reconnected` counts a reconnect.
pub fn listen_state(connected: bool, reconnected: bool) {
    gauge!("curbpay_listen_connected").set(if connected { 1.0 } else { 0.0 });
    if reconnected {
        counter!("curbpay_listen_reconnects_total").increment(1);
    }
}

/// The process was asked to stop.
pub fn shutting_down() {
    gauge!("curbpay_shutting_down").set(1.0);
}

/// Reports a pool's state (read at scrape time).
pub fn pool_status(pool: &'static str, status: deadpool::Status) {
    let idle = status.available as f64;
    gauge!("curbpay_db_pool_connections", "pool" => pool, "state" => "idle").set(idle);
    gauge!("curbpay_db_pool_connections", "pool" => pool, "state" => "in_use").set(status.size as f64 - idle);
    gauge!("curbpay_db_pool_max_connections", "pool" => pool).set(status.max_size as f64);
    gauge!("curbpay_db_pool_waiting", "pool" => pool).set(status.waiting as f64);
}

/// The statement counter's value, read when `/metrics` renders (the counter itself is
/// an atomic the connections bump; the facade is not on that path).
pub fn db_statements(total: u64) {
    counter!("curbpay_db_statements_total").absolute(total);
}

/// Holds a gauge up by one while alive (an open WebSocket, a running subscription).
pub struct GaugeGuard(metrics::Gauge);

impl GaugeGuard {
    /// Holds `curbpay_websockets_open` up while the WebSocket is open.
    pub fn websocket() -> GaugeGuard {
        GaugeGuard::new(gauge!("curbpay_websockets_open"))
    }

    /// `kind` is the subscription's root field.
    pub fn subscription(kind: &'static str) -> GaugeGuard {
        GaugeGuard::new(gauge!("curbpay_subscriptions_active", "kind" => kind))
    }

    fn new(gauge: metrics::Gauge) -> GaugeGuard {
        gauge.increment(1.0);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded() {
        assert_eq!(operation_label(None), "anonymous");
        assert_eq!(operation_label(Some("StartSession")), "StartSession");
        assert_eq!(operation_label(Some("1abc")), "other");
        assert_eq!(operation_label(Some("a b")), "other");
        assert_eq!(operation_label(Some("tok_visa\"}")), "other");
        assert_eq!(operation_label(Some(&"x".repeat(65))), "other");
        for i in 0..MAX_OPERATION_NAMES + 10 {
            let _ = operation_label(Some(&format!("Op{i}")));
        }
        assert_eq!(operation_label(Some("NeverSeenBefore")), "other");
        // Names seen before the cap keep their label.
        assert_eq!(operation_label(Some("StartSession")), "StartSession");
    }
}
