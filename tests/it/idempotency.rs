//! Retries and races: one effect per idempotency key, never a second charge, and a
//! crash between the processor call and the commit is finished by a retry.

use curbpay::processor::ChargeRequest;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use crate::util::{CHARGE_SESSION, END_SESSION, START_SESSION, TestApp, code_of, id};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Counts rows straight from the database (what the processor holds, too).
async fn count(t: &TestApp, sql: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    diesel::sql_query(sql).get_result::<Count>(&mut conn).await.unwrap().n
}

async fn exec(t: &TestApp, sql: &str) {
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn a_retried_start_returns_the_same_session_and_issues_nothing_new() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = t.start_session(&w, "key-1").await;
    let again = t.start_session(&w, "key-1").await;
    assert_eq!(first["replayed"], false);
    assert_eq!(again["replayed"], true);
    assert_eq!(first["session"]["id"], again["session"]["id"]);
    assert_eq!(first["session"]["chargeToken"]["id"], again["session"]["chargeToken"]["id"]);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM charge_tokens").await, 1);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM sandbox_tokens").await, 1);

    // The same key with different input is a conflict, and creates nothing.
    let vars = json!({ "c": w.customer_id, "o": w.operator_id, "k": "key-1", "z": "OTHER", "p": "B-CP 123" });
    let response = t.post(Some(&w.app_token), START_SESSION, vars).await;
    assert_eq!(code_of(&response).as_deref(), Some("CONFLICT"), "{response}");
    assert_eq!(count(&t, "SELECT count(*) AS n FROM parking_sessions").await, 1);

    // Keys belong to the app: another app may use the same key (for another vehicle:
    // one vehicle has one ACTIVE session per zone, whichever app started it).
    let other_app = t.create_app("Other").await;
    t.activate_link(other_app, w.operator_id).await;
    let other_token = t.token(curbpay::auth::Role::App(other_app));
    let other_customer = t.tokenize(&other_token, "user-1", "tok_visa").await;
    let vars = json!({ "c": other_customer, "o": w.operator_id, "k": "key-1", "z": "Z-12", "p": "HH-X 42" });
    let data = t.ok(&other_token, START_SESSION, vars).await;
    assert_eq!(data["startParkingSession"]["replayed"], false);
}

/// A retry is answered with its session even when the start could not be made now:
/// the key is looked up when the customer or link check refuses.
#[tokio::test]
async fn a_retry_after_the_link_ended_still_gets_its_session() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = t.start_session(&w, "key-1").await;
    exec(&t, "UPDATE links SET status = 'REVOKED', revoked_at = now()").await;
    let again = t.start_session(&w, "key-1").await;
    assert_eq!(again["replayed"], true);
    assert_eq!(first["session"]["id"], again["session"]["id"]);

    // A new key is refused, and creates nothing.
    let vars = json!({ "c": w.customer_id, "o": w.operator_id, "k": "key-2", "z": "Z-12", "p": "B-CP 2" });
    let response = t.post(Some(&w.app_token), START_SESSION, vars).await;
    assert_eq!(code_of(&response).as_deref(), Some("CONFLICT"), "{response}");
    assert_eq!(count(&t, "SELECT count(*) AS n FROM parking_sessions").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_starts_with_one_key_make_one_session() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let vars = json!({ "c": w.customer_id, "o": w.operator_id, "k": "race", "z": "Z-12", "p": "B-CP 123" });
    let responses =
        futures_util::future::join_all((0..16).map(|_| t.post(Some(&w.app_token), START_SESSION, vars.clone()))).await;
    let ids: std::collections::HashSet<_> = responses
        .iter()
        .map(|r| {
            assert!(r.get("errors").is_none(), "{r}");
            r["data"]["startParkingSession"]["session"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every retry answers with the same session");
    let fresh = responses.iter().filter(|r| r["data"]["startParkingSession"]["replayed"] == false).count();
    assert_eq!(fresh, 1, "exactly one request created it");
    assert_eq!(count(&t, "SELECT count(*) AS n FROM parking_sessions").await, 1);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM charge_tokens WHERE status = 'ISSUED'").await, 1);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM sandbox_tokens").await, 1);
    assert_eq!(count(&t, "SELECT token_seq AS n FROM operators").await, 1, "one cursor handed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_charges_charge_once() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let session_id = id(&t.start_session(&w, "k").await["session"]["id"]);
    t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 1250, "c": "usd" })).await;
    let responses = futures_util::future::join_all(
        (0..16).map(|_| t.post(Some(&w.operator_token), CHARGE_SESSION, json!({ "s": session_id }))),
    )
    .await;
    let charge_ids: std::collections::HashSet<_> = responses
        .iter()
        .map(|r| {
            assert!(r.get("errors").is_none(), "{r}");
            assert_eq!(r["data"]["chargeSession"]["session"]["status"], "CHARGED");
            r["data"]["chargeSession"]["session"]["processorChargeId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(charge_ids.len(), 1);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM sandbox_charges").await, 1);
    assert_eq!(count(&t, "SELECT sum(amount)::bigint AS n FROM sandbox_charges").await, 1250);
}

#[tokio::test]
async fn a_crash_after_issuing_is_finished_by_a_retry() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = t.start_session(&w, "k").await;
    let session_id = id(&first["session"]["id"]);
    let token_query = "query($id: ID!) { parkingSession(id: $id) { chargeTokens { token cursor } } }";
    let before = t.ok(&w.operator_token, token_query, json!({ "id": session_id })).await;
    // The processor issued the token but the commit that records it was lost.
    exec(
        &t,
        "UPDATE charge_tokens SET status = 'PENDING', token = NULL, cursor = NULL, expires_at = NULL, issued_at = NULL",
    )
    .await;
    exec(&t, "UPDATE operators SET token_seq = 0").await;
    let retry = t.start_session(&w, "k").await;
    assert_eq!(retry["replayed"], true);
    let after = t.ok(&w.operator_token, token_query, json!({ "id": session_id })).await;
    // The same processor token (the request key names the token row), issued once.
    assert_eq!(before, after);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM sandbox_tokens").await, 1);
}

#[tokio::test]
async fn a_crash_after_charging_is_finished_by_a_retry() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let session_id = id(&t.start_session(&w, "k").await["session"]["id"]);
    t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 700, "c": "gbp" })).await;
    // Consume the token and charge at the processor, then "crash" before recording.
    exec(&t, "UPDATE charge_tokens SET status = 'CONSUMED', consumed_at = now()").await;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        token: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        platform: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        account: String,
    }
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    let row: Row = diesel::sql_query(
        "SELECT t.id::text AS id, t.token, a.processor_account_id AS platform, l.connected_account_id AS account
         FROM charge_tokens t JOIN links l ON l.id = t.link_id JOIN apps a ON a.id = l.app_id",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    let key = format!("charge:{}", row.id);
    let outcome = t
        .broker
        .processor
        .charge(&ChargeRequest {
            platform: &curbpay::processor::Platform::by_id(row.platform.clone()),
            connected_account_id: &row.account,
            token: &row.token,
            amount: 700,
            currency: "GBP",
            application_fee: None,
            idempotency_key: &key,
        })
        .await
        .unwrap();
    let curbpay::processor::ChargeOutcome::Succeeded { charge_id } = outcome else { panic!("declined") };
    let data = t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(data["chargeSession"]["session"]["status"], "CHARGED");
    assert_eq!(data["chargeSession"]["session"]["processorChargeId"], charge_id);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM sandbox_charges").await, 1);
}

#[tokio::test]
async fn the_database_refuses_a_second_consumption() {
    let t = TestApp::new().await;
    let w = t.world().await;
    t.start_session(&w, "k").await;
    exec(&t, "UPDATE charge_tokens SET status = 'CONSUMED', consumed_at = now()").await;
    // Whatever the code does, a consumed token cannot be brought back.
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    let err = diesel::sql_query("UPDATE charge_tokens SET status = 'ISSUED', consumed_at = NULL")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot become"), "{err}");
}

/// A start retried after its first attempt committed wakes the operator's subscribers on
/// every process again: the first attempt may have stopped (a crash) before its wake-ups
/// went out, which is when clients retry.
#[tokio::test]
async fn a_retried_start_announces_its_token_again_to_other_processes() {
    use futures_util::StreamExt;

    let t = TestApp::new().await;
    let w = t.world().await;
    let first = t.start_session(&w, "k-announce").await;

    // What another server process's LISTEN connection hears.
    let mut listener = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    diesel::sql_query("LISTEN curbpay_events").execute(&mut listener).await.unwrap();
    let mut notifications = std::pin::pin!(listener.notifications_stream());

    let retried = t.start_session(&w, "k-announce").await;
    assert_eq!(retried["session"]["id"], first["session"]["id"]);
    let topic = format!("t:{}", w.operator_id);
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(note) = notifications.next().await {
            if note.unwrap().payload == topic {
                return;
            }
        }
        panic!("the LISTEN connection closed");
    })
    .await;
    assert!(heard.is_ok(), "the retried start sent no wake-up for operator {}", w.operator_id);
}
