//! The authorization matrix: every role × every operation × own or another tenant's
//! object, with the exact outcome of each cell. Two worlds share nothing:
//!
//! * world A: app A, operator X (link A–X ACTIVE), operator Z (link A–Z PENDING),
//!   customer `alice-of-a`, session A (at X) with its charge token;
//! * world B: app B, operator Y (link B–Y ACTIVE), customer `bob-of-b`, session B (at Y)
//!   with its charge token.
//!
//! Each cell is one row of a table: `cell(label, who, query, variables, expected)`.
//! `.same_as_missing("var")` adds the key rule: the same request with `var` replaced by a
//! random UUID must get exactly the same response, so another tenant's object is
//! indistinguishable from one that does not exist.

mod leaks;
mod mutations;
mod queries;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use curbpay::auth::{Claims, Role};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::{JWT_SECRET, START_SESSION, TestApp, code_of, id};

// ---------------------------------------------------------------------------------------
// Callers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Admin,
    AppA,
    AppB,
    OpX,
    OpY,
    /// Linked to app A, but only PENDING and without sessions.
    OpZ,
    /// No `Authorization` header.
    Anon,
    /// An admin token whose `exp` is an hour in the past.
    Expired,
    /// An admin token signed with another secret.
    Forged,
    /// `Authorization: Basic …`.
    Basic,
    /// `Authorization: Bearer not-a-jwt`.
    Garbage,
}

use Who::*;

/// Every caller that must be turned away before anything is looked up.
const NOBODY: [Who; 5] = [Anon, Expired, Forged, Basic, Garbage];

// ---------------------------------------------------------------------------------------
// The two worlds
// ---------------------------------------------------------------------------------------

struct Worlds {
    t: TestApp,
    app_a: Uuid,
    app_b: Uuid,
    op_x: Uuid,
    op_y: Uuid,
    op_z: Uuid,
    link_ax: Uuid,
    link_by: Uuid,
    link_az: Uuid,
    cust_a: Uuid,
    cust_b: Uuid,
    sess_a: Uuid,
    sess_b: Uuid,
    tok_a: Uuid,
    tok_b: Uuid,
    /// Charge token values, as read by their operators.
    tokval_a: String,
    tokval_b: String,
    /// Processor-side secrets of each world, read as admin.
    acct_a: String,
    acct_b: String,
    pk_a: String,
    pk_b: String,
    pcus_a: String,
    pcus_b: String,
    conn_ax: String,
    conn_by: String,
}

/// One world: an app, its active operator, a customer and a session with its token.
struct Side {
    app: Uuid,
    operator: Uuid,
    link: Uuid,
    customer: Uuid,
    session: Uuid,
    token: Uuid,
    token_value: String,
}

async fn side(t: &TestApp, app: &str, operator: &str, customer: &str, card: &str, zone: &str, plate: &str) -> Side {
    let (app, operator) = tokio::join!(t.create_app(app), t.create_operator(operator));
    let link = t.activate_link(app, operator).await;
    let app_token = t.token(Role::App(app));
    let customer = t.tokenize(&app_token, customer, card).await;
    let data = t
        .ok(&app_token, START_SESSION, json!({ "c": customer, "o": operator, "k": "key-1", "z": zone, "p": plate }))
        .await;
    let session = id(&data["startParkingSession"]["session"]["id"]);
    let data = t
        .ok(
            &t.token(Role::Operator(operator)),
            "query($id: ID!) { parkingSession(id: $id) { chargeToken { id token } } }",
            json!({ "id": session }),
        )
        .await;
    let token = &data["parkingSession"]["chargeToken"];
    let token_value = token["token"].as_str().expect("the operator reads its token's value").to_owned();
    Side { app, operator, link, customer, session, token: id(&token["id"]), token_value }
}

async fn worlds() -> Worlds {
    let t = TestApp::new().await;
    let admin = t.admin();
    let (a, b, op_z) = tokio::join!(
        side(&t, "App A", "Operator X", "alice-of-a", "tok_visa", "ZONE-A", "PLATE-A"),
        side(&t, "App B", "Operator Y", "bob-of-b", "tok_mastercard", "ZONE-B", "PLATE-B"),
        t.create_operator("Operator Z"),
    );
    // App A also asks operator Z for a link, which stays PENDING.
    let data = t
        .ok(
            &t.token(Role::App(a.app)),
            "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id status } } }",
            json!({ "a": a.app, "o": op_z }),
        )
        .await;
    assert_eq!(data["linkOperator"]["link"]["status"], "PENDING");
    let link_az = id(&data["linkOperator"]["link"]["id"]);
    let (app_a, op_x, link_ax, cust_a, sess_a, tok_a, tokval_a) =
        (a.app, a.operator, a.link, a.customer, a.session, a.token, a.token_value);
    let (app_b, op_y, link_by, cust_b, sess_b, tok_b, tokval_b) =
        (b.app, b.operator, b.link, b.customer, b.session, b.token, b.token_value);

    let secrets = t
        .ok(
            &admin,
            "query($a: ID!, $b: ID!, $ca: ID!, $cb: ID!, $lx: ID!, $ly: ID!) {
               a: app(id: $a) { processorAccountId publishableKey }
               b: app(id: $b) { processorAccountId publishableKey }
               ca: customer(id: $ca) { processorCustomerId }
               cb: customer(id: $cb) { processorCustomerId }
               lx: link(id: $lx) { connectedAccountId }
               ly: link(id: $ly) { connectedAccountId }
             }",
            json!({ "a": app_a, "b": app_b, "ca": cust_a, "cb": cust_b, "lx": link_ax, "ly": link_by }),
        )
        .await;
    let s =
        |p: &str| secrets.pointer(p).and_then(Value::as_str).unwrap_or_else(|| panic!("{p} in {secrets}")).to_owned();
    Worlds {
        app_a,
        app_b,
        op_x,
        op_y,
        op_z,
        link_ax,
        link_by,
        link_az,
        cust_a,
        cust_b,
        sess_a,
        sess_b,
        tok_a,
        tok_b,
        tokval_a,
        tokval_b,
        acct_a: s("/a/processorAccountId"),
        acct_b: s("/b/processorAccountId"),
        pk_a: s("/a/publishableKey"),
        pk_b: s("/b/publishableKey"),
        pcus_a: s("/ca/processorCustomerId"),
        pcus_b: s("/cb/processorCustomerId"),
        conn_ax: s("/lx/connectedAccountId"),
        conn_by: s("/ly/connectedAccountId"),
        t,
    }
}

impl Worlds {
    /// The `Authorization` header a caller sends; `read_only` gives the real roles a
    /// token with `scope: "read"`.
    fn authorization(&self, who: Who, read_only: bool) -> Option<String> {
        let bearer = |role: Role| {
            let mut claims = Claims::new(role, None, Duration::from_secs(3600));
            claims.scope = read_only.then(|| "read".to_owned());
            Some(format!("Bearer {}", curbpay::auth::mint(JWT_SECRET.as_bytes(), &claims).unwrap()))
        };
        match who {
            Admin => bearer(Role::Admin),
            AppA => bearer(Role::App(self.app_a)),
            AppB => bearer(Role::App(self.app_b)),
            OpX => bearer(Role::Operator(self.op_x)),
            OpY => bearer(Role::Operator(self.op_y)),
            OpZ => bearer(Role::Operator(self.op_z)),
            Anon => None,
            Expired => {
                let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(3600));
                claims.exp = chrono::Utc::now().timestamp() - 3600;
                Some(format!("Bearer {}", curbpay::auth::mint(JWT_SECRET.as_bytes(), &claims).unwrap()))
            }
            Forged => {
                let claims = Claims::new(Role::Admin, None, Duration::from_secs(3600));
                let token = curbpay::auth::mint(b"not-the-server-secret-not-the-server-secret", &claims).unwrap();
                Some(format!("Bearer {token}"))
            }
            Basic => Some("Basic YWRtaW46YWRtaW4=".to_owned()),
            Garbage => Some("Bearer not-a-jwt".to_owned()),
        }
    }

    async fn ask(&self, who: Who, query: &str, variables: Value) -> Value {
        self.ask_scoped(who, false, query, variables).await
    }

    async fn ask_scoped(&self, who: Who, read_only: bool, query: &str, variables: Value) -> Value {
        let mut request = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = self.authorization(who, read_only) {
            request = request.header(header::AUTHORIZATION, value);
        }
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, body) = self.t.send(request.body(Body::from(body)).unwrap()).await;
        assert!(status.is_success(), "{status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
    }
}

// ---------------------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------------------

enum Expect {
    /// No errors, and `data` is exactly this.
    Data(Value),
    /// No errors, and the value at this JSON pointer into `data` is not null.
    Present(&'static str),
    /// The first error has this `extensions.code`, and `data` holds nothing.
    Code(&'static str),
}

use Expect::*;

impl Expect {
    fn check(&self, response: &Value) -> Result<(), String> {
        match self {
            Data(expected) => {
                if response.get("errors").is_some() {
                    return Err(format!("expected data {expected}, got errors"));
                }
                if &response["data"] != expected {
                    return Err(format!("expected data {expected}"));
                }
            }
            Present(pointer) => {
                if response.get("errors").is_some() {
                    return Err(format!("expected {pointer} present, got errors"));
                }
                if response["data"].pointer(pointer).is_none_or(Value::is_null) {
                    return Err(format!("expected {pointer} present"));
                }
            }
            Code(code) => {
                if code_of(response).as_deref() != Some(code) {
                    return Err(format!("expected error {code}"));
                }
                let nothing = match &response["data"] {
                    Value::Null => true,
                    Value::Object(fields) => fields.values().all(Value::is_null),
                    _ => false,
                };
                if !nothing {
                    return Err("an error response carried data".to_owned());
                }
            }
        }
        Ok(())
    }
}

struct Cell {
    label: String,
    who: Who,
    query: &'static str,
    variables: Value,
    expect: Expect,
    /// The variable to replace by a random UUID: that request must answer identically.
    as_missing: Option<&'static str>,
    /// Ask with a read-only token (`scope: "read"`) of the same role.
    read_only: bool,
}

fn cell(label: impl Into<String>, who: Who, query: &'static str, variables: Value, expect: Expect) -> Cell {
    Cell { label: label.into(), who, query, variables, expect, as_missing: None, read_only: false }
}

impl Cell {
    fn same_as_missing(mut self, variable: &'static str) -> Cell {
        self.as_missing = Some(variable);
        self
    }
}

/// Runs one cell; returns what went wrong, if anything.
async fn check(w: &Worlds, cell: &Cell) -> Vec<String> {
    let mut failures = Vec::new();
    let response = w.ask_scoped(cell.who, cell.read_only, cell.query, cell.variables.clone()).await;
    let scope = if cell.read_only { " (read-only)" } else { "" };
    if let Err(why) = cell.expect.check(&response) {
        failures.push(format!("[{}] as {:?}{scope}: {why}\n    got: {response}", cell.label, cell.who));
    }
    if let Some(variable) = cell.as_missing {
        let mut variables = cell.variables.clone();
        assert!(variables.get(variable).is_some(), "[{}] has no variable {variable}", cell.label);
        variables[variable] = json!(Uuid::new_v4());
        let missing = w.ask_scoped(cell.who, cell.read_only, cell.query, variables).await;
        if missing != response {
            failures.push(format!(
                "[{}] as {:?}: differs from a missing object\n    got:     {response}\n    missing: {missing}",
                cell.label, cell.who
            ));
        }
    }
    failures
}

/// Runs every cell, one after the other, and reports all failing cells at once.
async fn run(w: &Worlds, cells: Vec<Cell>) {
    let mut failures = Vec::new();
    for cell in &cells {
        failures.extend(check(w, cell).await);
    }
    report(cells.len(), failures);
}

/// Runs cells that change nothing (or must not) a few at a time (the pool has 4
/// connections; unbounded, late requests could wait out the pool timeout on a busy host).
async fn run_concurrently(w: &Worlds, cells: Vec<Cell>) {
    use futures_util::StreamExt;
    let results: Vec<Vec<String>> =
        futures_util::stream::iter(cells.iter().map(|cell| check(w, cell))).buffered(8).collect().await;
    report(cells.len(), results.into_iter().flatten().collect());
}

fn report(count: usize, failures: Vec<String>) {
    assert!(failures.is_empty(), "{} of {count} cells failed:\n{}", failures.len(), failures.join("\n"));
}

/// `{ field: { totalCount, nodes: [{id}…] } }`, in list order (by id: oldest first).
fn list(field: &str, ids: &[Uuid]) -> Value {
    let mut ids = ids.to_vec();
    ids.sort();
    let nodes: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
    json!({ field: { "totalCount": ids.len(), "nodes": nodes } })
}
