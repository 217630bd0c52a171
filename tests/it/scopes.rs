//! Read-only tokens for partner frontends (`scope: "read"`), over WebSocket and from
//! `curbpay token`; and turning GraphiQL off. (The HTTP read-only column of every
//! query and mutation is in the authorization matrix.)

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use curbpay::auth::{Claims, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::{JWT_SECRET, START_SESSION, TestApp, code_of};

fn read_token(role: Role) -> String {
    let mut claims = Claims::new(role, None, Duration::from_secs(600));
    claims.scope = Some("read".to_owned());
    curbpay::auth::mint(JWT_SECRET.as_bytes(), &claims).unwrap()
}

async fn next_text(
    socket: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("the server answered") {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] != "ka" && value["type"] != "ping" {
                    return value;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

/// Over WebSocket a read-only token subscribes and queries, but its mutations are
/// FORBIDDEN and write nothing.
#[tokio::test]
async fn a_read_only_token_cannot_mutate_over_websocket() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut request = t.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", read_token(Role::App(w.app_id))) } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    assert_eq!(next_text(&mut socket).await["type"], "connection_ack");

    let start = json!({ "c": w.customer_id, "o": w.operator_id, "k": "ro-1", "z": "Z-1", "p": "RO 1" });
    let subscribe =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": START_SESSION, "variables": start } });
    socket.send(Message::text(subscribe.to_string())).await.unwrap();
    let reply = next_text(&mut socket).await;
    let errors = if reply["type"] == "next" { &reply["payload"]["errors"] } else { &reply["payload"] };
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{reply}");
    assert!(errors[0]["message"].as_str().unwrap().contains("write scope"), "{reply}");

    let query = json!({ "id": "2", "type": "subscribe", "payload": { "query": "{ viewer { scopes } parkingSessions { totalCount } }" } });
    socket.send(Message::text(query.to_string())).await.unwrap();
    let reply = loop {
        let reply = next_text(&mut socket).await;
        if reply["id"] == "2" {
            break reply;
        }
    };
    assert_eq!(
        reply["payload"]["data"],
        json!({ "viewer": { "scopes": ["read"] }, "parkingSessions": { "totalCount": 0 } }),
        "{reply}"
    );
    // Nothing was started.
    let data = t.ok(&t.admin(), "{ parkingSessions { totalCount } }", json!({})).await;
    assert_eq!(data["parkingSessions"]["totalCount"], 0);
}

/// Unknown scope values never authenticate, so a typo cannot widen access.
#[tokio::test]
async fn unknown_scopes_are_unauthenticated() {
    let t = TestApp::new().await;
    for scope in ["reads", "read admin", "", "write:all"] {
        let mut claims = Claims::new(Role::Admin, None, Duration::from_secs(600));
        claims.scope = Some(scope.to_owned());
        let token = curbpay::auth::mint(JWT_SECRET.as_bytes(), &claims).unwrap();
        let response = t.post(Some(&token), "{ viewer { role } }", json!({})).await;
        assert_eq!(code_of(&response).as_deref(), Some("UNAUTHENTICATED"), "{scope:?}: {response}");
    }
}

/// `curbpay token --scope read` mints a token the server reads as read-only.
#[tokio::test]
async fn the_cli_mints_read_only_tokens() {
    let t = TestApp::new().await;
    let operator = t.create_operator("Lot").await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_curbpay"))
        .args(["token", "--role", "operator", "--operator-id", &operator.to_string(), "--scope", "read"])
        .env("CURBPAY_JWT_SECRET", JWT_SECRET)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap();
    let data = t.ok(token.trim(), "{ viewer { role scopes } }", json!({})).await;
    assert_eq!(data["viewer"], json!({ "role": "OPERATOR", "scopes": ["read"] }));
    let refused = t
        .error_code(
            Some(token.trim()),
            "mutation { createOperator(input: {name: \"x\"}) { operator { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(refused, "FORBIDDEN");
}

#[tokio::test]
async fn graphiql_can_be_turned_off() {
    let on = TestApp::new().await;
    let off = TestApp::with_config(|config| config.graphiql = false).await;
    for path in ["/graphiql", "/graphiql/graphiql.js", "/"] {
        let get = || Request::get(path).body(Body::empty()).unwrap();
        let (status, _) = on.send(get()).await;
        assert!(status == StatusCode::OK || status.is_redirection(), "{path}: {status}");
        let (status, _) = off.send(get()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // The API itself is unaffected.
    assert_eq!(off.ok(&off.admin(), "{ viewer { role } }", json!({})).await["viewer"]["role"], "ADMIN");
}
