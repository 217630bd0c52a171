//! Webhook delivery: events per second from commit to a 2xx at a local receiver, and
//! the p50/p99 of commit → receiver, with 1 and with 100 endpoints.
//!
//! The bench starts sessions through the API (each commits `session.started` and
//! `charge_token.issued` for the app); every endpoint of the app receives both. The
//! commit instant of an event is taken as the instant its mutation's response arrived
//! (the response leaves after the commit, so this slightly understates the latency).
//! The receiver is an axum server on 127.0.0.1 that answers 204 at once; the server
//! must run with `CURBPAY_WEBHOOK_ALLOW_PRIVATE=true` to deliver to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

const CREATE: &str = "mutation($url: String!) {
  createWebhookEndpoint(input: {url: $url, eventTypes: [\"session.started\", \"charge_token.issued\"], description: \"bench\"}) {
    endpoint { id } } }";
const DELETE: &str = "mutation($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { deletedEndpointId } }";
const START: &str = "mutation($c: ID!, $o: ID!, $k: String!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: \"Z-12\", vehiclePlate: $k, idempotencyKey: $k}) {
    session { id } } }";
/// Sessions started per run, in flight at once.
const IN_FLIGHT: usize = 8;
const WAIT: Duration = Duration::from_secs(120);

/// What one run needs of the server: its GraphQL URL, an app's token and a customer of
/// that app with an active link to the operator.
pub struct Target<'a> {
    pub graphql_url: String,
    pub app_token: &'a str,
    pub customer_id: String,
    pub operator_id: String,
}

/// The figures of one run.
pub struct Figures {
    pub endpoints: usize,
    pub events: usize,
    pub deliveries: usize,
    /// First commit to last 2xx.
    pub wall: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Figures {
    pub fn deliveries_per_second(&self) -> f64 {
        self.deliveries as f64 / self.wall.as_secs_f64()
    }

    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
}

#[derive(Default)]
struct Arrivals {
    /// (session id the event is about, arrival) per delivery.
    seen: Mutex<Vec<(String, Instant)>>,
}

async fn receive(State(arrivals): State<Arc<Arrivals>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let data = &body["data"];
    let session = data["session"]["id"].as_str().or_else(|| data["chargeToken"]["sessionId"].as_str());
    if headers.contains_key("webhook-signature")
        && let Some(session) = session
    {
        arrivals.seen.lock().expect("arrivals").push((session.to_owned(), at));
    }
    StatusCode::NO_CONTENT
}

/// Starts `sessions` sessions with `endpoints` endpoints registered, waits until every
/// delivery arrived, removes the endpoints.
pub async fn run(target: &Target<'_>, endpoints: usize, sessions: usize, tag: &str) -> Figures {
    let arrivals = Arc::new(Arrivals::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let router = Router::new().route("/hooks/{n}", post(receive)).with_state(arrivals.clone());
    let receiver = tokio::spawn(async move { axum::serve(listener, router).await.expect("receiver") });
    let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
    let gql = |query: &'static str, variables: Value| {
        let request = http.post(&target.graphql_url).bearer_auth(target.app_token);
        async move {
            let response = request.json(&json!({ "query": query, "variables": variables })).send().await;
            let body: Value = response.expect("POST").json().await.expect("JSON body");
            assert!(body.get("errors").is_none(), "GraphQL errors: {body}");
            body["data"].clone()
        }
    };

    let mut ids = Vec::new();
    for n in 0..endpoints {
        let data = gql(CREATE, json!({ "url": format!("http://{addr}/hooks/{n}") })).await;
        ids.push(data["createWebhookEndpoint"]["endpoint"]["id"].as_str().expect("endpoint id").to_owned());
    }

    let committed: HashMap<String, Instant> = stream::iter(0..sessions)
        .map(|i| {
            let key = format!("{tag}-{i}");
            let variables = json!({ "c": target.customer_id, "o": target.operator_id, "k": key });
            let started = gql(START, variables);
            async move {
                let data = started.await;
                let at = Instant::now();
                (data["startParkingSession"]["session"]["id"].as_str().expect("session id").to_owned(), at)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;

    let events = sessions * 2;
    let expected = events * endpoints;
    let deadline = Instant::now() + WAIT;
    while arrivals.seen.lock().expect("arrivals").len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = std::mem::take(&mut *arrivals.seen.lock().expect("arrivals"));
    assert_eq!(seen.len(), expected, "every (endpoint, event) delivered once within {WAIT:?}");
    for id in &ids {
        gql(DELETE, json!({ "id": id })).await;
    }
    receiver.abort();

    let first_commit = committed.values().min().copied().expect("sessions started");
    let last_arrival = seen.iter().map(|(_, at)| *at).max().expect("deliveries");
    let mut latencies: Vec<Duration> =
        seen.iter().map(|(session, at)| at.saturating_duration_since(committed[session])).collect();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    Figures {
        endpoints,
        events,
        deliveries: expected,
        wall: last_arrival - first_commit,
        p50: percentile(0.5),
        p99: percentile(0.99),
    }
}

/// Prints the figures of the runs.
pub fn print(runs: &[Figures]) {
    println!(
        "\n{:<44} {:>9} {:>12} {:>8} {:>8}",
        "webhooks (commit → 2xx at a local receiver)", "events/s", "deliveries/s", "p50 ms", "p99 ms"
    );
    for run in runs {
        let label = format!("{} endpoint(s), {} events", run.endpoints, run.events);
        println!(
            "{label:<44} {:>9.0} {:>12.0} {:>8.2} {:>8.2}",
            run.events_per_second(),
            run.deliveries_per_second(),
            run.p50.as_secs_f64() * 1e3,
            run.p99.as_secs_f64() * 1e3
        );
    }
}
