//! The legacy subscriptions-transport-ws protocol (`graphql-ws` subprotocol).

use serde_json::json;

use crate::util::TestApp;

use super::{Incoming, TOKENS, WsClient, bearer, check_token, issue};

// 6. The legacy subscriptions-transport-ws protocol (`graphql-ws` subprotocol).

#[tokio::test]
async fn legacy_subscriptions_transport_ws_protocol_delivers_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = issue(&t, &w, "s-1").await;

    for key in ["Authorization", "authorization"] {
        let mut ws = WsClient::connect(&t.ws_url(), "graphql-ws").await;
        ws.init(json!({ key: format!("Bearer {}", w.operator_token) })).await;
        ws.send(json!({ "type": "start", "id": "1", "payload": { "query": TOKENS, "variables": { "after": "0" } } }))
            .await;
        let data = ws.recv().await;
        assert_eq!(data["type"], "data", "{key}: {data}");
        assert_eq!(data["id"], "1");
        assert!(data["payload"].get("errors").is_none(), "{data}");
        check_token(&data["payload"]["data"], "1", &first);

        if key == "authorization" {
            // Live on the legacy protocol too.
            let second = issue(&t, &w, "s-2").await;
            let data = ws.recv().await;
            assert_eq!((&data["type"], &data["id"]), (&json!("data"), &json!("1")), "{data}");
            check_token(&data["payload"]["data"], "2", &second);
        }

        ws.send(json!({ "type": "stop", "id": "1" })).await;
        let complete = ws.recv().await;
        assert_eq!((&complete["type"], &complete["id"]), (&json!("complete"), &json!("1")), "{complete}");
    }
}

#[tokio::test]
async fn legacy_protocol_refuses_a_bad_token_with_connection_error() {
    let t = TestApp::new().await;
    let mut ws = WsClient::connect(&t.ws_url(), "graphql-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": bearer("not-a-jwt") })).await;
    let refused = ws.recv().await;
    assert_eq!(refused["type"], "connection_error", "{refused}");
    assert!(refused["payload"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{refused}");
    // A `start` is never served on that connection.
    ws.send(json!({ "type": "start", "id": "1", "payload": { "query": TOKENS, "variables": { "after": "0" } } })).await;
    match ws.incoming().await {
        Incoming::Closed(_) => {}
        Incoming::Json(message) => panic!("the refused connection answered: {message}"),
    }
}
