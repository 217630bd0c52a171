//! The Stripe fault matrix: every fault of the Stripe test double on every Stripe call
//! curbpay makes, each through the mutation (or OAuth callback) that makes the call.
//!
//! One test per call; it runs that call's rows, each on fresh state (its own server,
//! database and double). For every cell it checks:
//! - the outcome: `ok` (with the mutation's data checked) or the exact `extensions.code`
//!   (for `/connect/callback`, the code behind the page's HTTP status);
//! - the requests to that call, in the double's log order, as `"<status> <key>[ replayed]"`:
//!   status 0 is a dropped connection; `a1`, `a2` name the Idempotency-Key's attempt
//!   (`…:a1`, `…:a2`, one base for all), `-` no key;
//! - the reconciliation look-ups (`GET /v1/…/search`, or the list of recent objects);
//! - whether curbpay recorded the mutation as done: exactly when it answered `ok`;
//! - when the first run fails, that a retry of the same mutation succeeds, and its requests;
//! - how many objects of the call's kind exist at Stripe in the end.
//!
//! Expectations are what README "Stripe mode" → "Retries and idempotency" promises.
//! Run with `--nocapture` to see the whole matrix.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use curbpay::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::stripe::{CREATE_APP, Stripe, consent, credentials, stripe_mode};
use crate::util::stripe::{Fault, Recorded};
use crate::util::{CHARGE_SESSION, END_SESSION, START_SESSION, TestApp, code_of, id};

/// `CURBPAY_STRIPE_MAX_ATTEMPTS` in these tests (the default).
const MAX_ATTEMPTS: usize = 4;
/// A persistent fault: more of them than attempts.
const PERSISTENT: usize = MAX_ATTEMPTS + 1;

// ------------------------------------------------------------------------------ Stripe mode

const TOKENIZE: &str = "mutation($r: String!, $t: String!) {
  tokenizeCustomer(input: {externalRef: $r, cardToken: $t}) { created customer { id card { last4 } } }
}";
const LINK_OPERATOR: &str =
    "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id authorizationUrl } } }";
const UNLINK: &str = "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { status } } }";
const REISSUE: &str = "mutation($s: ID!) { reissueChargeToken(input: {sessionId: $s}) { chargeToken { status } } }";

/// `SELECT count(*) AS n …` on the test's database.
async fn count(t: &TestApp, query: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&t.db.url).await.unwrap();
    let row: Count = diesel_async::RunQueryDsl::get_result(diesel::sql_query(query), &mut conn).await.unwrap();
    row.n
}

async fn execute(t: &TestApp, statement: &str) {
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&t.db.url).await.unwrap();
    diesel_async::RunQueryDsl::execute(diesel::sql_query(statement), &mut conn).await.unwrap();
}

// ------------------------------------------------------------------------------ mutations

/// The mutation that makes a Stripe call, with the state it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mutation {
    /// `createApp` with Stripe credentials.
    CreateApp,
    /// `tokenizeCustomer` for a new `externalRef`, `tok_visa`.
    TokenizeNew,
    /// `tokenizeCustomer` again for `user-1` (made with `tok_visa`): `tok_mastercard`.
    TokenizeAgain,
    /// `startParkingSession` for a customer tokenized with `card`.
    Start { card: &'static str },
    /// `reissueChargeToken` after the session's token expired.
    Reissue,
    /// `chargeSession` of an ended session of a customer tokenized with `card`.
    Charge { card: &'static str },
    /// `GET /connect/callback` after the consent page; retried by consenting again.
    Callback,
    /// `unlinkOperator` of an active link.
    Unlink,
}

/// One cell's state: the server, the double, and the ids the mutation needs.
struct Scene {
    s: Stripe,
    app_id: Uuid,
    app_token: String,
    operator_id: Uuid,
    operator_token: String,
    customer_id: Uuid,
    link_id: Uuid,
    /// The operator's Stripe account.
    account: String,
    authorization_url: String,
    /// Where the consent page redirected: our `/connect/callback` with state and code.
    callback: String,
    session_id: Uuid,
}

/// `ok`, or the error's code; `ok, but …` when the data is not what it should be.
fn outcome(response: &Value, check: impl FnOnce(&Value) -> Result<(), String>) -> String {
    if response.get("errors").is_some() {
        return code_of(response).unwrap_or_else(|| format!("an error without a code: {response}"));
    }
    match check(&response["data"]) {
        Ok(()) => "ok".to_owned(),
        Err(wrong) => format!("ok, but {wrong}"),
    }
}

fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// The code behind a `/connect/callback` page's status (`http.rs` `status_of`).
fn page_outcome(status: StatusCode, body: &str) -> String {
    match status.as_u16() {
        200 => "ok",
        400 => "BAD_USER_INPUT",
        401 => "UNAUTHENTICATED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        409 => "CONFLICT",
        502 => "PROCESSOR_ERROR",
        503 => "UNAVAILABLE",
        500 => "INTERNAL",
        other => return format!("HTTP {other}: {body}"),
    }
    .to_owned()
}

impl Scene {
    async fn create_app(&mut self) {
        let t = &self.s.t;
        let data = t.ok(&t.admin(), CREATE_APP, json!({ "s": credentials(&self.s.platform), "fee": 250 })).await;
        self.app_id = id(&data["createApp"]["app"]["id"]);
        self.app_token = t.token(Role::App(self.app_id));
    }

    async fn create_operator_and_link(&mut self) {
        let t = &self.s.t;
        self.operator_id = t.create_operator("Garages").await;
        self.operator_token = t.token(Role::Operator(self.operator_id));
        let data = t.ok(&t.admin(), LINK_OPERATOR, json!({ "a": self.app_id, "o": self.operator_id })).await;
        self.link_id = id(&data["linkOperator"]["link"]["id"]);
        self.authorization_url = data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap().to_owned();
        self.account = format!("acct_op{}", &Uuid::new_v4().simple().to_string()[..12]);
        self.s.double.next_authorization(&self.account);
        self.callback = consent(&self.authorization_url).await;
    }

    async fn complete_link(&self) {
        let (status, body, _) = self.s.t.follow(&self.callback).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn tokenize(&mut self, card: &str) {
        let data = self.s.t.ok(&self.app_token, TOKENIZE, json!({ "r": "user-1", "t": card })).await;
        self.customer_id = id(&data["tokenizeCustomer"]["customer"]["id"]);
    }

    async fn start_session(&mut self) {
        let variables =
            json!({ "c": self.customer_id, "o": self.operator_id, "k": "fault-cell", "z": "Z-1", "p": "PLATE" });
        let data = self.s.t.ok(&self.app_token, START_SESSION, variables).await;
        self.session_id = id(&data["startParkingSession"]["session"]["id"]);
    }
}

impl Mutation {
    /// Fresh state, up to the mutation.
    async fn setup(self) -> Scene {
        let mut scene = Scene {
            s: stripe_mode().await,
            app_id: Uuid::nil(),
            app_token: String::new(),
            operator_id: Uuid::nil(),
            operator_token: String::new(),
            customer_id: Uuid::nil(),
            link_id: Uuid::nil(),
            account: String::new(),
            authorization_url: String::new(),
            callback: String::new(),
            session_id: Uuid::nil(),
        };
        if self == Mutation::CreateApp {
            return scene;
        }
        scene.create_app().await;
        match self {
            Mutation::CreateApp | Mutation::TokenizeNew => {}
            Mutation::TokenizeAgain => scene.tokenize("tok_visa").await,
            Mutation::Callback => scene.create_operator_and_link().await,
            Mutation::Unlink | Mutation::Start { .. } | Mutation::Reissue | Mutation::Charge { .. } => {
                scene.create_operator_and_link().await;
                scene.complete_link().await;
                let card = match self {
                    Mutation::Start { card } | Mutation::Charge { card } => card,
                    _ => "tok_visa",
                };
                scene.tokenize(card).await;
                match self {
                    Mutation::Reissue => {
                        scene.start_session().await;
                        execute(&scene.s.t, "UPDATE charge_tokens SET expires_at = now() - interval '1 second'").await;
                    }
                    Mutation::Charge { .. } => {
                        scene.start_session().await;
                        let end = json!({ "s": scene.session_id, "a": 700, "c": "usd" });
                        scene.s.t.ok(&scene.app_token, END_SESSION, end).await;
                    }
                    _ => {}
                }
            }
        }
        scene
    }

    /// Runs the mutation (`retry`: again, after a failure); `ok` or the code.
    async fn run(self, scene: &mut Scene, retry: bool) -> String {
        let t = &scene.s.t;
        match self {
            Mutation::CreateApp => {
                let response = t
                    .post(Some(&t.admin()), CREATE_APP, json!({ "s": credentials(&scene.s.platform), "fee": 250 }))
                    .await;
                outcome(&response, |data| {
                    let account = &data["createApp"]["app"]["processorAccountId"];
                    expect(*account == json!(scene.s.platform.account_id), || format!("processorAccountId {account}"))
                })
            }
            Mutation::TokenizeNew | Mutation::TokenizeAgain => {
                let (card, created, last4) = match self {
                    Mutation::TokenizeNew => ("tok_visa", true, "4242"),
                    _ => ("tok_mastercard", false, "4444"),
                };
                let response = t.post(Some(&scene.app_token), TOKENIZE, json!({ "r": "user-1", "t": card })).await;
                outcome(&response, |data| {
                    let payload = &data["tokenizeCustomer"];
                    expect(payload["created"] == created && payload["customer"]["card"]["last4"] == last4, || {
                        format!("{payload} (expected created {created}, last4 {last4})")
                    })
                })
            }
            Mutation::Start { .. } => {
                let variables = json!({ "c": scene.customer_id, "o": scene.operator_id, "k": "fault-cell", "z": "Z-1", "p": "PLATE" });
                let response = t.post(Some(&scene.app_token), START_SESSION, variables).await;
                outcome(&response, |data| {
                    let payload = &data["startParkingSession"];
                    let ok = payload["replayed"] == retry && payload["session"]["chargeToken"]["status"] == "ISSUED";
                    expect(ok, || format!("{payload} (expected replayed {retry}, token ISSUED)"))
                })
            }
            Mutation::Reissue => {
                let response = t.post(Some(&scene.app_token), REISSUE, json!({ "s": scene.session_id })).await;
                outcome(&response, |data| {
                    let status = &data["reissueChargeToken"]["chargeToken"]["status"];
                    expect(*status == "ISSUED", || format!("token {status}"))
                })
            }
            Mutation::Charge { .. } => {
                let response =
                    t.post(Some(&scene.operator_token), CHARGE_SESSION, json!({ "s": scene.session_id })).await;
                outcome(&response, |data| {
                    let payload = &data["chargeSession"];
                    let ok = payload["succeeded"] == true && payload["session"]["status"] == "CHARGED";
                    expect(ok, || format!("{payload}"))
                })
            }
            Mutation::Callback => {
                if retry {
                    // The operator goes through the consent page again: a fresh code.
                    scene.s.double.next_authorization(&scene.account);
                    scene.callback = consent(&scene.authorization_url).await;
                }
                let (status, body, _) = scene.s.t.follow(&scene.callback).await;
                page_outcome(status, &body)
            }
            Mutation::Unlink => {
                let response = t.post(Some(&scene.app_token), UNLINK, json!({ "l": scene.link_id })).await;
                outcome(&response, |data| {
                    let status = &data["unlinkOperator"]["link"]["status"];
                    expect(*status == "REVOKED", || format!("link {status}"))
                })
            }
        }
    }

    /// 1 once curbpay has recorded the mutation as done, 0 before.
    async fn done(self, scene: &Scene) -> i64 {
        let query = match self {
            Mutation::CreateApp => "SELECT count(*) AS n FROM apps",
            Mutation::TokenizeNew => "SELECT count(*) AS n FROM customers WHERE processor_customer_id IS NOT NULL",
            Mutation::TokenizeAgain => "SELECT count(*) AS n FROM customers WHERE card_last4 = '4444'",
            Mutation::Start { .. } | Mutation::Reissue => {
                "SELECT count(*) AS n FROM charge_tokens WHERE status = 'ISSUED'"
            }
            Mutation::Charge { .. } => "SELECT count(*) AS n FROM parking_sessions WHERE status = 'CHARGED'",
            Mutation::Callback => "SELECT count(*) AS n FROM links WHERE status = 'ACTIVE'",
            Mutation::Unlink => "SELECT count(*) AS n FROM links WHERE status = 'REVOKED'",
        };
        count(&scene.s.t, query).await
    }

    /// What Stripe must hold in the end, beyond object counts.
    fn stripe_state(self, scene: &Scene) -> Result<(), String> {
        let connected = scene.s.double.is_connected(&scene.s.platform.account_id, &scene.account);
        match self {
            Mutation::Callback => expect(connected, || "the operator's account is not connected at Stripe".to_owned()),
            Mutation::Unlink => expect(!connected, || "the operator's account is still connected at Stripe".to_owned()),
            _ => Ok(()),
        }
    }
}

// ------------------------------------------------------------------------------ the matrix

/// The Idempotency-Key a call carries.
#[derive(Clone, Copy)]
enum Keys {
    /// None (GETs, Connect OAuth).
    None,
    /// `<prefix><row id>:a<attempt>`.
    Attempt(&'static str),
    /// Starts with the prefix, no attempt number: `a<n>` in the notation is the n-th
    /// distinct key seen.
    Plain(&'static str),
}

/// One Stripe call and the mutation that makes it.
struct Endpoint {
    name: &'static str,
    method: &'static str,
    /// A path prefix, as for `StripeDouble::inject`; requests are counted the same way.
    path: &'static str,
    mutation: Mutation,
    keys: Keys,
    /// The kind of object the call makes at Stripe (`StripeDouble::objects`).
    kind: Option<&'static str>,
    /// Where curbpay searches to reconcile an unknown outcome.
    search: Option<&'static str>,
}

/// One cell: the faults on the call and what must happen.
struct Row {
    label: String,
    faults: Vec<Fault>,
    /// `ok` or the exact code of the first run.
    result: &'static str,
    /// The requests to the call during the first run.
    calls: Vec<String>,
    /// Reconciliation searches during the first run (`None`: not checked).
    searches: Option<usize>,
    /// When the first run fails: the requests of the retry, which must succeed.
    retry: Option<Vec<String>>,
    /// Objects of the call's kind made at Stripe, in all.
    objects: usize,
    /// Stripe's search lags writes by this much.
    search_lag: Option<Duration>,
    /// Wait this long from the start of the first run before reading the log (requests
    /// still running at Stripe after curbpay gave up on them).
    settle: Option<Duration>,
}

fn row(label: &str, faults: Vec<Fault>) -> Row {
    Row {
        label: label.to_owned(),
        faults,
        result: "ok",
        calls: vec![],
        searches: Some(0),
        retry: None,
        objects: 1,
        search_lag: None,
        settle: None,
    }
}

fn strings(calls: &[&str]) -> Vec<String> {
    calls.iter().map(|c| (*c).to_owned()).collect()
}

impl Row {
    fn ok(mut self, calls: &[&str]) -> Row {
        (self.result, self.calls) = ("ok", strings(calls));
        self
    }
    fn fails(mut self, code: &'static str, calls: &[&str]) -> Row {
        (self.result, self.calls) = (code, strings(calls));
        self
    }
    fn then_retry(mut self, calls: &[&str]) -> Row {
        self.retry = Some(strings(calls));
        self
    }
    fn searches(mut self, n: Option<usize>) -> Row {
        self.searches = n;
        self
    }
    fn objects(mut self, n: usize) -> Row {
        self.objects = n;
        self
    }
}

fn once_429() -> Fault {
    Fault::Status(429)
}
fn retryable_500() -> Fault {
    Fault::ServerError { should_retry: true }
}
fn saved_500() -> Fault {
    Fault::ServerError { should_retry: false }
}

/// A fault once, then success: retried with the same key (`key`: `a1` or `-`).
fn retried_once(key: &str, made: usize) -> Vec<Row> {
    let calls = |status: &str| [format!("{status} {key}"), format!("200 {key}")];
    [
        ("429 once", once_429(), "429"),
        ("500 Should-Retry once", retryable_500(), "500"),
        ("drop once", Fault::Drop, "0"),
    ]
    .into_iter()
    .map(|(label, fault, status)| {
        let [fault_call, success] = calls(status);
        row(label, vec![fault]).ok(&[&fault_call, &success]).objects(made)
    })
    .collect()
}

/// The fault on every attempt and once more: the mutation fails with UNAVAILABLE and is
/// not recorded as done; a retry meets the last fault, then succeeds, with the same key.
fn persistent(key: &str, made: usize) -> Vec<Row> {
    [
        ("persistent 429", once_429(), "429"),
        ("persistent 500 Should-Retry", retryable_500(), "500"),
        ("persistent drop", Fault::Drop, "0"),
    ]
    .into_iter()
    .map(|(label, fault, status)| {
        let fault_call = format!("{status} {key}");
        let success = format!("200 {key}");
        row(&format!("{label} ×{PERSISTENT}"), vec![fault; PERSISTENT])
            .fails("UNAVAILABLE", &[fault_call.as_str(); MAX_ATTEMPTS])
            .then_retry(&[&fault_call, &success])
            .objects(made)
    })
    .collect()
}

/// Renders the requests to the call in the matrix notation. `names` keeps the key
/// numbering of `Keys::Plain` across the first run and the retry.
fn render(endpoint: &Endpoint, requests: &[Recorded], names: &mut Vec<String>, bases: &mut Vec<String>) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == endpoint.method && r.path.starts_with(endpoint.path))
        .map(|r| {
            let key = match (endpoint.keys, &r.idempotency_key) {
                (_, None) => "-".to_owned(),
                (Keys::Attempt(prefix), Some(key)) => match key.rsplit_once(":a") {
                    Some((base, n)) if base.starts_with(prefix) && n.parse::<u32>().is_ok() => {
                        if !bases.iter().any(|b| b == base) {
                            bases.push(base.to_owned());
                        }
                        match bases.len() {
                            1 => format!("a{n}"),
                            _ => format!("a{n} (of another base: {base})"),
                        }
                    }
                    _ => format!("key {key:?}"),
                },
                (Keys::Plain(prefix), Some(key)) if key.starts_with(prefix) => {
                    let index = names.iter().position(|k| k == key).unwrap_or_else(|| {
                        names.push(key.clone());
                        names.len() - 1
                    });
                    format!("a{}", index + 1)
                }
                (_, Some(key)) => format!("key {key:?}"),
            };
            let replayed = if r.replayed { " replayed" } else { "" };
            format!("{} {key}{replayed}", r.status)
        })
        .collect()
}

fn searches(endpoint: &Endpoint, requests: &[Recorded]) -> usize {
    endpoint.search.map_or(0, |path| requests.iter().filter(|r| r.method == "GET" && r.path.starts_with(path)).count())
}

/// Runs one cell; returns what differs from the row (empty: the cell passes) and a line
/// for the matrix.
async fn cell(endpoint: &Endpoint, row: &Row) -> (Vec<String>, String) {
    let mutation = endpoint.mutation;
    let mut scene = mutation.setup().await;
    let double = &scene.s.double;
    if let Some(lag) = row.search_lag {
        double.set_search_lag(lag);
    }
    let objects_before = endpoint.kind.map_or(0, |kind| double.objects(kind));
    let mark = double.requests().len();
    double.inject(endpoint.method, endpoint.path, row.faults.clone());

    let started = Instant::now();
    let first = mutation.run(&mut scene, false).await;
    if let Some(settle) = row.settle {
        tokio::time::sleep(settle.saturating_sub(started.elapsed())).await;
    }
    let log = scene.s.double.requests()[mark..].to_vec();
    let (mut names, mut bases) = (vec![], vec![]);
    let calls = render(endpoint, &log, &mut names, &mut bases);
    let searched = searches(endpoint, &log);
    let done = mutation.done(&scene).await;

    let mut wrong = vec![];
    if first != row.result {
        wrong.push(format!("result: expected {}, got {first}", row.result));
    }
    if calls != row.calls {
        wrong.push(format!("calls: expected {:?}, got {calls:?}", row.calls));
    }
    if let Some(expected) = row.searches
        && searched != expected
    {
        wrong.push(format!("searches: expected {expected}, got {searched}"));
    }
    let should_be_done = i64::from(first == "ok");
    if done != should_be_done {
        wrong.push(format!("recorded as done: {done} after {first} (expected {should_be_done})"));
    }
    let mut line = format!("{first} {calls:?}");

    // A failed first run is retried (also when the row expected success, to report it).
    if first != "ok" {
        let mark = scene.s.double.requests().len();
        let again = mutation.run(&mut scene, true).await;
        let log = scene.s.double.requests()[mark..].to_vec();
        let retry_calls = render(endpoint, &log, &mut names, &mut bases);
        line += &format!(" → retry {again} {retry_calls:?}");
        match &row.retry {
            Some(expected) => {
                if again != "ok" {
                    wrong.push(format!("retry: expected ok, got {again}"));
                }
                if retry_calls != *expected {
                    wrong.push(format!("retry calls: expected {expected:?}, got {retry_calls:?}"));
                }
            }
            None => wrong.push(format!("(a retry of the mutation then answered {again} with {retry_calls:?})")),
        }
        let done = mutation.done(&scene).await;
        if again == "ok" && done != 1 {
            wrong.push(format!("recorded as done after the retry: {done}"));
        }
    } else if let Some(expected) = &row.retry {
        wrong.push(format!("the retry {expected:?} was expected after a failure; nothing failed"));
    }

    if let Some(kind) = endpoint.kind {
        let made = scene.s.double.objects(kind) - objects_before;
        if made != row.objects {
            wrong.push(format!("{kind} objects made at Stripe: expected {}, got {made}", row.objects));
        }
        line += &format!(" {kind}s made: {made}");
    }
    if let Err(state) = mutation.stripe_state(&scene) {
        wrong.push(state);
    }
    (wrong, line)
}

/// Runs every row of a call, each on fresh state, and fails naming the cells that differ.
async fn matrix(endpoint: Endpoint, rows: Vec<Row>) {
    let started = Instant::now();
    let mut failures = vec![];
    let total = rows.len();
    for row in &rows {
        let (wrong, line) = cell(&endpoint, row).await;
        let verdict = if wrong.is_empty() { "pass" } else { "FAIL" };
        println!("[{}] {} × {}: {verdict}: {line}", endpoint.name, endpoint.mutation_label(), row.label);
        if !wrong.is_empty() {
            failures.push(format!("  {} × {}:\n    {}", endpoint.name, row.label, wrong.join("\n    ")));
        }
    }
    println!("[{}] {total} cells in {:.1?}", endpoint.name, started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {total} cells of {} failed:\n{}",
        failures.len(),
        endpoint.name,
        failures.join("\n")
    );
}

impl Endpoint {
    fn mutation_label(&self) -> String {
        format!("{:?}", self.mutation)
    }
}

// ------------------------------------------------------------------------------ the calls

/// Rows of a create reconciled by search (customers, charges, payment intents).
fn reconciled_by_search() -> Vec<Row> {
    let mut rows = retried_once("a1", 1);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 a1", "200 a1 replayed"]));
    rows.push(row("saved 500 after success", vec![Fault::AfterSuccess500]).ok(&["500 a1"]).searches(Some(1)));
    rows.push(row("saved 500, nothing made", vec![saved_500()]).ok(&["500 a1", "200 a2"]).searches(Some(1)));
    // Faults the transport retries (a should-retry 500, a drop, a timeout) keep the
    // same key through every try: Stripe may still be running the first one, so only a
    // saved 500 (Should-Retry false or absent) is reconciled and moved to a new key.
    rows.extend(persistent("a1", 1));
    // Stripe's search lags behind writes, so reconciliation also reads the list of
    // recent objects, which is consistent: an object made a moment ago is found, never
    // made twice, and a charge's single-use token is never sent again.
    let mut lagging =
        row("saved 500 after success, search lagging 1 s", vec![Fault::AfterSuccess500]).ok(&["500 a1"]).searches(None);
    lagging.search_lag = Some(Duration::from_secs(1));
    rows.push(lagging);
    rows
}

/// Rows of a token request: a saved 500 is retried under a new key (README: "Tokens
/// carry no metadata; an unused one simply expires").
fn new_key_on_saved_500(made: usize) -> Vec<Row> {
    let mut rows = retried_once("a1", made);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 a1", "200 a1 replayed"]).objects(made));
    // By design the first token stays at Stripe unused (it cannot be found again): two
    // objects, of which curbpay hands off only the second. (A token expires unused; a
    // cloned PaymentMethod does not: it stays on the operator's account.)
    rows.push(row("saved 500 after success", vec![Fault::AfterSuccess500]).ok(&["500 a1", "200 a2"]).objects(made + 1));
    rows.push(row("saved 500, nothing made", vec![saved_500()]).ok(&["500 a1", "200 a2"]).objects(made));
    rows.extend(persistent("a1", made));
    rows
}

/// Rows of a GET: no key, nothing saved at Stripe, a saved-style 500 is not retried.
fn get_rows(made: usize) -> Vec<Row> {
    let mut rows = retried_once("-", made);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 -", "200 -"]).objects(made));
    for (label, fault) in
        [("500 Should-Retry false after success", Fault::AfterSuccess500), ("500 Should-Retry false", saved_500())]
    {
        rows.push(row(label, vec![fault]).fails("UNAVAILABLE", &["500 -"]).then_retry(&["200 -"]).objects(made));
    }
    rows.extend(persistent("-", made));
    rows
}

#[tokio::test]
async fn get_account_by_create_app() {
    let endpoint = Endpoint {
        name: "GET /v1/account",
        method: "GET",
        path: "/v1/account",
        mutation: Mutation::CreateApp,
        keys: Keys::None,
        kind: None,
        search: None,
    };
    matrix(endpoint, get_rows(0)).await;
}

#[tokio::test]
async fn post_customers_by_tokenize_customer_new() {
    let endpoint = Endpoint {
        name: "POST /v1/customers",
        method: "POST",
        path: "/v1/customers",
        mutation: Mutation::TokenizeNew,
        keys: Keys::Attempt("customer:"),
        kind: Some("customer"),
        search: Some("/v1/customers/search"),
    };
    let mut rows = reconciled_by_search();
    // The first try is still running at Stripe when it times out (2 s); the other tries
    // are dropped. All tries keep the key, so the mutation answers UNAVAILABLE, the
    // running request finishes, and a retry gets its saved answer: one customer.
    let mut timeout = row(
        "timeout while Stripe still runs, then drops",
        vec![Fault::Delay(Duration::from_millis(2500)), Fault::Drop, Fault::Drop, Fault::Drop],
    )
    .fails("UNAVAILABLE", &["0 a1", "0 a1", "0 a1", "200 a1"])
    .then_retry(&["200 a1 replayed"]);
    timeout.settle = Some(Duration::from_millis(2800));
    rows.push(timeout);
    matrix(endpoint, rows).await;
}

#[tokio::test]
async fn post_customer_by_tokenize_customer_again() {
    let endpoint = Endpoint {
        name: "POST /v1/customers/{id}",
        method: "POST",
        path: "/v1/customers/cus_",
        mutation: Mutation::TokenizeAgain,
        keys: Keys::Plain("customer-card:"),
        kind: Some("customer"),
        search: Some("/v1/customers/search"),
    };
    let mut rows = retried_once("a1", 0);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 a1", "200 a1 replayed"]).objects(0));
    // A saved 500 on a card replacement: a card token Stripe marks as used was spent by
    // this update (the customer is read back); otherwise the update is sent again under
    // the next attempt's key, in the same mutation.
    rows.push(row("saved 500 after success", vec![Fault::AfterSuccess500]).ok(&["500 a1", "200 a2"]).objects(0));
    rows.push(row("saved 500, nothing made", vec![saved_500()]).ok(&["500 a1", "200 a2"]).objects(0));
    rows.extend(persistent("a1", 0));
    matrix(endpoint, rows).await;
}

#[tokio::test]
async fn get_customer_by_start_parking_session() {
    let endpoint = Endpoint {
        name: "GET /v1/customers/{id}",
        method: "GET",
        path: "/v1/customers/cus_",
        mutation: Mutation::Start { card: "tok_visa" },
        keys: Keys::None,
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, get_rows(1)).await;
}

#[tokio::test]
async fn get_customer_by_reissue_charge_token() {
    let endpoint = Endpoint {
        name: "GET /v1/customers/{id} (reissue)",
        method: "GET",
        path: "/v1/customers/cus_",
        mutation: Mutation::Reissue,
        keys: Keys::None,
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, get_rows(1)).await;
}

#[tokio::test]
async fn post_tokens_by_start_parking_session() {
    let endpoint = Endpoint {
        name: "POST /v1/tokens",
        method: "POST",
        path: "/v1/tokens",
        mutation: Mutation::Start { card: "tok_visa" },
        keys: Keys::Attempt("charge-token:"),
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, new_key_on_saved_500(1)).await;
}

#[tokio::test]
async fn post_tokens_by_reissue_charge_token() {
    let endpoint = Endpoint {
        name: "POST /v1/tokens (reissue)",
        method: "POST",
        path: "/v1/tokens",
        mutation: Mutation::Reissue,
        keys: Keys::Attempt("charge-token:"),
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, new_key_on_saved_500(1)).await;
}

#[tokio::test]
async fn post_payment_methods_by_start_parking_session() {
    let endpoint = Endpoint {
        name: "POST /v1/payment_methods",
        method: "POST",
        path: "/v1/payment_methods",
        mutation: Mutation::Start { card: "pm_card_visa" },
        keys: Keys::Attempt("charge-token:"),
        kind: Some("payment_method"),
        search: None,
    };
    matrix(endpoint, new_key_on_saved_500(1)).await;
}

#[tokio::test]
async fn post_charges_by_charge_session() {
    let endpoint = Endpoint {
        name: "POST /v1/charges",
        method: "POST",
        path: "/v1/charges",
        mutation: Mutation::Charge { card: "tok_visa" },
        keys: Keys::Attempt("charge:"),
        kind: Some("charge"),
        search: Some("/v1/charges/search"),
    };
    matrix(endpoint, reconciled_by_search()).await;
}

#[tokio::test]
async fn post_payment_intents_by_charge_session() {
    let endpoint = Endpoint {
        name: "POST /v1/payment_intents",
        method: "POST",
        path: "/v1/payment_intents",
        mutation: Mutation::Charge { card: "pm_card_visa" },
        keys: Keys::Attempt("charge:"),
        kind: Some("payment_intent"),
        // Payment intents are looked up by listing the recent ones (a consistent read).
        search: Some("/v1/payment_intents"),
    };
    matrix(endpoint, reconciled_by_search()).await;
}

// Connect OAuth (src/processor/stripe/oauth.rs `post`) carries no Idempotency-Key: every
// failure, 5xx included whatever its Should-Retry, is retried up to MAX_ATTEMPTS times.
// That is safe for both calls: a code can be exchanged only once (a retry after a lost
// exchange is refused and curbpay asks for a new authorization: UNAVAILABLE), and
// deauthorizing an account that is already disconnected answers `invalid_client`, which
// `deauthorize` counts as done.

#[tokio::test]
async fn post_oauth_token_by_connect_callback() {
    let endpoint = Endpoint {
        name: "POST /oauth/token",
        method: "POST",
        path: "/oauth/token",
        mutation: Mutation::Callback,
        keys: Keys::None,
        kind: None,
        search: None,
    };
    let mut rows = retried_once("-", 0);
    // The code is spent but the answer lost: the retry is refused (`invalid_grant`), the
    // link stays PENDING, and the operator consents again (the retry here): linked.
    rows.push(
        row("drop after success", vec![Fault::DropAfterSuccess])
            .fails("UNAVAILABLE", &["0 -", "400 -"])
            .then_retry(&["200 -"]),
    );
    rows.push(
        row("500 Should-Retry false after success", vec![Fault::AfterSuccess500])
            .fails("UNAVAILABLE", &["500 -", "400 -"])
            .then_retry(&["200 -"]),
    );
    rows.push(row("500 Should-Retry false", vec![saved_500()]).ok(&["500 -", "200 -"]));
    rows.extend(persistent("-", 0));
    matrix(endpoint, rows).await;
}

#[tokio::test]
async fn post_oauth_deauthorize_by_unlink_operator() {
    let endpoint = Endpoint {
        name: "POST /oauth/deauthorize",
        method: "POST",
        path: "/oauth/deauthorize",
        mutation: Mutation::Unlink,
        keys: Keys::None,
        kind: None,
        search: None,
    };
    let mut rows = retried_once("-", 0);
    // The account is disconnected but the answer lost: the retry finds it disconnected
    // (`invalid_client`), which counts as done.
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 -", "400 -"]));
    rows.push(row("500 Should-Retry false after success", vec![Fault::AfterSuccess500]).ok(&["500 -", "400 -"]));
    rows.push(row("500 Should-Retry false", vec![saved_500()]).ok(&["500 -", "200 -"]));
    rows.extend(persistent("-", 0));
    matrix(endpoint, rows).await;
}
