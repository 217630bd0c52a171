//! Self-tests of the Stripe test double (tests/it/util/stripe/), over plain HTTP.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::util::stripe::{Fault, Platform, StripeDouble, sign};

struct Call {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn error(&self) -> &Value {
        &self.body["error"]
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(double: &StripeDouble, key: &str) -> Api {
        Api { http: reqwest::Client::new(), base: double.api_base.clone(), key: key.to_owned() }
    }

    async fn send(
        &self,
        post: bool,
        path: &str,
        account: Option<&str>,
        idem: Option<&str>,
        form: &[(&str, &str)],
    ) -> reqwest::Result<Call> {
        let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let url = format!("{}{}", self.base, path.trim_start_matches('/'));
        let mut request = match post {
            true => self.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(encoded),
            false => self.http.get(format!("{url}?{encoded}")),
        };
        request = request.bearer_auth(&self.key);
        if let Some(account) = account {
            request = request.header("stripe-account", account);
        }
        if let Some(key) = idem {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.json().await?;
        Ok(Call { status, headers, body })
    }

    async fn post(&self, path: &str, account: Option<&str>, idem: Option<&str>, form: &[(&str, &str)]) -> Call {
        self.send(true, path, account, idem, form).await.expect("request")
    }

    async fn get(&self, path: &str, account: Option<&str>, query: &[(&str, &str)]) -> Call {
        self.send(false, path, account, None, query).await.expect("request")
    }
}

async fn wait_in_flight(double: &StripeDouble) {
    for _ in 0..500 {
        if double.in_flight() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the first request never started");
}

async fn setup() -> (StripeDouble, Platform, Api) {
    let double = StripeDouble::start().await;
    let platform = Platform::generate();
    double.add_platform(platform.clone());
    let api = Api::new(&double, &platform.secret_key);
    (double, platform, api)
}

/// Connects a new account to the platform through the OAuth code exchange.
async fn connect(double: &StripeDouble, platform: &Platform) -> String {
    let code = double.authorization_code(&platform.connect_client_id, "acct_operator1");
    let (status, body) = oauth(
        double,
        "/oauth/token",
        &[("grant_type", "authorization_code"), ("code", &code), ("client_secret", &platform.secret_key)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["stripe_user_id"].as_str().unwrap().to_owned()
}

async fn oauth(double: &StripeDouble, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let response =
        reqwest::Client::new().post(format!("{}{path}", double.connect_base)).body(encoded).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

const CUSTOMER: &[(&str, &str)] = &[
    ("source", "tok_visa"),
    ("metadata[curbpay_id]", "user-1"),
    ("expand[]", "default_source"),
    ("expand[]", "sources"),
];

#[tokio::test]
async fn customers_carry_the_card_and_idempotent_requests_replay() {
    let (double, _, api) = setup().await;
    let first = api.post("/v1/customers", None, Some("key-1"), CUSTOMER).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.header("request-id").unwrap().starts_with("req_"));
    assert!(first.header("idempotent-replayed").is_none());
    let customer = &first.body;
    assert!(customer["id"].as_str().unwrap().starts_with("cus_"));
    assert_eq!(
        (customer["livemode"].clone(), customer["metadata"]["curbpay_id"].clone()),
        (json!(false), json!("user-1"))
    );
    let card = &customer["default_source"]; // expanded
    assert_eq!(
        (card["brand"].as_str(), card["last4"].as_str(), card["funding"].as_str()),
        (Some("Visa"), Some("4242"), Some("credit"))
    );
    assert_eq!(customer["sources"]["data"][0]["id"], card["id"]);

    let again = api.post("/v1/customers", None, Some("key-1"), CUSTOMER).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(again.body, first.body);
    assert_ne!(again.header("request-id"), first.header("request-id"));
    assert_eq!((double.objects("customer"), double.count("POST", "/v1/customers")), (1, 2));
    assert!(double.requests()[1].replayed);

    let other = api.post("/v1/customers", None, Some("key-1"), &[("source", "tok_mastercard")]).await;
    assert_eq!((other.status, other.error()["type"].as_str()), (400, Some("idempotency_error")));
    assert_eq!(double.objects("customer"), 1);

    let fetched = api.get(&format!("/v1/customers/{}", customer["id"].as_str().unwrap()), None, &[]).await;
    assert_eq!(fetched.body["default_source"], card["id"]);
    assert!(fetched.body.get("sources").is_none(), "sources only when expanded");
    let updated = api
        .post(
            &format!("/v1/customers/{}", customer["id"].as_str().unwrap()),
            None,
            None,
            &[("source", "tok_amex"), ("expand[]", "sources")],
        )
        .await;
    assert_eq!(updated.body["sources"]["data"][0]["last4"], "0005");
    assert_ne!(updated.body["default_source"], card["id"]);
    assert_eq!(double.objects("card"), 1, "the replaced default card is deleted");
}

#[tokio::test]
async fn a_concurrent_duplicate_gets_409_and_is_not_saved() {
    let (double, _, api) = setup().await;
    double.inject("POST", "/v1/customers", vec![Fault::Delay(Duration::from_millis(500))]);
    let slow = tokio::spawn({
        let api = Api::new(&double, &api.key);
        async move { api.post("/v1/customers", None, Some("dup"), CUSTOMER).await }
    });
    wait_in_flight(&double).await;
    let duplicate = api.post("/v1/customers", None, Some("dup"), CUSTOMER).await;
    assert_eq!((duplicate.status, duplicate.error()["type"].as_str()), (409, Some("idempotency_error")));
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200);
    let later = api.post("/v1/customers", None, Some("dup"), CUSTOMER).await;
    assert_eq!((later.status, later.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(later.body["id"], slow.body["id"]);
    assert_eq!(double.objects("customer"), 1);
}

#[tokio::test]
async fn rate_limits_and_retryable_500s_are_not_saved() {
    let (double, _, api) = setup().await;
    double.inject("POST", "/v1/customers", vec![Fault::Status(429), Fault::ServerError { should_retry: true }]);
    let limited = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!((limited.status, limited.error()["code"].as_str()), (429, Some("rate_limit")));
    let failed = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!((failed.status, failed.header("stripe-should-retry")), (500, Some("true")));
    assert_eq!(failed.error()["type"], "api_error");
    assert_eq!(double.objects("customer"), 0);
    let done = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!((done.status, done.header("idempotent-replayed")), (200, None));
    assert_eq!(double.objects("customer"), 1);
}

#[tokio::test]
async fn validation_errors_are_not_saved() {
    let (double, _, api) = setup().await;
    let invalid =
        api.post("/v1/customers", None, Some("k"), &[("source", "tok_visa"), ("metadata[curbpay_id]", "u")]).await;
    assert_eq!(invalid.status, 200);
    let missing = api.post("/v1/charges", None, Some("c"), &[("source", "tok_visa"), ("currency", "usd")]).await;
    assert_eq!(
        (missing.status, missing.error()["code"].as_str(), missing.error()["param"].as_str()),
        (400, Some("parameter_missing"), Some("amount"))
    );
    let fixed = api
        .post("/v1/charges", None, Some("c"), &[("source", "tok_visa"), ("currency", "usd"), ("amount", "700")])
        .await;
    assert_eq!((fixed.status, fixed.header("idempotent-replayed")), (200, None));
    let unknown = api.post("/v1/customers", None, Some("u"), &[("source", "tok_nonexistent")]).await;
    assert_eq!(
        (unknown.status, unknown.error()["code"].as_str(), unknown.error()["param"].as_str()),
        (400, Some("resource_missing"), Some("source"))
    );
    assert_eq!(double.objects("charge"), 1);
}

#[tokio::test]
async fn a_request_the_client_gave_up_on_still_completes() {
    let (double, _, api) = setup().await;
    double.inject("POST", "/v1/customers", vec![Fault::Delay(Duration::from_millis(1000))]);
    let impatient = Api {
        http: reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap(),
        ..Api::new(&double, &api.key)
    };
    let error = impatient.send(true, "/v1/customers", None, Some("k"), CUSTOMER).await.err().expect("a timeout");
    assert!(error.is_timeout(), "{error:?}");
    wait_in_flight(&double).await;
    let early = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!(early.status, 409, "still running");
    while double.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let later = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!((later.status, later.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(double.objects("customer"), 1);
}

#[tokio::test]
async fn a_500_after_success_is_replayed_while_the_object_exists() {
    let (double, _, api) = setup().await;
    double.inject("POST", "/v1/customers", vec![Fault::AfterSuccess500, Fault::ServerError { should_retry: false }]);
    let unknown = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!((unknown.status, unknown.header("stripe-should-retry")), (500, Some("false")));
    assert_eq!(double.objects("customer"), 1);
    let retried = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!((retried.status, retried.header("idempotent-replayed")), (500, Some("true")));
    assert_eq!(double.objects("customer"), 1);
    // A non-retryable 500 before anything ran is saved too; nothing was created.
    let failed = api.post("/v1/customers", None, Some("k2"), CUSTOMER).await;
    let replayed = api.post("/v1/customers", None, Some("k2"), CUSTOMER).await;
    assert_eq!((failed.status, replayed.status, replayed.header("idempotent-replayed")), (500, 500, Some("true")));
    assert_eq!(double.objects("customer"), 1);
}

#[tokio::test]
async fn dropped_connections_answer_nothing() {
    let (double, _, api) = setup().await;
    double.inject("POST", "/v1/customers", vec![Fault::Drop, Fault::DropAfterSuccess]);
    let error = api.send(true, "/v1/customers", None, Some("k"), CUSTOMER).await.err().expect("a connection error");
    assert!(!error.is_status(), "{error:?}");
    assert_eq!(double.objects("customer"), 0);
    let error = api.send(true, "/v1/customers", None, Some("k"), CUSTOMER).await.err().expect("a connection error");
    assert!(!error.is_status(), "{error:?}");
    assert_eq!(double.objects("customer"), 1);
    let retried = api.post("/v1/customers", None, Some("k"), CUSTOMER).await;
    assert_eq!((retried.status, retried.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(double.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [0, 0, 200]);
}

#[tokio::test]
async fn shared_customer_tokens_are_single_use_on_the_connected_account() {
    let (double, platform, api) = setup().await;
    let acct = connect(&double, &platform).await;
    let customer = api.post("/v1/customers", None, None, CUSTOMER).await.body;
    let cus = customer["id"].as_str().unwrap();
    let token = api.post("/v1/tokens", Some(&acct), Some("handoff-1"), &[("customer", cus)]).await;
    assert_eq!(token.status, 200, "{}", token.body);
    let tok = token.body["id"].as_str().unwrap();
    assert_eq!((token.body["type"].as_str(), token.body["card"]["last4"].as_str()), (Some("card"), Some("4242")));
    let replayed = api.post("/v1/tokens", Some(&acct), Some("handoff-1"), &[("customer", cus)]).await;
    assert_eq!(replayed.body["id"], tok, "replaying the key returns the same token");

    let charge_form = [
        ("source", tok),
        ("amount", "1250"),
        ("currency", "usd"),
        ("application_fee_amount", "100"),
        ("metadata[curbpay_id]", "s-1"),
    ];
    let charge = api.post("/v1/charges", Some(&acct), None, &charge_form).await;
    assert_eq!(charge.status, 200, "{}", charge.body);
    assert_eq!(
        (charge.body["status"].as_str(), charge.body["paid"].as_bool(), charge.body["amount"].as_i64()),
        (Some("succeeded"), Some(true), Some(1250))
    );
    assert_eq!(charge.body["payment_method_details"]["card"]["brand"], "visa");
    let again = api.post("/v1/charges", Some(&acct), None, &charge_form).await;
    assert_eq!(
        (again.status, again.error()["code"].as_str(), again.error()["param"].as_str()),
        (400, Some("token_already_used"), Some("source"))
    );

    let found = api.get("/v1/charges/search", Some(&acct), &[("query", "metadata['curbpay_id']:'s-1'")]).await;
    assert_eq!(
        (found.body["object"].as_str(), found.body["data"][0]["id"].clone()),
        (Some("search_result"), charge.body["id"].clone())
    );
    let on_platform = api.get("/v1/charges/search", None, &[("query", "metadata['curbpay_id']:'s-1'")]).await;
    assert_eq!(on_platform.body["data"], json!([]));
    let customers = api.get("/v1/customers/search", None, &[("query", "metadata['curbpay_id']:'user-1'")]).await;
    assert_eq!(customers.body["data"][0]["id"], cus);
    assert_eq!((double.objects("token"), double.objects("charge")), (1, 1));
}

#[tokio::test]
async fn declines_are_card_errors() {
    let (double, platform, api) = setup().await;
    let acct = connect(&double, &platform).await;
    for (tok, code, decline) in [
        ("tok_chargeDeclinedInsufficientFunds", "card_declined", Some("insufficient_funds")),
        ("tok_chargeDeclinedExpiredCard", "expired_card", None),
    ] {
        let customer = api.post("/v1/customers", None, None, &[("source", tok)]).await.body;
        let token =
            api.post("/v1/tokens", Some(&acct), None, &[("customer", customer["id"].as_str().unwrap())]).await.body;
        let charge = api
            .post(
                "/v1/charges",
                Some(&acct),
                None,
                &[("source", token["id"].as_str().unwrap()), ("amount", "500"), ("currency", "usd")],
            )
            .await;
        assert_eq!(
            (charge.status, charge.error()["type"].as_str(), charge.error()["code"].as_str()),
            (402, Some("card_error"), Some(code))
        );
        assert_eq!(charge.error()["decline_code"].as_str(), decline);
        assert!(charge.error()["charge"].as_str().unwrap().starts_with("ch_"));
    }
    assert_eq!(double.objects("charge"), 2, "declined charges exist, as failed");
}

#[tokio::test]
async fn payment_methods_are_cloned_and_charged_with_payment_intents() {
    let (double, platform, api) = setup().await;
    let acct = connect(&double, &platform).await;
    let form = [
        ("payment_method", "pm_card_visa"),
        ("invoice_settings[default_payment_method]", "pm_card_visa"),
        ("expand[]", "invoice_settings.default_payment_method"),
    ];
    let customer = api.post("/v1/customers", None, None, &form).await.body;
    let default_pm = &customer["invoice_settings"]["default_payment_method"];
    assert_eq!(
        (default_pm["object"].as_str(), default_pm["card"]["last4"].as_str()),
        (Some("payment_method"), Some("4242"))
    );
    let (cus, pm) = (customer["id"].as_str().unwrap(), default_pm["id"].as_str().unwrap());
    let unattached = api
        .post(
            &format!("/v1/customers/{cus}"),
            None,
            None,
            &[("invoice_settings[default_payment_method]", "pm_card_amex")],
        )
        .await;
    assert_eq!((unattached.status, unattached.error()["code"].as_str()), (400, Some("resource_missing")));
    let search =
        [("query", "metadata['nothing']:'here'"), ("expand[]", "data.invoice_settings.default_payment_method")];
    assert_eq!(api.get("/v1/customers/search", None, &search).await.body["data"], json!([]));
    let no_card = api.post("/v1/tokens", Some(&acct), None, &[("customer", cus)]).await;
    assert_eq!((no_card.status, no_card.error()["param"].as_str()), (400, Some("customer")));
    let clone = api.post("/v1/payment_methods", Some(&acct), None, &[("customer", cus), ("payment_method", pm)]).await;
    assert_eq!(clone.status, 200, "{}", clone.body);
    let cloned = clone.body["id"].as_str().unwrap();
    assert_ne!(cloned, pm);
    let form = [
        ("amount", "900"),
        ("currency", "eur"),
        ("payment_method", cloned),
        ("confirm", "true"),
        ("off_session", "true"),
    ];
    let pi = api.post("/v1/payment_intents", Some(&acct), None, &form).await;
    assert_eq!((pi.status, pi.body["status"].as_str()), (200, Some("succeeded")), "{}", pi.body);
    assert!(pi.body["latest_charge"].as_str().unwrap().starts_with("ch_"));
    let reuse = api.post("/v1/payment_intents", Some(&acct), None, &form).await;
    assert_eq!(reuse.status, 400, "a customer-less payment method is single use");

    let declined_form = [
        ("amount", "900"),
        ("currency", "eur"),
        ("payment_method", "pm_card_chargeDeclined"),
        ("confirm", "true"),
        ("off_session", "true"),
    ];
    let declined = api.post("/v1/payment_intents", Some(&acct), None, &declined_form).await;
    assert_eq!((declined.status, declined.error()["decline_code"].as_str()), (402, Some("generic_decline")));
    assert_eq!(declined.error()["payment_intent"]["status"], "requires_payment_method");
}

#[tokio::test]
async fn accounts_keys_and_resources_are_scoped() {
    let (double, platform, api) = setup().await;
    let acct = connect(&double, &platform).await;
    let me = api.get("/v1/account", None, &[]).await;
    assert_eq!(me.body["id"].as_str(), Some(platform.account_id.as_str()));
    assert_eq!(api.get("/v1/account", Some(&acct), &[]).await.body["id"].as_str(), Some(acct.as_str()));

    let customer = api.post("/v1/customers", None, None, CUSTOMER).await.body;
    let cus = customer["id"].as_str().unwrap();
    let elsewhere = api.get(&format!("/v1/customers/{cus}"), Some(&acct), &[]).await;
    assert_eq!((elsewhere.status, elsewhere.error()["code"].as_str()), (404, Some("resource_missing")));
    let as_param = api
        .post("/v1/payment_intents", Some(&acct), None, &[("amount", "900"), ("currency", "usd"), ("customer", cus)])
        .await;
    assert_eq!(
        (as_param.status, as_param.error()["code"].as_str(), as_param.error()["param"].as_str()),
        (400, Some("resource_missing"), Some("customer"))
    );

    let stranger = api.get("/v1/account", Some("acct_stranger"), &[]).await;
    assert_eq!((stranger.status, stranger.error()["code"].as_str()), (403, Some("account_invalid")));
    let bad_key = Api::new(&double, "sk_test_abcdefghijklmnop1234").get("/v1/account", None, &[]).await;
    assert_eq!(bad_key.status, 401);
    assert_eq!(bad_key.error()["message"], "Invalid API Key provided: sk_test_****1234");
    assert_eq!(bad_key.error()["type"], "invalid_request_error");
    assert!(bad_key.header("request-id").is_some());
    let unknown = api.get("/v1/nonexistent", None, &[]).await;
    assert_eq!((unknown.status, unknown.error()["type"].as_str()), (404, Some("invalid_request_error")));
    assert!(unknown.header("request-id").unwrap().starts_with("req_"));
}

#[tokio::test]
async fn oauth_codes_are_single_use_and_deauthorize_revokes() {
    let (double, platform, api) = setup().await;
    let code = double.authorization_code(&platform.connect_client_id, "acct_op");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_secret", platform.secret_key.as_str()),
    ];
    let (status, grant) = oauth(&double, "/oauth/token", &form).await;
    assert_eq!(
        (status, grant["stripe_user_id"].as_str(), grant["token_type"].as_str()),
        (200, Some("acct_op"), Some("bearer"))
    );
    assert!(grant["access_token"].as_str().unwrap().starts_with("sk_test_"));
    let (status, used) = oauth(&double, "/oauth/token", &form).await;
    assert_eq!((status, used["error"].as_str()), (400, Some("invalid_grant")));
    let (status, unknown) = oauth(
        &double,
        "/oauth/token",
        &[("grant_type", "authorization_code"), ("code", "ac_nope"), ("client_secret", &platform.secret_key)],
    )
    .await;
    assert_eq!(
        (status, unknown["error_description"].as_str()),
        (400, Some("Authorization code does not exist: ac_nope"))
    );

    let access = Api::new(&double, grant["access_token"].as_str().unwrap());
    assert_eq!(access.get("/v1/account", None, &[]).await.body["id"], "acct_op");
    let deauth = [
        ("client_id", platform.connect_client_id.as_str()),
        ("stripe_user_id", "acct_op"),
        ("client_secret", platform.secret_key.as_str()),
    ];
    assert_eq!(oauth(&double, "/oauth/deauthorize", &deauth).await, (200, json!({ "stripe_user_id": "acct_op" })));
    let (status, again) = oauth(&double, "/oauth/deauthorize", &deauth).await;
    assert_eq!((status, again["error"].as_str()), (400, Some("invalid_client")));
    assert_eq!(api.get("/v1/account", Some("acct_op"), &[]).await.status, 403);
    assert_eq!(access.get("/v1/account", None, &[]).await.status, 401, "the access token is revoked");
}

#[tokio::test]
async fn oauth_authorize_redirects_as_the_operator_chose() {
    let (double, platform, _) = setup().await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let authorize = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&scope=read_write&state=st-1&redirect_uri=http%3A%2F%2Fapp.test%2Fcb%3Fx%3D1",
        double.connect_base, platform.connect_client_id
    );
    double.next_authorization("acct_chosen");
    double.deny_next_authorization();
    let approved = no_redirects.get(&authorize).send().await.unwrap();
    assert_eq!(approved.status(), 302);
    let location = url::Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(
        (location.host_str(), location.path(), query["x"].as_str(), query["state"].as_str()),
        (Some("app.test"), "/cb", "1", "st-1")
    );
    let form = [
        ("grant_type", "authorization_code"),
        ("code", query["code"].as_str()),
        ("client_secret", platform.secret_key.as_str()),
    ];
    assert_eq!(oauth(&double, "/oauth/token", &form).await.1["stripe_user_id"], "acct_chosen");
    assert!(double.is_connected(&platform.account_id, "acct_chosen"));

    let denied = no_redirects.get(&authorize).send().await.unwrap();
    let location = url::Url::parse(denied.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!((query["error"].as_str(), query["state"].as_str(), query.get("code")), ("access_denied", "st-1", None));
}

#[tokio::test]
async fn webhooks_are_signed_like_stripe() {
    let (double, platform, _) = setup().await;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| async move {
            let signature = headers["stripe-signature"].to_str().unwrap().to_owned();
            sink.lock().unwrap().push((signature, body));
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    double.connect(&platform.account_id, "acct_gone");
    let event = double.deauthorized_event(&platform.connect_client_id, "acct_gone");
    assert_eq!(
        (event["type"].as_str(), event["account"].as_str()),
        (Some("account.application.deauthorized"), Some("acct_gone"))
    );
    assert_eq!(double.deliver_webhook(&url, event, &platform.webhook_secret, None).await.status(), 200);
    double.set_account("acct_gone", false, true);
    let updated = double.account_updated_event("acct_gone");
    assert_eq!(updated["data"]["object"]["charges_enabled"], false);
    double.deliver_webhook(&url, updated, "whsec_wrong", Some(1_000_000)).await;

    let received = received.lock().unwrap().clone();
    let (signature, payload) = &received[0];
    let (t, v1) = signature.split_once(",v1=").unwrap();
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - t).abs() < 10);
    let mut mac = Hmac::<Sha256>::new_from_slice(platform.webhook_secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{payload}").as_bytes());
    mac.verify_slice(
        &(0..v1.len()).step_by(2).map(|i| u8::from_str_radix(&v1[i..i + 2], 16).unwrap()).collect::<Vec<_>>(),
    )
    .expect("v1 verifies");
    assert_eq!(
        serde_json::from_str::<Value>(payload).unwrap()["data"]["object"]["id"],
        platform.connect_client_id.as_str()
    );

    let (stale, stale_payload) = &received[1];
    assert!(stale.starts_with("t=1000000,v1="));
    assert_ne!(*stale, sign(stale_payload, &platform.webhook_secret, 1_000_000), "signed with the wrong secret");
    assert_eq!(*stale, sign(stale_payload, "whsec_wrong", 1_000_000));
    server.abort();
}

/// A minimal async-stripe transport over reqwest, so async-stripe's own types parse the
/// double's answers. An error is its status and JSON body (status 0: not from the double).
struct Sdk {
    http: reqwest::Client,
    base: String,
    key: String,
}

#[derive(Debug)]
struct SdkError {
    status: u16,
    body: Value,
}

impl SdkError {
    fn other(message: impl std::fmt::Display) -> SdkError {
        SdkError { status: 0, body: json!(message.to_string()) }
    }
}

impl stripe_client_core::StripeClientErr for SdkError {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        SdkError::other(format!("async-stripe could not parse the answer: {msg}"))
    }
}

impl stripe_client_core::StripeClient for Sdk {
    type Err = SdkError;

    async fn execute(
        &self,
        request: stripe_client_core::CustomizedStripeRequest,
    ) -> Result<axum::body::Bytes, SdkError> {
        use stripe_client_core::{RequestStrategy, StripeMethod};
        let (request, config) = request.into_pieces();
        let query = request.query.map(|q| format!("?{q}")).unwrap_or_default();
        let url = format!("{}v1{}{query}", self.base, request.path);
        let method =
            if matches!(request.method, StripeMethod::Get) { reqwest::Method::GET } else { reqwest::Method::POST };
        let mut builder = self.http.request(method, url).bearer_auth(&self.key);
        if let Some(account) = config.account_id {
            builder = builder.header("stripe-account", account.as_str());
        }
        if let Some(RequestStrategy::Idempotent(key)) = config.request_strategy {
            builder = builder.header("idempotency-key", key.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.header("content-type", "application/x-www-form-urlencoded").body(body);
        }
        let response = builder.send().await.map_err(SdkError::other)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(SdkError::other)?;
        match status {
            200 => Ok(bytes),
            _ => Err(SdkError { status, body: serde_json::from_slice(&bytes).unwrap_or_default() }),
        }
    }
}

#[tokio::test]
async fn async_stripe_parses_the_answers() {
    use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};
    use stripe_core::customer::{CreateCustomer, CreateCustomerInvoiceSettings, SearchCustomer};
    use stripe_types::{Currency, Expandable};

    let (double, platform, _) = setup().await;
    let acct = connect(&double, &platform).await;
    let on = || stripe_shared::AccountId::from(acct.clone());
    let sdk = Sdk { http: reqwest::Client::new(), base: double.api_base.clone(), key: platform.secret_key.clone() };
    let me = stripe_connect::account::RetrieveForMyAccountAccount::new().send(&sdk).await.unwrap();
    assert_eq!(me.id.as_str(), platform.account_id);

    let metadata = std::collections::HashMap::from([("curbpay_id".to_owned(), "u1".to_owned())]);
    let expand = vec!["sources".to_owned(), "invoice_settings.default_payment_method".to_owned()];
    let customer = CreateCustomer::new().source("tok_visa").metadata(metadata.clone()).expand(expand.clone());
    let key = RequestStrategy::Idempotent(IdempotencyKey::new("cus-1").unwrap());
    let customer = customer.customize().request_strategy(key).send(&sdk).await.unwrap();
    assert!(matches!(customer.default_source, Some(Expandable::Id(_))));
    assert_eq!(customer.sources.as_ref().unwrap().data.len(), 1);
    let found = SearchCustomer::new("metadata['curbpay_id']:'u1'")
        .expand(vec!["data.sources".to_owned()])
        .send(&sdk)
        .await
        .unwrap();
    assert_eq!(found.data[0].id, customer.id);

    let token = stripe_core::token::CreateToken::new()
        .customer(customer.id.as_str())
        .customize()
        .account_id(on())
        .send(&sdk)
        .await
        .unwrap();
    let charge =
        stripe_core::charge::CreateCharge::new().source(token.id.as_str()).amount(1250).currency(Currency::USD);
    let charge = charge
        .application_fee_amount(100)
        .metadata(metadata.clone())
        .customize()
        .account_id(on())
        .send(&sdk)
        .await
        .unwrap();
    assert!(charge.paid);
    let search = stripe_core::charge::SearchCharge::new("metadata['curbpay_id']:'u1'").customize().account_id(on());
    assert_eq!(search.send(&sdk).await.unwrap().data[0].id, charge.id);
    match stripe_core::charge::CreateCharge::new()
        .source(token.id.as_str())
        .amount(1250)
        .currency(Currency::USD)
        .customize()
        .account_id(on())
        .send(&sdk)
        .await
    {
        Err(SdkError { status: 400, body }) => assert_eq!(body["error"]["code"], "token_already_used"),
        other => panic!("{other:?}"),
    }

    let settings =
        CreateCustomerInvoiceSettings { default_payment_method: Some("pm_card_visa".to_owned()), ..Default::default() };
    let pm_customer = CreateCustomer::new()
        .payment_method("pm_card_visa")
        .invoice_settings(settings)
        .expand(expand)
        .send(&sdk)
        .await
        .unwrap();
    let Some(Expandable::Object(pm)) = pm_customer.invoice_settings.as_ref().unwrap().default_payment_method.as_ref()
    else {
        panic!()
    };
    assert_eq!(pm.card.as_ref().unwrap().last4, "4242");
    let clone = stripe_payment::payment_method::CreatePaymentMethod::new()
        .customer(pm_customer.id.as_str())
        .payment_method(pm.id.as_str());
    let clone = clone.customize().account_id(on()).send(&sdk).await.unwrap();
    let off_session = stripe_core::payment_intent::CreatePaymentIntentOffSession::Bool(true);
    let intent = stripe_core::payment_intent::CreatePaymentIntent::new(900, Currency::EUR)
        .payment_method(clone.id.as_str())
        .confirm(true);
    let intent = intent.off_session(off_session).customize().account_id(on()).send(&sdk).await.unwrap();
    assert_eq!(intent.status.as_str(), "succeeded");

    for event in [double.deauthorized_event(&platform.connect_client_id, &acct), double.account_updated_event(&acct)] {
        let payload = serde_json::to_string_pretty(&event).unwrap();
        let signature = sign(&payload, &platform.webhook_secret, chrono::Utc::now().timestamp());
        let parsed = stripe_webhook::Webhook::construct_event(&payload, &signature, &platform.webhook_secret).unwrap();
        assert_eq!(parsed.account.as_deref(), Some(acct.as_str()));
    }
}
