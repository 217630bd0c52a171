//! Outgoing webhooks through the real router and a real receiver on 127.0.0.1:
//! signatures checked by the official npm `standardwebhooks` verifier, retries with the
//! same `webhook-id`, rotation, 410, timeouts, SSRF refusals, tenant isolation, and
//! exactly-once delivery by two server processes and across a killed one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use curbpay::auth::Role;
use curbpay::payments::event_log::{self, Event, EventType};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::node::verify_webhooks;
use crate::util::process::Curbpay;
use crate::util::receiver::{Answer, Receiver};
use crate::util::{JWT_SECRET, TestApp, TestDb};

const CREATE: &str = "mutation($url: String!, $types: [String!], $app: ID, $op: ID) {
  createWebhookEndpoint(input: {url: $url, eventTypes: $types, description: \"test\", appId: $app, operatorId: $op}) {
    endpoint { id url eventTypes status description createdAt } secret
  }
}";

const DELIVERIES: &str = "query($e: ID!, $status: WebhookAttemptStatus) {
  webhookDeliveries(endpointId: $e, status: $status, first: 100) {
    edges { node { eventId attempt status httpStatus durationMs error createdAt } }
  }
}";

fn fast(config: &mut curbpay::Config) {
    config.events.allow_private = true;
    config.events.retry_schedule = [0, 100, 100, 100].map(Duration::from_millis).to_vec();
    config.events.timeout = Duration::from_millis(700);
}

async fn create(app: &TestApp, token: &str, url: &str, types: Option<Vec<&str>>) -> (String, String) {
    let data = app.ok(token, CREATE, json!({ "url": url, "types": types })).await;
    let created = &data["createWebhookEndpoint"];
    (created["endpoint"]["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
}

async fn attempts(app: &TestApp, token: &str, endpoint: &str) -> Vec<Value> {
    let data = app.ok(token, DELIVERIES, json!({ "e": endpoint })).await;
    data["webhookDeliveries"]["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect()
}

#[tokio::test]
async fn deliveries_verify_retry_with_the_same_id_and_keep_token_values_to_the_operator() {
    let app = TestApp::with_config(fast).await;
    let world = app.world().await;
    let (app_hooks, op_hooks, app_all) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let (app_endpoint, app_secret) =
        create(&app, &world.app_token, &app_hooks.url(), Some(vec!["session.started"])).await;
    let (_, app_all_secret) = create(&app, &world.app_token, &app_all.url(), None).await;
    let (_, op_secret) = create(&app, &world.operator_token, &op_hooks.url(), Some(vec!["charge_token.issued"])).await;
    assert!(app_secret.starts_with("whsec_"));
    // The app's receiver fails the first attempt with a 500, then times out once.
    app_hooks.script(&[Answer::Status(500), Answer::Slow(Duration::from_secs(2))]);

    app.start_session(&world, "k1").await;
    let got = app_hooks.wait_for(3, Duration::from_secs(20)).await;
    let op_got = op_hooks.wait_for(1, Duration::from_secs(20)).await;
    let all_got = app_all.wait_for(2, Duration::from_secs(20)).await;

    // Every request verifies with the official library.
    let mut all: Vec<_> = got.iter().map(|r| (app_secret.clone(), r.clone())).collect();
    all.extend(op_got.iter().map(|r| (op_secret.clone(), r.clone())));
    all.extend(all_got.iter().map(|r| (app_all_secret.clone(), r.clone())));
    let verified = verify_webhooks(&all).await;
    for (result, (_, r)) in verified.iter().zip(&all) {
        assert!(result.is_ok(), "{result:?} for {}", r.body);
    }
    // And not with another endpoint's secret.
    let wrong = verify_webhooks(&[(op_secret.clone(), got[0].clone())]).await;
    assert!(wrong[0].is_err());

    // session.started failed twice (500, timeout) and was retried with the same id.
    let first_id = &got[0].id;
    let same: Vec<_> = got.iter().filter(|r| &r.id == first_id).collect();
    assert_eq!(same.len(), 3, "{got:#?}");
    assert_eq!(same.iter().map(|r| r.answered).collect::<Vec<_>>(), [500, 200, 200]);
    let ids: HashSet<_> = all_got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 2, "session.started and charge_token.issued");
    assert!(ids.contains(first_id), "the same event id on every endpoint");
    let body: Value = serde_json::from_str(&same[0].body).unwrap();
    assert_eq!(body["type"], "session.started");
    assert!(body["timestamp"].is_string());
    assert_eq!(body["data"]["session"]["status"], "ACTIVE");

    // The token's value reaches the operator's endpoint and never the app's.
    let op_body: Value = serde_json::from_str(&op_got[0].body).unwrap();
    assert_eq!(op_body["type"], "charge_token.issued");
    assert!(op_body["data"]["chargeToken"]["token"].as_str().unwrap().starts_with("tok_"));
    for r in &all_got {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        if body["type"] == "charge_token.issued" {
            assert_eq!(body["data"]["chargeToken"]["token"], Value::Null);
        }
    }
    // The webhook-id is the event id of the API.
    let listed = crate::events::events_eventually(&app, &world.app_token, Some(vec!["session.started"]), 1).await;
    assert_eq!(listed[0]["node"]["id"].as_str().unwrap(), first_id);

    // The attempts log shows the failures and the success.
    let log = attempts(&app, &world.app_token, &app_endpoint).await;
    let for_first: Vec<_> = log.iter().filter(|a| &a["eventId"] == first_id).collect();
    assert_eq!(for_first[0]["attempt"], 1);
    assert_eq!(for_first[0]["status"], "FAILED");
    assert_eq!(for_first[0]["httpStatus"], 500);
    assert_eq!(for_first[1]["error"], "timed out");
    assert_eq!(for_first.last().unwrap()["status"], "SUCCEEDED");
    let failed = app.ok(&world.app_token, DELIVERIES, json!({ "e": app_endpoint, "status": "FAILED" })).await;
    assert_eq!(failed["webhookDeliveries"]["edges"].as_array().unwrap().len(), 2);
    assert_eq!(for_first.len(), 3);

    // redeliverEvent sends it again, same id.
    app.ok(
        &world.app_token,
        "mutation($e: ID!, $v: ID!) { redeliverEvent(input: {endpointId: $e, eventId: $v}) { eventId } }",
        json!({ "e": app_endpoint, "v": first_id }),
    )
    .await;
    let again = app_hooks.wait_for(got.len() + 1, Duration::from_secs(10)).await;
    assert_eq!(&again.last().unwrap().id, first_id);
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_overlap() {
    let app = TestApp::with_config(fast).await;
    let world = app.world().await;
    let hooks = Receiver::start().await;
    let (endpoint, old) = create(&app, &world.app_token, &hooks.url(), Some(vec!["session.started"])).await;
    let data = app
        .ok(
            &world.app_token,
            "mutation($id: ID!) { rotateWebhookSecret(input: {id: $id}) { secret endpoint { id } } }",
            json!({ "id": endpoint }),
        )
        .await;
    let new = data["rotateWebhookSecret"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    app.start_session(&world, "k1").await;
    let got = hooks.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].signature.split(' ').count(), 2);
    let verified = verify_webhooks(&[(old, got[0].clone()), (new, got[0].clone())]).await;
    assert!(verified.iter().all(Result::is_ok), "{verified:?}");
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_the_owner_sees_why() {
    let app = TestApp::with_config(fast).await;
    let world = app.world().await;
    let hooks = Receiver::start().await;
    hooks.script(&[Answer::Status(410)]);
    let (endpoint, _) = create(&app, &world.app_token, &hooks.url(), Some(vec!["session.started"])).await;
    app.start_session(&world, "k1").await;
    hooks.wait_for(1, Duration::from_secs(20)).await;
    let query = "{ webhookEndpoints { edges { node { id status disabledReason } } } }";
    let mut status = Value::Null;
    for _ in 0..100 {
        status = app.ok(&world.app_token, query, json!({})).await["webhookEndpoints"]["edges"][0]["node"].clone();
        if status["status"] == "DISABLED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "DISABLED", "{status}");
    assert!(status["disabledReason"].as_str().unwrap().contains("410"));
    // No retry after a 410, and nothing more while disabled.
    app.start_session(&world, "k2").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hooks.received().len(), 1);
    // Enabled again, it receives new events (a disabled endpoint is subscribed to nothing).
    app.ok(
        &world.app_token,
        "mutation($id: ID!) { updateWebhookEndpoint(input: {id: $id, status: ENABLED}) { endpoint { status disabledReason } } }",
        json!({ "id": endpoint }),
    )
    .await;
    app.start_session(&world, "k3").await;
    let got = hooks.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].answered, 200);
}

#[tokio::test]
async fn private_targets_are_refused_without_the_setting() {
    let app = TestApp::new().await;
    let world = app.world().await;
    let hooks = Receiver::start().await;
    let port = hooks.addr.port();
    let bad = |url: String| {
        let (app, token) = (&app, world.app_token.clone());
        async move { app.error_code(Some(&token), CREATE, json!({ "url": url })).await }
    };
    assert_eq!(bad(hooks.url()).await, "BAD_USER_INPUT", "plain http");
    assert_eq!(bad(format!("https://127.0.0.1:{port}/hook")).await, "BAD_USER_INPUT");
    assert_eq!(bad(format!("https://[::1]:{port}/hook")).await, "BAD_USER_INPUT");
    assert_eq!(bad("https://user:pw@example.com/hook".into()).await, "BAD_USER_INPUT");
    assert_eq!(bad("ftp://example.com/".into()).await, "BAD_USER_INPUT");
    // A hostname is accepted, and checked when connecting: `localhost` resolves to
    // loopback, so the attempt is refused and nothing reaches the receiver.
    let (endpoint, _) =
        create(&app, &world.app_token, &format!("https://localhost:{port}/hook"), Some(vec!["session.started"])).await;
    app.start_session(&world, "k1").await;
    let mut log = Vec::new();
    for _ in 0..200 {
        log = attempts(&app, &world.app_token, &endpoint).await;
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log[0]["status"], "FAILED");
    assert!(log[0]["error"].as_str().unwrap().contains("refused"), "{}", log[0]);
    assert!(hooks.received().is_empty());
}

#[tokio::test]
async fn endpoints_and_deliveries_are_tenant_isolated() {
    let app = TestApp::with_config(fast).await;
    let world = app.world().await;
    let hooks = Receiver::start().await;
    let (endpoint, _) = create(&app, &world.app_token, &hooks.url(), None).await;
    let other = app.token(Role::App(app.create_app("Other").await));
    let listed = app.ok(&other, "{ webhookEndpoints { edges { node { id } } } }", json!({})).await;
    assert!(listed["webhookEndpoints"]["edges"].as_array().unwrap().is_empty());
    assert_eq!(app.error_code(Some(&other), DELIVERIES, json!({ "e": endpoint })).await, "NOT_FOUND");
    for mutation in [
        "mutation($id: ID!) { updateWebhookEndpoint(input: {id: $id, url: \"http://127.0.0.1:1/x\"}) { endpoint { id } } }",
        "mutation($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { deletedEndpointId } }",
        "mutation($id: ID!) { rotateWebhookSecret(input: {id: $id}) { secret } }",
    ] {
        assert_eq!(app.error_code(Some(&other), mutation, json!({ "id": endpoint })).await, "NOT_FOUND");
    }
    // An app cannot register an endpoint for someone else, nor redeliver another's event.
    let code = app.error_code(Some(&other), CREATE, json!({ "url": hooks.url(), "op": world.operator_id })).await;
    assert_eq!(code, "FORBIDDEN");
    let own = crate::events::events_eventually(&app, &world.app_token, None, 2).await;
    let (other_endpoint, _) = create(&app, &other, &hooks.url(), None).await;
    let code = app
        .error_code(
            Some(&other),
            "mutation($e: ID!, $v: ID!) { redeliverEvent(input: {endpointId: $e, eventId: $v}) { eventId } }",
            json!({ "e": other_endpoint, "v": own[0]["node"]["id"] }),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    // Admins create for a party.
    let data = app.ok(&app.admin(), CREATE, json!({ "url": hooks.url(), "op": world.operator_id })).await;
    assert_eq!(data["createWebhookEndpoint"]["endpoint"]["status"], "ENABLED");
    assert_eq!(app.error_code(Some(&app.admin()), CREATE, json!({ "url": hooks.url() })).await, "BAD_USER_INPUT");
    // Deleting removes it.
    app.ok(
        &world.app_token,
        "mutation($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { deletedEndpointId } }",
        json!({ "id": endpoint }),
    )
    .await;
    assert_eq!(app.error_code(Some(&world.app_token), DELIVERIES, json!({ "e": endpoint })).await, "NOT_FOUND");
}

/// Appends `n` events for `app_id` directly (in transactions of 10), as the flows do.
async fn burst(app: &TestApp, app_id: Uuid, n: usize) {
    use diesel_async::AsyncConnection;
    let mut conn = app.broker.pool.get().await.unwrap();
    for chunk in 0..n / 10 {
        conn.transaction(async |conn| {
            for i in 0..10 {
                let data = json!({ "burst": chunk * 10 + i });
                let event = Event {
                    kind: EventType::SessionStarted,
                    app_id: Some(app_id),
                    operator_id: None,
                    data,
                    operator_data: None,
                };
                event_log::emit(conn, event).await?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .await
        .unwrap();
    }
    event_log::announce_audience(&app.broker, Some(app_id), None);
}

fn unique_ids(receiver: &Receiver) -> (usize, HashMap<String, usize>) {
    let mut counts = HashMap::new();
    for r in receiver.received() {
        *counts.entry(r.id).or_insert(0) += 1;
    }
    (receiver.received().len(), counts)
}

#[tokio::test]
async fn two_processes_deliver_a_burst_exactly_once() {
    let first = TestApp::with_config(fast).await;
    let second = TestApp::on_db(first.db.clone(), fast).await;
    let app_id = first.create_app("Burst").await;
    let token = first.token(Role::App(app_id));
    let receivers = [Receiver::start().await, Receiver::start().await, Receiver::start().await];
    for r in &receivers {
        create(&first, &token, &r.url(), None).await;
    }
    burst(&first, app_id, 500).await;
    for r in &receivers {
        r.wait_for(500, Duration::from_secs(60)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in &receivers {
        let (total, counts) = unique_ids(r);
        assert_eq!(counts.len(), 500);
        assert_eq!(total, 500, "each (endpoint, event) delivered exactly once");
    }
    drop(second);
}

#[tokio::test]
async fn a_killed_server_loses_nothing() {
    let db = Arc::new(TestDb::new().await);
    let app = TestApp::on_db(db.clone(), |c| {
        fast(c);
        c.events.worker = false;
    })
    .await;
    let app_id = app.create_app("Crash").await;
    let receiver = Receiver::start().await;
    // A slow receiver, so the server is killed with deliveries in flight.
    receiver.script(&[Answer::Slow(Duration::from_millis(50)); 400]);
    create(&app, &app.token(Role::App(app_id)), &receiver.url(), None).await;
    burst(&app, app_id, 300).await;
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("CURBPAY_JWT_SECRET", JWT_SECRET),
        ("CURBPAY_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("CURBPAY_WEBHOOK_TIMEOUT", "1s"),
        ("CURBPAY_WEBHOOK_RETRY_SCHEDULE", "0s,100ms,100ms,100ms"),
    ];
    let server = Curbpay::serve(&env).await;
    receiver.wait_for(20, Duration::from_secs(30)).await;
    drop(server); // SIGKILL, mid-burst
    let before = unique_ids(&receiver).1.len();
    assert!(before < 300, "the kill came mid-burst ({before} delivered)");
    let restarted = Curbpay::serve(&env).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while unique_ids(&receiver).1.len() < 300 {
        assert!(std::time::Instant::now() < deadline, "only {} of 300 delivered", unique_ids(&receiver).1.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    restarted.stop().await;
}
