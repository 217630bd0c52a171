//! Delivery with the npm graphql-ws client: replayed then live tokens, reconnecting with
//! a cursor, and routing each operator only its own tokens.

use curbpay::auth::Role;

use crate::util::TestApp;

use super::{check_token, drain, expect_connected, graphql_error_code, issue, issue_for, subscribe_tokens, until};

// 1. Live delivery with the npm graphql-ws client.

#[tokio::test]
async fn graphql_ws_client_gets_replayed_then_live_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let first = issue_for(&t, &w, w.operator_id, "s-1", "Z-12", "B-CP 123").await;

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some("0"), None);
    expect_connected(&mut sub).await;
    let first_value = check_token(&sub.next_data().await, "1", &first);

    // The stream has caught up and now waits; this one can only arrive live.
    let second = issue_for(&t, &w, w.operator_id, "s-2", "Z-7", "HH-X 42").await;
    let second_value = check_token(&sub.next_data().await, "2", &second);
    assert_ne!(first_value, second_value, "each session has its own single-use token");
}

/// Without `after` the stream starts with the next token: nothing issued earlier.
#[tokio::test]
async fn without_after_only_new_tokens_arrive() {
    let t = TestApp::new().await;
    let w = t.world().await;
    issue(&t, &w, "before").await;

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, None, None);
    expect_connected(&mut sub).await;
    // There is no protocol message for "subscription set up"; the hub registers the topic
    // right after the stream has read its starting cursor, so wait for that.
    until("the subscription is registered", || t.broker.events.active_topics() == 1).await;

    let next = issue(&t, &w, "after").await;
    check_token(&sub.next_data().await, "2", &next);
}

#[tokio::test]
async fn a_malformed_cursor_is_bad_user_input() {
    let t = TestApp::new().await;
    let w = t.world().await;
    for cursor in ["abc", "-1"] {
        let sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some(cursor), None);
        let (events, _) = drain(sub).await;
        let codes: Vec<_> = events.iter().filter_map(graphql_error_code).collect();
        assert_eq!(codes, ["BAD_USER_INPUT"], "{events:#?}");
        assert!(!events.iter().any(|e| e["type"] == "next" && !e["payload"]["data"].is_null()), "{events:#?}");
    }
}

// 2. Replay after reconnecting.

#[tokio::test]
async fn reconnecting_with_the_last_cursor_replays_exactly_what_was_missed() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let mut issued = Vec::new();
    for key in ["s-1", "s-2"] {
        issued.push(issue(&t, &w, key).await);
    }

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some("0"), Some(2));
    let mut last = String::new();
    for (n, expected) in issued.iter().enumerate() {
        let data = sub.next_data().await;
        check_token(&data, &(n + 1).to_string(), expected);
        last = data["chargeTokenIssued"]["cursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(sub.exit_code().await, 0, "COUNT=2 makes the client stop");
    assert_eq!(last, "2");
    // The server noticed the disconnect and dropped the subscription's wake-up handle.
    until("the subscription is gone", || t.broker.events.active_topics() == 0).await;

    // Issued while nobody is connected.
    for key in ["s-3", "s-4", "s-5"] {
        issued.push(issue(&t, &w, key).await);
    }

    let mut sub = subscribe_tokens(&t.ws_url(), &w.operator_token, Some(&last), None);
    expect_connected(&mut sub).await;
    for n in 3..=5 {
        check_token(&sub.next_data().await, &n.to_string(), &issued[n - 1]);
    }
    // Nothing more was replayed (no duplicate, nothing older): the next event is a new one.
    let marker = issue(&t, &w, "s-6").await;
    check_token(&sub.next_data().await, "6", &marker);
}

// 3. Routing: an operator only ever receives its own tokens.

#[tokio::test]
async fn operators_receive_only_their_own_tokens() {
    let t = TestApp::new().await;
    let w = t.world().await;
    let x = w.operator_id;
    let y = t.create_operator("Uptown Lots").await;
    t.activate_link(w.app_id, y).await;

    let mut sub_x = subscribe_tokens(&t.ws_url(), &w.operator_token, Some("0"), None);
    let mut sub_y = subscribe_tokens(&t.ws_url(), &t.token(Role::Operator(y)), Some("0"), None);
    expect_connected(&mut sub_x).await;
    expect_connected(&mut sub_y).await;

    let mut for_x = Vec::new();
    for key in ["x-1", "x-2", "x-3"] {
        for_x.push(issue_for(&t, &w, x, key, "ZX", &format!("P-{key}")).await);
    }
    let y1 = issue_for(&t, &w, y, "y-1", "ZY", "P-y-1").await;

    // Y's first event is its own first token (cursors are per operator).
    check_token(&sub_y.next_data().await, "1", &y1);
    for (n, expected) in for_x.iter().enumerate() {
        check_token(&sub_x.next_data().await, &(n + 1).to_string(), expected);
    }

    // Interleave again; each sees only its own, in order.
    let y2 = issue_for(&t, &w, y, "y-2", "ZY", "P-y-2").await;
    let x4 = issue_for(&t, &w, x, "x-4", "ZX", "P-x-4").await;
    check_token(&sub_x.next_data().await, "4", &x4);
    check_token(&sub_y.next_data().await, "2", &y2);
}
