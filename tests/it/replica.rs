//! The read replica (`CURBPAY_READ_DATABASE_URL`) against a real streaming standby (`util::replica`): query
//! operations read from it, everything else from the primary; replica lag never makes a mutation act on stale
//! rows nor a subscriber miss or repeat an event, while lists may be stale until the standby replays; a
//! replica that is down or too far behind is passed over, and serves again once it is back.
//!
//! Which server served what is read from each server's own `pg_stat_database.xact_commit` for the test's
//! database (a standby counts the read-only transactions it runs).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::node::NodeSubscriber;
use crate::util::process::Curbpay;
use crate::util::replica::{ReplicaDb, pair};
use crate::util::{CHARGE_SESSION, END_SESSION, JWT_SECRET, TestApp, id};

const TOKENS: &str = "subscription($after: String) {
  chargeTokenIssued(after: $after) { cursor chargeToken { id token session { id vehiclePlate } } }
}";

/// A list and lookups with their loaders (nested parties, tokens, links) and counts.
const APP_READS: &str = "query($c: ID!) {
  parkingSessions { totalCount edges { node { id status vehiclePlate chargeToken { status } operator { name } customer { id } link { id } } } }
  links { edges { node { id status app { name } operator { name } } } }
  customer(id: $c) { id }
  events(first: 50) { edges { cursor node { type } } }
}";

/// Upper bound for something that happens within a second or so (a hang guard).
const PROMPTLY: Duration = Duration::from_secs(30);

async fn replica_app(rdb: &ReplicaDb, adjust: impl FnOnce(&mut curbpay::Config)) -> TestApp {
    let replica_url = rdb.replica_url.clone();
    TestApp::on_db(rdb.db.clone(), |config| {
        config.read_database_url = Some(replica_url.into());
        config.read_db_pool_size = 2;
        // These tests bound staleness themselves; the lag check has its own test.
        config.read_max_lag = None;
        adjust(config);
    })
    .await
}

fn plates(data: &Value) -> Vec<String> {
    let edges = data["parkingSessions"]["edges"].as_array().unwrap_or_else(|| panic!("a list: {data:#}"));
    edges.iter().map(|e| e["node"]["vehiclePlate"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn queries_read_from_the_replica_and_mutations_from_the_primary() {
    let pair = pair().await;
    let rdb = pair.database().await;
    let listen_elsewhere = pair.primary_url().to_owned();
    let t = replica_app(&rdb, |config| {
        // Nothing of the server's own may touch the test database on the primary while it reads: no delivery
        // worker, no sweep but the first, and the LISTEN connection on another database.
        config.events.worker = false;
        config.session_sweep_interval = Duration::from_secs(3600);
        config.listen_database_url = Some(listen_elsewhere.into());
    })
    .await;
    let w = t.world().await;
    t.start_session(&w, "one").await;
    pair.caught_up().await;
    // The requests above have given back their connections, and the start-up sweep was done long before.
    let deadline = Instant::now() + PROMPTLY;
    while t.broker.pool.status().available < t.broker.pool.status().size {
        assert!(Instant::now() < deadline, "the primary pool stays busy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pair.flush_statistics(&rdb.db.name).await;
    let (primary_before, standby_before) = pair.commits(&rdb.db.name).await;

    let data = t.ok(&w.app_token, APP_READS, json!({ "c": w.customer_id })).await;
    assert_eq!(plates(&data), ["B-CP one"]);
    let session = &data["parkingSessions"]["edges"][0]["node"];
    assert_eq!(session["chargeToken"]["status"], "ISSUED");
    assert_eq!(session["operator"]["name"], "Downtown Garages");
    assert_eq!(id(&session["link"]["id"]), w.link_id);
    assert_eq!(data["parkingSessions"]["totalCount"], 1);
    assert_eq!(data["links"]["edges"][0]["node"]["app"]["name"], "ParkNow");
    assert_eq!(id(&data["customer"]["id"]), w.customer_id);
    assert!(!data["events"]["edges"].as_array().unwrap().is_empty(), "{data:#}");
    let admin = t.ok(&t.admin(), "{ apps { edges { node { name } } } operators { totalCount } }", json!({})).await;
    assert_eq!(admin["apps"]["edges"][0]["node"]["name"], "ParkNow");
    assert_eq!(admin["operators"]["totalCount"], 1);

    pair.flush_statistics(&rdb.db.name).await;
    let (primary_after, standby_after) = pair.commits(&rdb.db.name).await;
    assert_eq!(primary_after, primary_before, "pure reads commit nothing on the primary");
    assert!(standby_after >= standby_before + 2, "the standby served the reads: {standby_before} → {standby_after}");

    // A mutation, its payload included, runs on the primary only.
    let data = t.ok(&w.app_token, END_SESSION_WITH_LOADERS, json!({ "s": session["id"], "a": 250, "c": "EUR" })).await;
    assert_eq!(data["endParkingSession"]["session"]["operator"]["name"], "Downtown Garages");
    pair.flush_statistics(&rdb.db.name).await;
    let (primary_end, standby_end) = pair.commits(&rdb.db.name).await;
    assert!(primary_end > primary_after, "the mutation committed on the primary");
    assert_eq!(standby_end, standby_after, "a mutation reads nothing from the replica");
}

const END_SESSION_WITH_LOADERS: &str = "mutation($s: ID!, $a: Int!, $c: String!) {
  endParkingSession(input: {sessionId: $s, amount: {amount: $a, currency: $c}}) {
    session { id status chargeToken { status } operator { name } customer { id } }
  }
}";

#[tokio::test]
async fn replica_lag_never_reaches_mutations_or_subscribers_and_lists_catch_up() {
    let pair = pair().await;
    let rdb = pair.database().await;
    let t = replica_app(&rdb, |_| {}).await;
    let w = t.world().await;
    let first = t.start_session(&w, "first").await;
    pair.caught_up().await;

    // The subscriber is set up once it has replayed the first token.
    let mut sub = NodeSubscriber::spawn(&t.ws_url(), &w.operator_token, TOKENS, json!({ "after": "0" }), None);
    let event = sub.next_data().await;
    assert_eq!(event["chargeTokenIssued"]["cursor"], "1");
    assert_eq!(event["chargeTokenIssued"]["chargeToken"]["id"], first["session"]["chargeToken"]["id"]);

    pair.pause_replay().await;

    // Mutations act on rows written a moment ago, which the standby has not replayed, and their payloads
    // show them (their loaders read the primary).
    let second = t.start_session(&w, "second").await;
    assert_eq!(second["session"]["chargeToken"]["status"], "ISSUED", "{second:#}");
    let session_id = second["session"]["id"].clone();
    let ended = t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 400, "c": "EUR" })).await;
    assert_eq!(ended["endParkingSession"]["session"]["status"], "ENDED");
    let charged = t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(charged["chargeSession"]["succeeded"], true, "{charged:#}");
    assert_eq!(charged["chargeSession"]["session"]["status"], "CHARGED");
    assert_eq!(charged["chargeSession"]["session"]["chargeToken"]["status"], "CONSUMED");
    // A retry of the start (same idempotency key) finds the original, not a new session.
    let retried = t.start_session(&w, "second").await;
    assert_eq!(retried["replayed"], true);
    assert_eq!(retried["session"]["id"], session_id);
    let third = t.start_session(&w, "third").await;

    // The operator gets every token once, in order, with its session's fields (from the primary).
    for (cursor, started, plate) in [("2", &second, "B-CP second"), ("3", &third, "B-CP third")] {
        let event = sub.next_data().await;
        let issued = &event["chargeTokenIssued"];
        assert_eq!(issued["cursor"], cursor, "{event:#}");
        assert_eq!(issued["chargeToken"]["id"], started["session"]["chargeToken"]["id"]);
        assert_eq!(issued["chargeToken"]["session"]["vehiclePlate"], plate);
    }

    // Queries may be stale meanwhile: the list and the lookup answer as of the replayed position.
    let lookup = "query($s: ID!) { parkingSession(id: $s) { id status } }";
    let stale = t.ok(&w.app_token, APP_READS, json!({ "c": w.customer_id })).await;
    assert_eq!(plates(&stale), ["B-CP first"]);
    let data = t.ok(&w.app_token, lookup, json!({ "s": session_id })).await;
    assert!(data["parkingSession"].is_null(), "not replayed yet: {data:#}");

    // Replay resumes: the reads catch up.
    pair.resume_replay().await;
    pair.caught_up().await;
    let fresh = t.ok(&w.app_token, APP_READS, json!({ "c": w.customer_id })).await;
    assert_eq!(plates(&fresh), ["B-CP first", "B-CP second", "B-CP third"]);
    let data = t.ok(&w.app_token, lookup, json!({ "s": session_id })).await;
    assert_eq!(data["parkingSession"]["status"], "CHARGED");

    // Nothing was repeated: the next event is the next token.
    let fourth = t.start_session(&w, "fourth").await;
    let event = sub.next_data().await;
    assert_eq!(event["chargeTokenIssued"]["cursor"], "4", "{event:#}");
    assert_eq!(event["chargeTokenIssued"]["chargeToken"]["id"], fourth["session"]["chargeToken"]["id"]);
}

/// `curbpay serve` with the replica's settings, on the test's database.
async fn serve(rdb: &ReplicaDb, extra: &[(&str, &str)]) -> Curbpay {
    let mut env = vec![
        ("DATABASE_URL", rdb.db.url.as_str()),
        ("CURBPAY_READ_DATABASE_URL", rdb.replica_url.as_str()),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    Curbpay::serve(&env).await
}

const REPLICA_CHECKOUTS: &str = "curbpay_db_pool_wait_seconds_count{pool=\"replica\"}";
const DOWN_FALLBACKS: &str = "curbpay_db_read_fallbacks_total{reason=\"down\"}";

fn admin_token() -> String {
    let claims = curbpay::auth::Claims::new(curbpay::auth::Role::Admin, None, Duration::from_secs(3600));
    curbpay::auth::mint(JWT_SECRET.as_bytes(), &claims).unwrap()
}

async fn metrics(server: &Curbpay) -> String {
    reqwest::get(format!("{}metrics", server.base)).await.unwrap().text().await.unwrap()
}

/// The value of one metric line (`name{labels}`), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// Waits until the server reports the replica serving (or not).
async fn until_serving(server: &Curbpay, serving: bool) {
    let want = if serving { 1.0 } else { 0.0 };
    let deadline = Instant::now() + PROMPTLY;
    while metric(&metrics(server).await, "curbpay_db_replica_serving") != want {
        assert!(Instant::now() < deadline, "the replica never turned serving={serving}:\n{}", server.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn app_names(server: &Curbpay, token: &str) -> Vec<String> {
    let data = server.ok(token, "{ apps { edges { node { name } } } }", json!({})).await;
    data["apps"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["name"].as_str().unwrap().to_owned()).collect()
}

async fn create_app(server: &Curbpay, token: &str, name: &str) {
    server
        .ok(token, "mutation($n: String!) { createApp(input: {name: $n}) { app { id } } }", json!({ "n": name }))
        .await;
}

#[tokio::test]
async fn reads_fall_back_to_the_primary_while_the_replica_is_down() {
    let mut pair = pair().await;
    let rdb = pair.database().await;
    let server = serve(&rdb, &[("CURBPAY_READ_MAX_LAG", "0")]).await;
    let admin = admin_token();
    create_app(&server, &admin, "Before").await;
    pair.caught_up().await;
    assert_eq!(app_names(&server, &admin).await, ["Before"]);

    pair.stop_standby().await;
    // Reads still answer, from the primary; a write made now shows at once.
    create_app(&server, &admin, "During").await;
    assert_eq!(app_names(&server, &admin).await, ["Before", "During"]);
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "curbpay_db_replica_serving"), 0.0);
    assert!(metric(&text, DOWN_FALLBACKS) >= 1.0, "{text}");
    assert!(server.output().contains("the read replica is unreachable"), "{}", server.output());
    // The replica is not needed for readiness: every read has somewhere to go.
    assert_eq!(reqwest::get(format!("{}ready", server.base)).await.unwrap().status(), 200);

    pair.start_standby().await;
    pair.caught_up().await;
    until_serving(&server, true).await;
    assert!(server.output().contains("the read replica serves reads again"), "{}", server.output());
    // The next read takes a replica connection, and falls back no more.
    let before = metrics(&server).await;
    assert_eq!(app_names(&server, &admin).await, ["Before", "During"]);
    let after = metrics(&server).await;
    assert_eq!(metric(&after, REPLICA_CHECKOUTS), metric(&before, REPLICA_CHECKOUTS) + 1.0, "{after}");
    assert_eq!(metric(&after, DOWN_FALLBACKS), metric(&before, DOWN_FALLBACKS));
    server.stop().await;
}

#[tokio::test]
async fn a_replica_too_far_behind_is_passed_over_until_it_catches_up() {
    let pair = pair().await;
    let rdb = pair.database().await;
    let server = serve(&rdb, &[("CURBPAY_READ_MAX_LAG", "300ms")]).await;
    let admin = admin_token();
    create_app(&server, &admin, "Before").await;
    pair.caught_up().await;
    until_serving(&server, true).await;
    assert_eq!(app_names(&server, &admin).await, ["Before"]);

    pair.pause_replay().await;
    create_app(&server, &admin, "While behind").await;
    // Once the replica is further behind than the bound, reads go to the primary and see the new app.
    until_serving(&server, false).await;
    assert_eq!(app_names(&server, &admin).await, ["Before", "While behind"]);
    let text = metrics(&server).await;
    assert!(metric(&text, "curbpay_db_read_fallbacks_total{reason=\"lagging\"}") >= 1.0, "{text}");
    assert!(metric(&text, "curbpay_db_replica_lag_seconds") > 0.3, "{text}");
    assert!(server.output().contains("further behind than CURBPAY_READ_MAX_LAG"), "{}", server.output());

    pair.resume_replay().await;
    pair.caught_up().await;
    until_serving(&server, true).await;
    assert_eq!(app_names(&server, &admin).await, ["Before", "While behind"]);
    server.stop().await;
}
