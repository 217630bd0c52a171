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

const VIEWER: &str = "{ viewer { role appId operatorId } }";
const APP: &str = "query($id: ID!) { app(id: $id) { id name processorAccountId publishableKey } }";
const APPS: &str = "{ apps { totalCount nodes { id } } }";
const OPERATOR: &str = "query($id: ID!) { operator(id: $id) { id name } }";
const OPERATORS: &str = "{ operators { totalCount nodes { id } } }";
const LINK: &str = "query($id: ID!) { link(id: $id) { id status app { id } operator { id } connectedAccountId } }";
const LINK_URL: &str = "query($id: ID!) { link(id: $id) { status authorizationUrl } }";
const LINKS: &str = "query($a: ID, $o: ID) { links(appId: $a, operatorId: $o) { totalCount nodes { id } } }";
const CUSTOMER: &str = "query($id: ID!) { customer(id: $id) { id externalRef processorCustomerId card { last4 } } }";
const CUSTOMERS: &str = "{ customers { totalCount nodes { id } } }";
const SESSION: &str = "query($id: ID!) { parkingSession(id: $id) { id zone vehiclePlate app { id } operator { id } customer { id } link { id } } }";
const SESSIONS: &str = "{ parkingSessions { totalCount nodes { id } } }";
const TOKEN: &str = "query($id: ID!) { chargeToken(id: $id) { id token status session { id } operator { id } } }";
const SESSION_TOKENS: &str =
    "query($id: ID!) { parkingSession(id: $id) { chargeToken { id token } chargeTokens { id token } } }";
const SESSION_CUSTOMER: &str =
    "query($id: ID!) { parkingSession(id: $id) { customer { externalRef processorCustomerId card { brand last4 } } } }";
const SESSION_APP: &str = "query($id: ID!) { parkingSession(id: $id) { app { id processorAccountId } } }";
const APP_LINKS: &str = "query($id: ID!) { app(id: $id) { links { totalCount nodes { id } } } }";
const OPERATOR_LINKS: &str = "query($id: ID!) { operator(id: $id) { links { totalCount nodes { id } } } }";
const LINK_BOTH_SIDES: &str = "query($id: ID!) { link(id: $id) { app { links { totalCount nodes { id } } } operator { links { totalCount nodes { id } } } } }";

fn query_cells(w: &Worlds) -> Vec<Cell> {
    let (a, b, x, y, z) = (w.app_a, w.app_b, w.op_x, w.op_y, w.op_z);
    let (ax, by, az) = (w.link_ax, w.link_by, w.link_az);
    let (ca, cb, sa, sb, ta, tb) = (w.cust_a, w.cust_b, w.sess_a, w.sess_b, w.tok_a, w.tok_b);
    let none = json!({});
    let app_a_full =
        json!({ "app": { "id": a, "name": "App A", "processorAccountId": w.acct_a, "publishableKey": w.pk_a } });
    let app_a_public =
        json!({ "app": { "id": a, "name": "App A", "processorAccountId": null, "publishableKey": w.pk_a } });
    let op_x_data = json!({ "operator": { "id": x, "name": "Operator X" } });
    let link_ax_data = json!({ "link": { "id": ax, "status": "ACTIVE", "app": { "id": a }, "operator": { "id": x }, "connectedAccountId": w.conn_ax } });
    let cust_a_full = json!({ "customer": { "id": ca, "externalRef": "alice-of-a", "processorCustomerId": w.pcus_a, "card": { "last4": "4242" } } });
    let cust_a_op = json!({ "customer": { "id": ca, "externalRef": "alice-of-a", "processorCustomerId": null, "card": { "last4": "4242" } } });
    let sess_a_data = json!({ "parkingSession": { "id": sa, "zone": "ZONE-A", "vehiclePlate": "PLATE-A", "app": { "id": a }, "operator": { "id": x }, "customer": { "id": ca }, "link": { "id": ax } } });
    let token_a = |value: Value| json!({ "chargeToken": { "id": ta, "token": value, "status": "ISSUED", "session": { "id": sa }, "operator": { "id": x } } });
    let session_tokens_a = |value: Value| json!({ "parkingSession": { "chargeToken": { "id": ta, "token": value }, "chargeTokens": [{ "id": ta, "token": value }] } });
    let nothing = |field: &str| json!({ field: null });
    let id = |v: Uuid| json!({ "id": v });
    let links = |ids: &[Uuid]| list("links", ids);
    let no_links = links(&[]);

    let mut cells = vec![
        // viewer
        cell(
            "viewer",
            Admin,
            VIEWER,
            none.clone(),
            Data(json!({ "viewer": { "role": "ADMIN", "appId": null, "operatorId": null } })),
        ),
        cell(
            "viewer",
            AppA,
            VIEWER,
            none.clone(),
            Data(json!({ "viewer": { "role": "APP", "appId": a, "operatorId": null } })),
        ),
        cell(
            "viewer",
            OpX,
            VIEWER,
            none.clone(),
            Data(json!({ "viewer": { "role": "OPERATOR", "appId": null, "operatorId": x } })),
        ),
        // app(id)
        cell("app(A)", Admin, APP, id(a), Data(app_a_full.clone())),
        cell("app(A)", AppA, APP, id(a), Data(app_a_full.clone())),
        cell("app(A) linked operator: no processor account", OpX, APP, id(a), Data(app_a_public.clone())),
        cell("app(A) pending-linked operator", OpZ, APP, id(a), Data(app_a_public.clone())),
        cell("app(A)", AppB, APP, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("app(A)", OpY, APP, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("app(B)", AppA, APP, id(b), Data(nothing("app"))).same_as_missing("id"),
        cell("app(B)", OpX, APP, id(b), Data(nothing("app"))).same_as_missing("id"),
        cell("app(B)", OpZ, APP, id(b), Data(nothing("app"))).same_as_missing("id"),
        // apps
        cell("apps", Admin, APPS, none.clone(), Data(list("apps", &[a, b]))),
        cell("apps", AppA, APPS, none.clone(), Data(list("apps", &[a]))),
        cell("apps", AppB, APPS, none.clone(), Data(list("apps", &[b]))),
        cell("apps", OpX, APPS, none.clone(), Data(list("apps", &[a]))),
        cell("apps", OpY, APPS, none.clone(), Data(list("apps", &[b]))),
        cell("apps", OpZ, APPS, none.clone(), Data(list("apps", &[a]))),
        // operator(id), operators: a directory every role reads
        cell("operator(X)", Admin, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(X)", AppA, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(X) directory", AppB, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(X) directory", OpY, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(missing)", AppB, OPERATOR, id(Uuid::new_v4()), Data(nothing("operator"))),
        cell("operators", AppB, OPERATORS, none.clone(), Data(list("operators", &[x, y, z]))),
        cell("operators", OpY, OPERATORS, none.clone(), Data(list("operators", &[x, y, z]))),
        // link(id)
        cell("link(AX)", Admin, LINK, id(ax), Data(link_ax_data.clone())),
        cell("link(AX)", AppA, LINK, id(ax), Data(link_ax_data.clone())),
        cell("link(AX)", OpX, LINK, id(ax), Data(link_ax_data.clone())),
        cell("link(AX)", AppB, LINK, id(ax), Data(nothing("link"))).same_as_missing("id"),
        cell("link(AX)", OpY, LINK, id(ax), Data(nothing("link"))).same_as_missing("id"),
        cell("link(AX) other operator of A", OpZ, LINK, id(ax), Data(nothing("link"))).same_as_missing("id"),
        cell("link(BY)", AppA, LINK, id(by), Data(nothing("link"))).same_as_missing("id"),
        cell("link(BY)", OpX, LINK, id(by), Data(nothing("link"))).same_as_missing("id"),
        cell(
            "link(AZ).authorizationUrl not for the app that asked for the link",
            AppA,
            LINK_URL,
            id(az),
            Data(json!({ "link": { "status": "PENDING", "authorizationUrl": null } })),
        ),
        cell("link(AZ).authorizationUrl", Admin, LINK_URL, id(az), Present("/link/authorizationUrl")),
        cell("link(AZ).authorizationUrl for its operator", OpZ, LINK_URL, id(az), Present("/link/authorizationUrl")),
        cell(
            "link(AX).authorizationUrl once active",
            OpX,
            LINK_URL,
            id(ax),
            Data(json!({ "link": { "status": "ACTIVE", "authorizationUrl": null } })),
        ),
        cell("link(AZ)", AppB, LINK_URL, id(az), Data(nothing("link"))).same_as_missing("id"),
        // links, with and without filters
        cell("links", Admin, LINKS, none.clone(), Data(links(&[ax, by, az]))),
        cell("links", AppA, LINKS, none.clone(), Data(links(&[ax, az]))),
        cell("links", AppB, LINKS, none.clone(), Data(links(&[by]))),
        cell("links", OpX, LINKS, none.clone(), Data(links(&[ax]))),
        cell("links", OpY, LINKS, none.clone(), Data(links(&[by]))),
        cell("links", OpZ, LINKS, none.clone(), Data(links(&[az]))),
        cell("links(appId: B)", Admin, LINKS, json!({ "a": b }), Data(links(&[by]))),
        cell("links(operatorId: X)", Admin, LINKS, json!({ "o": x }), Data(links(&[ax]))),
        cell("links(appId: A)", AppA, LINKS, json!({ "a": a }), Data(links(&[ax, az]))),
        cell("links(operatorId: X)", AppA, LINKS, json!({ "o": x }), Data(links(&[ax]))),
        cell("links(appId: B)", AppA, LINKS, json!({ "a": b }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(operatorId: Y)", AppA, LINKS, json!({ "o": y }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(appId: A)", AppB, LINKS, json!({ "a": a }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(operatorId: X)", AppB, LINKS, json!({ "o": x }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(operatorId: Y)", OpX, LINKS, json!({ "o": y }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(appId: B)", OpX, LINKS, json!({ "a": b }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(appId: A)", OpY, LINKS, json!({ "a": a }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(operatorId: X)", OpY, LINKS, json!({ "o": x }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(appId: A, operatorId: X)", OpZ, LINKS, json!({ "a": a, "o": x }), Data(no_links.clone()))
            .same_as_missing("o"),
        // customer(id), customers
        cell("customer(a)", Admin, CUSTOMER, id(ca), Data(cust_a_full.clone())),
        cell("customer(a)", AppA, CUSTOMER, id(ca), Data(cust_a_full.clone())),
        cell("customer(a) via its session", OpX, CUSTOMER, id(ca), Data(cust_a_op.clone())),
        cell("customer(a)", AppB, CUSTOMER, id(ca), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(a)", OpY, CUSTOMER, id(ca), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(a) no session at Z", OpZ, CUSTOMER, id(ca), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(b)", AppA, CUSTOMER, id(cb), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(b)", OpX, CUSTOMER, id(cb), Data(nothing("customer"))).same_as_missing("id"),
        cell("customers", Admin, CUSTOMERS, none.clone(), Data(list("customers", &[ca, cb]))),
        cell("customers", AppA, CUSTOMERS, none.clone(), Data(list("customers", &[ca]))),
        cell("customers", AppB, CUSTOMERS, none.clone(), Data(list("customers", &[cb]))),
        cell("customers", OpX, CUSTOMERS, none.clone(), Data(list("customers", &[ca]))),
        cell("customers", OpY, CUSTOMERS, none.clone(), Data(list("customers", &[cb]))),
        cell("customers", OpZ, CUSTOMERS, none.clone(), Data(list("customers", &[]))),
        // parkingSession(id), parkingSessions
        cell("parkingSession(a)", Admin, SESSION, id(sa), Data(sess_a_data.clone())),
        cell("parkingSession(a)", AppA, SESSION, id(sa), Data(sess_a_data.clone())),
        cell("parkingSession(a)", OpX, SESSION, id(sa), Data(sess_a_data.clone())),
        cell("parkingSession(a)", AppB, SESSION, id(sa), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(a)", OpY, SESSION, id(sa), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(a)", OpZ, SESSION, id(sa), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(b)", AppA, SESSION, id(sb), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(b)", OpX, SESSION, id(sb), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSessions", Admin, SESSIONS, none.clone(), Data(list("parkingSessions", &[sa, sb]))),
        cell("parkingSessions", AppA, SESSIONS, none.clone(), Data(list("parkingSessions", &[sa]))),
        cell("parkingSessions", AppB, SESSIONS, none.clone(), Data(list("parkingSessions", &[sb]))),
        cell("parkingSessions", OpX, SESSIONS, none.clone(), Data(list("parkingSessions", &[sa]))),
        cell("parkingSessions", OpY, SESSIONS, none.clone(), Data(list("parkingSessions", &[sb]))),
        cell("parkingSessions", OpZ, SESSIONS, none.clone(), Data(list("parkingSessions", &[]))),
        // chargeToken(id): the value only for the operator it was issued to
        cell("chargeToken(a) with value", OpX, TOKEN, id(ta), Data(token_a(json!(w.tokval_a)))),
        cell("chargeToken(a) without value", AppA, TOKEN, id(ta), Data(token_a(Value::Null))),
        cell("chargeToken(a) without value", Admin, TOKEN, id(ta), Data(token_a(Value::Null))),
        cell("chargeToken(a)", AppB, TOKEN, id(ta), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(a)", OpY, TOKEN, id(ta), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(a)", OpZ, TOKEN, id(ta), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(b)", AppA, TOKEN, id(tb), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(b)", OpX, TOKEN, id(tb), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell(
            "chargeToken(b) with value",
            OpY,
            "query($id: ID!) { chargeToken(id: $id) { token } }",
            id(tb),
            Data(json!({ "chargeToken": { "token": w.tokval_b } })),
        ),
        // nested edges
        cell("session.chargeToken(s).token", OpX, SESSION_TOKENS, id(sa), Data(session_tokens_a(json!(w.tokval_a)))),
        cell("session.chargeToken(s).token", AppA, SESSION_TOKENS, id(sa), Data(session_tokens_a(Value::Null))),
        cell("session.chargeToken(s).token", Admin, SESSION_TOKENS, id(sa), Data(session_tokens_a(Value::Null))),
        cell("session.chargeToken(s)", AppB, SESSION_TOKENS, id(sa), Data(nothing("parkingSession")))
            .same_as_missing("id"),
        cell("session.chargeToken(s)", OpY, SESSION_TOKENS, id(sa), Data(nothing("parkingSession")))
            .same_as_missing("id"),
        cell(
            "session.customer.card",
            OpX,
            SESSION_CUSTOMER,
            id(sa),
            Data(
                json!({ "parkingSession": { "customer": { "externalRef": "alice-of-a", "processorCustomerId": null, "card": { "brand": "Visa", "last4": "4242" } } } }),
            ),
        ),
        cell(
            "session.customer.card",
            AppA,
            SESSION_CUSTOMER,
            id(sa),
            Data(
                json!({ "parkingSession": { "customer": { "externalRef": "alice-of-a", "processorCustomerId": w.pcus_a, "card": { "brand": "Visa", "last4": "4242" } } } }),
            ),
        ),
        cell("session.customer.card", OpY, SESSION_CUSTOMER, id(sa), Data(nothing("parkingSession")))
            .same_as_missing("id"),
        cell(
            "session.app without processor account",
            OpX,
            SESSION_APP,
            id(sa),
            Data(json!({ "parkingSession": { "app": { "id": a, "processorAccountId": null } } })),
        ),
        cell("app(A).links", Admin, APP_LINKS, id(a), Data(json!({ "app": links(&[ax, az]) }))),
        cell("app(A).links", AppA, APP_LINKS, id(a), Data(json!({ "app": links(&[ax, az]) }))),
        cell("app(A).links only its own", OpX, APP_LINKS, id(a), Data(json!({ "app": links(&[ax]) }))),
        cell("app(A).links only its own", OpZ, APP_LINKS, id(a), Data(json!({ "app": links(&[az]) }))),
        cell("app(A).links", AppB, APP_LINKS, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("app(A).links", OpY, APP_LINKS, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("operator(X).links", Admin, OPERATOR_LINKS, id(x), Data(json!({ "operator": links(&[ax]) }))),
        cell("operator(X).links", OpX, OPERATOR_LINKS, id(x), Data(json!({ "operator": links(&[ax]) }))),
        cell("operator(X).links", AppA, OPERATOR_LINKS, id(x), Data(json!({ "operator": links(&[ax]) }))),
        cell(
            "operator(X).links none of B's",
            AppB,
            OPERATOR_LINKS,
            id(x),
            Data(json!({ "operator": no_links.clone() })),
        ),
        cell(
            "operator(X).links of another operator",
            OpY,
            OPERATOR_LINKS,
            id(x),
            Data(json!({ "operator": no_links.clone() })),
        ),
        cell(
            "operator(X).links of another operator",
            OpZ,
            OPERATOR_LINKS,
            id(x),
            Data(json!({ "operator": no_links.clone() })),
        ),
        cell("operator(Y).links", AppA, OPERATOR_LINKS, id(y), Data(json!({ "operator": no_links.clone() }))),
        cell(
            "link(AX).app.links / operator.links",
            OpX,
            LINK_BOTH_SIDES,
            id(ax),
            Data(json!({ "link": { "app": links(&[ax]), "operator": links(&[ax]) } })),
        ),
        cell(
            "link(AX).app.links / operator.links",
            AppA,
            LINK_BOTH_SIDES,
            id(ax),
            Data(json!({ "link": { "app": links(&[ax, az]), "operator": links(&[ax]) } })),
        ),
        cell(
            "token.session",
            AppA,
            "query($id: ID!) { chargeToken(id: $id) { session { id } } }",
            id(ta),
            Data(json!({ "chargeToken": { "session": { "id": sa } } })),
        ),
    ];

    // Without valid credentials every query is UNAUTHENTICATED, whatever it names.
    for who in NOBODY {
        cells.extend([
            cell("viewer", who, VIEWER, none.clone(), Code("UNAUTHENTICATED")),
            cell("app(A)", who, APP, id(a), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("apps", who, APPS, none.clone(), Code("UNAUTHENTICATED")),
            cell("operator(X)", who, OPERATOR, id(x), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("operators", who, OPERATORS, none.clone(), Code("UNAUTHENTICATED")),
            cell("link(AX)", who, LINK, id(ax), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("links(appId: A)", who, LINKS, json!({ "a": a }), Code("UNAUTHENTICATED")).same_as_missing("a"),
            cell("customer(a)", who, CUSTOMER, id(ca), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("customers", who, CUSTOMERS, none.clone(), Code("UNAUTHENTICATED")),
            cell("parkingSession(a)", who, SESSION, id(sa), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("parkingSessions", who, SESSIONS, none.clone(), Code("UNAUTHENTICATED")),
            cell("chargeToken(a)", who, TOKEN, id(ta), Code("UNAUTHENTICATED")).same_as_missing("id"),
        ]);
    }
    cells
}

#[tokio::test]
async fn query_matrix() {
    let w = worlds().await;
    let cells = query_cells(&w);
    run_concurrently(&w, cells).await;
}

/// The read-only column: every query answers a `scope: "read"` token exactly as it
/// answers the full token of the same role.
#[tokio::test]
async fn query_matrix_read_only() {
    let w = worlds().await;
    let mut cells = query_cells(&w);
    cells.iter_mut().for_each(|cell| cell.read_only = true);
    run_concurrently(&w, cells).await;
    for (who, role) in [(Admin, "ADMIN"), (AppA, "APP"), (OpX, "OPERATOR")] {
        let response = w.ask_scoped(who, true, "{ viewer { role scopes } }", json!({})).await;
        assert_eq!(response["data"]["viewer"], json!({ "role": role, "scopes": ["read"] }), "{response}");
        let response = w.ask(who, "{ viewer { scopes } }", json!({})).await;
        assert_eq!(response["data"]["viewer"]["scopes"], json!(["read", "write"]), "{response}");
    }
}

// ---------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------

const CREATE_APP: &str = "mutation { createApp(input: {name: \"Intruder\"}) { app { id } } }";
const CREATE_OPERATOR: &str = "mutation { createOperator(input: {name: \"Intruder\"}) { operator { id } } }";
const LINK_OPERATOR: &str =
    "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id status } } }";
const COMPLETE_LINK: &str =
    "mutation($l: ID!) { completeLink(input: {linkId: $l, authorizationCode: \"ac_guess\"}) { link { id status } } }";
const UNLINK: &str = "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { id status } } }";
const ACCEPT_ACCOUNT: &str = "mutation($l: ID!) { acceptLinkAccount(input: {linkId: $l}) { link { id status } } }";
const TOKENIZE: &str = "mutation { tokenizeCustomer(input: {externalRef: \"new-user\", cardToken: \"tok_visa\"}) { created customer { externalRef } } }";
const START: &str = "mutation($c: ID!, $o: ID!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: \"Z-9\", vehiclePlate: \"NEW-1\", idempotencyKey: \"matrix\"}) { replayed session { status } }
}";
const END: &str = "mutation($s: ID!) { endParkingSession(input: {sessionId: $s, amount: {amount: 250, currency: \"usd\"}}) { session { id status amount { amount currency } } } }";
const CHARGE: &str = "mutation($s: ID!) { chargeSession(input: {sessionId: $s}) { succeeded session { id status } } }";
const REISSUE: &str = "mutation($s: ID!) { reissueChargeToken(input: {sessionId: $s}) { chargeToken { id token } } }";
const ACKNOWLEDGE: &str =
    "mutation($t: ID!) { acknowledgeChargeToken(input: {chargeTokenId: $t}) { chargeToken { id status } } }";

/// Everything a mutation could change, as the admin sees it.
const SNAPSHOT: &str = "{
  apps { totalCount } operators { totalCount }
  links { nodes { id status updatedAt failureReason } }
  customers { nodes { id updatedAt card { last4 } } }
  parkingSessions { nodes { id status endedAt amount { amount } chargeTokens { id status acknowledgedAt voidedAt } } }
}";

fn denied_mutation_cells(w: &Worlds) -> Vec<Cell> {
    let (a, b, x, y) = (w.app_a, w.app_b, w.op_x, w.op_y);
    let (ax, by, az) = (w.link_ax, w.link_by, w.link_az);
    let (ca, cb, sa, sb, ta, tb) = (w.cust_a, w.cust_b, w.sess_a, w.sess_b, w.tok_a, w.tok_b);
    let none = json!({});
    let l = |v: Uuid| json!({ "l": v });
    let s = |v: Uuid| json!({ "s": v });
    let t = |v: Uuid| json!({ "t": v });
    let mut cells = vec![
        // createApp / createOperator: admin only
        cell("createApp", AppA, CREATE_APP, none.clone(), Code("FORBIDDEN")),
        cell("createApp", OpX, CREATE_APP, none.clone(), Code("FORBIDDEN")),
        cell("createOperator", AppB, CREATE_OPERATOR, none.clone(), Code("FORBIDDEN")),
        cell("createOperator", OpY, CREATE_OPERATOR, none.clone(), Code("FORBIDDEN")),
        // linkOperator: admin or the app itself; another app's id answers like a missing one
        cell("linkOperator(A, X)", AppB, LINK_OPERATOR, json!({ "a": a, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("a"),
        cell("linkOperator(A, Y)", AppB, LINK_OPERATOR, json!({ "a": a, "o": y }), Code("NOT_FOUND"))
            .same_as_missing("a"),
        cell("linkOperator(B, X)", AppA, LINK_OPERATOR, json!({ "a": b, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("a"),
        cell("linkOperator(A, X)", OpX, LINK_OPERATOR, json!({ "a": a, "o": x }), Code("FORBIDDEN"))
            .same_as_missing("a"),
        cell("linkOperator(B, Y)", OpX, LINK_OPERATOR, json!({ "a": b, "o": y }), Code("FORBIDDEN"))
            .same_as_missing("a"),
        cell(
            "linkOperator(A, missing)",
            Admin,
            LINK_OPERATOR,
            json!({ "a": a, "o": Uuid::new_v4() }),
            Code("NOT_FOUND"),
        ),
        cell(
            "linkOperator(missing, X)",
            Admin,
            LINK_OPERATOR,
            json!({ "a": Uuid::new_v4(), "o": x }),
            Code("NOT_FOUND"),
        ),
        // completeLink / unlinkOperator on someone else's link
        cell("completeLink(AX)", AppB, COMPLETE_LINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("completeLink(AX)", OpY, COMPLETE_LINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("completeLink(AZ)", OpX, COMPLETE_LINK, l(az), Code("NOT_FOUND")).same_as_missing("l"),
        cell("completeLink(BY)", AppA, COMPLETE_LINK, l(by), Code("NOT_FOUND")).same_as_missing("l"),
        // Only the link's operator (or an admin) authorizes: never the app that asked.
        cell("completeLink(AZ) by the app", AppA, COMPLETE_LINK, l(az), Code("FORBIDDEN")),
        cell("completeLink(AX) already active, by the app", AppA, COMPLETE_LINK, l(ax), Code("FORBIDDEN")),
        // acceptLinkAccount: admin only; a link without a held account is a conflict.
        cell("acceptLinkAccount(AZ)", AppA, ACCEPT_ACCOUNT, l(az), Code("FORBIDDEN")).same_as_missing("l"),
        cell("acceptLinkAccount(AZ)", OpZ, ACCEPT_ACCOUNT, l(az), Code("FORBIDDEN")).same_as_missing("l"),
        cell("acceptLinkAccount(AZ) holds no account", Admin, ACCEPT_ACCOUNT, l(az), Code("CONFLICT")),
        cell("acceptLinkAccount(AX) active", Admin, ACCEPT_ACCOUNT, l(ax), Code("CONFLICT")),
        cell("acceptLinkAccount(missing)", Admin, ACCEPT_ACCOUNT, l(Uuid::new_v4()), Code("NOT_FOUND")),
        cell("unlinkOperator(AX)", AppB, UNLINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(AX)", OpY, UNLINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(AX)", OpZ, UNLINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(BY)", AppA, UNLINK, l(by), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(BY)", OpX, UNLINK, l(by), Code("NOT_FOUND")).same_as_missing("l"),
        // tokenizeCustomer: role app only
        cell("tokenizeCustomer", Admin, TOKENIZE, none.clone(), Code("FORBIDDEN")),
        cell("tokenizeCustomer", OpX, TOKENIZE, none.clone(), Code("FORBIDDEN")),
        // startParkingSession: role app, its own customer
        cell("startParkingSession(cust b @ X)", AppA, START, json!({ "c": cb, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ Y)", AppB, START, json!({ "c": ca, "o": y }), Code("NOT_FOUND"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ X)", AppB, START, json!({ "c": ca, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ X)", Admin, START, json!({ "c": ca, "o": x }), Code("FORBIDDEN"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ X)", OpX, START, json!({ "c": ca, "o": x }), Code("FORBIDDEN"))
            .same_as_missing("c"),
        cell("startParkingSession(own cust @ unlinked Y)", AppA, START, json!({ "c": ca, "o": y }), Code("CONFLICT")),
        // endParkingSession / chargeSession / reissueChargeToken on another tenant's session
        cell("endParkingSession(a)", AppB, END, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(a)", OpY, END, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(a)", OpZ, END, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(b)", AppA, END, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(b)", OpX, END, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a)", AppB, CHARGE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a)", OpY, CHARGE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a)", OpZ, CHARGE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(b)", OpX, CHARGE, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a) by its own app", AppA, CHARGE, s(sa), Code("FORBIDDEN")),
        cell("chargeSession(b) by its own app", AppB, CHARGE, s(sb), Code("FORBIDDEN")),
        cell("reissueChargeToken(a)", AppB, REISSUE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("reissueChargeToken(a)", OpY, REISSUE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("reissueChargeToken(b)", AppA, REISSUE, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("reissueChargeToken(b)", OpX, REISSUE, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        // acknowledgeChargeToken: role operator, its own token
        cell("acknowledgeChargeToken(a)", OpY, ACKNOWLEDGE, t(ta), Code("NOT_FOUND")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a)", OpZ, ACKNOWLEDGE, t(ta), Code("NOT_FOUND")).same_as_missing("t"),
        cell("acknowledgeChargeToken(b)", OpX, ACKNOWLEDGE, t(tb), Code("NOT_FOUND")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a) by its app", AppA, ACKNOWLEDGE, t(ta), Code("FORBIDDEN")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a)", AppB, ACKNOWLEDGE, t(ta), Code("FORBIDDEN")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a)", Admin, ACKNOWLEDGE, t(ta), Code("FORBIDDEN")).same_as_missing("t"),
    ];
    for who in NOBODY {
        cells.extend([
            cell("createApp", who, CREATE_APP, none.clone(), Code("UNAUTHENTICATED")),
            cell("createOperator", who, CREATE_OPERATOR, none.clone(), Code("UNAUTHENTICATED")),
            cell("linkOperator(A, X)", who, LINK_OPERATOR, json!({ "a": a, "o": x }), Code("UNAUTHENTICATED"))
                .same_as_missing("a"),
            cell("completeLink(AX)", who, COMPLETE_LINK, l(ax), Code("UNAUTHENTICATED")).same_as_missing("l"),
            cell("unlinkOperator(AX)", who, UNLINK, l(ax), Code("UNAUTHENTICATED")).same_as_missing("l"),
            cell("acceptLinkAccount(AZ)", who, ACCEPT_ACCOUNT, l(az), Code("UNAUTHENTICATED")).same_as_missing("l"),
            cell("tokenizeCustomer", who, TOKENIZE, none.clone(), Code("UNAUTHENTICATED")),
            cell("startParkingSession", who, START, json!({ "c": ca, "o": x }), Code("UNAUTHENTICATED"))
                .same_as_missing("c"),
            cell("endParkingSession(a)", who, END, s(sa), Code("UNAUTHENTICATED")).same_as_missing("s"),
            cell("chargeSession(a)", who, CHARGE, s(sa), Code("UNAUTHENTICATED")).same_as_missing("s"),
            cell("reissueChargeToken(a)", who, REISSUE, s(sa), Code("UNAUTHENTICATED")).same_as_missing("s"),
            cell("acknowledgeChargeToken(a)", who, ACKNOWLEDGE, t(ta), Code("UNAUTHENTICATED")).same_as_missing("t"),
        ]);
    }
    cells
}

/// The parties that may act do (in this order: later cells depend on earlier ones).
fn allowed_mutation_cells(w: &Worlds) -> Vec<Cell> {
    let (a, b, x, y) = (w.app_a, w.app_b, w.op_x, w.op_y);
    let (ax, by, az) = (w.link_ax, w.link_by, w.link_az);
    let (ca, sa, sb, ta) = (w.cust_a, w.sess_a, w.sess_b, w.tok_a);
    let none = json!({});
    let link = |field: &str, id: Uuid, status: &str| json!({ field: { "link": { "id": id, "status": status } } });
    let ended = |s: Uuid| json!({ "endParkingSession": { "session": { "id": s, "status": "ENDED", "amount": { "amount": 250, "currency": "USD" } } } });
    let charged =
        |s: Uuid| json!({ "chargeSession": { "succeeded": true, "session": { "id": s, "status": "CHARGED" } } });
    vec![
        cell("createApp", Admin, CREATE_APP, none.clone(), Present("/createApp/app/id")),
        cell("createOperator", Admin, CREATE_OPERATOR, none.clone(), Present("/createOperator/operator/id")),
        cell(
            "linkOperator(A, X) already active",
            AppA,
            LINK_OPERATOR,
            json!({ "a": a, "o": x }),
            Data(link("linkOperator", ax, "ACTIVE")),
        ),
        cell(
            "linkOperator(B, Y) already active",
            Admin,
            LINK_OPERATOR,
            json!({ "a": b, "o": y }),
            Data(link("linkOperator", by, "ACTIVE")),
        ),
        cell(
            "completeLink(AX) already active",
            OpX,
            COMPLETE_LINK,
            json!({ "l": ax }),
            Data(link("completeLink", ax, "ACTIVE")),
        ),
        cell(
            "tokenizeCustomer",
            AppA,
            TOKENIZE,
            none.clone(),
            Data(json!({ "tokenizeCustomer": { "created": true, "customer": { "externalRef": "new-user" } } })),
        ),
        cell(
            "startParkingSession",
            AppA,
            START,
            json!({ "c": ca, "o": x }),
            Data(json!({ "startParkingSession": { "replayed": false, "session": { "status": "ACTIVE" } } })),
        ),
        // Authorized, then stopped by the state: the token is still valid / the session active.
        cell("reissueChargeToken(a) passes authorization", AppA, REISSUE, json!({ "s": sa }), Code("CONFLICT")),
        cell("reissueChargeToken(a) passes authorization", OpX, REISSUE, json!({ "s": sa }), Code("CONFLICT")),
        cell("chargeSession(a) passes authorization", OpX, CHARGE, json!({ "s": sa }), Code("CONFLICT")),
        cell(
            "acknowledgeChargeToken(a)",
            OpX,
            ACKNOWLEDGE,
            json!({ "t": ta }),
            Data(json!({ "acknowledgeChargeToken": { "chargeToken": { "id": ta, "status": "ACKNOWLEDGED" } } })),
        ),
        cell("endParkingSession(a) by its operator", OpX, END, json!({ "s": sa }), Data(ended(sa))),
        cell("endParkingSession(a) again by its app", AppA, END, json!({ "s": sa }), Data(ended(sa))),
        cell("endParkingSession(b) by admin", Admin, END, json!({ "s": sb }), Data(ended(sb))),
        cell("chargeSession(a) by its operator", OpX, CHARGE, json!({ "s": sa }), Data(charged(sa))),
        cell("chargeSession(b) by admin", Admin, CHARGE, json!({ "s": sb }), Data(charged(sb))),
        cell(
            "unlinkOperator(AZ) by its operator",
            OpZ,
            UNLINK,
            json!({ "l": az }),
            Data(link("unlinkOperator", az, "REVOKED")),
        ),
        cell(
            "unlinkOperator(BY) by its app",
            AppB,
            UNLINK,
            json!({ "l": by }),
            Data(link("unlinkOperator", by, "REVOKED")),
        ),
    ]
}

#[tokio::test]
async fn mutation_matrix() {
    let w = worlds().await;
    let admin = w.t.admin();
    let before = w.t.ok(&admin, SNAPSHOT, json!({})).await;
    // Concurrently: a refusal that wrongly changed something shows in the snapshot.
    run_concurrently(&w, denied_mutation_cells(&w)).await;
    // No refused mutation changed anything.
    let after = w.t.ok(&admin, SNAPSHOT, json!({})).await;
    assert_eq!(before, after, "a refused mutation changed state");
    run(&w, allowed_mutation_cells(&w)).await;
}

/// The read-only column: every mutation, allowed or not for the role, is FORBIDDEN to a
/// `scope: "read"` token (callers without a valid token stay UNAUTHENTICATED), the
/// message names the missing scope, and nothing is written.
#[tokio::test]
async fn mutation_matrix_read_only() {
    let w = worlds().await;
    let admin = w.t.admin();
    let before = w.t.ok(&admin, SNAPSHOT, json!({})).await;
    let mut cells = denied_mutation_cells(&w);
    cells.extend(allowed_mutation_cells(&w));
    for cell in cells.iter_mut().filter(|cell| !NOBODY.contains(&cell.who)) {
        cell.read_only = true;
        cell.expect = Code("FORBIDDEN");
        cell.as_missing = None;
    }
    run_concurrently(&w, cells).await;
    let response = w.ask_scoped(AppA, true, CREATE_OPERATOR, json!({})).await;
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("write scope"), "{message}");
    assert_eq!(w.t.ok(&admin, SNAPSHOT, json!({})).await, before, "a read-only token changed state");
}

// ---------------------------------------------------------------------------------------
// Leaks
// ---------------------------------------------------------------------------------------

/// Everything a caller can ask for at once, every edge followed.
const EVERYTHING: &str = "{
  viewer { role appId operatorId }
  apps { nodes { id name publishableKey processorAccountId links { nodes { id } } } }
  operators { nodes { id name links { nodes { id app { id } connectedAccountId } } } }
  links { nodes { id app { id } operator { id } authorizationUrl connectedAccountId } }
  customers { nodes { id externalRef processorCustomerId card { last4 } } }
  parkingSessions { nodes { id zone vehiclePlate app { id publishableKey } customer { id externalRef processorCustomerId }
    link { id connectedAccountId } chargeToken { id token session { id } } chargeTokens { id token } } }
}";

/// Every by-id read and every mutation, aimed at the other world's objects.
const PROBES: [&str; 16] = [
    "query($app: ID!) { app(id: $app) { id name publishableKey processorAccountId links { nodes { id } } } }",
    "query($link: ID!) { link(id: $link) { id app { id } operator { id } connectedAccountId authorizationUrl } }",
    "query($app: ID!) { links(appId: $app) { totalCount nodes { id } } }",
    "query($customer: ID!) { customer(id: $customer) { id externalRef processorCustomerId } }",
    "query($session: ID!) { parkingSession(id: $session) { id zone vehiclePlate chargeToken { id token } } }",
    "query($token: ID!) { chargeToken(id: $token) { id token session { id } } }",
    "mutation($app: ID!, $operator: ID!) { linkOperator(input: {appId: $app, operatorId: $operator}) { link { id } } }",
    "mutation($link: ID!) { completeLink(input: {linkId: $link, authorizationCode: \"ac_x\"}) { link { id connectedAccountId } } }",
    "mutation($link: ID!) { unlinkOperator(input: {linkId: $link}) { link { id } } }",
    "mutation($customer: ID!, $operator: ID!) { startParkingSession(input: {customerId: $customer, operatorId: $operator, zone: \"Z\", vehiclePlate: \"P\", idempotencyKey: \"probe\"}) { session { id } } }",
    "mutation($session: ID!) { endParkingSession(input: {sessionId: $session, amount: {amount: 100, currency: \"usd\"}}) { session { id } } }",
    "mutation($session: ID!) { chargeSession(input: {sessionId: $session}) { session { id } } }",
    "mutation($session: ID!) { reissueChargeToken(input: {sessionId: $session}) { chargeToken { id token } } }",
    "mutation($token: ID!) { acknowledgeChargeToken(input: {chargeTokenId: $token}) { chargeToken { id token } } }",
    "mutation { tokenizeCustomer(input: {externalRef: \"alice-of-a\", cardToken: \"tok_visa\"}) { customer { id } } }",
    "mutation { tokenizeCustomer(input: {externalRef: \"bob-of-b\", cardToken: \"tok_visa\"}) { customer { id } } }",
];

/// Asks everything as `who`, aiming the probes at the given world; returns all the
/// response bodies in one string.
async fn transcript(w: &Worlds, who: Who, target: Value) -> String {
    use futures_util::StreamExt;
    let everything = w.ask(who, EVERYTHING, json!({})).await;
    let probes: Vec<Value> = futures_util::stream::iter(PROBES.iter().map(|probe| w.ask(who, probe, target.clone())))
        .buffered(8)
        .collect()
        .await;
    std::iter::once(everything).chain(probes).map(|response| response.to_string()).collect()
}

#[tokio::test]
async fn other_tenants_never_see_foreign_ids_or_token_values() {
    let w = worlds().await;
    let world_a = json!({ "app": w.app_a, "operator": w.op_x, "link": w.link_ax, "customer": w.cust_a, "session": w.sess_a, "token": w.tok_a });
    let world_b = json!({ "app": w.app_b, "operator": w.op_y, "link": w.link_by, "customer": w.cust_b, "session": w.sess_b, "token": w.tok_b });
    // Operator ids are a public directory; everything else of a world is its own.
    let secrets_a: Vec<String> = vec![
        w.app_a.to_string(),
        w.link_ax.to_string(),
        w.link_az.to_string(),
        w.cust_a.to_string(),
        w.sess_a.to_string(),
        w.tok_a.to_string(),
        w.tokval_a.clone(),
        w.acct_a.clone(),
        w.pk_a.clone(),
        w.pcus_a.clone(),
        w.conn_ax.clone(),
        "ZONE-A".into(),
        "PLATE-A".into(),
    ];
    let secrets_b: Vec<String> = vec![
        w.app_b.to_string(),
        w.link_by.to_string(),
        w.cust_b.to_string(),
        w.sess_b.to_string(),
        w.tok_b.to_string(),
        w.tokval_b.clone(),
        w.acct_b.clone(),
        w.pk_b.clone(),
        w.pcus_b.clone(),
        w.conn_by.clone(),
        "ZONE-B".into(),
        "PLATE-B".into(),
    ];
    let leaked = |text: &str, secrets: &[String]| -> Vec<String> {
        secrets.iter().filter(|s| text.contains(s.as_str())).cloned().collect()
    };

    // World B's callers, aimed at world A, and the other way round.
    for (who, target, foreign) in [
        (AppB, &world_a, &secrets_a),
        (OpY, &world_a, &secrets_a),
        (AppA, &world_b, &secrets_b),
        (OpX, &world_b, &secrets_b),
    ] {
        let text = transcript(&w, who, target.clone()).await;
        assert_eq!(leaked(&text, foreign), Vec::<String>::new(), "{who:?} saw another tenant's data:\n{text}");
    }

    // Operator Z is linked to app A (pending) and sees app A, but nothing of A's
    // dealings with operator X.
    let text = transcript(&w, OpZ, world_a.clone()).await;
    assert!(text.contains(&w.app_a.to_string()), "Z sees the app it is linked to");
    let a_with_x: Vec<String> = secrets_a
        .iter()
        .filter(|s| ![w.app_a.to_string(), w.link_az.to_string(), w.pk_a.clone()].contains(s))
        .cloned()
        .collect();
    assert_eq!(leaked(&text, &a_with_x), Vec::<String>::new(), "OpZ saw A's business with X:\n{text}");
    assert_eq!(leaked(&text, &secrets_b), Vec::<String>::new(), "OpZ saw world B:\n{text}");

    // Callers without valid credentials see nothing of either world.
    let all: Vec<String> = secrets_a.iter().chain(&secrets_b).cloned().collect();
    for who in NOBODY {
        let text = transcript(&w, who, world_a.clone()).await;
        assert_eq!(leaked(&text, &all), Vec::<String>::new(), "{who:?} saw data:\n{text}");
    }

    // Token values: only the operator each was issued to, even for callers that see the
    // token itself (its app, the admin).
    for who in [Admin, AppA, AppB, OpY, OpZ] {
        let text = w.ask(who, EVERYTHING, json!({})).await.to_string();
        assert!(!text.contains(&w.tokval_a), "{who:?} saw session A's token value: {text}");
    }
    for who in [Admin, AppA, AppB, OpX, OpZ] {
        let text = w.ask(who, EVERYTHING, json!({})).await.to_string();
        assert!(!text.contains(&w.tokval_b), "{who:?} saw session B's token value: {text}");
    }

    // The search is meaningful: the same query shows each party its own.
    let own = w.ask(OpX, EVERYTHING, json!({})).await.to_string();
    for mine in [&w.tokval_a, &w.sess_a.to_string(), &w.cust_a.to_string(), &w.conn_ax] {
        assert!(own.contains(mine.as_str()), "OpX should see {mine}: {own}");
    }
    let own = w.ask(AppA, EVERYTHING, json!({})).await.to_string();
    for mine in [&w.acct_a, &w.pcus_a, &w.tok_a.to_string(), &w.link_az.to_string()] {
        assert!(own.contains(mine.as_str()), "AppA should see {mine}: {own}");
    }
}
