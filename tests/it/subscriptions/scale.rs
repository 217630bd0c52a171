//! Two server processes on one database, and many concurrent subscribers.

use curbpay::auth::Role;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::util::process::{Curbpay, Parties};
use crate::util::{JWT_SECRET, START_SESSION, TestApp, TestDb, id};

use super::{
    Issued, PROMPTLY, TOKENS, WsClient, bearer, check_token, expect_connected, issue_for, issued_from, session_vars,
    subscribe_tokens, until,
};

// 8. Two server processes (the real binary) on one database.

#[tokio::test]
async fn tokens_issued_on_one_process_reach_subscribers_on_another() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str()), ("CURBPAY_JWT_SECRET", JWT_SECRET), ("RUST_LOG", "warn")];
    let one = Curbpay::serve(&env).await;
    let two = Curbpay::serve(&env).await;
    assert_ne!(one.addr, two.addr);
    // The whole setup goes through process 1 over HTTP.
    let Parties { operator_id, customer_id, app_token, operator_token, authorization_url: url, .. } =
        one.parties(JWT_SECRET).await;
    assert!(url.starts_with(&format!("http://{}/", one.addr)), "{url}");
    let start = async |key: &str| {
        let (zone, plate) = (format!("Z-{key}"), format!("P-{key}"));
        let data = one.ok(&app_token, START_SESSION, session_vars(customer_id, operator_id, key, &zone, &plate)).await;
        issued_from(&data, &zone, &plate)
    };

    let first = start("s-1").await;
    let mut sub = subscribe_tokens(&two.ws_url(), &operator_token, Some("0"), Some(2));
    expect_connected(&mut sub).await;
    check_token(&sub.next_data().await, "1", &first); // replayed from the table by process 2
    // Process 2 has caught up and waits; only process 1's NOTIFY can wake it.
    let second = start("s-2").await;
    let live = tokio::time::timeout(PROMPTLY, sub.next_data()).await.expect("no cross-process delivery within 10 s");
    check_token(&live, "2", &second);
    assert_eq!(sub.exit_code().await, 0, "COUNT=2 makes the client disconnect");

    // Missed while disconnected from process 2; replayed on reconnect, then live again.
    let third = start("s-3").await;
    let fourth = start("s-4").await;
    let mut sub = subscribe_tokens(&two.ws_url(), &operator_token, Some("2"), None);
    expect_connected(&mut sub).await;
    check_token(&sub.next_data().await, "3", &third);
    check_token(&sub.next_data().await, "4", &fourth);
    let fifth = start("s-5").await;
    check_token(&sub.next_data().await, "5", &fifth);
}

// 9. Many concurrent subscribers (graphql-transport-ws over tokio-tungstenite).

#[tokio::test]
async fn twenty_concurrent_subscribers_each_get_exactly_their_own_tokens() {
    const OPERATORS: usize = 20;
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut operators = vec![w.operator_id];
    let more = futures_util::future::join_all((1..OPERATORS).map(|n| {
        let t = &t;
        async move {
            let operator = t.create_operator(&format!("Operator {n}")).await;
            t.activate_link(w.app_id, operator).await;
            operator
        }
    }))
    .await;
    operators.extend(more);

    let mut clients = Vec::new();
    for (n, operator) in operators.iter().enumerate() {
        let mut ws = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
        ws.init(bearer(&t.token(Role::Operator(*operator)))).await;
        ws.send(json!({ "type": "subscribe", "id": format!("sub-{n}"), "payload": { "query": TOKENS, "variables": { "after": "0" } } }))
            .await;
        clients.push(ws);
    }

    // Two tokens per operator, issued concurrently (bounded: the test server's pool is small).
    let jobs: Vec<(usize, String)> =
        (0..2).flat_map(|round| (0..OPERATORS).map(move |n| (n, format!("op{n}-r{round}")))).collect();
    let results: Vec<(usize, Issued)> = futures_util::stream::iter(jobs)
        .map(|(n, key)| {
            let (t, w, operator) = (&t, &w, operators[n]);
            // One vehicle per session: a vehicle has one ACTIVE session per zone.
            async move { (n, issue_for(t, w, operator, &key, &format!("Z{n}"), &format!("P-{key}")).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let receive = async |ws: &mut WsClient, n: usize| -> Value {
        let message = ws.recv().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], format!("sub-{n}"));
        assert!(message["payload"].get("errors").is_none(), "{message}");
        message["payload"]["data"].clone()
    };
    for (n, ws) in clients.iter_mut().enumerate() {
        let mut mine: Vec<Issued> = results.iter().filter(|(m, _)| *m == n).map(|(_, i)| i.clone()).collect();
        assert_eq!(mine.len(), 2);
        for cursor in ["1", "2"] {
            let data = receive(ws, n).await;
            let token_id = id(&data["chargeTokenIssued"]["chargeToken"]["id"]);
            let at = mine
                .iter()
                .position(|i| i.token_id == token_id)
                .unwrap_or_else(|| panic!("operator {n} got a foreign token: {data:#}"));
            check_token(&data, cursor, &mine.remove(at));
        }
    }
    assert_eq!(t.broker.events.active_topics(), OPERATORS, "one wake-up topic per subscribed operator");

    // A marker per operator: the next event each gets is its own third token, so nobody
    // received anything extra (a duplicate or another operator's token).
    for (n, operator) in operators.iter().enumerate() {
        let marker = issue_for(&t, &w, *operator, &format!("op{n}-marker"), &format!("Z{n}"), &format!("P{n}")).await;
        let data = receive(&mut clients[n], n).await;
        check_token(&data, "3", &marker);
    }

    drop(clients);
    until("every subscription is gone", || t.broker.events.active_topics() == 0).await;
}
