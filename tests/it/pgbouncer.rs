//! curbpay behind pgbouncer in transaction pooling mode: two real server processes with
//! `DATABASE_URL` through pgbouncer and `CURBPAY_LISTEN_DATABASE_URL` at Postgres itself run
//! the whole flow with 16 requests in flight over two server connections; and the start-up
//! refusals when the setup would lose prepared statements or notifications.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use curbpay::auth::{Claims, Role};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::node::NodeSubscriber;
use crate::util::pgbouncer::{self, Options, Pgbouncer};
use crate::util::process::{Curbpay, Parties};
use crate::util::{CHARGE_SESSION, END_SESSION, JWT_SECRET, START_SESSION, TestDb, id};

const TOKENS: &str = "subscription($after: String) {
  chargeTokenIssued(after: $after) { cursor chargeToken { id session { id } } }
}";

/// Sessions started at once after the first: more requests than pgbouncer has server
/// connections (2) and than each process has pool connections (8).
const IN_FLIGHT: usize = 16;

fn mint(role: Role) -> String {
    curbpay::auth::mint(JWT_SECRET.as_bytes(), &Claims::new(role, None, Duration::from_secs(600))).unwrap()
}

/// pgbouncer 1.21+ in transaction mode, with prepared statements, over two server connections.
async fn pooler(db: &TestDb) -> Pgbouncer {
    Pgbouncer::start(&pgbouncer::supported(), &db.url, Options { max_prepared_statements: Some(200), pool_size: 2 })
        .await
}

/// A `SHOW` row's column as a number.
fn number(row: &[(String, String)], column: &str) -> u64 {
    let value = row.iter().find(|(k, _)| k == column).unwrap_or_else(|| panic!("no {column} in {row:?}"));
    value.1.parse().unwrap_or_else(|_| panic!("{column} is not a number: {row:?}"))
}

/// App, operator, link and customer (through server `one`); the operator subscribes on
/// server `two`; one session is started, then 16 at once, all through `one`; the operator
/// gets every token live on `two` (NOTIFY through pgbouncer, LISTEN direct); every session
/// is then ended and charged, 16 at once. The database starts empty: the servers migrate
/// it through pgbouncer.
async fn whole_flow(extra_env: &[(&str, &str)]) {
    let db = TestDb::empty().await;
    let pgb = pooler(&db).await;
    let through_pgbouncer = pgb.url();
    let mut env = vec![
        ("DATABASE_URL", through_pgbouncer.as_str()),
        ("CURBPAY_LISTEN_DATABASE_URL", db.url.as_str()),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
        ("RUST_LOG", "warn"),
    ];
    env.extend_from_slice(extra_env);
    let one = Curbpay::serve(&env).await;
    let two = Curbpay::serve(&env).await;
    let admin = mint(Role::Admin);
    let Parties { operator_id, customer_id, app_token, operator_token, .. } = one.parties(JWT_SECRET).await;

    // Returns (session id, charge token id).
    let start = async |n: usize| -> (Uuid, Uuid) {
        let vars = json!({ "c": customer_id, "o": operator_id, "k": format!("s-{n}"), "z": format!("Z-{n}"), "p": format!("P-{n}") });
        let data = one.ok(&app_token, START_SESSION, vars).await;
        let session = &data["startParkingSession"]["session"];
        assert_eq!(session["status"], "ACTIVE", "{data:#}");
        assert_eq!(session["chargeToken"]["status"], "ISSUED", "{data:#}");
        (id(&session["id"]), id(&session["chargeToken"]["id"]))
    };

    let first = start(0).await;
    let mut sub =
        NodeSubscriber::spawn(&two.ws_url(), &operator_token, TOKENS, json!({ "after": "0" }), Some(1 + IN_FLIGHT));
    assert_eq!(sub.next_event().await.expect("the client connects")["type"], "connected");
    // Replayed from the table: process two's subscription is set up; the rest must come live.
    let replayed = sub.next_data().await;
    assert_eq!(replayed["chargeTokenIssued"]["cursor"], "1", "{replayed:#}");
    assert_eq!(id(&replayed["chargeTokenIssued"]["chargeToken"]["id"]), first.1);

    let started: Vec<(Uuid, Uuid)> = futures_util::future::join_all((1..=IN_FLIGHT).map(start)).await;
    let mut expected: HashSet<Uuid> = started.iter().map(|(_, token)| *token).collect();
    assert_eq!(expected.len(), IN_FLIGHT);
    for cursor in 2..=1 + IN_FLIGHT {
        let data = sub.next_data().await;
        let event = &data["chargeTokenIssued"];
        assert_eq!(event["cursor"], cursor.to_string(), "{data:#}");
        let token = id(&event["chargeToken"]["id"]);
        assert!(expected.remove(&token), "a token delivered twice or not issued here: {data:#}");
    }
    assert_eq!(sub.exit_code().await, 0, "COUNT makes the client disconnect");

    // End and charge every session, 16 at once.
    let sessions: Vec<Uuid> = std::iter::once(first.0).chain(started.iter().map(|(s, _)| *s)).collect();
    let charged: Vec<Value> = futures_util::stream::iter(sessions.iter().copied())
        .map(|session| {
            let (one, app_token, operator_token) = (&one, &app_token, &operator_token);
            async move {
                let data = one.ok(app_token, END_SESSION, json!({ "s": session, "a": 250, "c": "usd" })).await;
                assert_eq!(data["endParkingSession"]["session"]["status"], "ENDED", "{data:#}");
                one.ok(operator_token, CHARGE_SESSION, json!({ "s": session })).await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for data in &charged {
        let payload = &data["chargeSession"];
        assert_eq!(payload["succeeded"], true, "{data:#}");
        assert_eq!(payload["session"]["status"], "CHARGED", "{data:#}");
        assert_eq!(payload["session"]["chargeToken"]["status"], "CONSUMED", "{data:#}");
        assert!(payload["session"]["processorChargeId"].as_str().is_some_and(|c| c.starts_with("ch_")), "{data:#}");
    }
    // Read back through the other process.
    let data = two.ok(&admin, "{ parkingSessions(status: CHARGED) { totalCount } }", json!({})).await;
    assert_eq!(data["parkingSessions"]["totalCount"], 1 + IN_FLIGHT);

    // pgbouncer carried it all: more clients than its two server connections, and with the
    // statement cache on, statements bound more often than clients prepared them.
    let servers = pgb.show_for_database("SERVERS").await;
    let clients = pgb.show_for_database("CLIENTS").await;
    assert!(!servers.is_empty() && servers.len() <= 2, "server connections: {servers:?}");
    assert!(clients.len() > servers.len(), "clients {} over {} server connections", clients.len(), servers.len());
    let stats = pgb.show_for_database("STATS").await;
    let (parses, binds) = (number(&stats[0], "total_client_parse_count"), number(&stats[0], "total_bind_count"));
    assert!(parses > 0, "{stats:?}");
    if !extra_env.contains(&("CURBPAY_DB_PREPARED_STATEMENTS", "false")) {
        assert!(binds > parses, "cached statements are bound again without a new parse: {stats:?}");
    }

    // The migrations' lock is transaction-scoped: nothing is left held on a pooled connection.
    let mut direct = AsyncPgConnection::establish(&db.url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let held: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .get_result(&mut direct)
    .await
    .unwrap();
    assert_eq!(held.n, 0);

    for server in [&one, &two] {
        let output = server.output();
        assert!(!output.contains("prepared statement"), "{output}");
        assert!(!output.contains("ERROR"), "{output}");
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn the_whole_flow_runs_through_pgbouncer_in_transaction_mode() {
    whole_flow(&[]).await;
}

#[tokio::test]
async fn the_whole_flow_runs_through_pgbouncer_without_the_statement_cache() {
    whole_flow(&[("CURBPAY_DB_PREPARED_STATEMENTS", "false")]).await;
}

#[tokio::test]
async fn without_a_direct_listen_url_curbpay_refuses_to_start_behind_transaction_pooling() {
    let db = TestDb::new().await;
    let pgb = pooler(&db).await;
    let through_pgbouncer = pgb.url();

    let (status, output) =
        Curbpay::refused(&[("DATABASE_URL", &through_pgbouncer), ("CURBPAY_JWT_SECRET", JWT_SECRET)]).await;
    assert!(!status.success(), "{output}");
    assert!(!output.contains("serving GraphQL"), "{output}");
    assert!(output.contains("LISTEN does not work through it"), "{output}");
    assert!(output.contains("Set CURBPAY_LISTEN_DATABASE_URL to Postgres itself"), "{output}");
    assert!(output.contains("README, \"Behind pgbouncer\""), "{output}");

    // Set, but to the pooler as well.
    let (status, output) = Curbpay::refused(&[
        ("DATABASE_URL", &through_pgbouncer),
        ("CURBPAY_LISTEN_DATABASE_URL", &through_pgbouncer),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
    ])
    .await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("CURBPAY_LISTEN_DATABASE_URL: it must point at Postgres itself"), "{output}");
}

/// What a refusal for lost prepared statements must say.
#[track_caller]
fn assert_refused_for_prepared_statements(status: std::process::ExitStatus, output: &str) {
    assert!(!status.success(), "{output}");
    assert!(!output.contains("serving GraphQL"), "{output}");
    assert!(output.contains("prepared statements do not survive the connection pooler"), "{output}");
    assert!(output.contains("max_prepared_statements > 0"), "{output}");
    assert!(output.contains("README, \"Behind pgbouncer\""), "{output}");
    assert!(
        output.contains("the database said: prepared statement") || output.contains("names the driver gave them"),
        "{output}"
    );
}

#[tokio::test]
async fn pgbouncer_without_prepared_statements_is_refused_at_start() {
    let db = TestDb::new().await;
    let pgb =
        Pgbouncer::start(&pgbouncer::supported(), &db.url, Options { max_prepared_statements: Some(0), pool_size: 2 })
            .await;
    let (status, output) = Curbpay::refused(&[
        ("DATABASE_URL", &pgb.url()),
        ("CURBPAY_LISTEN_DATABASE_URL", &db.url),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
    ])
    .await;
    assert_refused_for_prepared_statements(status, &output);
}

/// Debian bookworm's pgbouncer (1.18) predates prepared-statement support; the statement cache
/// setting does not help (every statement is prepared by name), and curbpay says so at start.
#[tokio::test]
async fn the_distributions_older_pgbouncer_is_refused_at_start() {
    let binary = pgbouncer::system();
    let version = pgbouncer::version(&binary).expect("pgbouncer --version");
    // 1.21 and later know the setting; 0 turns the support off, as 1.18 lacks it.
    let max_prepared_statements = (version >= (1, 21)).then_some(0);
    let db = TestDb::new().await;
    for cache in ["true", "false"] {
        // A fresh pgbouncer each time: the check relies on pgbouncer's most-recently-used-first
        // reuse, which server connections still being opened (by another client's wait) could
        // reorder.
        let pgb = Pgbouncer::start(&binary, &db.url, Options { max_prepared_statements, pool_size: 2 }).await;
        let (status, output) = Curbpay::refused(&[
            ("DATABASE_URL", &pgb.url()),
            ("CURBPAY_LISTEN_DATABASE_URL", &db.url),
            ("CURBPAY_DB_PREPARED_STATEMENTS", cache),
            ("CURBPAY_JWT_SECRET", JWT_SECRET),
        ])
        .await;
        assert_refused_for_prepared_statements(status, &output);
    }
}

/// A log writer the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A statement missing on the server connection at run time (here: dropped with `DEALLOCATE
/// ALL` behind the pool's back, as a pooler without prepared-statement support does) is
/// logged with what to fix.
#[tokio::test]
async fn a_lost_prepared_statement_is_logged_with_the_fix() {
    let db = TestDb::new().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).without_time().finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let settings = curbpay::db::PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        prepared_statements: true,
        trace_statements: false,
    };
    let pool = curbpay::db::pool(&db.url, &settings, Default::default()).unwrap();
    let mut conn = pool.get().await.unwrap();
    let count = async |conn: &mut AsyncPgConnection| {
        use curbpay::db::schema::apps::dsl::apps;
        use diesel::QueryDsl;
        apps.count().get_result::<i64>(conn).await
    };
    assert_eq!(count(&mut conn).await.unwrap(), 0);
    diesel::sql_query("DEALLOCATE ALL").execute(&mut conn).await.unwrap();
    let err = count(&mut conn).await.expect_err("the cached statement is gone");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("ERROR"), "{log}");
    assert!(log.contains("a prepared statement was lost between server connections"), "{log}");
    assert!(log.contains("max_prepared_statements > 0"), "{log}");
    assert!(log.contains("README, \"Behind pgbouncer\""), "{log}");
}
