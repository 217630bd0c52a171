//! linkStatusChanged: each party sees its own links' changes, in order.

use curbpay::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::util::node::NodeSubscriber;
use crate::util::{TestApp, id};

use super::{LINK_OPERATOR, LINKS, PROMPTLY, after, expect_connected};

// 7. linkStatusChanged: each party sees its own links' changes, in order.

async fn subscribe_links(t: &TestApp, token: &str) -> NodeSubscriber {
    let mut sub = NodeSubscriber::spawn(&t.ws_url(), token, LINKS, after(Some("0")), None);
    expect_connected(&mut sub).await;
    sub
}

/// Links as an admin and follows the authorization URL; returns the link id.
async fn link_and_authorize(t: &TestApp, app: Uuid, operator: Uuid) -> Uuid {
    let data = t.ok(&t.admin(), LINK_OPERATOR, json!({ "a": app, "o": operator })).await;
    let link = &data["linkOperator"]["link"];
    assert_eq!(link["status"], "PENDING");
    let (status, body, _) = t.follow(link["authorizationUrl"].as_str().unwrap()).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    id(&link["id"])
}

#[track_caller]
fn check_link_event(data: &Value, status: &str, link: Uuid, app: Uuid, operator: Uuid) -> i64 {
    let event = &data["linkStatusChanged"];
    assert_eq!(event["status"], status, "{data:#}");
    assert_eq!(id(&event["link"]["id"]), link, "{data:#}");
    assert_eq!(id(&event["link"]["app"]["id"]), app, "{data:#}");
    assert_eq!(id(&event["link"]["operator"]["id"]), operator, "{data:#}");
    assert!(
        event["occurredAt"].as_str().is_some_and(|s| s.parse::<chrono::DateTime<chrono::Utc>>().is_ok()),
        "{data:#}"
    );
    event["cursor"].as_str().and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("cursor: {data:#}"))
}

#[tokio::test]
async fn link_status_changes_reach_only_the_parties_of_the_link() {
    let t = TestApp::new().await;
    let app_a = t.create_app("ParkNow").await;
    let app_b = t.create_app("EasyPark").await;
    let op = t.create_operator("Downtown Garages").await;
    let other_op = t.create_operator("Airport Parking").await;

    let mut sub_a = subscribe_links(&t, &t.token(Role::App(app_a))).await;
    let mut sub_b = subscribe_links(&t, &t.token(Role::App(app_b))).await;
    let mut sub_op = subscribe_links(&t, &t.token(Role::Operator(op))).await;

    let link_a = link_and_authorize(&t, app_a, op).await;
    for sub in [&mut sub_a, &mut sub_op] {
        let pending = check_link_event(&sub.next_data().await, "PENDING", link_a, app_a, op);
        let active_event = sub.next_data().await;
        let active = check_link_event(&active_event, "ACTIVE", link_a, app_a, op);
        assert!(active > pending, "cursors increase");
        assert_eq!(active_event["linkStatusChanged"]["link"]["status"], "ACTIVE");
    }

    // B's stream is ordered: its first event being its own link shows it got none of A's.
    let link_b = link_and_authorize(&t, app_b, other_op).await;
    check_link_event(&sub_b.next_data().await, "PENDING", link_b, app_b, other_op);
    check_link_event(&sub_b.next_data().await, "ACTIVE", link_b, app_b, other_op);

    // Likewise the operator saw nothing of B's link to another operator.
    let link_b_op = link_and_authorize(&t, app_b, op).await;
    check_link_event(&sub_op.next_data().await, "PENDING", link_b_op, app_b, op);
    check_link_event(&sub_b.next_data().await, "PENDING", link_b_op, app_b, op);
    // ...and A saw nothing of B's links: its next event is its own again.
    let data = t
        .ok(
            &t.admin(),
            "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { status } } }",
            json!({ "l": link_a }),
        )
        .await;
    assert_eq!(data["unlinkOperator"]["link"]["status"], "REVOKED");
    check_link_event(&sub_a.next_data().await, "REVOKED", link_a, app_a, op);
}

#[tokio::test]
async fn an_app_initiated_link_reaches_its_operator_to_authorize() {
    let t = TestApp::new().await;
    let app = t.create_app("ParkNow").await;
    let op = t.create_operator("Downtown Garages").await;
    let query = "subscription($after: String) {
  linkStatusChanged(after: $after) { status link { id status authorizationUrl } }
}";
    let mut sub = NodeSubscriber::spawn(&t.ws_url(), &t.token(Role::Operator(op)), query, after(Some("0")), None);
    expect_connected(&mut sub).await;

    // The app asks for the link; only the operator can authorize it.
    let data = t.ok(&t.token(Role::App(app)), LINK_OPERATOR, json!({ "a": app, "o": op })).await;
    let link = id(&data["linkOperator"]["link"]["id"]);
    assert!(data["linkOperator"]["link"]["authorizationUrl"].is_null(), "{data}");

    // The operator learns of it live, with the URL to authorize it.
    let event = tokio::time::timeout(PROMPTLY, sub.next_data()).await.expect("the pending link reaches the operator");
    let change = &event["linkStatusChanged"];
    assert_eq!(change["status"], "PENDING", "{event}");
    assert_eq!(id(&change["link"]["id"]), link);
    let url = change["link"]["authorizationUrl"].as_str().expect("the operator gets the authorization URL");
    let (status, body, _) = t.follow(url).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    let event = tokio::time::timeout(PROMPTLY, sub.next_data()).await.expect("the activation reaches the operator");
    assert_eq!(event["linkStatusChanged"]["status"], "ACTIVE", "{event}");
    assert!(event["linkStatusChanged"]["link"]["authorizationUrl"].is_null(), "{event}");
}
