//! Holds, captures, releases and refunds on Stripe: PaymentIntents with
//! `capture_method=manual` on the operator's connected account (`Stripe-Account`).
//!
//! Every POST carries the idempotency key of the ledger row that names it (with the
//! attempt number, as every Stripe request here). When Stripe saved a 500 for a key
//! (the outcome is unknown), curbpay looks at the object itself: a PaymentIntent it
//! made by `metadata[curbpay_ref]` (the ledger row id) among the account's recent ones,
//! the PaymentIntent's state for a capture, cancel or increment, the PaymentIntent's
//! refunds by metadata; only when the request truly did not take effect is it sent
//! again under the next attempt number (`attempts::keyed`).

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};

use super::attempts::KeyedError;
use super::client::{CallError, KeyedClient};
use super::{REF_KEY, StripeProcessor, account_id, call_strategy};
use crate::processor::{
    AuthorizeOutcome, AuthorizeRequest, CaptureRequest, Captured, IncrementOutcome, IncrementRequest, ProcessorError,
    ProcessorResult, RefundOutcome, RefundRequest, RefundState, ReleaseRequest,
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
        request = request.request_strategy(call_strategy(key)?);
    }
    let value = request.send(client).await?;
    serde_json::from_str(&miniserde::json::to_string(&value)).map_err(|e| CallError::Decode(e.to_string()))
}

pub(super) fn text(value: &Value, path: &[&str]) -> Option<String> {
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
        let (client, params) = (&client, &params);
        let sent = self
            .keyed(
                req.idempotency_key,
                |key| async move {
                    match call(client, StripeMethod::Post, "/payment_intents", params, account, Some(&key)).await {
                        Ok(pi) => authorized(&pi).map_err(|e| CallError::Decode(e.to_string())),
                        Err(CallError::Api { kind, code, decline_code, message, .. }) if kind == "card_error" => {
                            Ok(AuthorizeOutcome::Declined { code, decline_code, message })
                        }
                        Err(err) => Err(err),
                    }
                },
                self.find_authorization(client, account, req.reference),
            )
            .await;
        Ok(sent?)
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
        let (client, params, path) = (&client, &params, &path);
        let reconcile = async {
            let pi = self.get_pi(client, account, req.authorization_id).await?;
            Ok((pi["amount"].as_i64() == Some(req.total)).then_some(IncrementOutcome::Incremented))
        };
        let sent = self
            .keyed(
                req.idempotency_key,
                |key| async move {
                    match call(client, StripeMethod::Post, path, params, account, Some(&key)).await {
                        Ok(_) => Ok(IncrementOutcome::Incremented),
                        Err(CallError::Api { kind, code, decline_code, message, .. }) if kind == "card_error" => {
                            Ok(IncrementOutcome::Declined { code, decline_code, message })
                        }
                        Err(err) => Err(err),
                    }
                },
                reconcile,
            )
            .await;
        match sent {
            // Stripe refuses an increment the card does not allow as an invalid request.
            Err(KeyedError::Refused(err)) => match ProcessorError::from(err) {
                ProcessorError::Failed(message) => Err(ProcessorError::InvalidRequest(message)),
                other => Err(other),
            },
            other => Ok(other?),
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
        let (client, params, path) = (&client, &params, &path);
        let captured = &Captured { charge_id: req.authorization_id.to_owned() };
        let reconcile = async {
            let pi = self.get_pi(client, account, req.authorization_id).await?;
            Ok((pi["status"].as_str() == Some("succeeded")).then(|| captured.clone()))
        };
        let sent = self
            .keyed(
                req.idempotency_key,
                |key| async move {
                    call(client, StripeMethod::Post, path, params, account, Some(&key)).await.map(|_| captured.clone())
                },
                reconcile,
            )
            .await;
        Ok(sent?)
    }

    pub(super) async fn stripe_release(&self, req: &ReleaseRequest<'_>) -> ProcessorResult<()> {
        let client = self.client(req.platform)?;
        let account = req.connected_account_id;
        let path = format!("/payment_intents/{}/cancel", req.authorization_id);
        let (client, path, empty) = (&client, &path, &Form::new());
        let canceled = async || -> ProcessorResult<bool> {
            Ok(self.get_pi(client, account, req.authorization_id).await?["status"].as_str() == Some("canceled"))
        };
        let sent = self
            .keyed(
                req.idempotency_key,
                |key| async move { call(client, StripeMethod::Post, path, empty, account, Some(&key)).await.map(|_| ()) },
                async { Ok(canceled().await?.then_some(())) },
            )
            .await;
        match sent {
            // Already canceled (by Stripe when it lapsed, or by an earlier attempt): done.
            Err(KeyedError::Refused(_)) if canceled().await? => Ok(()),
            other => Ok(other?),
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
        let (client, params) = (&client, &params);
        let sent = self
            .keyed(
                req.idempotency_key,
                |key| async move {
                    let refund = call(client, StripeMethod::Post, "/refunds", params, account, Some(&key)).await?;
                    refund_outcome(&refund).map_err(|e| CallError::Decode(e.to_string()))
                },
                self.find_refund(client, account, target, req),
            )
            .await;
        Ok(sent?)
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
