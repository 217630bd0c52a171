//! Who may bind which processor account to a link, and whose word a webhook is.
//!
//! The attack these tests replay: app A obtained an authorization code for operator Y
//! and completed its pending link A–Z with it, so the link became ACTIVE on Y's account
//! and Z's charges landed there. Now only the link's operator (or an admin) authorizes
//! a link, the sandbox binds each code to the link and operator of its signed state,
//! and an account that is not the operator's known one waits for an admin.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use curbpay::auth::Role;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::stripe::{CREATE_APP, consent, credentials, stripe_mode};
use crate::util::stripe::Platform;
use crate::util::{START_SESSION, TestApp, code_of, id};

const LINK_OPERATOR: &str = "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id status authorizationUrl } } }";
const LINK: &str =
    "query($l: ID!) { link(id: $l) { status connectedAccountId heldAccountId failureReason authorizationUrl } }";
const COMPLETE: &str = "mutation($l: ID!, $c: String!) {
  completeLink(input: {linkId: $l, authorizationCode: $c}) { link { status connectedAccountId heldAccountId failureReason } }
}";
const ACCEPT: &str = "mutation($l: ID!) { acceptLinkAccount(input: {linkId: $l}) { link { status connectedAccountId heldAccountId failureReason } } }";
const UNLINK: &str = "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { status } } }";

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(t: &TestApp, sql: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.unwrap();
    diesel::sql_query(sql).get_result::<Count>(&mut conn).await.unwrap().n
}

/// GETs a path of this server without following redirects.
async fn get(t: &TestApp, url: &str) -> (StatusCode, Option<String>) {
    let url = url::Url::parse(url).unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let response = t.router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    (response.status(), location)
}

fn query_param(url: &str, name: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no {name} in {url}")).1.into_owned()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != name).collect();
    url.query_pairs_mut().clear().extend_pairs(&pairs).append_pair(name, value);
    url.to_string()
}

async fn authorization_url(t: &TestApp, token: &str, link: Uuid) -> Value {
    t.ok(token, LINK, json!({ "l": link })).await["link"]["authorizationUrl"].clone()
}

async fn link(t: &TestApp, token: &str, link: Uuid) -> Value {
    t.ok(token, LINK, json!({ "l": link })).await["link"].clone()
}

#[tokio::test]
async fn sandbox_an_app_cannot_bind_another_operators_account_to_its_link() {
    let t = TestApp::new().await;
    let admin = t.admin();
    let app_a = t.create_app("App A").await;
    let (op_y, op_z) = tokio::join!(t.create_operator("Operator Y"), t.create_operator("Operator Z"));
    let (app, y, z) = (t.token(Role::App(app_a)), t.token(Role::Operator(op_y)), t.token(Role::Operator(op_z)));

    // App A asks for links to Y and Z. It gets no authorization URL for either.
    let data = t.ok(&app, LINK_OPERATOR, json!({ "a": app_a, "o": op_y })).await;
    assert_eq!(data["linkOperator"]["link"]["authorizationUrl"], Value::Null, "{data}");
    let link_ay = id(&data["linkOperator"]["link"]["id"]);
    let data = t.ok(&app, LINK_OPERATOR, json!({ "a": app_a, "o": op_z })).await;
    assert_eq!(data["linkOperator"]["link"]["authorizationUrl"], Value::Null, "{data}");
    let link_az = id(&data["linkOperator"]["link"]["id"]);
    assert_eq!(authorization_url(&t, &app, link_ay).await, Value::Null);
    let url_y = authorization_url(&t, &y, link_ay).await.as_str().expect("Y sees its own URL").to_owned();
    let url_z = authorization_url(&t, &z, link_az).await.as_str().expect("Z sees its own URL").to_owned();
    assert!(!url_y.contains("operator_id"), "{url_y}");

    // The consent page used to mint a code for whichever `operator_id` the URL named.
    // Without a genuine, outstanding state it now refuses and writes nothing.
    let forged = with_param(&url_z, "state", "forged");
    assert_eq!(get(&t, &forged).await.0, StatusCode::BAD_REQUEST);
    let mut stateless = url::Url::parse(&url_z).unwrap();
    let pairs: Vec<(String, String)> = stateless.query_pairs().into_owned().filter(|(k, _)| k != "state").collect();
    stateless.query_pairs_mut().clear().extend_pairs(&pairs).append_pair("operator_id", &op_y.to_string());
    assert_eq!(get(&t, stateless.as_str()).await.0, StatusCode::BAD_REQUEST);
    // A state of one link with another platform's client id is refused too.
    let other_app = t.create_app("App B").await;
    let other = t.ok(&admin, LINK_OPERATOR, json!({ "a": other_app, "o": op_z })).await;
    let other_client = query_param(other["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap(), "client_id");
    assert_eq!(get(&t, &with_param(&url_z, "client_id", &other_client)).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(count(&t, "SELECT count(*) AS n FROM sandbox_authorization_codes").await, 0);

    // Operator Y authorizes its link; app A gets hold of the code on its way back.
    let (status, location) = get(&t, &url_y).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let code_y = query_param(&location.unwrap(), "code");

    // The attack: app A completes its link to Z with Y's code. Refused: the app does
    // not authorize links.
    let response = t.post(Some(&app), COMPLETE, json!({ "l": link_az, "c": code_y })).await;
    assert_eq!(code_of(&response).as_deref(), Some("FORBIDDEN"), "{response}");
    // Nobody can: the code is bound to link A–Y and operator Y.
    for token in [&z, &admin] {
        let response = t.post(Some(token), COMPLETE, json!({ "l": link_az, "c": code_y })).await;
        assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
    }
    // Nor through the callback with Z's state.
    let callback = format!("http://{}/connect/callback?code={code_y}&state={}", t.addr, query_param(&url_z, "state"));
    let (status, body, _) = t.follow(&callback).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let az = link(&t, &admin, link_az).await;
    assert_eq!((&az["status"], &az["connectedAccountId"]), (&json!("PENDING"), &Value::Null), "{az}");

    // So no session can start at Z, and nothing Z earns can land on Y's account.
    let customer = t.tokenize(&app, "user-1", "tok_visa").await;
    let vars = json!({ "c": customer, "o": op_z, "k": "k1", "z": "Z-1", "p": "P-1" });
    assert_eq!(t.error_code(Some(&app), START_SESSION, vars).await, "CONFLICT");

    // The code still serves the link it was issued for, and an `operator_id` slipped
    // into Z's URL is ignored: each link lands on its own operator's account.
    assert_eq!(
        t.ok(&y, COMPLETE, json!({ "l": link_ay, "c": code_y })).await["completeLink"]["link"]["status"],
        "ACTIVE"
    );
    let (status, body, _) = t.follow(&with_param(&url_z, "operator_id", &op_y.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (ay, az) = (link(&t, &admin, link_ay).await, link(&t, &admin, link_az).await);
    assert_eq!(ay["connectedAccountId"], format!("acct_sb_{}", op_y.simple()));
    assert_eq!(az["connectedAccountId"], format!("acct_sb_{}", op_z.simple()));
    assert_eq!(az["status"], "ACTIVE");
}

#[tokio::test]
async fn stripe_an_app_cannot_bind_another_operators_account_to_its_link() {
    let s = stripe_mode().await;
    let (t, admin) = (&s.t, s.t.admin());
    let app_a = s.create_app(None).await;
    let (op_y, op_z) = tokio::join!(t.create_operator("Operator Y"), t.create_operator("Operator Z"));
    let (app, z) = (t.token(Role::App(app_a)), t.token(Role::Operator(op_z)));

    // Y and Z each connected their own account once: that is the account each is known by.
    s.link(app_a, op_y, "acct_opy").await;
    let link_az = s.link(app_a, op_z, "acct_opz").await;
    // Z disconnects; later app A asks again, and the link waits for Z.
    assert_eq!(t.ok(&z, UNLINK, json!({ "l": link_az })).await["unlinkOperator"]["link"]["status"], "REVOKED");
    let data = t.ok(&app, LINK_OPERATOR, json!({ "a": app_a, "o": op_z })).await;
    assert_eq!(data["linkOperator"]["link"]["status"], "PENDING");
    assert_eq!(data["linkOperator"]["link"]["authorizationUrl"], Value::Null);

    // App A holds a code for Y's account at its own platform (Stripe's codes name only
    // the account that approved) and completes its link to Z with it.
    let code_y = s.double.authorization_code(&s.platform.connect_client_id, "acct_opy");
    let exchanges = s.double.count("POST", "/oauth/token");
    let response = t.post(Some(&app), COMPLETE, json!({ "l": link_az, "c": code_y })).await;
    assert_eq!(code_of(&response).as_deref(), Some("FORBIDDEN"), "{response}");
    assert_eq!(s.double.count("POST", "/oauth/token"), exchanges, "the refused request never reached Stripe");

    // Handed to Z (or an admin), the code still does not bind Y's account to Z's link:
    // it is not the account Z is known by. The link waits, with the reason.
    let data = t.ok(&z, COMPLETE, json!({ "l": link_az, "c": code_y })).await;
    let held = &data["completeLink"]["link"];
    assert_eq!(held["status"], "PENDING", "{held}");
    assert_eq!(held["connectedAccountId"], Value::Null);
    assert_eq!(held["heldAccountId"], "acct_opy");
    let reason = held["failureReason"].as_str().unwrap();
    assert!(reason.contains("acct_opy") && reason.contains("acceptLinkAccount"), "{reason}");
    let customer = t.tokenize(&app, "user-1", "tok_visa").await;
    let vars = json!({ "c": customer, "o": op_z, "k": "k1", "z": "Z-1", "p": "P-1" });
    assert_eq!(t.error_code(Some(&app), START_SESSION, vars.clone()).await, "CONFLICT");

    // Through the consent page (Z signed in to the wrong Stripe account): the same.
    let url = authorization_url(t, &z, link_az).await.as_str().expect("a fresh URL after the hold").to_owned();
    s.double.next_authorization("acct_opy");
    let (status, body, _) = t.follow(&consent(&url).await).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body.contains("waiting for review"), "{body}");
    assert_eq!(link(t, &admin, link_az).await["heldAccountId"], "acct_opy");

    // Z authorizes with its own account: active on it, nothing held any more.
    let url = authorization_url(t, &z, link_az).await.as_str().unwrap().to_owned();
    s.double.next_authorization("acct_opz");
    let (status, body, _) = t.follow(&consent(&url).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let az = link(t, &admin, link_az).await;
    assert_eq!(
        az,
        json!({ "status": "ACTIVE", "connectedAccountId": "acct_opz", "heldAccountId": null, "failureReason": null, "authorizationUrl": null })
    );
    t.ok(&app, START_SESSION, vars).await;
}

#[tokio::test]
async fn an_admin_accepts_a_held_account() {
    let s = stripe_mode().await;
    let (t, admin) = (&s.t, s.t.admin());
    let app_a = s.create_app(None).await;
    let (op_z, op_w) = tokio::join!(t.create_operator("Operator Z"), t.create_operator("Operator W"));
    let (app, z) = (t.token(Role::App(app_a)), t.token(Role::Operator(op_z)));
    let link_az = s.link(app_a, op_z, "acct_first").await;
    t.ok(&z, UNLINK, json!({ "l": link_az })).await;
    t.ok(&app, LINK_OPERATOR, json!({ "a": app_a, "o": op_z })).await;

    // Z moved to a new Stripe account and authorizes with it: held for an admin.
    let url = authorization_url(t, &z, link_az).await.as_str().unwrap().to_owned();
    s.double.next_authorization("acct_second");
    let (status, _, _) = t.follow(&consent(&url).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Only an admin accepts it.
    for token in [&app, &z] {
        let response = t.post(Some(token), ACCEPT, json!({ "l": link_az })).await;
        assert_eq!(code_of(&response).as_deref(), Some("FORBIDDEN"), "{response}");
    }
    let data = t.ok(&admin, ACCEPT, json!({ "l": link_az })).await;
    assert_eq!(
        data["acceptLinkAccount"]["link"],
        json!({ "status": "ACTIVE", "connectedAccountId": "acct_second", "heldAccountId": null, "failureReason": null })
    );
    // Accepting twice: nothing is held any more.
    let response = t.post(Some(&admin), ACCEPT, json!({ "l": link_az })).await;
    assert_eq!(code_of(&response).as_deref(), Some("CONFLICT"), "{response}");
    let customer = t.tokenize(&app, "user-1", "tok_visa").await;
    t.ok(&app, START_SESSION, json!({ "c": customer, "o": op_z, "k": "k1", "z": "Z-1", "p": "P-1" })).await;

    // An operator's first authorization with an account another operator is known by
    // is held too: a new operator cannot take over an existing one's account.
    let data = t.ok(&admin, LINK_OPERATOR, json!({ "a": app_a, "o": op_w })).await;
    let link_aw = id(&data["linkOperator"]["link"]["id"]);
    s.double.next_authorization("acct_first");
    let url = data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap();
    let (status, _, _) = t.follow(&consent(url).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let aw = link(t, &admin, link_aw).await;
    assert_eq!((&aw["status"], &aw["heldAccountId"]), (&json!("PENDING"), &json!("acct_first")), "{aw}");
    assert!(aw["failureReason"].as_str().unwrap().contains("another operator"), "{aw}");
}

// ---------------------------------------------------------------------------------------
// Webhook scope

const CAPABILITIES: &str = "query($o: ID!) {
  operator(id: $o) { chargesEnabled payoutsEnabled links { nodes { app { id } chargesEnabled payoutsEnabled } } }
}";

/// `{ charges, payouts, [(app, charges, payouts)…] }` of an operator, as `token` sees it.
async fn capabilities(t: &TestApp, token: &str, operator: Uuid) -> Value {
    let data = t.ok(token, CAPABILITIES, json!({ "o": operator })).await;
    let op = &data["operator"];
    let mut links: Vec<Value> = op["links"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| json!([l["app"]["id"], l["chargesEnabled"], l["payoutsEnabled"]]))
        .collect();
    links.sort_by_key(|l| l[0].to_string());
    json!({ "charges": op["chargesEnabled"], "payouts": op["payoutsEnabled"], "links": links })
}

#[tokio::test]
async fn one_apps_webhooks_change_only_its_own_link() {
    let s = stripe_mode().await;
    let (t, admin) = (&s.t, s.t.admin());
    let (platform_b, platform_c) = (Platform::generate(), Platform::generate());
    s.double.add_platform(platform_b.clone());
    s.double.add_platform(platform_c.clone());
    let app_a = s.create_app(None).await;
    let create = async |p: &Platform| {
        id(&t.ok(&admin, CREATE_APP, json!({ "s": credentials(p) })).await["createApp"]["app"]["id"])
    };
    let (app_b, app_c) = (create(&platform_b).await, create(&platform_c).await);
    let (op, other_op) = tokio::join!(t.create_operator("Garages"), t.create_operator("Lots"));
    // The operator connects its one account to apps A and B.
    s.link(app_a, op, "acct_garages").await;
    let data = t.ok(&admin, LINK_OPERATOR, json!({ "a": app_b, "o": op })).await;
    s.double.next_authorization("acct_garages");
    let (status, body, _) =
        t.follow(&consent(data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap()).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let url = format!("http://{}/webhooks/stripe", t.addr);
    let deliver = async |secret: &str, account: &str| {
        let event = s.double.account_updated_event(account);
        let response = s.double.deliver_webhook(&url, event, secret, None).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    // B's endpoint reports the account able to charge and pay out.
    s.double.set_account("acct_garages", true, true);
    deliver(&platform_b.webhook_secret, "acct_garages").await;
    // A's secret signs an event saying it can do neither (A could sign anything).
    s.double.set_account("acct_garages", false, false);
    deliver(&s.platform.webhook_secret, "acct_garages").await;

    let (a, b) = (json!(app_a), json!(app_b));
    let tokens = |role| t.token(role);
    // B sees what B's processor said, untouched by A's event.
    assert_eq!(
        capabilities(t, &tokens(Role::App(app_b)), op).await,
        json!({ "charges": true, "payouts": true, "links": [[b, true, true]] })
    );
    // A sees its own report.
    assert_eq!(
        capabilities(t, &tokens(Role::App(app_a)), op).await,
        json!({ "charges": false, "payouts": false, "links": [[a, false, false]] })
    );
    // The operator itself and admins see both links; the reports differ, so the
    // operator-wide facts are unknown.
    let mut both = vec![json!([a, false, false]), json!([b, true, true])];
    both.sort_by_key(|l| l[0].to_string());
    for token in [tokens(Role::Operator(op)), admin.clone()] {
        assert_eq!(capabilities(t, &token, op).await, json!({ "charges": null, "payouts": null, "links": both }));
    }
    // Parties without a link to the operator know nothing of it.
    for token in [tokens(Role::App(app_c)), tokens(Role::Operator(other_op))] {
        assert_eq!(capabilities(t, &token, op).await, json!({ "charges": null, "payouts": null, "links": [] }));
    }

    // Once every link's processor agrees, the operator-wide facts are known.
    deliver(&platform_b.webhook_secret, "acct_garages").await;
    for token in [tokens(Role::Operator(op)), admin.clone()] {
        let seen = capabilities(t, &token, op).await;
        assert_eq!((&seen["charges"], &seen["payouts"]), (&json!(false), &json!(false)), "{seen}");
    }

    // An app's event about an account it has no link to is acknowledged and changes
    // nothing: here B's operator `other_op`, on its own account.
    let data = t.ok(&admin, LINK_OPERATOR, json!({ "a": app_b, "o": other_op })).await;
    s.double.next_authorization("acct_lots");
    t.follow(&consent(data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap()).await).await;
    s.double.set_account("acct_lots", false, false);
    deliver(&s.platform.webhook_secret, "acct_lots").await;
    assert_eq!(
        capabilities(t, &tokens(Role::App(app_b)), other_op).await,
        json!({ "charges": null, "payouts": null, "links": [[b, null, null]] })
    );
}
