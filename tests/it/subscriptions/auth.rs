//! Authentication and authorization of subscriptions and of the WebSocket itself: who may
//! subscribe, and what happens when the JWT expires or never arrives.

use std::time::{Duration, Instant};

use curbpay::auth::{Claims, Role};
use serde_json::json;

use crate::util::{JWT_SECRET, START_SESSION, TestApp};

use super::{
    Incoming, PROMPTLY, WsClient, bearer, check_token, drain, expect_connected, graphql_error_code, issue, mint,
    session_vars, subscribe_tokens,
};

// 4. Authentication and authorization.

#[tokio::test]
async fn unauthenticated_subscribers_are_rejected_at_connection_init() {
    let t = TestApp::new().await;
    let w = t.world().await;
    issue(&t, &w, "s-1").await;

    let mut expired = Claims::new(Role::Operator(w.operator_id), None, Duration::from_secs(60));
    expired.exp -= 3600; // well past the verifier's leeway
    let wrong_secret = "another-secret-another-secret-0123456789";
    let cases = [
        ("no token", String::new(), "authentication required"),
        ("not a JWT", "not-a-jwt".to_owned(), "malformed"),
        (
            "wrong secret",
            mint(&Claims::new(Role::Operator(w.operator_id), None, Duration::from_secs(60)), wrong_secret),
            "signature",
        ),
        ("expired", mint(&expired, JWT_SECRET), "expired"),
    ];
    for (case, token, why) in cases {
        let sub = subscribe_tokens(&t.ws_url(), &token, Some("0"), None);
        let (events, code) = drain(sub).await;
        assert_eq!(code, 2, "{case}: the client reports a closed socket: {events:#?}");
        assert!(
            !events.iter().any(|e| e["type"] == "connected" || e["type"] == "next"),
            "{case}: a rejected client must never be acknowledged or get data: {events:#?}"
        );
        let closed = events.iter().find(|e| e["type"] == "closed").unwrap_or_else(|| panic!("{case}: {events:#?}"));
        assert_eq!(closed["code"], 4403, "{case}: {events:#?}");
        let reason = closed["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{case}: the close says why: {reason:?}");
        assert!(token.is_empty() || !reason.contains(&token), "{case}: the reason must not echo the token");
    }
}

#[tokio::test]
async fn only_operators_may_subscribe_to_charge_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    issue(&t, &w, "s-1").await;

    for (who, token) in [("app", w.app_token.clone()), ("admin", t.admin())] {
        let sub = subscribe_tokens(&t.ws_url(), &token, Some("0"), None);
        let (events, code) = drain(sub).await;
        // Connected, then the resolver's error as a result, then the end of the operation.
        let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
        assert_eq!(kinds, ["connected", "next", "complete"], "{who}: {events:#?}");
        assert_eq!(code, 0, "{who}");
        let codes: Vec<_> = events.iter().filter_map(graphql_error_code).collect();
        assert_eq!(codes, ["FORBIDDEN"], "{who}: {events:#?}");
        assert!(
            !events.iter().any(|e| e["type"] == "next" && !e["payload"]["data"].is_null()),
            "{who} must get no token: {events:#?}"
        );
    }
}

// 5. Subscriptions end when the JWT does.

#[tokio::test]
async fn a_subscription_completes_when_its_jwt_expires() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = issue(&t, &w, "s-1").await;

    let minted = Instant::now();
    // `exp` has one-second resolution: this token expires 4–5 s from now, time enough for
    // the client to start and authenticate on a busy machine.
    let token = t.token_for(Role::Operator(w.operator_id), Duration::from_secs(5));
    let mut sub = subscribe_tokens(&t.ws_url(), &token, Some("0"), None);
    expect_connected(&mut sub).await;
    check_token(&sub.next_data().await, "1", &first);

    let end = tokio::time::timeout(Duration::from_secs(10), sub.next_event())
        .await
        .expect("the subscription outlived its JWT by seconds")
        .expect("the client reports how the subscription ended");
    let elapsed = minted.elapsed();
    assert!(end["type"] == "complete" || (end["type"] == "closed" && end["code"] == 1000), "{end}");
    assert!(elapsed >= Duration::from_millis(3900), "ended before the token expired: {elapsed:?}");
    assert_eq!(sub.exit_code().await, 0);
}

// 10. An expired JWT must not keep authorizing a WebSocket connection.

/// A WebSocket authenticates once, in `connection_init`, and carries queries and
/// mutations too: once the JWT has expired (and HTTP rejects it), operations on the open
/// socket are refused as well. Here an app tries to start a parking session with a JWT
/// the server itself already rejects over HTTP.
#[tokio::test]
async fn an_expired_jwt_stops_authorizing_operations_on_an_open_websocket() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut claims = Claims::new(Role::App(w.app_id), None, Duration::from_secs(60));
    // Already past `exp` but inside the verifier's 30 s leeway: accepted at connection_init,
    // and rejected everywhere within about 2 s.
    claims.exp = chrono::Utc::now().timestamp() - 29;
    let token = mint(&claims, JWT_SECRET);
    let mut ws = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
    ws.init(bearer(&token)).await;

    // Wait (polling; wall-clock time has to pass, there is no event for it) until the
    // server rejects this JWT over HTTP.
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let response = t.post(Some(&token), "{ viewer { role } }", json!({})).await;
        if crate::util::code_of(&response).as_deref() == Some("UNAUTHENTICATED") {
            break;
        }
        assert!(Instant::now() < deadline, "the JWT never expired: {response}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let attempts = [
        ("query", json!({ "query": "{ viewer { role expiresAt } }" })),
        (
            "mutation",
            json!({ "query": START_SESSION, "variables": session_vars(w.customer_id, w.operator_id, "late", "Z", "P") }),
        ),
    ];
    let mut authorized = Vec::new();
    for (n, (what, payload)) in attempts.into_iter().enumerate() {
        ws.send(json!({ "type": "subscribe", "id": format!("op-{n}"), "payload": payload })).await;
        match ws.incoming().await {
            // Closing the socket (e.g. 4401/4403) would be a fine answer too.
            Incoming::Closed(_) => break,
            Incoming::Json(message) => {
                let refused = message["payload"]["data"].is_null()
                    && message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED";
                if !refused {
                    authorized.push(format!("{what}: {message}"));
                }
                if message["type"] == "next" {
                    let complete = ws.recv().await;
                    assert_eq!(complete["type"], "complete", "{complete}");
                }
            }
        }
    }
    assert!(
        authorized.is_empty(),
        "an expired JWT still authorized operations over the WebSocket:\n{}",
        authorized.join("\n")
    );
}

// A socket that never authenticates is closed; one that does stays open.

#[tokio::test]
async fn sockets_that_never_send_connection_init_are_closed() {
    let t = TestApp::with_config(|c| c.ws_init_timeout = Duration::from_millis(300)).await;
    let mut silent = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
    let started = std::time::Instant::now();
    assert!(matches!(silent.incoming().await, Incoming::Closed(_)), "the silent socket was closed");
    assert!(started.elapsed() < Duration::from_secs(5));

    // An authenticated socket outlives the deadline and still serves subscriptions.
    let w = t.world().await;
    let first = issue(&t, &w, "k1").await;
    let mut client = WsClient::connect(&t.ws_url(), "graphql-transport-ws").await;
    client.init(bearer(&w.operator_token)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // past the init deadline on purpose
    client
        .send(json!({
            "id": "1",
            "type": "subscribe",
            "payload": { "query": "subscription { chargeTokenIssued(after: \"0\") { chargeToken { id } } }" },
        }))
        .await;
    let next = client.recv().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["payload"]["data"]["chargeTokenIssued"]["chargeToken"]["id"], first.token_id.to_string().as_str());
}
