//! What tests hold: the double (start it, add platforms, queue OAuth answers, inject faults,
//! read what it saw) and Stripe's webhook signature.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::router::router;
use super::{Db, Idem, Key, Shared, lock, new_id, now};

/// The API version async-stripe 1.0.0-rc.10 is generated for (stamped on events).
pub const API_VERSION: &str = "2026-09-30.endive";

/// A platform account (an app's Stripe account) and its keys.
#[derive(Clone, Debug)]
pub struct Platform {
    pub secret_key: String,
    pub publishable_key: String,
    pub account_id: String,
    pub connect_client_id: String,
    pub webhook_secret: String,
}

impl Platform {
    /// A platform with fresh random keys and ids.
    pub fn generate() -> Platform {
        Platform {
            secret_key: new_id("sk_test"),
            publishable_key: new_id("pk_test"),
            account_id: new_id("acct"),
            connect_client_id: new_id("ca"),
            webhook_secret: new_id("whsec"),
        }
    }
}

/// A fault for a request matching an `inject`. Faults are used in order, at most one per
/// request; those that need execution wait for a request that executes (an idempotent
/// replay or a 409 leaves them queued).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer this status on arrival (429: Stripe's rate-limit error). Not saved.
    Status(u16),
    /// 500 `api_error` with `Stripe-Should-Retry`. `true`: nothing ran and nothing is saved;
    /// `false`: execution started and failed: the 500 is saved for the idempotency key.
    ServerError { should_retry: bool },
    /// Wait (in flight for its idempotency key meanwhile), then go on normally.
    Delay(Duration),
    /// Close the connection without an answer; nothing runs, nothing is saved.
    Drop,
    /// Execute (the object is created), then answer a saved 500, Should-Retry false.
    AfterSuccess500,
    /// Execute and save the real answer, then close the connection without sending it.
    DropAfterSuccess,
}

/// One request as the double saw it. `status` is 0 when the connection was dropped.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub stripe_account: Option<String>,
    pub idempotency_key: Option<String>,
    pub params: Vec<(String, String)>,
    pub status: u16,
    pub replayed: bool,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub struct StripeDouble {
    /// `http://127.0.0.1:PORT/`, with the trailing slash async-stripe's `url()` needs.
    pub api_base: String,
    /// `http://127.0.0.1:PORT`, for `/oauth/authorize`, `/oauth/token`, `/oauth/deauthorize`.
    pub connect_base: String,
    db: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StripeDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StripeDouble {
    pub async fn start() -> StripeDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Stripe double");
        let addr = listener.local_addr().unwrap();
        let db: Shared = Arc::default();
        let app = router(db.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StripeDouble { api_base: format!("http://{addr}/"), connect_base: format!("http://{addr}"), db, server }
    }

    fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    pub fn add_platform(&self, p: Platform) {
        let mut db = self.db();
        db.keys.insert(p.secret_key.clone(), Key { account: p.account_id.clone(), platform: true, issuer: None });
        db.account(&p.account_id);
        db.platforms.insert(p.account_id.clone(), p);
    }

    /// Who approves the next `/oauth/authorize` (the account is created if new). With
    /// nothing queued, authorize approves with a fresh account.
    pub fn next_authorization(&self, connected_account_id: &str) {
        let mut db = self.db();
        db.account(connected_account_id);
        db.approvals.push_back(Some(connected_account_id.to_owned()));
    }

    pub fn deny_next_authorization(&self) {
        self.db().approvals.push_back(None);
    }

    /// An authorization code for `/oauth/token`, as if the account approved `client_id`.
    pub fn authorization_code(&self, client_id: &str, connected_account_id: &str) -> String {
        self.db().mint_code(client_id, connected_account_id)
    }

    /// Connects an account to a platform without OAuth (a setup shortcut).
    pub fn connect(&self, platform_account_id: &str, connected_account_id: &str) {
        self.db().account(connected_account_id).platforms.insert(platform_account_id.to_owned());
    }

    pub fn is_connected(&self, platform_account_id: &str, connected_account_id: &str) -> bool {
        self.db().accounts.get(connected_account_id).is_some_and(|a| a.platforms.contains(platform_account_id))
    }

    /// Sets what `GET /v1/account` and `account_json` say of an account.
    pub fn set_account(&self, account_id: &str, charges_enabled: bool, payouts_enabled: bool) {
        let mut db = self.db();
        let account = db.account(account_id);
        (account.charges_enabled, account.payouts_enabled) = (charges_enabled, payouts_enabled);
    }

    pub fn account_json(&self, account_id: &str) -> Value {
        self.db().account_json(account_id)
    }

    /// Faults for the requests whose method matches and whose path starts with `path_prefix`.
    pub fn inject(&self, method: &str, path_prefix: &str, faults: Vec<Fault>) {
        self.db().faults.push((method.to_uppercase(), path_prefix.to_owned(), faults.into()));
    }

    /// Objects younger than `lag` don't show in search results (Stripe's search lags writes).
    pub fn set_search_lag(&self, lag: Duration) {
        self.db().search_lag = lag;
    }

    /// Idempotent requests now executing (to line up a concurrent duplicate).
    pub fn in_flight(&self) -> usize {
        self.db().idem.values().filter(|i| matches!(i, Idem::Running)).count()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.db().log.clone()
    }

    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.db()
            .log
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    /// How many objects of a kind (customer, card, token, payment_method, charge,
    /// payment_intent, balance_transaction) really exist, on all accounts.
    pub fn objects(&self, kind: &str) -> usize {
        self.db().objects.values().filter(|o| o.kind == kind).count()
    }

    /// A stored object by id, with the account it lives on.
    pub fn object(&self, id: &str) -> Option<(String, Value)> {
        self.db().objects.get(id).map(|o| (o.account.clone(), o.body.clone()))
    }

    /// An event like Stripe's; `account` is set on Connect events.
    pub fn event(&self, kind: &str, account: Option<&str>, object: Value) -> Value {
        let mut event = json!({
            "id": new_id("evt"), "object": "event", "api_version": API_VERSION, "created": now(),
            "data": { "object": object }, "livemode": false, "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null }, "type": kind,
        });
        if let Some(account) = account {
            event["account"] = json!(account);
        }
        event
    }

    /// `account.application.deauthorized`: `account` left the platform `client_id`.
    pub fn deauthorized_event(&self, client_id: &str, account: &str) -> Value {
        let application = json!({ "id": client_id, "object": "application", "name": null });
        self.event("account.application.deauthorized", Some(account), application)
    }

    /// `account.updated` with the account as it now is (see `set_account`).
    pub fn account_updated_event(&self, account: &str) -> Value {
        self.event("account.updated", Some(account), self.account_json(account))
    }

    /// POSTs `event` as Stripe does: pretty-printed, signed with `secret` at `timestamp`
    /// (default now).
    pub async fn deliver_webhook(
        &self,
        url: &str,
        event: Value,
        secret: &str,
        timestamp: Option<i64>,
    ) -> reqwest::Response {
        let payload = serde_json::to_string_pretty(&event).unwrap();
        let signature = sign(&payload, secret, timestamp.unwrap_or_else(now));
        let request = reqwest::Client::new().post(url).header("content-type", "application/json; charset=utf-8");
        let request = request.header("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)");
        request.header("stripe-signature", signature).body(payload).send().await.expect("deliver webhook")
    }
}

/// `Stripe-Signature` of a payload: `t=<unix>,v1=<hex hmac_sha256(secret, "{t}.{payload}")>`.
pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}
