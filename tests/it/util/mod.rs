//! The test harness: a `TestApp` over a fresh Postgres database per test, requests
//! through the real router (and a real listener for WebSocket clients), tokens for
//! each role, and helpers for the common setup steps.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use curbpay::auth::{Claims, Role};
use curbpay::{BrokerState, Config};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

pub mod db;
pub mod ledger;
pub mod node;
pub mod otlp;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod receiver;
pub mod replica;
pub mod stripe;

pub use db::{TestDb, database_url};

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub struct TestApp {
    pub broker: BrokerState,
    pub router: Router,
    /// A real listener serving the same router (WebSocket clients connect here).
    pub addr: SocketAddr,
    pub db: Arc<TestDb>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::on_db(Arc::new(TestDb::new().await), adjust).await
    }

    /// Another server on the same database (as a second process would be).
    pub async fn on_db(db: Arc<TestDb>, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config::for_database(&db.url, JWT_SECRET);
        config.listen_addr = addr;
        config.public_url = curbpay::config::default_public_url(addr);
        config.db_pool_size = 4;
        adjust(&mut config);
        let settings = curbpay::server::ServerSettings::from(&config);
        let broker = curbpay::build_broker(config, None).await.expect("build the broker");
        let router = curbpay::http::router(broker.clone());
        let served = router.clone();
        let server = tokio::spawn(async move {
            curbpay::server::serve(listener, served, settings, std::future::pending()).await.unwrap();
        });
        TestApp { broker, router, addr, db, server }
    }

    pub fn token(&self, role: Role) -> String {
        self.token_for(role, Duration::from_secs(3600))
    }

    pub fn token_for(&self, role: Role, ttl: Duration) -> String {
        curbpay::auth::mint(JWT_SECRET.as_bytes(), &Claims::new(role, None, ttl)).unwrap()
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    /// POSTs a GraphQL request through the router; returns the whole response body.
    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (_, body) = self.post_raw(token, json!({ "query": query, "variables": variables })).await;
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
    }

    pub async fn post_raw(&self, token: Option<&str>, body: Value) -> (StatusCode, String) {
        let mut request = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::from(body.to_string())).unwrap()).await
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Runs an operation that must succeed; returns `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let response = self.post(Some(token), query, variables).await;
        assert!(response.get("errors").is_none(), "unexpected errors: {response:#}");
        response["data"].clone()
    }

    /// Runs an operation that must fail; returns the first error's `extensions.code`.
    pub async fn error_code(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let response = self.post(token, query, variables).await;
        code_of(&response).unwrap_or_else(|| panic!("expected an error: {response:#}"))
    }

    /// GETs a URL of this server through the router, following redirects to it.
    pub async fn follow(&self, url: &str) -> (StatusCode, String, Vec<String>) {
        let mut target = url::Url::parse(url).unwrap();
        let mut visited = Vec::new();
        for _ in 0..5 {
            visited.push(target.to_string());
            let path = match target.query() {
                Some(q) => format!("{}?{q}", target.path()),
                None => target.path().to_owned(),
            };
            let response = self.router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
                target = target.join(&location).unwrap();
                continue;
            }
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            return (status, String::from_utf8_lossy(&bytes).into_owned(), visited);
        }
        panic!("too many redirects from {url}");
    }

    /// Number of SQL statements the server has sent so far.
    pub fn statements(&self) -> u64 {
        self.broker.statements.get()
    }
}

pub fn code_of(response: &Value) -> Option<String> {
    response["errors"][0]["extensions"]["code"].as_str().map(str::to_owned)
}

pub fn id(value: &Value) -> Uuid {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an id: {value}"))
}

/// An app, an operator, an active link between them, and a tokenized customer.
pub struct World {
    pub app_id: Uuid,
    pub operator_id: Uuid,
    pub link_id: Uuid,
    pub customer_id: Uuid,
    pub app_token: String,
    pub operator_token: String,
}

impl TestApp {
    pub async fn create_app(&self, name: &str) -> Uuid {
        let data = self
            .ok(
                &self.admin(),
                "mutation($n: String!) { createApp(input: {name: $n}) { app { id } } }",
                json!({ "n": name }),
            )
            .await;
        id(&data["createApp"]["app"]["id"])
    }

    pub async fn create_operator(&self, name: &str) -> Uuid {
        let data = self
            .ok(
                &self.admin(),
                "mutation($n: String!) { createOperator(input: {name: $n}) { operator { id } } }",
                json!({ "n": name }),
            )
            .await;
        id(&data["createOperator"]["operator"]["id"])
    }

    /// Links and authorizes by following the authorization URL, as an operator's
    /// browser would.
    pub async fn activate_link(&self, app_id: Uuid, operator_id: Uuid) -> Uuid {
        let data = self
            .ok(
                &self.admin(),
                "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id status authorizationUrl } } }",
                json!({ "a": app_id, "o": operator_id }),
            )
            .await;
        let link = &data["linkOperator"]["link"];
        let url = link["authorizationUrl"].as_str().expect("pending link has an authorization URL");
        let (status, body, _) = self.follow(url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id(&link["id"])
    }

    pub async fn tokenize(&self, app_token: &str, external_ref: &str, card_token: &str) -> Uuid {
        let data = self
            .ok(
                app_token,
                "mutation($r: String!, $t: String!) { tokenizeCustomer(input: {externalRef: $r, cardToken: $t}) { customer { id } } }",
                json!({ "r": external_ref, "t": card_token }),
            )
            .await;
        id(&data["tokenizeCustomer"]["customer"]["id"])
    }

    pub async fn world(&self) -> World {
        self.world_with_card("tok_visa").await
    }

    pub async fn world_with_card(&self, card_token: &str) -> World {
        let app_id = self.create_app("ParkNow").await;
        let operator_id = self.create_operator("Downtown Garages").await;
        let link_id = self.activate_link(app_id, operator_id).await;
        let app_token = self.token(Role::App(app_id));
        let customer_id = self.tokenize(&app_token, "user-1", card_token).await;
        World {
            app_id,
            operator_id,
            link_id,
            customer_id,
            app_token,
            operator_token: self.token(Role::Operator(operator_id)),
        }
    }

    /// Starts a session; returns the whole `startParkingSession` payload. Each key is
    /// another vehicle (one vehicle may have only one active session per zone), so
    /// tests can start several.
    pub async fn start_session(&self, world: &World, key: &str) -> Value {
        let plate = format!("B-CP {key}");
        let data = self
            .ok(
                &world.app_token,
                START_SESSION,
                json!({ "c": world.customer_id, "o": world.operator_id, "k": key, "z": "Z-12", "p": plate }),
            )
            .await;
        data["startParkingSession"].clone()
    }
}

pub const START_SESSION: &str = "mutation($c: ID!, $o: ID!, $k: String!, $z: String!, $p: String!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: $z, vehiclePlate: $p, idempotencyKey: $k}) {
    replayed session { id status startedAt chargeToken { id status } }
  }
}";

pub const END_SESSION: &str = "mutation($s: ID!, $a: Int!, $c: String!) {
  endParkingSession(input: {sessionId: $s, amount: {amount: $a, currency: $c}}) { session { id status amount { amount currency } } }
}";

pub const CHARGE_SESSION: &str = "mutation($s: ID!) {
  chargeSession(input: {sessionId: $s}) { succeeded failure { code declineCode message } session { id status processorChargeId chargeToken { status } } }
}";
