//! Scale-out soak: several real `curbpay` processes on one Postgres, some behind pgbouncer in
//! transaction pooling mode, operators subscribed over all of them, sessions started through
//! all of them, one process restarted mid-run. It checks, and prints, that every charge token
//! reached its operator exactly once, and how long that took.
//!
//! - 4 server processes (the release binary): 0 and 1 with `DATABASE_URL` at Postgres, 2 and 3
//!   through one pgbouncer (1.21+, `max_prepared_statements`; `.ci/pgbouncer.sh` builds one)
//!   with `CURBPAY_LISTEN_DATABASE_URL` at Postgres.
//! - 10 apps with a customer each; 1,000 operators, each with an active link to one app and one
//!   `chargeTokenIssued` subscription (graphql-transport-ws), spread evenly over the processes.
//!   A subscription whose socket closes (the restart's 1012) reconnects to another process and
//!   resumes after the last cursor it saw, as a client should.
//! - 16 requests in flight start sessions for random operators. First a baseline: through
//!   process 0 alone for a quarter of the run's length. Then the run: through the processes in
//!   turn for its length (2 minutes; `CURBPAY_SOAK_SECONDS` changes it). A request that fails
//!   in transport, or answers 503 or `UNAVAILABLE`, is retried on the next process with the
//!   same idempotency key, as a client behind a load balancer would.
//! - Half-way through the run, process 3 gets SIGTERM (a graceful restart: it must exit
//!   cleanly); the load balancer keeps sending to it for another half second, then passes it
//!   over until its replacement serves.
//!
//! Prints, per phase, sessions per second (the run's as a ratio to the baseline's) and the
//! servers' and Postgres' CPU per session; the counts (tokens delivered once, twice, to the
//! wrong operator, never); the start latency and the delivery latency (request sent → token
//! at the operator's socket) on the same process and across processes; and the restart's
//! figures. Rate limiting is off in the servers: this measures capacity, not the
//! per-principal budget.
//!
//! Run with `cargo bench --bench soak` (it uses Postgres as the tests do; see
//! `tests/it/util/postgres.rs`). Not part of CI.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use curbpay::auth::{Claims, Role, mint};
use futures_util::{SinkExt, StreamExt, stream};
use rand::Rng;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

#[allow(dead_code)]
mod probe;

// The tests' harness for these; the soak uses only part of it.
#[allow(dead_code)]
#[path = "../tests/it/util/db.rs"]
mod db;
#[allow(dead_code)]
#[path = "../tests/it/util/pgbouncer.rs"]
mod pgbouncer;
#[path = "../tests/it/util/postgres.rs"]
mod postgres;
#[allow(dead_code)]
#[path = "../tests/it/util/process.rs"]
mod process;

use db::TestDb;
use probe::{Cost, Probe};
use process::Curbpay;

const PROCESSES: usize = 4;
/// Processes from this index on reach Postgres through pgbouncer.
const FIRST_POOLED: usize = 2;
/// The process restarted half-way (one behind pgbouncer).
const RESTARTED: usize = 3;
const APPS: usize = 10;
const OPERATORS: usize = 1000;
const IN_FLIGHT: usize = 16;
const DEFAULT_SECONDS: u64 = 120;
/// How long the load balancer keeps sending to a process after its SIGTERM.
const LB_NOTICE: Duration = Duration::from_millis(500);
/// How long to wait, after the load stops, for the last tokens to arrive.
const DRAIN: Duration = Duration::from_secs(30);
const SECRET: &str = "soak-secret-soak-secret-soak-secret-0001";

const START: &str = "mutation($c: ID!, $o: ID!, $k: String!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: \"Z-1\", vehiclePlate: $k, idempotencyKey: $k}) {
    session { id chargeToken { id } } } }";
const TOKENS: &str = "subscription($after: String) { chargeTokenIssued(after: $after) { cursor chargeToken { id } } }";

fn token(role: Role) -> String {
    mint(SECRET.as_bytes(), &Claims::new(role, None, Duration::from_secs(3600))).expect("mint")
}

fn id(value: &Value) -> Uuid {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an id: {value}"))
}

/// What the load balancer knows: each process's address while it takes traffic.
struct Balancer {
    addrs: RwLock<Vec<Option<std::net::SocketAddr>>>,
}

impl Balancer {
    /// The first process taking traffic from `from` on, and its index.
    fn pick(&self, from: usize) -> Option<(usize, std::net::SocketAddr)> {
        let addrs = self.addrs.read().unwrap();
        (0..PROCESSES).map(|k| (from + k) % PROCESSES).find_map(|i| addrs[i].map(|addr| (i, addr)))
    }

    fn set(&self, process: usize, addr: Option<std::net::SocketAddr>) {
        self.addrs.write().unwrap()[process] = addr;
    }
}

/// The parties: apps (token, customer) and operators (id, token, app index).
struct World {
    apps: Vec<(String, Uuid)>,
    operators: Vec<(Uuid, String)>,
}

/// Runs an operation that must succeed on `base`; returns `data`.
async fn gql(http: &reqwest::Client, addr: std::net::SocketAddr, token: &str, query: &str, vars: Value) -> Value {
    let body: Value = http
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert!(body.get("errors").is_none(), "GraphQL errors: {body}");
    body["data"].clone()
}

async fn setup(http: &reqwest::Client, addr: std::net::SocketAddr) -> World {
    let admin = token(Role::Admin);
    let mut apps = Vec::new();
    for i in 0..APPS {
        let data = gql(
            http,
            addr,
            &admin,
            "mutation($n: String!) { createApp(input: {name: $n}) { app { id } } }",
            json!({ "n": format!("app {i}") }),
        )
        .await;
        let app_id = id(&data["createApp"]["app"]["id"]);
        let app_token = token(Role::App(app_id));
        let tokenize = "mutation { tokenizeCustomer(input: {externalRef: \"soak\", cardToken: \"tok_visa\"}) { customer { id } } }";
        let customer =
            id(&gql(http, addr, &app_token, tokenize, json!({})).await["tokenizeCustomer"]["customer"]["id"]);
        apps.push((app_id, app_token, customer));
    }
    let operators: Vec<(Uuid, String)> = stream::iter(0..OPERATORS)
        .map(|i| {
            let (admin, app_id) = (&admin, apps[i % APPS].0);
            async move {
                let create = "mutation($n: String!) { createOperator(input: {name: $n}) { operator { id } } }";
                let data = gql(http, addr, admin, create, json!({ "n": format!("operator {i}") })).await;
                let operator = id(&data["createOperator"]["operator"]["id"]);
                let link = "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { authorizationUrl } } }";
                let data = gql(http, addr, admin, link, json!({ "a": app_id, "o": operator })).await;
                let url = data["linkOperator"]["link"]["authorizationUrl"].as_str().expect("URL").to_owned();
                // The operator's consent: the sandbox approves at once.
                let consent = http.get(&url).send().await.expect("GET consent");
                assert!(consent.status().is_success(), "consent: {}", consent.status());
                (operator, token(Role::Operator(operator)))
            }
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    World { apps: apps.into_iter().map(|(_, token, customer)| (token, customer)).collect(), operators }
}

/// A token seen at an operator's socket: which operator, when, on which process.
struct Arrival {
    operator: usize,
    at: Instant,
    process: usize,
}

/// A session's start as the client saw it.
struct Started {
    operator: usize,
    sent: Instant,
    answered: Instant,
    /// The process that answered.
    process: usize,
    /// Started in the one-process baseline phase.
    baseline: bool,
}

#[derive(Default)]
struct Counters {
    retried: AtomicU64,
    failed: AtomicU64,
    reconnects: AtomicU64,
    subscribed: AtomicUsize,
}

struct Soak {
    /// Each operator's subscriptions: (process, when subscribed, the cursor it resumed after).
    connections: Mutex<Vec<Vec<(usize, Instant, String)>>>,
    balancer: Balancer,
    world: World,
    http: reqwest::Client,
    arrivals: Mutex<HashMap<Uuid, Vec<Arrival>>>,
    started: Mutex<HashMap<Uuid, Started>>,
    counters: Counters,
    stop: AtomicBool,
    /// During the baseline phase, the one process every start goes to.
    only: Mutex<Option<usize>>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, authenticates and subscribes after `cursor`.
async fn subscribe(addr: std::net::SocketAddr, operator: &str, cursor: &str) -> Option<Socket> {
    let mut request = format!("ws://{addr}/graphql").into_client_request().ok()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().ok()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {operator}") } });
    socket.send(Message::text(init.to_string())).await.ok()?;
    let ack = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.ok()??.ok()?;
    let ack: Value = serde_json::from_str(ack.to_text().ok()?).ok()?;
    if ack["type"] != "connection_ack" {
        return None;
    }
    let payload = json!({ "query": TOKENS, "variables": { "after": cursor } });
    socket.send(Message::text(json!({ "id": "1", "type": "subscribe", "payload": payload }).to_string())).await.ok()?;
    Some(socket)
}

/// One operator's subscription for the whole run, moving to another process when its socket
/// closes, resuming after the last cursor.
async fn subscriber(soak: Arc<Soak>, operator: usize) {
    let mut cursor = "0".to_owned();
    let mut from = operator % PROCESSES;
    let mut first = true;
    while !soak.stop.load(Ordering::Relaxed) {
        let Some((process, addr)) = soak.balancer.pick(from) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(mut socket) = subscribe(addr, &soak.world.operators[operator].1, &cursor).await else {
            from = process + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        soak.connections.lock().unwrap()[operator].push((process, Instant::now(), cursor.clone()));
        if first {
            soak.counters.subscribed.fetch_add(1, Ordering::Relaxed);
            first = false;
        } else {
            soak.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if soak.stop.load(Ordering::Relaxed) { return; }
                    continue;
                }
            };
            let Some(Ok(message)) = message else { break };
            let Message::Text(text) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON message");
            match value["type"].as_str() {
                Some("next") => {
                    let event = &value["payload"]["data"]["chargeTokenIssued"];
                    let token = id(&event["chargeToken"]["id"]);
                    cursor = event["cursor"].as_str().expect("cursor").to_owned();
                    let arrival = Arrival { operator, at: Instant::now(), process };
                    soak.arrivals.lock().unwrap().entry(token).or_default().push(arrival);
                }
                Some("ping") => {
                    let _ = socket.send(Message::text(json!({ "type": "pong" }).to_string())).await;
                }
                Some("complete") => break,
                Some("error") => panic!("subscription error: {value}"),
                _ => {}
            }
        }
        // The process went away (or completed the subscription for a restart): try the next one.
        from = process + 1;
    }
}

/// Why a start must be tried again elsewhere, if it must.
fn retryable(status: reqwest::StatusCode, body: &Value) -> bool {
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return true;
    }
    let codes = body["errors"].as_array().into_iter().flatten().filter_map(|e| e["extensions"]["code"].as_str());
    codes.into_iter().any(|code| code == "UNAVAILABLE")
}

/// Starts session `n` for a random operator, through process `n % PROCESSES` or the next that
/// answers, with one idempotency key whatever the tries.
async fn start(soak: &Soak, n: usize) {
    let operator = rand::rng().random_range(0..OPERATORS);
    let (app_token, customer) = &soak.world.apps[operator % APPS];
    let key = format!("soak-{n}");
    let vars = json!({ "c": customer, "o": soak.world.operators[operator].0, "k": key });
    let sent = Instant::now();
    let only = *soak.only.lock().unwrap();
    let mut from = only.unwrap_or(n % PROCESSES);
    for _ in 0..50 {
        let Some((process, addr)) = soak.balancer.pick(from) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let request = soak.http.post(format!("http://{addr}/graphql")).bearer_auth(app_token);
        let response = request.json(&json!({ "query": START, "variables": vars })).send().await;
        let answer = match response {
            Ok(response) => {
                let status = response.status();
                response.json::<Value>().await.map(|body| (status, body))
            }
            Err(err) => Err(err),
        };
        match answer {
            Ok((status, body)) if status.is_success() && body.get("errors").is_none() => {
                let session = &body["data"]["startParkingSession"]["session"];
                let token = id(&session["chargeToken"]["id"]);
                let started = Started { operator, sent, answered: Instant::now(), process, baseline: only.is_some() };
                soak.started.lock().unwrap().insert(token, started);
                return;
            }
            Ok((status, body)) if !retryable(status, &body) => {
                eprintln!("session {n} failed on process {process}: {status} {body}");
                soak.counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // A cut connection or a stopping process: the same key elsewhere.
            _ => {
                soak.counters.retried.fetch_add(1, Ordering::Relaxed);
                from = process + 1;
            }
        }
    }
    eprintln!("session {n}: no process answered in 50 tries");
    soak.counters.failed.fetch_add(1, Ordering::Relaxed);
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e3
}

fn line(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "  {label:<52} n={:>6}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
        latencies.len(),
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0)
    );
}

/// The env of process `i`.
fn env(i: usize, db: &str, pooled: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CURBPAY_JWT_SECRET", SECRET.to_owned()),
        ("CURBPAY_RATE_LIMIT_PER_SECOND", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    if i >= FIRST_POOLED {
        env.push(("DATABASE_URL", pooled.to_owned()));
        env.push(("CURBPAY_LISTEN_DATABASE_URL", db.to_owned()));
    } else {
        env.push(("DATABASE_URL", db.to_owned()));
    }
    env
}

async fn serve(env: &[(&'static str, String)]) -> Curbpay {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Curbpay::serve(&env).await
}

/// Starts sessions with `IN_FLIGHT` in flight for `length`; returns how long it took.
async fn load(soak: Arc<Soak>, length: Duration) -> Duration {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let began = Instant::now();
    let soak = &soak;
    stream::iter(std::iter::from_fn(|| Some(NEXT.fetch_add(1, Ordering::Relaxed))))
        .take_while(|_| futures_util::future::ready(began.elapsed() < length))
        .for_each_concurrent(IN_FLIGHT, |n| start(soak, n))
        .await;
    began.elapsed()
}

/// What the two phases measured.
struct Phases {
    baseline: Duration,
    baseline_sessions: usize,
    /// The baseline's totals (server, Postgres, SQL statements), not per session.
    baseline_cost: Cost,
    load_time: Duration,
    /// The run's totals; the server's only of the processes that ran throughout.
    run_cost: Cost,
    survivors: Vec<usize>,
}

#[tokio::main]
async fn main() {
    let seconds = std::env::var("CURBPAY_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SECONDS);
    let began = Instant::now();
    probe::raise_fd_limit();
    let db = TestDb::with_prefix("curbpay_soak").await;
    let bouncer = pgbouncer::Pgbouncer::start(
        &pgbouncer::supported(),
        &db.url,
        pgbouncer::Options { max_prepared_statements: Some(200), pool_size: 8 },
    )
    .await;
    let envs: Vec<_> = (0..PROCESSES).map(|i| env(i, &db.url, &bouncer.url())).collect();
    let mut processes = Vec::new();
    for env in &envs {
        processes.push(Some(serve(env).await));
    }
    let addrs = processes.iter().map(|p| p.as_ref().map(|p| p.addr)).collect();
    let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
    let world = setup(&http, processes[0].as_ref().unwrap().addr).await;
    println!(
        "curbpay soak: {} cores; {PROCESSES} processes ({} behind pgbouncer in transaction mode); {APPS} apps, \
         {OPERATORS} operators with one subscription each; {IN_FLIGHT} starts in flight for {seconds} s; process \
         {RESTARTED} restarted half-way (set up in {:.1} s)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        PROCESSES - FIRST_POOLED,
        began.elapsed().as_secs_f64()
    );

    let soak = Arc::new(Soak {
        balancer: Balancer { addrs: RwLock::new(addrs) },
        world,
        http,
        arrivals: Mutex::default(),
        started: Mutex::default(),
        counters: Counters::default(),
        stop: AtomicBool::new(false),
        only: Mutex::new(Some(0)),
        connections: Mutex::new(vec![Vec::new(); OPERATORS]),
    });
    let subscribers: Vec<_> = (0..OPERATORS).map(|i| tokio::spawn(subscriber(soak.clone(), i))).collect();
    // Every subscription replays from cursor 0, so none misses a token issued before it is
    // live; waiting for the sockets keeps the connection storm out of the measured run.
    while soak.counters.subscribed.load(Ordering::Relaxed) < OPERATORS {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Baseline: the same load through process 0 alone (subscribers stay spread over all four).
    let probe_of = async |processes: &[Option<Curbpay>], which: &[usize]| {
        let mut probe = Probe::new(&postgres::server_url(), &db.name).await;
        for process in which.iter().filter_map(|&i| processes[i].as_ref()) {
            probe.watch(process.pid(), &process.base);
        }
        probe
    };
    let mut baseline_probe = probe_of(&processes, &[0]).await;
    let before = baseline_probe.sample().await;
    let baseline = load(soak.clone(), Duration::from_secs(seconds.div_ceil(4))).await;
    let baseline_cost = baseline_probe.cost_since(&before, 1).await;
    let baseline_sessions = soak.started.lock().unwrap().len();

    *soak.only.lock().unwrap() = None;
    let run = Duration::from_secs(seconds);
    // The restarted process's CPU is not counted (its ticks end with it): the three others'
    // is, against the sessions they answered.
    let survivors: Vec<usize> = (0..PROCESSES).filter(|&i| i != RESTARTED).collect();
    let mut run_probe = probe_of(&processes, &survivors).await;
    let before = run_probe.sample().await;
    let running = tokio::spawn(load(soak.clone(), run));

    // Half-way: a graceful restart of one process.
    tokio::time::sleep(run / 2).await;
    let stopping = processes[RESTARTED].take().expect("running");
    let restart_began = Instant::now();
    let stopped = tokio::spawn(async move {
        stopping.stop().await;
        restart_began.elapsed()
    });
    tokio::time::sleep(LB_NOTICE).await;
    soak.balancer.set(RESTARTED, None);
    let exited = stopped.await.expect("the process exited cleanly on SIGTERM");
    let replacement = serve(&envs[RESTARTED]).await;
    soak.balancer.set(RESTARTED, Some(replacement.addr));
    let serving_again = restart_began.elapsed();
    processes[RESTARTED] = Some(replacement);

    let load_time = running.await.expect("load");
    let run_cost = run_probe.cost_since(&before, 1).await;
    // Let the last tokens arrive.
    let drain_began = Instant::now();
    loop {
        let missing = {
            let (started, arrivals) = (soak.started.lock().unwrap(), soak.arrivals.lock().unwrap());
            started.keys().filter(|token| !arrivals.contains_key(token)).count()
        };
        if missing == 0 || drain_began.elapsed() > DRAIN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    soak.stop.store(true, Ordering::Relaxed);
    for subscriber in subscribers {
        let _ = subscriber.await;
    }

    let phases = Phases { baseline, baseline_sessions, baseline_cost, load_time, run_cost, survivors };
    report(&soak, &phases, exited, serving_again);
    for process in processes.into_iter().flatten() {
        process.stop().await;
    }
    drop(bouncer);
    drop(db);
    println!("total runtime {:.1} s", began.elapsed().as_secs_f64());
}

fn report(soak: &Soak, phases: &Phases, exited: Duration, serving_again: Duration) {
    let (started, arrivals) = (soak.started.lock().unwrap(), soak.arrivals.lock().unwrap());
    let (mut once, mut twice, mut wrong, mut missing) = (0, 0, 0, 0);
    let (mut answered, mut same, mut cross, mut after_response) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut baseline_answered, mut baseline_delivered) = (Vec::new(), Vec::new());
    let mut by_survivors = 0;
    for (token, start) in started.iter() {
        let response = start.answered - start.sent;
        if start.baseline {
            baseline_answered.push(response);
        } else {
            answered.push(response);
            by_survivors += usize::from(phases.survivors.contains(&start.process));
        }
        let Some(seen) = arrivals.get(token) else {
            missing += 1;
            if missing <= 5 {
                let connections = &soak.connections.lock().unwrap()[start.operator];
                let history: Vec<String> = connections
                    .iter()
                    .map(|(p, at, cursor)| {
                        let offset = at.saturating_duration_since(start.sent).as_secs_f64()
                            - start.sent.saturating_duration_since(*at).as_secs_f64();
                        format!("process {p} at {offset:+.3} s after {cursor}")
                    })
                    .collect();
                eprintln!(
                    "never delivered: token {token} for operator {} (issued through process {}); its subscriptions, \
                     relative to the start request: {}",
                    start.operator,
                    start.process,
                    history.join("; ")
                );
            }
            continue;
        };
        if seen.iter().any(|a| a.operator != start.operator) {
            wrong += 1;
        }
        if seen.len() > 1 {
            twice += 1;
            continue;
        }
        once += 1;
        let arrival = &seen[0];
        let latency = arrival.at.saturating_duration_since(start.sent);
        if start.baseline {
            baseline_delivered.push(latency);
            continue;
        }
        if arrival.process == start.process {
            same.push(latency)
        } else {
            cross.push(latency)
        }
        after_response.push(arrival.at.saturating_duration_since(start.answered));
    }
    let unknown = arrivals.keys().filter(|token| !started.contains_key(token)).count();
    let c = &soak.counters;
    let run_sessions = started.len() - phases.baseline_sessions;
    let (base_rate, run_rate) = (
        phases.baseline_sessions as f64 / phases.baseline.as_secs_f64(),
        run_sessions as f64 / phases.load_time.as_secs_f64(),
    );
    let per = |us: f64, n: usize| us / n.max(1) as f64;
    let (base, run) = (&phases.baseline_cost, &phases.run_cost);
    println!(
        "\n{:<44} {:>9} {:>10} {:>14} {:>16} {:>8}",
        "phase", "sessions", "per second", "server CPU µs", "Postgres CPU µs", "SQL"
    );
    println!(
        "{:<44} {:>9} {:>10.0} {:>14.0} {:>16.0} {:>8.1}",
        "1 process, direct (baseline)",
        phases.baseline_sessions,
        base_rate,
        per(base.server_us, phases.baseline_sessions),
        per(base.postgres_us, phases.baseline_sessions),
        per(base.statements, phases.baseline_sessions)
    );
    println!(
        "{:<44} {:>9} {:>10.0} {:>14.0} {:>16.0} {:>8.1}",
        format!("{PROCESSES} processes, {} via pgbouncer, 1 restarted", PROCESSES - FIRST_POOLED),
        run_sessions,
        run_rate,
        per(run.server_us, by_survivors),
        per(run.postgres_us, run_sessions),
        per(run.statements, by_survivors)
    );
    println!(
        "  throughput ratio to the baseline {:.2}x; CPU per session, server: processes {:?} over the sessions they \
         answered; Postgres: the backends of the soak's database; SQL: statements the servers sent per \
         session (wake-ups and background work included)",
        run_rate / base_rate,
        phases.survivors
    );
    println!(
        "  failed {}; retried on another process {} (same idempotency key)",
        c.failed.load(Ordering::Relaxed),
        c.retried.load(Ordering::Relaxed)
    );
    println!(
        "charge tokens (both phases): delivered exactly once {once}; more than once {twice}; to another operator \
         {wrong}; never {missing}; delivered but never answered to the client {unknown}"
    );
    println!(
        "restart of process {RESTARTED}: exited {:.2} s after SIGTERM, replacement serving after {:.2} s; \
         subscriptions resumed on another process: {}",
        exited.as_secs_f64(),
        serving_again.as_secs_f64(),
        c.reconnects.load(Ordering::Relaxed)
    );
    println!("latencies from sending startParkingSession:");
    line("baseline: response", baseline_answered);
    line("baseline: token at the operator's socket", baseline_delivered);
    line("response", answered);
    line("token at the operator's socket, same process", same);
    line("token at the operator's socket, another process", cross);
    line("token at the socket after the response arrived", after_response);
}
