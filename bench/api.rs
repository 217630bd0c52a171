//! API benchmark: throughput and latency of curbpay over real loopback HTTP/WebSocket.
//!
//! Measures, each with a warm-up and then a bounded number of requests at a fixed
//! concurrency (and a time budget per phase):
//! - baseline: `POST /graphql { viewer { role } }` (JWT + GraphQL, no database);
//! - `GET /health` (one pool checkout, one query);
//! - `links(first: 50)` with app and operator names over 50 links (loaders batch it),
//!   plus the SQL statements per request for page sizes 1, 5 and 50;
//! - `startParkingSession` (unique idempotency keys and plates, a sandbox charge token
//!   each), the full start → end → charge cycle, and the same cycle for a session with a
//!   hold (authorize at start, capture at charge);
//! - charge-token delivery: time from sending `startParkingSession` to the operator's
//!   `next` message on a `graphql-transport-ws` subscription, sequentially.
//!
//! Figures are printed, never asserted; each is also given as a ratio to the baseline
//! measured in the same run. Run with `cargo bench --bench api`: it finds Postgres as the
//! tests do (`TEST_DATABASE_URL`, else 127.0.0.1:5432 if it lets us in, else the private
//! cluster under `target/test-postgres/`; see `tests/it/util/postgres.rs`) and creates and
//! drops its own `curbpay_bench_<random>` database there.

use std::future::Future;
use std::time::{Duration, Instant};

use curbpay::auth::{Claims, Role, mint};
use curbpay::{AppState, Config};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt, future, stream};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

const CONCURRENCY: usize = 8;
const READS: usize = 3000;
const STARTS: usize = 1000;
const CYCLES: usize = 300;
const DELIVERIES: usize = 200;
/// Warm-up requests per phase, as a fraction of the measured count.
const WARMUP_DIVISOR: usize = 10;
/// No phase issues new requests after this long.
const PHASE_BUDGET: Duration = Duration::from_secs(10);
const WS_TIMEOUT: Duration = Duration::from_secs(5);
const SECRET: &str = "bench-secret-bench-secret-bench-secret-01";

const VIEWER: &str = "{ viewer { role } }";
const LINKS: &str = "query($n: Int!) { links(first: $n) { edges { node { app { name } operator { name } } } } }";
// One vehicle per session (the key): a vehicle has one ACTIVE session per zone.
const START: &str = "mutation($c: ID!, $o: ID!, $k: String!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: \"Z-12\", vehiclePlate: $k, idempotencyKey: $k}) {
    session { id chargeToken { id } } } }";
const START_HELD: &str = "mutation($c: ID!, $o: ID!, $k: String!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: \"Z-12\", vehiclePlate: $k, idempotencyKey: $k,
                              hold: {amount: 1000, currency: \"usd\"}}) {
    session { id status } } }";
const END: &str = "mutation($s: ID!) { endParkingSession(input: {sessionId: $s, amount: {amount: 350, currency: \"usd\"}}) { session { status } } }";
const CHARGE: &str = "mutation($s: ID!) { chargeSession(input: {sessionId: $s}) { succeeded } }";
const SUBSCRIBE: &str = "subscription { chargeTokenIssued { cursor chargeToken { id } } }";

mod webhooks;

/// The tests' choice of Postgres server, shared so that both find (or start) the same one.
#[path = "../tests/it/util/postgres.rs"]
mod postgres;
use postgres::server_url;

/// The bench's own database; dropped (WITH (FORCE)) when this value is, panics included.
struct BenchDb {
    name: String,
    url: String,
}

impl BenchDb {
    async fn create() -> BenchDb {
        let name = format!("curbpay_bench_{}", Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&server_url()).await.expect("connect to Postgres");
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create database");
        let mut url = url::Url::parse(&server_url()).expect("the server URL is a URL");
        url.set_path(&format!("/{name}"));
        let db = BenchDb { name, url: url.to_string() };
        curbpay::db::migrate(&db.url).await.expect("migrate");
        db
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop is synchronous: run the statement on a small runtime of its own thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(&server_url()).await.ok()?;
                diesel::sql_query(sql).execute(&mut admin).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop database {}", self.name);
        }
    }
}

/// Builds the app on the database and serves it on a loopback listener.
async fn serve(db: &BenchDb) -> (AppState, String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let mut config = Config::for_database(&db.url, SECRET);
    config.listen_addr = addr;
    config.public_url = curbpay::config::default_public_url(addr);
    // The webhook phase delivers to a receiver on 127.0.0.1.
    config.events.allow_private = true;
    let settings = curbpay::server::ServerSettings::from(&config);
    let app = curbpay::build_app(config, None).await.expect("build app");
    let router = curbpay::http::router(app.clone());
    let server = tokio::spawn(async move {
        curbpay::server::serve(listener, router, settings, std::future::pending()).await.expect("serve")
    });
    (app, addr.to_string(), server)
}

fn token(role: Role) -> String {
    mint(SECRET.as_bytes(), &Claims::new(role, None, Duration::from_secs(3600))).expect("mint")
}

/// An HTTP client for the loopback server (proxies off: traffic stays on 127.0.0.1).
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(addr: &str) -> Client {
        let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
        Client { http, base: format!("http://{addr}") }
    }

    /// Runs a GraphQL operation that must succeed; returns `data`.
    async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        let request = self.http.post(format!("{}/graphql", self.base)).bearer_auth(token);
        let response = request.json(&json!({ "query": query, "variables": variables })).send().await.expect("POST");
        let body: Value = response.json().await.expect("JSON body");
        assert!(body.get("errors").is_none(), "GraphQL errors: {body}");
        body["data"].clone()
    }

    /// GETs a URL that must answer 200 (redirects followed).
    async fn get_ok(&self, url: &str) {
        let response = self.http.get(url).send().await.expect("GET");
        assert!(response.status().is_success(), "GET {url}: {}", response.status());
        response.bytes().await.expect("body");
    }
}

fn id(value: &Value) -> Uuid {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an id: {value}"))
}

/// The parties: 10 apps × 5 operators = 50 links; app 0 ↔ operator 0 is active and
/// app 0 has a customer.
struct World {
    admin: String,
    app: String,
    operator: String,
    operator_id: Uuid,
    customer_id: Uuid,
}

async fn create(client: &Client, admin: &str, kind: &str, name: &str) -> Uuid {
    let query =
        format!("mutation($n: String!) {{ create{kind}(input: {{name: $n}}) {{ {} {{ id }} }} }}", kind.to_lowercase());
    let data = client.gql(admin, &query, json!({ "n": name })).await;
    id(&data[format!("create{kind}")][kind.to_lowercase()]["id"])
}

async fn setup(client: &Client) -> World {
    let admin = token(Role::Admin);
    let mut apps = Vec::new();
    for i in 0..10 {
        apps.push(create(client, &admin, "App", &format!("app {i}")).await);
    }
    let link =
        "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { authorizationUrl } } }";
    let mut operators = Vec::new();
    for i in 0..5 {
        let operator = create(client, &admin, "Operator", &format!("operator {i}")).await;
        for app in &apps {
            let data = client.gql(&admin, link, json!({ "a": app, "o": operator })).await;
            if operators.is_empty() && app == &apps[0] {
                // Authorize as the operator's browser would: the sandbox approves at once.
                client.get_ok(data["linkOperator"]["link"]["authorizationUrl"].as_str().expect("URL")).await;
            }
        }
        operators.push(operator);
    }
    let app = token(Role::App(apps[0]));
    let tokenize = "mutation { tokenizeCustomer(input: {externalRef: \"bench-user\", cardToken: \"tok_visa\"}) { customer { id } } }";
    let customer_id = id(&client.gql(&app, tokenize, json!({})).await["tokenizeCustomer"]["customer"]["id"]);
    World { admin, app, operator: token(Role::Operator(operators[0])), operator_id: operators[0], customer_id }
}

/// Latencies of one phase and its wall time.
struct Stats {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    fn new(mut latencies: Vec<Duration>, wall: Duration) -> Stats {
        latencies.sort();
        Stats { latencies, wall }
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let index = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index].as_secs_f64() * 1e3
    }
}

/// Runs `op(0..n)` with `concurrency` in flight, issuing nothing after the phase budget.
async fn run<F, Fut>(n: usize, concurrency: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = Instant::now();
    let latencies = stream::iter(0..n)
        .take_while(|_| future::ready(started.elapsed() < PHASE_BUDGET))
        .map(|i| {
            let op = op(i);
            async move {
                let t = Instant::now();
                op.await;
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Stats::new(latencies, started.elapsed())
}

/// A warm-up of `n / WARMUP_DIVISOR` operations (indices past `n`), then the measurement.
async fn measure<F, Fut>(n: usize, concurrency: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    run(n / WARMUP_DIVISOR, concurrency, |i| op(n + i)).await;
    run(n, concurrency, op).await
}

/// Starts a session; returns its id and its charge token's id.
async fn start(client: &Client, world: &World, key: String) -> (Uuid, Uuid) {
    let variables = json!({ "c": world.customer_id, "o": world.operator_id, "k": key });
    let session = client.gql(&world.app, START, variables).await["startParkingSession"]["session"].take();
    (id(&session["id"]), id(&session["chargeToken"]["id"]))
}

async fn cycle(client: &Client, world: &World, key: String) {
    let (session, _) = start(client, world, key).await;
    client.gql(&world.app, END, json!({ "s": session })).await;
    let charged = client.gql(&world.operator, CHARGE, json!({ "s": session })).await;
    assert_eq!(charged["chargeSession"]["succeeded"], true, "{charged}");
}

/// The same cycle with a hold: authorized at start, captured (and the rest released)
/// at charge.
async fn held_cycle(client: &Client, world: &World, key: String) {
    let variables = json!({ "c": world.customer_id, "o": world.operator_id, "k": key });
    let started = client.gql(&world.app, START_HELD, variables).await;
    let session = &started["startParkingSession"]["session"];
    assert_eq!(session["status"], "ACTIVE", "{started}");
    client.gql(&world.app, END, json!({ "s": session["id"] })).await;
    let charged = client.gql(&world.operator, CHARGE, json!({ "s": session["id"] })).await;
    assert_eq!(charged["chargeSession"]["succeeded"], true, "{charged}");
}

/// SQL statements one `links(first: n)` costs, one request at a time.
async fn statements_per_page(app: &AppState, client: &Client, world: &World) -> Vec<(u32, u64)> {
    // Let the event hub's writes (which share the pool and the counter) settle first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut costs = Vec::new();
    for page in [1, 5, 50] {
        let before = app.statements.get();
        client.gql(&world.admin, LINKS, json!({ "n": page })).await;
        costs.push((page, app.statements.get() - before));
    }
    costs
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An operator's `graphql-transport-ws` subscription to `chargeTokenIssued`.
async fn subscribe(addr: &str, operator: &str) -> Socket {
    let mut request = format!("ws://{addr}/graphql").into_client_request().expect("WS request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket handshake");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {operator}") } });
    socket.send(Message::text(init.to_string())).await.expect("send init");
    let ack = next_message(&mut socket).await.expect("connection_ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIBE } });
    socket.send(Message::text(subscribe.to_string())).await.expect("send subscribe");
    socket
}

/// The next protocol message (pings answered), or `None` after `WS_TIMEOUT`.
async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(WS_TIMEOUT, socket.next()).await.ok()?;
        let Some(Ok(Message::Text(text))) = message else {
            assert!(matches!(message, Some(Ok(_))), "WebSocket closed: {message:?}");
            continue;
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("JSON message");
        match value["type"].as_str() {
            Some("ping") => socket.send(Message::text(json!({ "type": "pong" }).to_string())).await.expect("pong"),
            Some("pong") | Some("ka") => {}
            _ => return Some(value),
        }
    }
}

/// The charge token id of the next `next` event, and when it arrived.
async fn next_token(socket: &mut Socket) -> Option<(Uuid, Instant)> {
    let event = next_message(socket).await?;
    assert_eq!(event["type"], "next", "{event}");
    Some((id(&event["payload"]["data"]["chargeTokenIssued"]["chargeToken"]["id"]), Instant::now()))
}

/// Sequential sessions: (start → `next` delivery, start → HTTP response) latencies.
async fn deliveries(client: &Client, world: &World, socket: &mut Socket) -> (Stats, Stats) {
    // Warm-up; it also waits until the subscription is live (it starts with the next token).
    for i in 0..DELIVERIES / WARMUP_DIVISOR {
        let (_, expected) = start(client, world, format!("ws-warm-{i}")).await;
        while next_token(socket).await.is_some_and(|(token, _)| token != expected) {}
    }
    let (mut delivered, mut answered) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for i in 0..DELIVERIES {
        if started.elapsed() > PHASE_BUDGET {
            break;
        }
        let sent = Instant::now();
        let response = async {
            let ids = start(client, world, format!("ws-{i}")).await;
            (ids, Instant::now())
        };
        let (((_, expected), responded), event) = tokio::join!(response, next_token(socket));
        let (token, arrived) = event.expect("charge token delivered within the timeout");
        assert_eq!(token, expected, "delivered another session's token");
        delivered.push(arrived - sent);
        answered.push(responded - sent);
    }
    (Stats::new(delivered, started.elapsed()), Stats::new(answered, started.elapsed()))
}

struct Row {
    name: &'static str,
    stats: Stats,
    /// Index of the row this one is compared with.
    baseline: usize,
}

fn row(name: &'static str, stats: Stats, baseline: usize) -> Row {
    Row { name, stats, baseline }
}

fn print_table(rows: &[Row]) {
    println!("\n{:<54} {:>8} {:>8} {:>8} {:>10}", "operation", "req/s", "p50 ms", "p99 ms", "p50 ratio");
    for row in rows {
        let rate = row.stats.per_second();
        let (p50, p99) = (row.stats.percentile_ms(0.5), row.stats.percentile_ms(0.99));
        let ratio = p50 / rows[row.baseline].stats.percentile_ms(0.5);
        let label = format!("{} (n={})", row.name, row.stats.latencies.len());
        println!("{label:<54} {rate:>8.0} {p50:>8.2} {p99:>8.2} {ratio:>9.1}x");
    }
}

async fn viewer(client: &Client, world: &World) {
    client.gql(&world.admin, VIEWER, json!({})).await;
}

async fn links_page(client: &Client, world: &World) {
    client.gql(&world.admin, LINKS, json!({ "n": 50 })).await;
}

async fn start_only(client: &Client, world: &World, i: usize) {
    start(client, world, format!("start-{i}")).await;
}

/// The phases at `CONCURRENCY` in flight; the first row is their baseline.
async fn concurrent_rows(client: &Client, world: &World) -> Vec<Row> {
    let (c, health) = (CONCURRENCY, format!("{}/health", client.base));
    let baseline = measure(READS, c, |_| viewer(client, world)).await;
    let health = measure(READS, c, |_| client.get_ok(&health)).await;
    let links = measure(READS, c, |_| links_page(client, world)).await;
    let starts = measure(STARTS, c, |i| start_only(client, world, i)).await;
    let cycles = measure(CYCLES, c, |i| cycle(client, world, format!("cycle-{i}"))).await;
    let held = measure(CYCLES, c, |i| held_cycle(client, world, format!("held-{i}"))).await;
    vec![
        row("viewer (baseline)", baseline, 0),
        row("GET /health", health, 0),
        row("links(first: 50) with app and operator names", links, 0),
        row("startParkingSession", starts, 0),
        row("start→end→chargeSession (per cycle)", cycles, 0),
        row("held start→end→capture (per cycle)", held, 0),
    ]
}

/// The sequential phases, after `first` rows; the first of them is their baseline.
async fn sequential_rows(client: &Client, world: &World, addr: &str, first: usize) -> Vec<Row> {
    let baseline = measure(READS / 3, 1, |_| viewer(client, world)).await;
    let mut socket = subscribe(addr, &world.operator).await;
    let (delivered, answered) = deliveries(client, world, &mut socket).await;
    vec![
        row("viewer, 1 in flight (baseline)", baseline, first),
        row("startParkingSession, 1 in flight → response", answered, first),
        row("startParkingSession, 1 in flight → WS `next`", delivered, first),
    ]
}

#[tokio::main]
async fn main() {
    let began = Instant::now();
    let db = BenchDb::create().await;
    let (app, addr, server) = serve(&db).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "curbpay API bench: {cores} cores; {CONCURRENCY} in flight; n = {READS} reads, {STARTS} starts, {CYCLES} cycles, \
         {DELIVERIES} deliveries; warm-up n/{WARMUP_DIVISOR}; at most {PHASE_BUDGET:?} a phase; DB pool {pool}; \
         server and client share one tokio runtime",
        pool = app.config.db_pool_size,
    );
    let client = &Client::new(&addr);
    let world = &setup(client).await;
    let statements = statements_per_page(&app, client, world).await;

    let mut rows = concurrent_rows(client, world).await;
    rows.extend(sequential_rows(client, world, &addr, rows.len()).await);
    print_table(&rows);
    let target = webhooks::Target {
        graphql_url: format!("http://{addr}/graphql"),
        app_token: &world.app,
        customer_id: world.customer_id.to_string(),
        operator_id: world.operator_id.to_string(),
    };
    let hooks = [webhooks::run(&target, 1, 500, "hook-1").await, webhooks::run(&target, 100, 50, "hook-100").await];
    webhooks::print(&hooks);
    let statements: Vec<String> = statements.iter().map(|(page, n)| format!("{page}: {n}")).collect();
    println!("\nSQL statements per links request (page size: statements): {}", statements.join(", "));
    println!("p50 ratio: p50 / p50 of its section's baseline ({CONCURRENCY} in flight, then 1 in flight)");
    server.abort();
    drop(db);
    println!("total runtime {:.1} s", began.elapsed().as_secs_f64());
}
