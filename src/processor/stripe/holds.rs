//! Holds, captures, releases and refunds on Stripe: PaymentIntents with
//! `capture_method=manual` on the operator's connected account (`Stripe-Account`).
//!
//! Every POST carries the idempotency key of the ledger row that names it (with the
//! attempt number, as every Stripe request here). When Stripe saved a 500 for a key
//! (the outcome is unknown), curbpay looks at the object itself: a PaymentIntent it
//! made by `metadata[curbpay_ref]` (the ledger row id) among the account's recent ones,
//! the PaymentIntent's state for a capture, cancel or increment, the PaymentIntent's
//! refunds by metadata; only when the request truly did not take effect is it sent
//! again under the next attempt number.

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};

use super::client::{CallError, KeyedClient};
use super::{REF_KEY, StripeProcessor, account_id, strategy};
use crate::processor::{
    AuthorizeOutcome, AuthorizeRequest, CaptureRequest, Captured, IncrementOutcome, IncrementRequest, OpenedDispute,
    ProcessorError, ProcessorResult, RefundOutcome, RefundRequest, RefundState, ReleaseRequest, WebhookEvent,
};

/// Card holds lapse after 7 days when Stripe does not say otherwise.
const HOLD_DAYS: i64 = 7;

type Form = BTreeMap<String, String>;

fn form(pairs: &[(&str, String)]) -> Form {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// A form POST (or a GET with a query) on the connected account, answered as JSON.
async fn call(
    client: &KeyedClient,
    method: StripeMethod,
    path: &str,
    params: &Form,
    account: &str,
    key: Option<&str>,
) -> Result<Value, CallError> {
    let builder = RequestBuilder::new(method, path);
    let builder = if matches!(method, StripeMethod::Get) { builder.query(params) } else { builder.form(params) };
    let mut request = builder.customize::<miniserde::json::Value>().account_id(account_id(account));
    if let Some(key) = key {
        request = request.request_strategy(strategy(key).map_err(|e| CallError::Decode(e.to_string()))?);
    }
    let value = request.send(client).await?;
    serde_json::from_str(&miniserde::json::to_string(&value)).map_err(|e| CallError::Decode(e.to_string()))
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(value, |v, k| v.get(k)).and_then(Value::as_str).map(str::to_owned)
}

fn authorized(pi: &Value) -> ProcessorResult<AuthorizeOutcome> {
    let id = text(pi, &["id"]).ok_or_else(|| ProcessorError::Unavailable("PaymentIntent without id".to_owned()))?;
    let card = &pi["latest_charge"]["payment_method_details"]["card"];
    let expires_at = card["capture_before"]
        .as_i64()
        .and_then(|at| Utc.timestamp_opt(at, 0).single())
        .unwrap_or_else(|| Utc::now() + Duration::days(HOLD_DAYS));
    let incremental = card["incremental_authorization"]["status"].as_str() == Some("available");
    match pi["status"].as_str() {
        Some("requires_capture") => Ok(AuthorizeOutcome::Authorized { authorization_id: id, expires_at, incremental }),
        _ => {
            let error = &pi["last_payment_error"];
            Ok(AuthorizeOutcome::Declined {
                code: text(error, &["code"]).unwrap_or_else(|| "card_declined".to_owned()),
                decline_code: text(error, &["decline_code"]),
                message: text(error, &["message"]).unwrap_or_else(|| "Your card was declined.".to_owned()),
            })
        }
    }
}

/// Sends a POST keyed by `base` (current attempt); on a saved 500, asks the
/// reconciliation whether it took effect, and otherwise sends it again under the next
/// attempt. (A macro, not a helper taking closures: async closures borrowing the
/// request are not `Send` enough for the processor's futures.)
macro_rules! keyed {
    ($self:ident, $base:expr, |$key:ident| $send:expr, $reconcile:expr) => {{
        let $key = $self.key($base).await?;
        match $send {
            Ok(done) => Ok(done),
            Err(err) if err.saved_failure() => match $reconcile {
                Some(done) => Ok(done),
                None => {
                    let $key = $self.next_attempt($base).await?;
                    Ok($send?)
                }
            },
            Err(err) => Err(ProcessorError::from(err)),
        }
    }};
}

impl StripeProcessor {
    async fn get_pi(&self, client: &KeyedClient, account: &str, id: &str) -> ProcessorResult<Value> {
        let params = form(&[("expand[]", "latest_charge".to_owned())]);
        Ok(call(client, StripeMethod::Get, &format!("/payment_intents/{id}"), &params, account, None).await?)
    }

    pub(super) async fn stripe_authorize(&self, req: &AuthorizeRequest<'_>) -> ProcessorResult<AuthorizeOutcome> {
        let client = self.client(req.platform)?;
        let account = req.connected_account_id;
        let mut params = form(&[
            ("amount", req.amount.to_string()),
            ("currency", req.currency.to_ascii_lowercase()),
            ("capture_method", "manual".to_owned()),
            ("confirm", "true".to_owned()),
            ("off_session", "true".to_owned()),
            ("payment_method_options[card][request_incremental_authorization]", "if_available".to_owned()),
            (&format!("metadata[{REF_KEY}]"), req.reference.to_owned()),
            ("expand[]", "latest_charge".to_owned()),
        ]);
        if req.token.starts_with("pm_") {
            params.insert("payment_method".to_owned(), req.token.to_owned());
        } else {
            params.insert("payment_method_data[type]".to_owned(), "card".to_owned());
            params.insert("payment_method_data[card][token]".to_owned(), req.token.to_owned());
        }
        if let Some(fee) = req.application_fee {
            params.insert("application_fee_amount".to_owned(), fee.to_string());
        }
        keyed!(
            self,
            req.idempotency_key,
            |key| match call(&client, StripeMethod::Post, "/payment_intents", &params, account, Some(&key)).await {
                Ok(pi) => authorized(&pi).map_err(|e| CallError::Decode(e.to_string())),
                Err(CallError::Api { kind, code, decline_code, message, .. }) if kind == "card_error" => {
                    Ok(AuthorizeOutcome::Declined { code, decline_code, message })
                }
                Err(err) => Err(err),
            },
            self.find_authorization(&client, account, req.reference).await?
        )
    }

    async fn find_authorization(
        &self,
        client: &KeyedClient,
        account: &str,
        reference: &str,
    ) -> ProcessorResult<Option<AuthorizeOutcome>> {
        let recent = (Utc::now() - Duration::minutes(15)).timestamp().to_string();
        let params = form(&[
            ("created[gte]", recent),
            ("limit", "100".to_owned()),
            ("expand[]", "data.latest_charge".to_owned()),
        ]);
        let page = call(client, StripeMethod::Get, "/payment_intents", &params, account, None).await?;
        let found = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|pi| pi["metadata"][REF_KEY].as_str() == Some(reference));
        found.map(authorized).transpose()
    }

    pub(super) async fn stripe_increment(&self, req: &IncrementRequest<'_>) -> ProcessorResult<IncrementOutcome> {
        let client = self.client(req.platform)?;
        let account = req.connected_account_id;
        let mut params = form(&[("amount", req.total.to_string())]);
        if let Some(fee) = req.application_fee {
            params.insert("application_fee_amount".to_owned(), fee.to_string());
        }
        let path = format!("/payment_intents/{}/increment_authorization", req.authorization_id);
        let outcome: ProcessorResult<IncrementOutcome> = keyed!(
            self,
            req.idempotency_key,
            |key| match call(&client, StripeMethod::Post, &path, &params, account, Some(&key)).await {
                Ok(_) => Ok(IncrementOutcome::Incremented),
                Err(CallError::Api { kind, code, decline_code, message, .. }) if kind == "card_error" => {
                    Ok(IncrementOutcome::Declined { code, decline_code, message })
                }
                Err(err) => Err(err),
            },
            (self.get_pi(&client, account, req.authorization_id).await?["amount"].as_i64() == Some(req.total))
                .then_some(IncrementOutcome::Incremented)
        );
        match outcome {
            // Stripe refuses an increment the card does not allow as an invalid request.
            Err(ProcessorError::Failed(message)) => Err(ProcessorError::InvalidRequest(message)),
            other => other,
        }
    }

    pub(super) async fn stripe_capture(&self, req: &CaptureRequest<'_>) -> ProcessorResult<Captured> {
        let client = self.client(req.platform)?;
        let account = req.connected_account_id;
        let mut params = form(&[("amount_to_capture", req.amount.to_string())]);
        if let Some(fee) = req.application_fee {
            params.insert("application_fee_amount".to_owned(), fee.to_string());
        }
        let path = format!("/payment_intents/{}/capture", req.authorization_id);
        let captured = Captured { charge_id: req.authorization_id.to_owned() };
        keyed!(
            self,
            req.idempotency_key,
            |key| call(&client, StripeMethod::Post, &path, &params, account, Some(&key))
                .await
                .map(|_| captured.clone()),
            (self.get_pi(&client, account, req.authorization_id).await?["status"].as_str() == Some("succeeded"))
                .then(|| captured.clone())
        )
    }

    pub(super) async fn stripe_release(&self, req: &ReleaseRequest<'_>) -> ProcessorResult<()> {
        let client = self.client(req.platform)?;
        let account = req.connected_account_id;
        let path = format!("/payment_intents/{}/cancel", req.authorization_id);
        let result: ProcessorResult<()> = keyed!(
            self,
            req.idempotency_key,
            |key| call(&client, StripeMethod::Post, &path, &Form::new(), account, Some(&key)).await.map(|_| ()),
            (self.get_pi(&client, account, req.authorization_id).await?["status"].as_str() == Some("canceled"))
                .then_some(())
        );
        match result {
            // Already canceled (by Stripe when it lapsed, or by an earlier attempt): done.
            Err(_)
                if self.get_pi(&client, account, req.authorization_id).await?["status"].as_str()
                    == Some("canceled") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    pub(super) async fn stripe_refund(&self, req: &RefundRequest<'_>) -> ProcessorResult<RefundOutcome> {
        let client = self.client(req.platform)?;
        let account = req.connected_account_id;
        let target = if req.payment_reference.starts_with("pi_") { "payment_intent" } else { "charge" };
        let mut params = form(&[
            (target, req.payment_reference.to_owned()),
            ("amount", req.amount.to_string()),
            ("refund_application_fee", "true".to_owned()),
            (&format!("metadata[{REF_KEY}]"), req.idempotency_key.to_owned()),
        ]);
        if let Some(reason) = req.reason {
            params.insert("reason".to_owned(), reason.to_owned());
        }
        keyed!(
            self,
            req.idempotency_key,
            |key| match call(&client, StripeMethod::Post, "/refunds", &params, account, Some(&key)).await {
                Ok(refund) => refund_outcome(&refund).map_err(|e| CallError::Decode(e.to_string())),
                Err(err) => Err(err),
            },
            self.find_refund(&client, account, target, req).await?
        )
    }

    async fn find_refund(
        &self,
        client: &KeyedClient,
        account: &str,
        target: &str,
        req: &RefundRequest<'_>,
    ) -> ProcessorResult<Option<RefundOutcome>> {
        let list = form(&[(target, req.payment_reference.to_owned()), ("limit", "100".to_owned())]);
        let page = call(client, StripeMethod::Get, "/refunds", &list, account, None).await?;
        let found = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["metadata"][REF_KEY].as_str() == Some(req.idempotency_key));
        found.map(refund_outcome).transpose()
    }
}

/// A Stripe refund's state as curbpay records it.
pub(super) fn refund_state(refund: &Value) -> RefundState {
    match refund["status"].as_str() {
        Some("succeeded") => RefundState::Succeeded,
        Some("failed") | Some("canceled") => RefundState::Failed {
            message: text(refund, &["failure_reason"]).unwrap_or_else(|| "The refund failed.".to_owned()),
        },
        _ => RefundState::Pending,
    }
}

fn refund_outcome(refund: &Value) -> ProcessorResult<RefundOutcome> {
    let refund_id = text(refund, &["id"]).ok_or_else(|| ProcessorError::Unavailable("refund without id".to_owned()))?;
    Ok(RefundOutcome { refund_id, state: refund_state(refund) })
}

/// The money events curbpay acts on, read from the verified payload (their objects are
/// outside the async-stripe features this build compiles); anything else is `Other`.
pub(super) fn money_event(event_id: String, kind: &str, payload: &str) -> WebhookEvent {
    let other = |event_id: String| WebhookEvent::Other { event_id, kind: kind.to_owned() };
    let Ok(event) = serde_json::from_str::<Value>(payload) else {
        return other(event_id);
    };
    let object = &event["data"]["object"];
    let id = || text(object, &["id"]);
    match kind {
        "refund.updated" | "refund.failed" => match id() {
            Some(refund_id) => WebhookEvent::RefundUpdated { event_id, refund_id, state: refund_state(object) },
            None => other(event_id),
        },
        // The charge's refunds; curbpay settles the first it knows of.
        "charge.refunded" => match object["refunds"]["data"].as_array().and_then(|r| r.first()) {
            Some(refund) => match text(refund, &["id"]) {
                Some(refund_id) => WebhookEvent::RefundUpdated { event_id, refund_id, state: refund_state(refund) },
                None => other(event_id),
            },
            None => other(event_id),
        },
        "charge.dispute.created" => {
            // A dispute names the charge and, for PaymentIntents, the intent: curbpay's
            // captures are known by their PaymentIntent.
            let reference = text(object, &["payment_intent"]).or_else(|| text(object, &["charge"]));
            match (id(), reference, object["amount"].as_i64()) {
                (Some(dispute_id), Some(payment_reference), Some(amount)) => WebhookEvent::DisputeCreated {
                    event_id,
                    dispute: OpenedDispute {
                        dispute_id,
                        payment_reference,
                        amount,
                        currency: text(object, &["currency"]).unwrap_or_default().to_ascii_uppercase(),
                        reason: text(object, &["reason"]).unwrap_or_else(|| "general".to_owned()),
                    },
                },
                _ => other(event_id),
            }
        }
        "charge.dispute.closed" => match id() {
            Some(dispute_id) => {
                WebhookEvent::DisputeClosed { event_id, dispute_id, lost: object["status"].as_str() == Some("lost") }
            }
            None => other(event_id),
        },
        "payment_intent.canceled" => match id() {
            Some(authorization_id) => WebhookEvent::AuthorizationCanceled { event_id, authorization_id },
            None => other(event_id),
        },
        _ => other(event_id),
    }
}

/// A signed event whose object async-stripe could not type: one of the money events, or
/// `None`.
pub(super) fn untyped_money_event(payload: &str) -> Option<WebhookEvent> {
    let event: Value = serde_json::from_str(payload).ok()?;
    let (id, kind) = (text(&event, &["id"])?, text(&event, &["type"])?);
    match money_event(id, &kind, payload) {
        WebhookEvent::Other { .. } => None,
        known => Some(known),
    }
}
