//! The routes and the layers around each endpoint: request id and recording,
//! authentication, injected faults and the idempotency store.

use std::future::{Ready, ready};

use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;

use super::api::{Fault, Recorded};
use super::customers::{
    account, attach_payment_method, clone_payment_method, create_customer, create_token, list, retrieve, search,
    update_customer,
};
use super::errors::{Reply, err, mask, server_error, status_fault};
use super::oauth::{oauth_authorize, oauth_deauthorize, oauth_token};
use super::payments::{
    cancel_payment_intent, capture_payment_intent, create_charge, create_payment_intent, create_refund,
    increment_authorization,
};
use super::{Db, Idem, Req, Saved, Shared, lock, new_id};

pub(super) fn router(db: Shared) -> Router {
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
