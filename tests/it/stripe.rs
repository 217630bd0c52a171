//! Stripe mode, through the GraphQL API, against the Stripe test double: every flow on
//! Stripe's real endpoints, faults on the calls (with the exact requests checked), a
//! crash between a Stripe call and the commit, webhooks, and secrets never leaking.

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use curbpay::auth::Role;
use curbpay::config::ProcessorKind;
use serde_json::{Value, json};

use crate::util::process::Curbpay;
use crate::util::stripe::{Fault, Platform, StripeDouble};
use crate::util::{CHARGE_SESSION, END_SESSION, START_SESSION, TestApp, code_of, id};

pub(crate) const CREATE_APP: &str = "mutation($s: StripeCredentialsInput, $fee: Int) {
  createApp(input: {name: \"ParkNow\", stripe: $s, platformFeeBps: $fee}) { app { id publishableKey processor processorAccountId platformFeeBps } }
}";

/// A server in Stripe mode, the Stripe double it talks to, and one platform account.
pub(crate) struct Stripe {
    pub t: TestApp,
    pub double: StripeDouble,
    pub platform: Platform,
}

fn new_encryption_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Configures a server for Stripe mode against the double.
fn stripe_config(double: &StripeDouble, key: &str) -> impl FnOnce(&mut curbpay::Config) + use<> {
    let api_base = url::Url::parse(&double.api_base).unwrap();
    let connect_base = url::Url::parse(&format!("{}/", double.connect_base)).unwrap();
    let key = key.to_owned();
    move |c| {
        c.processor = ProcessorKind::Stripe;
        c.stripe.api_base = api_base;
        c.stripe.connect_base = connect_base;
        c.stripe.retry_base_delay = Duration::from_millis(5);
        c.stripe.timeout = Duration::from_secs(2);
        c.encryption_key = Some(key.into());
    }
}

pub(crate) async fn stripe_mode() -> Stripe {
    stripe_mode_with_key(&new_encryption_key()).await
}

async fn stripe_mode_with_key(key: &str) -> Stripe {
    let double = StripeDouble::start().await;
    let t = TestApp::with_config(stripe_config(&double, key)).await;
    let platform = Platform::generate();
    double.add_platform(platform.clone());
    Stripe { t, double, platform }
}

pub(crate) fn credentials(p: &Platform) -> Value {
    json!({
        "secretKey": p.secret_key,
        "publishableKey": p.publishable_key,
        "connectClientId": p.connect_client_id,
        "webhookSecret": p.webhook_secret,
    })
}

impl Stripe {
    pub(crate) async fn create_app(&self, fee: Option<i32>) -> uuid::Uuid {
        let data =
            self.t.ok(&self.t.admin(), CREATE_APP, json!({ "s": credentials(&self.platform), "fee": fee })).await;
        id(&data["createApp"]["app"]["id"])
    }

    /// Links as an operator's browser would: Stripe's consent page, then our callback.
    pub(crate) async fn link(&self, app_id: uuid::Uuid, operator_id: uuid::Uuid, account: &str) -> uuid::Uuid {
        let data = self
            .t
            .ok(
                &self.t.admin(),
                "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id authorizationUrl } } }",
                json!({ "a": app_id, "o": operator_id }),
            )
            .await;
        let url = data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap().to_owned();
        self.double.next_authorization(account);
        let location = consent(&url).await;
        let (status, body, _) = self.t.follow(&location).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id(&data["linkOperator"]["link"]["id"])
    }

    pub(crate) async fn world(&self, card: &str) -> (World, String) {
        let app_id = self.create_app(Some(250)).await;
        let operator_id = self.t.create_operator("Garages").await;
        let account = format!("acct_op{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let link_id = self.link(app_id, operator_id, &account).await;
        let app_token = self.t.token(Role::App(app_id));
        let customer_id = self.t.tokenize(&app_token, "user-1", card).await;
        let world = World {
            app_id,
            operator_id,
            link_id,
            customer_id,
            app_token,
            operator_token: self.t.token(Role::Operator(operator_id)),
        };
        (world, account)
    }
}

use crate::util::World;

/// Visits Stripe's consent page (the double approves) and returns where it redirects.
pub(crate) async fn consent(url: &str) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(url).send().await.unwrap();
    assert!(response.status().is_redirection(), "consent page answered {}", response.status());
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn start(t: &TestApp, w: &World, key: &str) -> uuid::Uuid {
    id(&t.start_session(w, key).await["session"]["id"])
}

#[tokio::test]
async fn the_tour_runs_on_stripe() {
    let s = stripe_mode().await;
    let (t, double) = (&s.t, &s.double);

    let data = t.ok(&t.admin(), CREATE_APP, json!({ "s": credentials(&s.platform), "fee": 250 })).await;
    let app = &data["createApp"]["app"];
    assert_eq!(app["processor"], "stripe");
    assert_eq!(app["publishableKey"], s.platform.publishable_key.as_str());
    assert_eq!(app["processorAccountId"], s.platform.account_id.as_str());
    let app_id = id(&app["id"]);
    let operator_id = t.create_operator("Garages").await;

    // The authorization URL is Stripe Connect's, for the app's Connect client id.
    let data = t
        .ok(
            &t.admin(),
            "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id authorizationUrl } } }",
            json!({ "a": app_id, "o": operator_id }),
        )
        .await;
    let url = url::Url::parse(data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/oauth/authorize");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], s.platform.connect_client_id);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "read_write");
    assert_eq!(query["redirect_uri"], format!("http://{}/connect/callback", t.addr));
    double.next_authorization("acct_operator1");
    let (status, body, _) = t.follow(&consent(url.as_str()).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let link_id = id(&data["linkOperator"]["link"]["id"]);
    let data = t
        .ok(&t.admin(), "query($id: ID!) { link(id: $id) { status connectedAccountId } }", json!({ "id": link_id }))
        .await;
    assert_eq!(data["link"], json!({ "status": "ACTIVE", "connectedAccountId": "acct_operator1" }));
    assert!(double.is_connected(&s.platform.account_id, "acct_operator1"));

    // Tokenize: a customer on the app's platform account from the card token.
    let app_token = t.token(Role::App(app_id));
    let data = t
        .ok(
            &app_token,
            "mutation { tokenizeCustomer(input: {externalRef: \"u1\", cardToken: \"tok_visa\"}) { customer { id card { brand last4 expMonth expYear } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tokenizeCustomer"]["customer"]["card"]["last4"], "4242");
    assert_eq!(data["tokenizeCustomer"]["customer"]["card"]["brand"], "Visa");
    let customer_id = id(&data["tokenizeCustomer"]["customer"]["id"]);
    let create = double.requests().into_iter().find(|r| r.path == "/v1/customers").unwrap();
    assert_eq!(create.stripe_account, None, "customers live on the platform account");
    assert_eq!(create.param("source"), Some("tok_visa"));
    assert_eq!(create.idempotency_key.as_deref(), Some(format!("customer:{customer_id}:a1").as_str()));
    assert_eq!(create.param("metadata[curbpay_ref]"), Some(format!("customer:{customer_id}").as_str()));

    // Start: a token minted on the operator's connected account from that customer.
    let w = World {
        app_id,
        operator_id,
        link_id,
        customer_id,
        app_token: app_token.clone(),
        operator_token: t.token(Role::Operator(operator_id)),
    };
    let session_id = start(t, &w, "k1").await;
    let token_request = double.requests().into_iter().find(|r| r.path == "/v1/tokens").unwrap();
    assert_eq!(token_request.stripe_account.as_deref(), Some("acct_operator1"));
    assert!(token_request.idempotency_key.as_deref().unwrap().starts_with("charge-token:"));
    let data = t
        .ok(
            &w.operator_token,
            "query($id: ID!) { parkingSession(id: $id) { chargeToken { token } } }",
            json!({ "id": session_id }),
        )
        .await;
    let token = data["parkingSession"]["chargeToken"]["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tok_"));
    assert_eq!(double.object(&token).unwrap().0, "acct_operator1");

    // End and charge: a charge on the connected account with the app's fee.
    t.ok(&app_token, END_SESSION, json!({ "s": session_id, "a": 350, "c": "usd" })).await;
    let data = t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(data["chargeSession"]["session"]["status"], "CHARGED", "{data}");
    let charge = double.requests().into_iter().find(|r| r.path == "/v1/charges" && r.status == 200).unwrap();
    assert_eq!(charge.stripe_account.as_deref(), Some("acct_operator1"));
    assert_eq!(charge.param("source"), Some(token.as_str()));
    assert_eq!(charge.param("amount"), Some("350"));
    assert_eq!(charge.param("currency"), Some("usd"));
    assert_eq!(charge.param("application_fee_amount"), Some("8"), "2.5 % of 350, rounded down");
    assert_eq!(double.objects("charge"), 1);

    // Unlink: Stripe deauthorizes the operator's account.
    t.ok(
        &app_token,
        "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { status } } }",
        json!({ "l": link_id }),
    )
    .await;
    assert_eq!(double.count("POST", "/oauth/deauthorize"), 1);
    assert!(!double.is_connected(&s.platform.account_id, "acct_operator1"));
}

#[tokio::test]
async fn card_errors_become_payment_failures() {
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_chargeDeclinedInsufficientFunds").await;
    let session_id = start(&s.t, &w, "k").await;
    s.t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 500, "c": "eur" })).await;
    let data = s.t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    let payload = &data["chargeSession"];
    assert_eq!(payload["succeeded"], false);
    assert_eq!(payload["session"]["status"], "PAYMENT_FAILED");
    assert_eq!(payload["failure"]["code"], "card_declined");
    assert_eq!(payload["failure"]["declineCode"], "insufficient_funds");
}

#[tokio::test]
async fn a_429_is_retried_with_the_same_key() {
    let s = stripe_mode().await;
    let app_id = s.create_app(None).await;
    s.double.inject("POST", "/v1/customers", vec![Fault::Status(429)]);
    let app_token = s.t.token(Role::App(app_id));
    s.t.tokenize(&app_token, "u1", "tok_visa").await;
    let calls: Vec<_> = s.double.requests().into_iter().filter(|r| r.path == "/v1/customers").collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, 429);
    assert_eq!(calls[1].status, 200);
    assert_eq!(calls[0].idempotency_key, calls[1].idempotency_key);
    assert_eq!(s.double.objects("customer"), 1);
}

#[tokio::test]
async fn retryable_500s_and_dropped_connections_are_retried_with_the_same_key() {
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa").await;
    s.double.inject("POST", "/v1/tokens", vec![Fault::ServerError { should_retry: true }, Fault::Drop]);
    start(&s.t, &w, "k").await;
    let calls: Vec<_> = s.double.requests().into_iter().filter(|r| r.path == "/v1/tokens").collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.idempotency_key == calls[0].idempotency_key));
    assert_eq!(s.double.objects("token"), 1);
}

#[tokio::test]
async fn a_lost_answer_is_replayed_not_repeated() {
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa").await;
    let session_id = start(&s.t, &w, "k").await;
    s.t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 900, "c": "usd" })).await;
    // The charge is made but its answer never arrives: the retry with the same key gets
    // Stripe's saved answer.
    s.double.inject("POST", "/v1/charges", vec![Fault::DropAfterSuccess]);
    let data = s.t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(data["chargeSession"]["session"]["status"], "CHARGED");
    let calls: Vec<_> = s.double.requests().into_iter().filter(|r| r.path == "/v1/charges").collect();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].replayed);
    assert_eq!(s.double.objects("charge"), 1);
}

#[tokio::test]
async fn an_unknown_outcome_is_reconciled_by_metadata() {
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa").await;
    // The customer is created, but Stripe answers a 500 it will replay for that key.
    let app_token = w.app_token.clone();
    s.double.inject("POST", "/v1/customers", vec![Fault::AfterSuccess500]);
    s.t.tokenize(&app_token, "user-2", "tok_mastercard").await;
    assert_eq!(s.double.objects("customer"), 2, "user-1 and user-2, nothing twice");
    assert!(s.double.count("GET", "/v1/customers/search") >= 1);

    // The same for a charge.
    let session_id = start(&s.t, &w, "k").await;
    s.t.ok(&w.app_token, END_SESSION, json!({ "s": session_id, "a": 100, "c": "usd" })).await;
    s.double.inject("POST", "/v1/charges", vec![Fault::AfterSuccess500]);
    let data = s.t.ok(&w.operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(data["chargeSession"]["session"]["status"], "CHARGED");
    assert_eq!(s.double.objects("charge"), 1);
}

#[tokio::test]
async fn an_outcome_unknown_with_nothing_made_is_retried_under_a_new_key() {
    let s = stripe_mode().await;
    let app_id = s.create_app(None).await;
    // A saved 500 with nothing created: search finds nothing; a new attempt key is used.
    s.double.inject("POST", "/v1/customers", vec![Fault::ServerError { should_retry: false }]);
    let customer_id = s.t.tokenize(&s.t.token(Role::App(app_id)), "u1", "tok_visa").await;
    let keys: Vec<_> = s
        .double
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/customers" && r.method == "POST")
        .map(|r| r.idempotency_key.unwrap())
        .collect();
    assert_eq!(keys, vec![format!("customer:{customer_id}:a1"), format!("customer:{customer_id}:a2")]);
    assert_eq!(s.double.objects("customer"), 1);
}

#[tokio::test]
async fn a_crash_between_the_stripe_call_and_the_commit_is_finished_by_a_retry() {
    let s = stripe_mode().await;
    let (w, _) = s.world("tok_visa").await;
    let session_id = start(&s.t, &w, "k").await;
    // Simulate a crash after Stripe minted the token but before curbpay recorded it.
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&s.t.db.url).await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE charge_tokens SET status = 'PENDING', token = NULL, cursor = NULL, expires_at = NULL, issued_at = NULL"),
        &mut conn,
    )
    .await
    .unwrap();
    let retried = s.t.start_session(&w, "k").await;
    assert_eq!(retried["replayed"], true);
    assert_eq!(id(&retried["session"]["id"]), session_id);
    // The retry replayed the same key: still one token at Stripe.
    assert_eq!(s.double.objects("token"), 1);
    let calls: Vec<_> = s.double.requests().into_iter().filter(|r| r.path == "/v1/tokens").collect();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].replayed);
}

#[tokio::test]
async fn deauthorization_by_webhook_revokes_the_link() {
    let s = stripe_mode().await;
    let (w, account) = s.world("tok_visa").await;
    let session_id = start(&s.t, &w, "k").await;
    let url = format!("http://{}/webhooks/stripe", s.t.addr);
    let event = s.double.deauthorized_event(&s.platform.connect_client_id, &account);

    // Forged (another secret) and stale (signed ten minutes ago) deliveries are refused.
    let forged = s.double.deliver_webhook(&url, event.clone(), "whsec_forged", None).await;
    assert_eq!(forged.status(), 400);
    let stale = s
        .double
        .deliver_webhook(&url, event.clone(), &s.platform.webhook_secret, Some(chrono::Utc::now().timestamp() - 600))
        .await;
    assert_eq!(stale.status(), 400);
    let data = s.t.ok(&w.app_token, "query($id: ID!) { link(id: $id) { status } }", json!({ "id": w.link_id })).await;
    assert_eq!(data["link"]["status"], "ACTIVE");

    // The app watches its links; the revocation reaches it live.
    let mut watcher = crate::util::node::NodeSubscriber::spawn(
        &s.t.ws_url(),
        &w.app_token,
        "subscription { linkStatusChanged(after: \"0\") { status link { id } } }",
        json!({}),
        Some(3),
    );
    for expected in ["PENDING", "ACTIVE"] {
        assert_eq!(watcher.next_data().await["linkStatusChanged"]["status"], expected);
    }

    let delivered = s.double.deliver_webhook(&url, event.clone(), &s.platform.webhook_secret, None).await;
    assert_eq!(delivered.status(), 200);
    let change = watcher.next_data().await;
    assert_eq!(change["linkStatusChanged"]["status"], "REVOKED");
    assert_eq!(id(&change["linkStatusChanged"]["link"]["id"]), w.link_id);
    let data =
        s.t.ok(
            &w.operator_token,
            "query($l: ID!, $s: ID!) { link(id: $l) { status } parkingSession(id: $s) { chargeToken { status } } }",
            json!({ "l": w.link_id, "s": session_id }),
        )
        .await;
    assert_eq!(data["link"]["status"], "REVOKED");
    assert_eq!(data["parkingSession"]["chargeToken"]["status"], "VOIDED");

    // A redelivery is acknowledged and changes nothing.
    let again = s.double.deliver_webhook(&url, event, &s.platform.webhook_secret, None).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);
}

#[tokio::test]
async fn account_updates_reach_the_link_and_operator() {
    let s = stripe_mode().await;
    let (w, account) = s.world("tok_visa").await;
    s.double.set_account(&account, true, false);
    let url = format!("http://{}/webhooks/stripe", s.t.addr);
    let event = s.double.account_updated_event(&account);
    let delivered = s.double.deliver_webhook(&url, event, &s.platform.webhook_secret, None).await;
    assert_eq!(delivered.status(), 200);
    let data = s
        .t
        .ok(&w.app_token, "query($l: ID!) { link(id: $l) { chargesEnabled payoutsEnabled operator { chargesEnabled payoutsEnabled } } }", json!({ "l": w.link_id }))
        .await;
    assert_eq!(
        data["link"],
        json!({ "chargesEnabled": true, "payoutsEnabled": false, "operator": { "chargesEnabled": true, "payoutsEnabled": false } })
    );
}

#[tokio::test]
async fn stripe_errors_map_to_stable_codes() {
    let s = stripe_mode().await;
    let app_id = s.create_app(None).await;
    let q =
        "mutation($t: String!) { tokenizeCustomer(input: {externalRef: \"u\", cardToken: $t}) { customer { id } } }";
    let response = s.t.post(Some(&s.t.token(Role::App(app_id))), q, json!({ "t": "tok_unknownToken" })).await;
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
    // Stripe down (every attempt refused) is UNAVAILABLE: retry later.
    s.double.inject("POST", "/v1/customers", vec![Fault::Status(429); 4]);
    let response = s.t.post(Some(&s.t.token(Role::App(app_id))), q, json!({ "t": "tok_visa" })).await;
    assert_eq!(code_of(&response).as_deref(), Some("UNAVAILABLE"), "{response}");
    // A wrong key at createApp is a processor error, and creates nothing.
    let mut wrong = Platform::generate();
    wrong.secret_key = "sk_test_notregistered".into();
    let response = s.t.post(Some(&s.t.admin()), CREATE_APP, json!({ "s": credentials(&wrong) })).await;
    assert_eq!(code_of(&response).as_deref(), Some("PROCESSOR_ERROR"), "{response}");
    assert!(!response.to_string().contains("sk_test_notregistered"));
    // Credentials are required in Stripe mode.
    let response = s.t.post(Some(&s.t.admin()), CREATE_APP, json!({})).await;
    assert_eq!(code_of(&response).as_deref(), Some("BAD_USER_INPUT"), "{response}");
}

/// The real binary in Stripe mode against the double, logging at debug level.
async fn serve_stripe_mode(s: &Stripe, encryption_key: &str) -> Curbpay {
    Curbpay::serve(&[
        ("DATABASE_URL", s.t.db.url.as_str()),
        ("CURBPAY_JWT_SECRET", crate::util::JWT_SECRET),
        ("CURBPAY_PROCESSOR", "stripe"),
        ("CURBPAY_STRIPE_API_BASE", s.double.api_base.as_str()),
        ("CURBPAY_STRIPE_CONNECT_BASE", s.double.connect_base.as_str()),
        ("CURBPAY_STRIPE_RETRY_BASE_DELAY", "5ms"),
        ("CURBPAY_ENCRYPTION_KEY", encryption_key),
        ("RUST_LOG", "debug"),
    ])
    .await
}

#[tokio::test]
async fn secrets_never_appear_in_logs_errors_responses_or_the_database() {
    let s = stripe_mode().await;
    let server = serve_stripe_mode(&s, &new_encryption_key()).await;
    let admin = s.t.admin();
    let mut responses = String::new();

    // An app with a wrong key first (the error must not echo it), then the real one.
    let mut wrong = Platform::generate();
    wrong.secret_key = format!("{}X", s.platform.secret_key);
    let refused = server.graphql(&admin, CREATE_APP, json!({ "s": credentials(&wrong) })).await;
    assert_eq!(code_of(&refused).as_deref(), Some("PROCESSOR_ERROR"), "{refused}");
    responses.push_str(&refused.to_string());
    let data = server.graphql(&admin, CREATE_APP, json!({ "s": credentials(&s.platform), "fee": 100 })).await;
    responses.push_str(&data.to_string());
    let app_id = id(&data["data"]["createApp"]["app"]["id"]);
    let data = server
        .graphql(&admin, "mutation { createOperator(input: {name: \"O\"}) { operator { id } } }", json!({}))
        .await;
    let operator_id = id(&data["data"]["createOperator"]["operator"]["id"]);
    let data = server
        .graphql(
            &admin,
            "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id authorizationUrl } } }",
            json!({ "a": app_id, "o": operator_id }),
        )
        .await;
    s.double.next_authorization("acct_leaktest");
    let callback = consent(data["data"]["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap()).await;
    assert_eq!(reqwest::get(&callback).await.unwrap().status(), 200);

    // A full session with a retried 500 on the charge, and a forged webhook.
    let app_token = s.t.token(Role::App(app_id));
    let operator_token = s.t.token(Role::Operator(operator_id));
    let q = "mutation { tokenizeCustomer(input: {externalRef: \"u\", cardToken: \"tok_visa\"}) { customer { id } } }";
    let customer = server.graphql(&app_token, q, json!({})).await;
    let customer_id = id(&customer["data"]["tokenizeCustomer"]["customer"]["id"]);
    let started = server
        .graphql(&app_token, START_SESSION, json!({ "c": customer_id, "o": operator_id, "k": "k", "z": "Z", "p": "P" }))
        .await;
    let session_id = id(&started["data"]["startParkingSession"]["session"]["id"]);
    server.graphql(&app_token, END_SESSION, json!({ "s": session_id, "a": 100, "c": "usd" })).await;
    s.double.inject("POST", "/v1/charges", vec![Fault::ServerError { should_retry: true }]);
    let charged = server.graphql(&operator_token, CHARGE_SESSION, json!({ "s": session_id })).await;
    assert_eq!(charged["data"]["chargeSession"]["session"]["status"], "CHARGED", "{charged}");
    let forged = s
        .double
        .deliver_webhook(
            &format!("{}webhooks/stripe", server.base),
            s.double.account_updated_event("acct_leaktest"),
            "whsec_forged",
            None,
        )
        .await;
    assert_eq!(forged.status(), 400);
    responses.push_str(&forged.text().await.unwrap());
    let everything = server
        .graphql(
            &admin,
            "{ apps { edges { node { id name publishableKey processorAccountId platformFeeBps } } } }",
            json!({}),
        )
        .await;
    responses.push_str(&everything.to_string());

    let logged = server.output();
    server.stop().await;
    assert!(logged.contains("stripe request failed"), "the output was captured:\n{logged}");
    for secret in [&s.platform.secret_key, &s.platform.webhook_secret, &wrong.secret_key] {
        assert!(!logged.contains(secret.as_str()), "a secret reached the log");
        assert!(!responses.contains(secret.as_str()), "a secret reached a response");
    }

    // At rest the secrets are sealed.
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&s.t.db.url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        dump: String,
    }
    let row: Row = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT string_agg(apps::text, ' ') AS dump FROM apps"),
        &mut conn,
    )
    .await
    .unwrap();
    for secret in [&s.platform.secret_key, &s.platform.webhook_secret] {
        assert!(!row.dump.contains(secret.as_str()) && !row.dump.contains(&hex(secret)));
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn rotate_keys_reseals_app_secrets_under_the_new_key() {
    let (old, new) = (new_encryption_key(), new_encryption_key());
    let s = stripe_mode_with_key(&old).await;
    let app_id = s.create_app(None).await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_curbpay"))
        .arg("rotate-keys")
        .env("DATABASE_URL", &s.t.db.url)
        .env("CURBPAY_PROCESSOR", "stripe")
        .env("CURBPAY_ENCRYPTION_KEY", &new)
        .env("CURBPAY_ENCRYPTION_PREVIOUS_KEYS", &old)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("re-sealed the secrets of 1 app(s)"), "{stdout}");

    // A server with only the new key opens the secrets; one with only the old key cannot.
    let rotated = TestApp::on_db(s.t.db.clone(), stripe_config(&s.double, &new)).await;
    rotated.tokenize(&rotated.token(Role::App(app_id)), "u1", "tok_visa").await;
    let stale = TestApp::on_db(s.t.db.clone(), stripe_config(&s.double, &old)).await;
    let q = "mutation { tokenizeCustomer(input: {externalRef: \"u2\", cardToken: \"tok_visa\"}) { customer { id } } }";
    let response = stale.post(Some(&stale.token(Role::App(app_id))), q, json!({})).await;
    assert_eq!(code_of(&response).as_deref(), Some("INTERNAL"), "{response}");
}
