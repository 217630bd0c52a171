//! A Stripe API test double: one axum server on 127.0.0.1:0 answering the part of Stripe
//! curbpay uses (customers, tokens, payment methods, charges, payment intents, Connect
//! OAuth) with objects shaped like Stripe's examples (shared/stripe/fixtures.json), complete
//! enough for async-stripe 1.0.0-rc.10 to deserialize. Objects live on an account: the
//! platform's own (its secret key), or a connected one (`Stripe-Account`, connected by OAuth).
//!
//! Layers, outermost first (`router::handle`): request id and recording, authentication,
//! injected faults, the idempotency store, then the endpoint (`Op`s, one per endpoint, under
//! one lock on the state kept here). Each request runs in its own task, so like Stripe it
//! finishes when the client goes away.

#![allow(dead_code)]

mod api;
mod cards;
mod customers;
mod errors;
mod oauth;
mod payments;
mod router;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Map, Value, json};

use errors::{Reply, err, mask, oauth_err};

pub use api::{Fault, Platform, Recorded, StripeDouble, sign};

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
