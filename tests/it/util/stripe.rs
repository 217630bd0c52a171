//! A Stripe API test double: one axum server on 127.0.0.1:0 answering the part of Stripe
//! curbpay uses (customers, tokens, payment methods, charges, payment intents, Connect
//! OAuth) with objects shaped like Stripe's examples (shared/stripe/fixtures.json), complete
//! enough for async-stripe 1.0.0-rc.10 to deserialize. Objects live on an account: the
//! platform's own (its secret key), or a connected one (`Stripe-Account`, connected by OAuth).
//!
//! Layers, outermost first (`handle`): request id and recording, authentication, injected
//! faults, the idempotency store, then the endpoint (`Op`s, one per endpoint, under one lock).
//! Each request runs in its own task, so like Stripe it finishes when the client goes away.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// The API version async-stripe 1.0.0-rc.10 is generated for (stamped on events).
pub const API_VERSION: &str = "2026-09-30.endive";

// ------------------------------------------------------------------------------ public API

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

// ------------------------------------------------------------------------------ state

type Shared = Arc<Mutex<Db>>;

fn lock(db: &Shared) -> MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct Db {
    /// Secret keys: platforms' own, and OAuth access tokens.
    keys: HashMap<String, Key>,
    platforms: HashMap<String, Platform>,
    accounts: HashMap<String, Account>,
    objects: HashMap<String, Obj>,
    codes: HashMap<String, Code>,
    /// Answers for the next `/oauth/authorize` calls: an account, or `None` to deny.
    approvals: VecDeque<Option<String>>,
    faults: Vec<(String, String, VecDeque<Fault>)>,
    /// By (secret key, account, Idempotency-Key).
    idem: HashMap<(String, String, String), Idem>,
    log: Vec<Recorded>,
    search_lag: Duration,
}

/// A key acts on `account`; a platform's may also act on accounts connected to it.
struct Key {
    account: String,
    platform: bool,
    /// The platform an OAuth access token was issued to.
    issuer: Option<String>,
}

struct Account {
    charges_enabled: bool,
    payouts_enabled: bool,
    /// The platforms it is connected to.
    platforms: HashSet<String>,
}

struct Obj {
    kind: &'static str,
    account: String,
    at: Instant,
    /// A single-use token, or a customer-less payment method, has been used.
    used: bool,
    body: Value,
}

struct Code {
    client_id: String,
    account: String,
    used: bool,
}

enum Idem {
    Running,
    Done(String, Saved),
}

/// A response as saved for an idempotency key.
#[derive(Clone)]
struct Saved {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    request_id: String,
}

impl Saved {
    async fn of(response: Response, request_id: &str) -> Saved {
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        Saved { status: parts.status, headers: parts.headers, body, request_id: request_id.to_owned() }
    }

    fn response(&self, replayed: bool) -> Response {
        let mut response = (self.status, self.headers.clone(), self.body.clone()).into_response();
        if replayed {
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response.headers_mut().insert("original-request", self.request_id.parse().unwrap());
        }
        response
    }

    /// Stripe saves nothing for a request whose parameters failed validation.
    fn is_validation_error(&self) -> bool {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or_default();
        self.status == 400 && (code.starts_with("parameter_") || code == "amount_too_small")
    }
}

/// A request as the endpoints see it. On `/v1/` it is authenticated: `home` is the key's
/// own account, `account` the one acted on. Parameters keep their brackets (`metadata[k]`).
#[derive(Clone, Default)]
struct Req {
    bearer: Option<String>,
    home: String,
    account: String,
    params: Vec<(String, String)>,
    path: String,
    id: String,
}

impl Req {
    fn p(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn need(&self, name: &str) -> Result<&str, Reply> {
        self.p(name)
            .ok_or_else(|| err(400, "parameter_missing", format!("Missing required param: {name}."), Some(name)))
    }
    fn int(&self, name: &str) -> Option<i64> {
        self.p(name).and_then(|v| v.parse().ok())
    }
    fn metadata(&self) -> Map<String, Value> {
        let key = |k: &str| k.strip_prefix("metadata[")?.strip_suffix(']').map(str::to_owned);
        self.params.iter().filter_map(|(k, v)| Some((key(k)?, json!(v)))).collect()
    }
}

impl Db {
    fn account(&mut self, id: &str) -> &mut Account {
        let new = || Account { charges_enabled: true, payouts_enabled: true, platforms: HashSet::new() };
        self.accounts.entry(id.to_owned()).or_insert_with(new)
    }

    fn put(&mut self, kind: &'static str, account: &str, body: Value) {
        let id = body["id"].as_str().unwrap().to_owned();
        self.objects.insert(id, Obj { kind, account: account.to_owned(), at: Instant::now(), used: false, body });
    }

    fn find(&mut self, kind: &str, account: &str, id: &str) -> Option<&mut Obj> {
        self.objects.get_mut(id).filter(|o| o.kind == kind && o.account == account)
    }

    /// `find`, or Stripe's `resource_missing`: 404 for the id in the path, 400 for a param.
    fn need(&mut self, kind: &str, account: &str, id: &str, param: &str) -> Result<&mut Obj, Reply> {
        let name = if kind == "payment_method" { "PaymentMethod" } else { kind };
        let message = format!("No such {name}: '{id}'");
        let status = if param == "id" { 404 } else { 400 };
        self.find(kind, account, id).ok_or_else(|| {
            Reply::error(status, "invalid_request_error", Some("resource_missing"), message, Some(param))
        })
    }

    fn mint_code(&mut self, client_id: &str, account: &str) -> String {
        let code = new_id("ac");
        self.account(account);
        self.codes
            .insert(code.clone(), Code { client_id: client_id.to_owned(), account: account.to_owned(), used: false });
        code
    }

    /// The next fault for a request, if it applies at this stage: `Status`, `Drop` and
    /// `Delay` on arrival, the others once the request executes.
    fn take_fault(&mut self, method: &str, path: &str, arrival: bool) -> Option<Fault> {
        let (_, _, queue) =
            self.faults.iter_mut().find(|(m, p, q)| m == method && path.starts_with(p.as_str()) && !q.is_empty())?;
        let on_arrival = matches!(queue[0], Fault::Status(_) | Fault::Drop | Fault::Delay(_));
        if on_arrival == arrival { queue.pop_front() } else { None }
    }

    /// The platform whose secret this is (OAuth endpoints).
    fn platform_by_secret(&self, secret: Option<&str>) -> Result<Platform, Reply> {
        let platform =
            secret.and_then(|s| self.keys.get(s)).filter(|k| k.platform).and_then(|k| self.platforms.get(&k.account));
        platform.cloned().ok_or_else(|| match secret {
            None => oauth_err(401, "invalid_client", "No authentication was provided. Send your secret API key using the Authorization header, or as a client_secret POST parameter.".into()),
            Some(secret) => oauth_err(401, "invalid_client", format!("Invalid API Key provided: {}", mask(secret))),
        })
    }

    /// Expands the `expand[]` paths (`a.b`, and `data.…` in lists) that hold ids of objects
    /// on the account. As at Stripe, a customer's `sources` shows only when expanded.
    fn expand(&self, account: &str, body: &mut Value, paths: &[&str]) {
        if matches!(body["object"].as_str(), Some("list" | "search_result")) {
            let inner: Vec<&str> = paths.iter().filter_map(|p| p.strip_prefix("data.")).collect();
            body["data"].as_array_mut().unwrap().iter_mut().for_each(|item| self.expand(account, item, &inner));
            return;
        }
        if body["object"] == "customer" && !paths.contains(&"sources") {
            body.as_object_mut().unwrap().remove("sources");
        }
        for path in paths {
            let Some(slot) = body.pointer_mut(&format!("/{}", path.replace('.', "/"))) else { continue };
            let id = slot.as_str().unwrap_or_default();
            if let Some(o) = self.objects.get(id).filter(|o| o.account == account) {
                *slot = o.body.clone();
            }
        }
    }

    fn account_json(&self, id: &str) -> Value {
        let (charges, payouts) =
            self.accounts.get(id).map_or((false, false), |a| (a.charges_enabled, a.payouts_enabled));
        let requirements = json!({ "alternatives": [], "current_deadline": null, "currently_due": [], "disabled_reason": null,
            "errors": [], "eventually_due": [], "past_due": [], "pending_verification": [] });
        json!({
            "id": id, "object": "account", "business_profile": { "mcc": null, "name": null, "product_description": null,
              "support_email": null, "support_phone": null, "support_url": null, "url": null },
            "business_type": null, "capabilities": { "card_payments": "active", "transfers": "active" },
            "charges_enabled": charges, "controller": { "type": "account" }, "country": "US", "created": now(),
            "default_currency": "usd", "details_submitted": true, "email": format!("{id}@example.com"),
            "external_accounts": { "object": "list", "data": [], "has_more": false, "url": format!("/v1/accounts/{id}/external_accounts") },
            "future_requirements": requirements, "metadata": {}, "payouts_enabled": payouts, "requirements": requirements,
            "tos_acceptance": { "date": null, "ip": null, "user_agent": null }, "type": "standard",
        })
    }
}

// ------------------------------------------------------------------------------ test cards

/// A Stripe test card: `tok_X` names it as a token, `pm_card_X` as a payment method. The
/// double declines when charging (Stripe may decline some of them already when attaching).
struct TestCard {
    tok: &'static str,
    brand: &'static str,
    last4: &'static str,
    funding: &'static str,
    /// (code, decline_code, message) when charging it fails.
    decline: Option<(&'static str, Option<&'static str>, &'static str)>,
}

const fn ok(tok: &'static str, brand: &'static str, last4: &'static str, funding: &'static str) -> TestCard {
    TestCard { tok, brand, last4, funding, decline: None }
}

const fn no(
    tok: &'static str,
    last4: &'static str,
    code: &'static str,
    decline: Option<&'static str>,
    message: &'static str,
) -> TestCard {
    TestCard { tok, brand: "Visa", last4, funding: "credit", decline: Some((code, decline, message)) }
}

const DECLINED: &str = "Your card was declined.";

const CARDS: &[TestCard] = &[
    ok("tok_visa", "Visa", "4242", "credit"),
    ok("tok_visa_debit", "Visa", "5556", "debit"),
    ok("tok_mastercard", "MasterCard", "4444", "credit"),
    ok("tok_mastercard_debit", "MasterCard", "8210", "debit"),
    ok("tok_mastercard_prepaid", "MasterCard", "5100", "prepaid"),
    ok("tok_amex", "American Express", "0005", "credit"),
    ok("tok_discover", "Discover", "1117", "credit"),
    ok("tok_diners", "Diners Club", "0004", "credit"),
    ok("tok_jcb", "JCB", "0505", "credit"),
    ok("tok_unionpay", "UnionPay", "0005", "credit"),
    no("tok_chargeDeclined", "0002", "card_declined", Some("generic_decline"), DECLINED),
    no(
        "tok_chargeDeclinedInsufficientFunds",
        "9995",
        "card_declined",
        Some("insufficient_funds"),
        "Your card has insufficient funds.",
    ),
    no("tok_chargeDeclinedLostCard", "9987", "card_declined", Some("lost_card"), DECLINED),
    no("tok_chargeDeclinedStolenCard", "9979", "card_declined", Some("stolen_card"), DECLINED),
    no("tok_chargeDeclinedFraudulent", "0019", "card_declined", Some("fraudulent"), DECLINED),
    no("tok_chargeDeclinedExpiredCard", "0069", "expired_card", None, "Your card has expired."),
    no("tok_chargeDeclinedIncorrectCvc", "0127", "incorrect_cvc", None, "Your card's security code is incorrect."),
    no(
        "tok_chargeDeclinedProcessingError",
        "0119",
        "processing_error",
        None,
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    no(
        "tok_authenticationRequired",
        "3184",
        "authentication_required",
        Some("authentication_required"),
        "Your card was declined. This transaction requires authentication.",
    ),
];

impl TestCard {
    fn by_token(tok: &str) -> Option<&'static TestCard> {
        CARDS.iter().find(|c| c.tok == tok)
    }

    fn by_pm(pm: &str) -> Option<&'static TestCard> {
        CARDS.iter().find(|c| c.tok.strip_prefix("tok_") == pm.strip_prefix("pm_card_"))
    }

    /// Each card object carries its test card's fingerprint, which tells how charging ends.
    fn of(card: &Value) -> &'static TestCard {
        let fingerprint = card["fingerprint"].as_str().unwrap_or_default();
        CARDS.iter().find(|c| c.fingerprint() == fingerprint).expect("cards come from test cards")
    }

    fn fingerprint(&self) -> String {
        let hash = self.tok.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        format!("{hash:016X}")
    }

    /// The lowercase brand of payment methods and charges.
    fn network(&self) -> &'static str {
        match self.brand {
            "American Express" => "amex",
            "Diners Club" => "diners",
            "MasterCard" => "mastercard",
            other => {
                ["visa", "discover", "jcb", "unionpay"].into_iter().find(|n| other.eq_ignore_ascii_case(n)).unwrap()
            }
        }
    }

    /// A `card` object (a customer's source, or a token's card).
    fn card(&self, id: &str, customer: Option<&str>) -> Value {
        json!({
            "id": id, "object": "card", "address_city": null, "address_country": null, "address_line1": null,
            "address_line1_check": null, "address_line2": null, "address_state": null, "address_zip": null,
            "address_zip_check": null, "brand": self.brand, "country": "US", "customer": customer, "cvc_check": "pass",
            "dynamic_last4": null, "exp_month": 12, "exp_year": 2034, "fingerprint": self.fingerprint(),
            "funding": self.funding, "last4": self.last4, "metadata": {}, "name": null, "tokenization_method": null,
        })
    }

    fn payment_method(&self, id: &str, customer: Option<&str>) -> Value {
        json!({
            "id": id, "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": { "address": null, "email": null, "name": null, "phone": null },
            "card": { "brand": self.network(), "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
              "country": "US", "display_brand": self.network(), "exp_month": 12, "exp_year": 2034, "fingerprint": self.fingerprint(),
              "funding": self.funding, "generated_from": null, "last4": self.last4,
              "networks": { "available": [self.network()], "preferred": null }, "three_d_secure_usage": { "supported": true }, "wallet": null },
            "created": now(), "customer": customer, "livemode": false, "metadata": {}, "type": "card",
        })
    }

    /// A charge's `payment_method_details`.
    fn details(&self) -> Value {
        json!({ "type": "card", "card": {
            "brand": self.network(), "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
            "country": "US", "exp_month": 12, "exp_year": 2034, "fingerprint": self.fingerprint(), "funding": self.funding,
            "last4": self.last4, "network": self.network(), "three_d_secure": null, "wallet": null } })
    }
}

// ------------------------------------------------------------------------------ errors

/// Any answer but a 200 object: an error, or a redirect.
struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// Stripe's error body: `{"error":{"type","code","message","param"}}`.
    fn error(status: u16, ty: &str, code: Option<&str>, message: impl Into<String>, param: Option<&str>) -> Reply {
        let body = json!({ "error": { "type": ty, "code": code, "message": message.into(), "param": param } });
        Reply { status, body, headers: vec![] }
    }
}

/// An `invalid_request_error` with a code.
fn err(status: u16, code: &str, message: impl Into<String>, param: Option<&str>) -> Reply {
    Reply::error(status, "invalid_request_error", Some(code), message, param)
}

fn oauth_err(status: u16, error: &str, description: String) -> Reply {
    Reply { status, body: json!({ "error": error, "error_description": description }), headers: vec![] }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::from_u16(self.status).unwrap(), Json(self.body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
}

fn server_error(should_retry: bool) -> Response {
    let message = "Sorry, something went wrong. We've already been notified of the problem.";
    let mut reply = Reply::error(500, "api_error", None, message, None);
    reply.headers.push(("stripe-should-retry", should_retry.to_string()));
    reply.into_response()
}

fn status_fault(status: u16) -> Response {
    let reply = match status {
        429 => err(
            429,
            "rate_limit",
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            None,
        ),
        _ => Reply::error(status, "api_error", None, "Sorry, something went wrong.", None),
    };
    reply.into_response()
}

/// `sk_test_****1234`: never the whole key.
fn mask(key: &str) -> String {
    let prefix =
        ["sk_test_", "sk_live_", "rk_test_", "pk_test_"].into_iter().find(|p| key.starts_with(p)).unwrap_or("");
    let last4 = if key.len() >= prefix.len() + 8 { &key[key.len() - 4..] } else { "" };
    format!("{prefix}****{last4}")
}

// ------------------------------------------------------------------------------ layers: record, auth, faults, idempotency

fn router(db: Shared) -> Router {
    Router::new()
        .route("/v1/account", get(op(account)))
        .route("/v1/customers", post(op(create_customer)).get(op(list)))
        .route("/v1/customers/search", get(op(search)))
        .route("/v1/customers/{id}", get(op(retrieve)).post(op(update_customer)))
        .route("/v1/tokens", post(op(create_token)))
        .route("/v1/tokens/{id}", get(op(retrieve)))
        .route("/v1/payment_methods", post(op(clone_payment_method)))
        .route("/v1/payment_methods/{id}", get(op(retrieve)))
        .route("/v1/payment_methods/{id}/attach", post(op(attach_payment_method)))
        .route("/v1/charges", post(op(create_charge)).get(op(list)))
        .route("/v1/charges/search", get(op(search)))
        .route("/v1/charges/{id}", get(op(retrieve)))
        .route("/v1/payment_intents", post(op(create_payment_intent)).get(op(list)))
        .route("/v1/payment_intents/{id}", get(op(retrieve)))
        .route("/v1/payment_intents/{id}/increment_authorization", post(op(increment_authorization)))
        .route("/v1/payment_intents/{id}/capture", post(op(capture_payment_intent)))
        .route("/v1/payment_intents/{id}/cancel", post(op(cancel_payment_intent)))
        .route("/v1/refunds", post(op(create_refund)).get(op(list)))
        .route("/v1/refunds/{id}", get(op(retrieve)))
        .route("/v1/balance_transactions/{id}", get(op(retrieve)))
        .route("/oauth/authorize", get(op(oauth_authorize)))
        .route("/oauth/token", post(op(oauth_token)))
        .route("/oauth/deauthorize", post(op(oauth_deauthorize)))
        .fallback(op(|_, _| Err(Reply::error(404, "invalid_request_error", None, "Unrecognized request URL.", None))))
        .layer(middleware::from_fn_with_state(db.clone(), spawned))
        .with_state(db)
}

/// Runs each request in a task of its own: like Stripe, it goes on if the client leaves.
async fn spawned(State(db): State<Shared>, req: Request, next: Next) -> Response {
    tokio::spawn(handle(db, req, next)).await.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// An endpoint, run under the state lock: `Ok` is a 200 with the object (expanded).
type Op = fn(&mut Db, &Req) -> Result<Value, Reply>;

fn op(
    f: Op,
) -> impl Fn(State<Shared>, Extension<Req>, RawPathParams) -> Ready<Response> + Clone + Send + Sync + 'static {
    move |State(db): State<Shared>, Extension(mut req): Extension<Req>, path: RawPathParams| {
        req.id = path.iter().next().map(|(_, v)| v.to_owned()).unwrap_or_default();
        let mut db = lock(&db);
        ready(match f(&mut db, &req) {
            Ok(mut body) => {
                let paths: Vec<&str> =
                    req.params.iter().filter(|(k, _)| k.starts_with("expand[")).map(|(_, v)| v.as_str()).collect();
                db.expand(&req.account, &mut body, &paths);
                Json(body).into_response()
            }
            Err(reply) => reply.into_response(),
        })
    }
}

async fn handle(db: Shared, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else { return StatusCode::BAD_REQUEST.into_response() };
    let raw = if parts.method == Method::GET { parts.uri.query().unwrap_or("").as_bytes() } else { &body[..] };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(raw).into_owned().collect();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut rec = Recorded {
        request_id: new_id("req"),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        stripe_account: header("stripe-account"),
        idempotency_key: header("idempotency-key"),
        params: params.clone(),
        status: 0,
        replayed: false,
    };
    let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(|s| s.trim().to_owned()));
    let mut endpoint_req = Req { bearer, params, path: rec.path.clone(), ..Req::default() };
    let auth = match rec.path.starts_with("/v1/") {
        true => authenticate(&lock(&db), &mut endpoint_req, rec.stripe_account.as_deref()),
        false => Ok(()),
    };
    let mut response = match auth {
        Err(reply) => reply.into_response(),
        Ok(()) => {
            let fingerprint = format!("{} {}\n{}", rec.method, rec.path, String::from_utf8_lossy(&body));
            let mut req = Request::from_parts(parts, Body::empty());
            req.extensions_mut().insert(endpoint_req);
            process(&db, &rec, fingerprint, req, next).await
        }
    };
    rec.replayed = response.headers().contains_key("idempotent-replayed");
    rec.status = if response.extensions().get::<Dropped>().is_some() { 0 } else { response.status().as_u16() };
    response.headers_mut().insert("request-id", rec.request_id.parse().unwrap());
    lock(&db).log.push(rec);
    response
}

/// Marks a response hyper cannot send: its body fails at once, so hyper closes the
/// connection before writing a byte and the client sees a connection error.
#[derive(Clone)]
struct Dropped;

fn dropped() -> Response {
    let failing =
        futures_util::stream::once(async { Err::<Bytes, _>(std::io::Error::other("dropped by the Stripe double")) });
    let mut response = Response::new(Body::from_stream(failing));
    response.extensions_mut().insert(Dropped);
    response
}

/// Faults and the idempotency store around the endpoint.
async fn process(db: &Shared, rec: &Recorded, fingerprint: String, req: Request, next: Next) -> Response {
    let arrival = lock(db).take_fault(&rec.method, &rec.path, true);
    match arrival {
        Some(Fault::Status(status)) => return status_fault(status),
        Some(Fault::Drop) => return dropped(),
        _ => {}
    }
    let r = req.extensions().get::<Req>().unwrap();
    let slot = match (&r.bearer, &rec.idempotency_key) {
        (Some(secret), Some(key)) if rec.method == "POST" && !r.account.is_empty() => {
            Some((secret.clone(), r.account.clone(), key.clone()))
        }
        _ => None,
    };
    if let Some(slot) = &slot {
        let mut db = lock(db);
        match db.idem.get(slot) {
            Some(Idem::Running) => {
                let message = "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through). Please try again later.";
                return Reply::error(409, "idempotency_error", Some("idempotency_key_in_use"), message, None)
                    .into_response();
            }
            Some(Idem::Done(saved_fingerprint, saved)) if *saved_fingerprint == fingerprint => {
                return saved.response(true);
            }
            Some(Idem::Done(..)) => {
                let message = format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{}' if you meant to execute a different request.",
                    slot.2
                );
                return Reply::error(400, "idempotency_error", None, message, None).into_response();
            }
            None => _ = db.idem.insert(slot.clone(), Idem::Running),
        }
    }
    let fault = match arrival {
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            None
        }
        _ => lock(db).take_fault(&rec.method, &rec.path, false),
    };
    let response = match fault {
        Some(Fault::ServerError { should_retry: true }) => {
            slot.map(|slot| lock(db).idem.remove(&slot));
            return server_error(true);
        }
        Some(Fault::ServerError { should_retry: false }) => server_error(false),
        _ => next.run(req).await,
    };
    let mut saved = Saved::of(response, &rec.request_id).await;
    if fault == Some(Fault::AfterSuccess500) {
        saved = Saved::of(server_error(false), &rec.request_id).await;
    }
    if let Some(slot) = slot {
        let mut db = lock(db);
        match saved.is_validation_error() {
            true => db.idem.remove(&slot),
            false => db.idem.insert(slot, Idem::Done(fingerprint, saved.clone())),
        };
    }
    match fault {
        Some(Fault::DropAfterSuccess) => dropped(),
        _ => saved.response(false),
    }
}

/// Sets who the request is from (`home`) and acts on (`account`), or answers 401/403.
fn authenticate(db: &Db, req: &mut Req, stripe_account: Option<&str>) -> Result<(), Reply> {
    let Some(secret) = req.bearer.as_deref() else {
        let message = "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').";
        return Err(Reply::error(401, "invalid_request_error", None, message, None));
    };
    let invalid = || {
        Reply::error(401, "invalid_request_error", None, format!("Invalid API Key provided: {}", mask(secret)), None)
    };
    let key = db.keys.get(secret).ok_or_else(invalid)?;
    req.account = match stripe_account {
        None => key.account.clone(),
        Some(acct) if acct == key.account => key.account.clone(),
        Some(acct) if key.platform && db.accounts.get(acct).is_some_and(|a| a.platforms.contains(&key.account)) => {
            acct.to_owned()
        }
        Some(acct) => {
            let message = format!(
                "The provided key '{}' does not have access to account '{acct}' (or that account does not exist). Application access may have been revoked.",
                mask(secret)
            );
            return Err(err(403, "account_invalid", message, None));
        }
    };
    req.home = key.account.clone();
    Ok(())
}

// ------------------------------------------------------------------------------ endpoints: accounts, customers, search

fn account(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    Ok(db.account_json(&req.account))
}

/// The kind of object a `/v1/{kind}s/…` path is about.
fn kind(req: &Req) -> &'static str {
    let kinds = ["customer", "token", "payment_method", "charge", "payment_intent", "balance_transaction"];
    kinds.into_iter().find(|k| req.path.starts_with(&format!("/v1/{k}s/"))).unwrap()
}

fn retrieve(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    Ok(db.need(kind(req), &req.account, &req.id, "id")?.body.clone())
}

/// Supports exactly `metadata['key']:'value'` (either quote), newest first.
fn search(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let kind = kind(req);
    let query = req.need("query")?;
    let parsed = (|| {
        let rest = query.strip_prefix("metadata[")?;
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let (key, value) = rest[1..].split_once(&format!("{quote}]:"))?;
        Some((key.to_owned(), value.strip_prefix(quote)?.strip_suffix(quote)?.to_owned()))
    })();
    let unsupported = || {
        err(
            400,
            "parameter_invalid",
            format!("The double only supports metadata['key']:'value', not {query}"),
            Some("query"),
        )
    };
    let (key, value) = parsed.ok_or_else(unsupported)?;
    let account = &req.account;
    let mut found: Vec<&Obj> = db.objects.values().filter(|o| o.kind == kind && o.account == *account).collect();
    found.retain(|o| o.at.elapsed() >= db.search_lag && o.body["metadata"][&key].as_str() == Some(value.as_str()));
    found.sort_by_key(|o| std::cmp::Reverse(o.at));
    let data: Vec<Value> = found.into_iter().map(|o| o.body.clone()).collect();
    Ok(
        json!({ "object": "search_result", "data": data, "has_more": false, "next_page": null, "url": format!("/v1/{kind}s/search") }),
    )
}

/// `GET /v1/{kind}s`: newest first, `created[gte]`, `limit`, `starting_after`. Unlike
/// search, lists read what was just written.
fn list(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let kind = req.path.trim_start_matches("/v1/").trim_end_matches('s').to_owned();
    let since: i64 = req.p("created[gte]").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = req.p("limit").and_then(|v| v.parse().ok()).unwrap_or(10).clamp(1, 100);
    let account = &req.account;
    let mut found: Vec<&Obj> = db
        .objects
        .values()
        .filter(|o| o.kind == kind && o.account == *account && o.body["created"].as_i64().unwrap_or(0) >= since)
        .collect();
    found.sort_by_key(|o| std::cmp::Reverse(o.at));
    if let Some(after) = req.p("starting_after") {
        let position = found.iter().position(|o| o.body["id"] == after).map(|i| i + 1).unwrap_or(found.len());
        found.drain(..position);
    }
    let has_more = found.len() > limit;
    let data: Vec<Value> = found.into_iter().take(limit).map(|o| o.body.clone()).collect();
    Ok(json!({ "object": "list", "data": data, "has_more": has_more, "url": format!("/v1/{kind}s") }))
}

fn customer_json(id: &str, req: &Req) -> Value {
    json!({
        "id": id, "object": "customer", "address": null, "balance": 0, "created": now(), "currency": null,
        "default_source": null, "delinquent": false, "description": req.p("description"), "discount": null,
        "email": req.p("email"), "invoice_prefix": id[4..12].to_uppercase(),
        "invoice_settings": { "custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null },
        "livemode": false, "metadata": req.metadata(), "name": req.p("name"), "next_invoice_sequence": 1, "phone": req.p("phone"),
        "preferred_locales": [], "shipping": null, "tax_exempt": "none", "test_clock": null,
        "sources": { "object": "list", "data": [], "has_more": false, "total_count": 0, "url": format!("/v1/customers/{id}/sources") },
    })
}

/// The test card behind a `source`: a test token's name, or a token of this account
/// (then used up, and its card is returned too).
fn take_token(db: &mut Db, account: &str, tok: &str) -> Result<(&'static TestCard, Option<Value>), Reply> {
    if let Some(card) = TestCard::by_token(tok) {
        return Ok((card, None));
    }
    let token = db.need("token", account, tok, "source")?;
    if token.used {
        return Err(err(
            400,
            "token_already_used",
            format!("You cannot use a Stripe token more than once: {tok}."),
            Some("source"),
        ));
    }
    (token.used, token.body["used"]) = (true, json!(true));
    Ok((TestCard::of(&token.body["card"]), Some(token.body["card"].clone())))
}

/// A payment method: a fresh one for a `pm_card_…` test name, or one of this account.
fn resolve_pm(db: &mut Db, account: &str, pm: &str) -> Result<(&'static TestCard, Value), Reply> {
    if let Some(card) = TestCard::by_pm(pm) {
        let body = card.payment_method(&new_id("pm"), None);
        db.put("payment_method", account, body.clone());
        return Ok((card, body));
    }
    let found = db.need("payment_method", account, pm, "payment_method")?;
    Ok((TestCard::of(&found.body["card"]), found.body.clone()))
}

/// Makes a token's card the customer's default source; the old default is deleted.
fn add_card(db: &mut Db, account: &str, tok: &str, customer: &mut Value) -> Result<(), Reply> {
    let (card, _) = take_token(db, account, tok)?;
    let body = card.card(&new_id("card"), customer["id"].as_str());
    if let Some(old) = customer["default_source"].as_str() {
        db.objects.remove(old);
    }
    db.put("card", account, body.clone());
    customer["default_source"] = body["id"].clone();
    customer["sources"]["data"] = json!([body]);
    customer["sources"]["total_count"] = json!(1);
    Ok(())
}

const DEFAULT_PM: &str = "invoice_settings[default_payment_method]";

/// Sets the customer's default payment method, which must be attached to it.
fn set_default_pm(db: &mut Db, account: &str, customer: &mut Value, pm: &str) -> Result<(), Reply> {
    if db.find("payment_method", account, pm).is_none_or(|o| o.body["customer"] != customer["id"]) {
        let message = format!(
            "The customer does not have a payment method with the ID {pm}. The payment method must be attached to the customer."
        );
        return Err(err(400, "resource_missing", message, Some(DEFAULT_PM)));
    }
    customer["invoice_settings"]["default_payment_method"] = json!(pm);
    Ok(())
}

/// With `payment_method`, the double also makes it the default (Stripe only does so when
/// `invoice_settings[default_payment_method]` names it too).
fn create_customer(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let account = req.account.clone();
    let mut customer = customer_json(&new_id("cus"), req);
    if let Some(pm) = req.p("payment_method") {
        let (_, mut body) = resolve_pm(db, &account, pm)?;
        body["customer"] = customer["id"].clone();
        customer["invoice_settings"]["default_payment_method"] = body["id"].clone();
        db.put("payment_method", &account, body);
    }
    if let Some(pm) = req.p(DEFAULT_PM).filter(|pm| Some(*pm) != req.p("payment_method")) {
        set_default_pm(db, &account, &mut customer, pm)?;
    }
    if let Some(tok) = req.p("source") {
        add_card(db, &account, tok, &mut customer)?;
    }
    db.put("customer", &account, customer.clone());
    Ok(customer)
}

/// Attaches a PaymentMethod (a test one, such as `pm_card_visa`, becomes a new `pm_`)
/// to a customer of the same account.
fn attach_payment_method(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let account = req.account.clone();
    let cus = req.need("customer")?.to_owned();
    db.need("customer", &account, &cus, "customer")?;
    let (_, mut body) = resolve_pm(db, &account, &req.id)?;
    body["customer"] = json!(cus);
    db.put("payment_method", &account, body.clone());
    Ok(body)
}

fn update_customer(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let account = req.account.clone();
    let mut customer = db.need("customer", &account, &req.id, "id")?.body.clone();
    if let Some(pm) = req.p(DEFAULT_PM) {
        set_default_pm(db, &account, &mut customer, pm)?;
    }
    if let Some(tok) = req.p("source") {
        add_card(db, &account, tok, &mut customer)?;
    }
    for (key, value) in req.metadata() {
        match value.as_str() {
            Some("") => _ = customer["metadata"].as_object_mut().unwrap().remove(&key),
            _ => customer["metadata"][key] = value,
        }
    }
    for field in ["email", "name", "description", "phone"].into_iter().filter(|f| req.p(f).is_some()) {
        customer[field] = json!(req.p(field));
    }
    db.find("customer", &account, &req.id).unwrap().body = customer.clone();
    Ok(customer)
}

// ------------------------------------------------------------------------------ endpoints: sharing with connected accounts

/// A single-use token on the connected account from a platform customer's default card.
fn create_token(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let cus = req.need("customer")?;
    if req.home == req.account {
        let message = "The double makes tokens only from a platform customer, on a connected account (Stripe-Account).";
        return Err(err(400, "parameter_invalid", message, Some("customer")));
    }
    let source =
        db.need("customer", &req.home, cus, "customer")?.body["default_source"].as_str().unwrap_or_default().to_owned();
    let Some(card) = db.objects.get(&source).map(|o| TestCard::of(&o.body)) else {
        return Err(err(
            400,
            "missing",
            format!("The customer {cus} must have an active payment source attached."),
            Some("customer"),
        ));
    };
    let token = json!({
        "id": new_id("tok"), "object": "token", "card": card.card(&new_id("card"), None), "client_ip": null,
        "created": now(), "livemode": false, "type": "card", "used": false,
    });
    db.put("token", &req.account, token.clone());
    Ok(token)
}

/// Clones a platform customer's payment method onto the connected account.
fn clone_payment_method(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let (cus, pm) = (req.need("customer")?, req.need("payment_method")?);
    db.need("customer", &req.home, cus, "customer")?;
    let source = db.need("payment_method", &req.home, pm, "payment_method")?;
    if source.body["customer"].as_str() != Some(cus) {
        return Err(err(
            400,
            "resource_missing",
            format!("The payment method {pm} does not belong to the customer {cus}."),
            Some("payment_method"),
        ));
    }
    let clone = TestCard::of(&source.body["card"]).payment_method(&new_id("pm"), None);
    db.put("payment_method", &req.account, clone.clone());
    Ok(clone)
}

// ------------------------------------------------------------------------------ endpoints: payments

fn amount_and_currency(req: &Req) -> Result<(i64, String), Reply> {
    let raw = req.need("amount")?;
    let amount: i64 = raw
        .parse()
        .map_err(|_| err(400, "parameter_invalid_integer", format!("Invalid integer: {raw}"), Some("amount")))?;
    let currency = req.need("currency")?.to_lowercase();
    if amount < 50 {
        return Err(err(400, "amount_too_small", format!("Amount must be at least $0.50 {currency}"), Some("amount")));
    }
    Ok((amount, currency))
}

/// A charge, succeeded or failed with the card's decline, and its balance transaction.
fn make_charge(
    db: &mut Db,
    req: &Req,
    card: &TestCard,
    amount: i64,
    currency: &str,
    source: Value,
    pi: Option<&str>,
) -> Value {
    let (id, account, decline, fee) =
        (new_id("ch"), req.account.clone(), card.decline, req.int("application_fee_amount"));
    let failed = decline.is_some();
    let txn = (!failed).then(|| new_id("txn"));
    let outcome = match decline {
        None => {
            json!({ "network_status": "approved_by_network", "reason": null, "risk_level": "normal", "seller_message": "Payment complete.", "type": "authorized" })
        }
        Some((_, reason, _)) => {
            json!({ "network_status": "declined_by_network", "reason": reason, "risk_level": "normal",
            "seller_message": "The bank did not return any further details with this decline.", "type": "issuer_declined" })
        }
    };
    let charge = join(
        json!({
            "id": id, "object": "charge", "amount": amount, "amount_captured": if failed { 0 } else { amount },
            "amount_refunded": 0, "application": null, "application_fee": fee.map(|_| new_id("fee")),
            "application_fee_amount": fee, "balance_transaction": txn, "captured": !failed, "created": now(),
            "billing_details": { "address": null, "email": null, "name": null, "phone": null },
            "calculated_statement_descriptor": "CURBPAY", "currency": currency, "customer": req.p("customer"),
            "description": req.p("description"), "disputed": false, "failure_balance_transaction": null,
            "failure_code": decline.map(|d| d.0), "failure_message": decline.map(|d| d.2), "fraud_details": {},
        }),
        json!({
            "livemode": false, "metadata": req.metadata(), "on_behalf_of": null, "outcome": outcome, "paid": !failed,
            "payment_intent": pi, "payment_method": source.get("id").unwrap_or(&source), "payment_method_details": card.details(),
            "receipt_email": null, "receipt_number": null, "receipt_url": null, "refunded": false, "review": null,
            "refunds": { "object": "list", "data": [], "has_more": false, "total_count": 0, "url": format!("/v1/charges/{id}/refunds") },
            "shipping": null, "source": if source.is_object() { source.clone() } else { Value::Null }, "source_transfer": null,
            "statement_descriptor": null, "statement_descriptor_suffix": null,
            "status": if failed { "failed" } else { "succeeded" }, "transfer_data": null, "transfer_group": null,
        }),
    );
    if let Some(txn) = txn {
        let net = amount - fee.unwrap_or(0);
        db.put("balance_transaction", &account, json!({
            "id": txn, "object": "balance_transaction", "amount": amount, "available_on": now() + 2 * 86400, "created": now(),
            "currency": currency, "description": null, "exchange_rate": null, "fee": fee.unwrap_or(0), "fee_details": [], "net": net,
            "reporting_category": "charge", "source": id, "status": "pending", "type": "charge", "balance_type": "payments",
        }));
    }
    db.put("charge", &account, charge.clone());
    charge
}

/// The 402 `card_error` of a declined charge.
fn card_error(card: &TestCard, charge: &Value) -> Reply {
    let (code, decline_code, message) = card.decline.unwrap();
    let mut reply = Reply::error(402, "card_error", Some(code), message, None);
    reply.body["error"]["charge"] = charge["id"].clone();
    if let Some(decline_code) = decline_code {
        reply.body["error"]["decline_code"] = json!(decline_code);
    }
    reply
}

fn create_charge(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let (amount, currency) = amount_and_currency(req)?;
    let tok = req
        .p("source")
        .ok_or_else(|| err(400, "parameter_missing", "Must provide source or customer.", Some("source")))?;
    let (card, token_card) = take_token(db, &req.account, tok)?;
    let source = token_card.unwrap_or_else(|| card.card(&new_id("card"), None));
    let charge = make_charge(db, req, card, amount, &currency, source, None);
    match card.decline {
        Some(_) => Err(card_error(card, &charge)),
        None => Ok(charge),
    }
}

/// Off-session payments on the connected account: `confirm=true` pays at once, or with
/// `capture_method=manual` places a hold (`requires_capture`) captured later. The card
/// is a `payment_method`, or `payment_method_data[card][token]` (a single-use token).
fn create_payment_intent(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let (amount, currency) = amount_and_currency(req)?;
    let account = req.account.clone();
    if let Some(cus) = req.p("customer") {
        db.need("customer", &account, cus, "customer")?;
    }
    let manual = req.p("capture_method") == Some("manual");
    let id = new_id("pi");
    let mut pi = join(
        json!({
            "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0, "amount_received": 0,
            "application": null, "application_fee_amount": req.int("application_fee_amount"), "automatic_payment_methods": null,
            "canceled_at": null, "cancellation_reason": null, "capture_method": if manual { "manual" } else { "automatic" },
            "client_secret": format!("{id}_secret_{}", new_id("s")), "confirmation_method": "automatic", "created": now(),
            "currency": currency, "customer": req.p("customer"), "description": req.p("description"),
        }),
        json!({
            "last_payment_error": null, "latest_charge": null, "livemode": false, "metadata": req.metadata(),
            "next_action": null, "on_behalf_of": null, "payment_method": null, "payment_method_configuration_details": null,
            "payment_method_options": {}, "payment_method_types": ["card"], "processing": null, "receipt_email": null,
            "review": null, "setup_future_usage": null, "shipping": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": "requires_payment_method", "transfer_data": null, "transfer_group": null,
        }),
    );
    let resolved = match (req.p("payment_method"), req.p("payment_method_data[card][token]")) {
        (Some(pm), _) => {
            let (card, pm_body) = resolve_pm(db, &account, pm)?;
            let stored = db.find("payment_method", &account, pm_body["id"].as_str().unwrap()).unwrap();
            Some((card, pm_body, stored.body["customer"].is_null()))
        }
        (None, Some(tok)) if req.p("payment_method_data[type]") == Some("card") => {
            let (card, _) = take_token(db, &account, tok)?;
            let body = card.payment_method(&new_id("pm"), None);
            db.put("payment_method", &account, body.clone());
            Some((card, body, true))
        }
        _ => None,
    };
    if let Some((card, pm_body, single_use)) = resolved {
        (pi["payment_method"], pi["status"]) = (pm_body["id"].clone(), json!("requires_confirmation"));
        if req.p("confirm") == Some("true") {
            let stored = db.find("payment_method", &account, pm_body["id"].as_str().unwrap()).unwrap();
            if stored.used {
                let message = "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, shared with a connected account without Customer attachment, or was detached from a Customer. It may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer first.";
                return Err(Reply::error(400, "invalid_request_error", None, message, Some("payment_method")));
            }
            stored.used = single_use;
            let mut charge = make_charge(db, req, card, amount, &currency, pm_body["id"].clone(), Some(&id));
            pi["latest_charge"] = charge["id"].clone();
            if card.decline.is_some() {
                let mut reply = card_error(card, &charge);
                reply.body["error"]["payment_method"] = pm_body;
                (pi["last_payment_error"], pi["payment_method"]) = (reply.body["error"].clone(), Value::Null);
                pi["status"] = json!("requires_payment_method");
                reply.body["error"]["payment_intent"] = pi.clone();
                db.put("payment_intent", &account, pi);
                return Err(reply);
            }
            if manual {
                // A hold: the charge is authorized, not captured.
                let incremental = req.p("payment_method_options[card][request_incremental_authorization]")
                    == Some("if_available")
                    && card.funding != "debit";
                let status = if incremental { "available" } else { "unavailable" };
                (charge["captured"], charge["amount_captured"]) = (json!(false), json!(0));
                charge["payment_method_details"]["card"]["capture_before"] = json!(now() + 7 * 86400);
                charge["payment_method_details"]["card"]["incremental_authorization"] = json!({ "status": status });
                db.put("charge", &account, charge.clone());
                (pi["status"], pi["amount_capturable"]) = (json!("requires_capture"), json!(amount));
            } else {
                (pi["status"], pi["amount_received"]) = (json!("succeeded"), json!(amount));
            }
            if req.params.iter().any(|(k, v)| k.starts_with("expand") && v == "latest_charge") {
                db.put("payment_intent", &account, pi.clone());
                pi["latest_charge"] = charge;
                return Ok(pi);
            }
        }
    }
    db.put("payment_intent", &account, pi.clone());
    Ok(pi)
}

/// The PaymentIntent in the path, which must be awaiting capture.
fn held_intent(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let pi = db.need("payment_intent", &req.account, &req.id, "id")?.body.clone();
    if pi["status"] != "requires_capture" {
        let message = format!("This PaymentIntent's status is {}, but it must be requires_capture.", pi["status"]);
        return Err(err(400, "payment_intent_unexpected_state", message, None));
    }
    Ok(pi)
}

fn latest_charge(db: &mut Db, account: &str, pi: &Value) -> Result<Value, Reply> {
    let charge_id = pi["latest_charge"].as_str().unwrap_or_default().to_owned();
    Ok(db.need("charge", account, &charge_id, "id")?.body.clone())
}

/// Raises a hold in place; cards without incremental authorization are refused, and a
/// total above the test cards' credit (1,000,000 minor units) is declined.
fn increment_authorization(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let mut pi = held_intent(db, req)?;
    let charge = latest_charge(db, &req.account, &pi)?;
    if charge["payment_method_details"]["card"]["incremental_authorization"]["status"] != "available" {
        let message = "This PaymentIntent is not eligible for incremental authorization.";
        return Err(err(400, "payment_intent_incremental_authorization_unsupported", message, None));
    }
    let amount: i64 = req
        .need("amount")?
        .parse()
        .map_err(|_| err(400, "parameter_invalid_integer", "Invalid integer", Some("amount")))?;
    if amount <= pi["amount"].as_i64().unwrap_or(0) {
        return Err(err(400, "parameter_invalid_integer", "amount must exceed the authorized amount", Some("amount")));
    }
    if amount > 1_000_000 {
        let mut reply =
            Reply::error(402, "card_error", Some("card_declined"), "Your card has insufficient funds.", None);
        reply.body["error"]["decline_code"] = json!("insufficient_funds");
        return Err(reply);
    }
    (pi["amount"], pi["amount_capturable"]) = (json!(amount), json!(amount));
    if let Some(fee) = req.int("application_fee_amount") {
        pi["application_fee_amount"] = json!(fee);
    }
    db.put("payment_intent", &req.account, pi.clone());
    Ok(pi)
}

/// Captures part or all of a hold; the rest is released.
fn capture_payment_intent(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let mut pi = held_intent(db, req)?;
    let capturable = pi["amount_capturable"].as_i64().unwrap_or(0);
    let amount = req.int("amount_to_capture").unwrap_or(capturable);
    if amount <= 0 || amount > capturable {
        return Err(err(
            400,
            "amount_too_large",
            "amount_to_capture exceeds the amount capturable",
            Some("amount_to_capture"),
        ));
    }
    let mut charge = latest_charge(db, &req.account, &pi)?;
    (charge["captured"], charge["amount_captured"]) = (json!(true), json!(amount));
    charge["amount_refunded"] = json!(charge["amount"].as_i64().unwrap_or(0) - amount);
    charge["application_fee_amount"] = req.int("application_fee_amount").map_or(Value::Null, |f| json!(f));
    db.put("charge", &req.account, charge);
    (pi["status"], pi["amount_received"], pi["amount_capturable"]) = (json!("succeeded"), json!(amount), json!(0));
    db.put("payment_intent", &req.account, pi.clone());
    Ok(pi)
}

/// Releases a hold.
fn cancel_payment_intent(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let mut pi = db.need("payment_intent", &req.account, &req.id, "id")?.body.clone();
    if !matches!(pi["status"].as_str(), Some("requires_capture" | "requires_payment_method" | "requires_confirmation"))
    {
        let message = format!("You cannot cancel this PaymentIntent because it has a status of {}.", pi["status"]);
        return Err(err(400, "payment_intent_unexpected_state", message, None));
    }
    (pi["status"], pi["canceled_at"], pi["amount_capturable"]) = (json!("canceled"), json!(now()), json!(0));
    pi["cancellation_reason"] = json!(req.p("cancellation_reason").unwrap_or("requested_by_customer"));
    db.put("payment_intent", &req.account, pi.clone());
    Ok(pi)
}

/// Refunds (part of) a captured PaymentIntent's or a charge's money.
fn create_refund(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let account = req.account.clone();
    let (charge_id, pi_id) = match (req.p("payment_intent"), req.p("charge")) {
        (Some(pi), _) => {
            let pi = db.need("payment_intent", &account, pi, "payment_intent")?.body.clone();
            (pi["latest_charge"].as_str().unwrap_or_default().to_owned(), pi["id"].as_str().map(str::to_owned))
        }
        (None, Some(ch)) => (ch.to_owned(), None),
        _ => return Err(err(400, "parameter_missing", "Must provide charge or payment_intent.", None)),
    };
    let mut charge = db.need("charge", &account, &charge_id, "charge")?.body.clone();
    let left = charge["amount"].as_i64().unwrap_or(0) - charge["amount_refunded"].as_i64().unwrap_or(0);
    let amount = req.int("amount").unwrap_or(left);
    if charge["captured"] != true || amount <= 0 || amount > left {
        let message = format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({left})");
        return Err(err(400, "charge_already_refunded", message, Some("amount")));
    }
    charge["amount_refunded"] = json!(charge["amount_refunded"].as_i64().unwrap_or(0) + amount);
    charge["refunded"] = json!(amount == left);
    let currency = charge["currency"].clone();
    db.put("charge", &account, charge);
    let refund = json!({
        "id": new_id("re"), "object": "refund", "amount": amount, "balance_transaction": null, "charge": charge_id,
        "created": now(), "currency": currency, "destination_details": null, "metadata": req.metadata(),
        "payment_intent": pi_id, "reason": req.p("reason"), "receipt_number": null, "source_transfer_reversal": null,
        "status": "succeeded", "transfer_reversal": null,
    });
    db.put("refund", &account, refund.clone());
    Ok(refund)
}

// ------------------------------------------------------------------------------ endpoints: Connect OAuth

/// As if the account owner approved (or denied) at Stripe: a 302 to `redirect_uri`.
fn oauth_authorize(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let client_id = req.p("client_id").unwrap_or_default();
    if !db.platforms.values().any(|p| p.connect_client_id == client_id) {
        return Err(oauth_err(400, "invalid_client", format!("No such application: '{client_id}'")));
    }
    let redirect = req.p("redirect_uri").unwrap_or_default();
    let mut url = url::Url::parse(redirect)
        .map_err(|_| oauth_err(400, "invalid_redirect_uri", format!("Invalid redirect_uri: '{redirect}'")))?;
    let approval = db.approvals.pop_front().unwrap_or_else(|| Some(new_id("acct")));
    let mut query = url.query_pairs_mut();
    match approval {
        Some(account) => query
            .append_pair("scope", req.p("scope").unwrap_or("read_write"))
            .append_pair("code", &db.mint_code(client_id, &account)),
        None => {
            query.append_pair("error", "access_denied").append_pair("error_description", "The user denied your request")
        }
    };
    if let Some(state) = req.p("state") {
        query.append_pair("state", state);
    }
    drop(query);
    Err(Reply { status: 302, body: json!({}), headers: vec![("location", url.to_string())] })
}

fn oauth_token(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let platform = db.platform_by_secret(req.p("client_secret").or(req.bearer.as_deref()))?;
    if req.p("grant_type") != Some("authorization_code") {
        return Err(oauth_err(
            400,
            "unsupported_grant_type",
            format!("Unsupported grant type: {}", req.p("grant_type").unwrap_or_default()),
        ));
    }
    let code = req.p("code").unwrap_or_default();
    let Some(found) = db.codes.get_mut(code).filter(|c| c.client_id == platform.connect_client_id) else {
        return Err(oauth_err(400, "invalid_grant", format!("Authorization code does not exist: {code}")));
    };
    if found.used {
        return Err(oauth_err(400, "invalid_grant", format!("Authorization code already used: {code}")));
    }
    found.used = true;
    let account = found.account.clone();
    db.account(&account).platforms.insert(platform.account_id.clone());
    let access_token = new_id("sk_test");
    db.keys.insert(
        access_token.clone(),
        Key { account: account.clone(), platform: false, issuer: Some(platform.account_id) },
    );
    Ok(json!({
        "access_token": access_token, "livemode": false, "refresh_token": new_id("rt"), "token_type": "bearer",
        "stripe_publishable_key": new_id("pk_test"), "stripe_user_id": account, "scope": "read_write",
    }))
}

/// Disconnects the account and revokes the access tokens the platform got for it.
fn oauth_deauthorize(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let platform = db.platform_by_secret(req.bearer.as_deref().or(req.p("client_secret")))?;
    let client_id = req.p("client_id").unwrap_or_default();
    if client_id != platform.connect_client_id {
        return Err(oauth_err(400, "invalid_client", format!("No such application: '{client_id}'")));
    }
    let account = req.p("stripe_user_id").unwrap_or_default().to_owned();
    if !db.accounts.get_mut(&account).is_some_and(|a| a.platforms.remove(&platform.account_id)) {
        let description =
            format!("This application is not connected to stripe account {account}, or that account does not exist.");
        return Err(oauth_err(400, "invalid_client", description));
    }
    db.keys.retain(|_, k| !(k.account == account && k.issuer.as_ref() == Some(&platform.account_id)));
    Ok(json!({ "stripe_user_id": account }))
}

// ------------------------------------------------------------------------------ helpers

fn new_id(prefix: &str) -> String {
    let tail: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(24).map(char::from).collect();
    format!("{prefix}_{tail}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The union of two JSON objects (keeps each `json!` under the macro recursion limit).
fn join(mut a: Value, b: Value) -> Value {
    a.as_object_mut().unwrap().extend(b.as_object().unwrap().clone());
    a
}
