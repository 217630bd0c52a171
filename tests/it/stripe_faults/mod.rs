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

mod calls;
mod mutations;

use std::time::{Duration, Instant};

use crate::util::TestApp;
use crate::util::stripe::{Fault, Recorded};
use mutations::Mutation;

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
