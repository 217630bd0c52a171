//! Webhook verification: Stripe's signature over the raw body (async-stripe's webhook
//! module, with its timestamp tolerance) against each candidate endpoint secret, and the
//! event reduced to what curbpay acts on.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::holds::{refund_state, text};
use crate::processor::{OpenedDispute, ProcessorError, ProcessorResult, WebhookEvent};

/// Verifies a webhook against each endpoint secret and parses it; returns which secret
/// matched.
pub(super) fn verify(
    endpoint_secrets: &[SecretString],
    payload: &[u8],
    signature: &str,
) -> ProcessorResult<(usize, WebhookEvent)> {
    use stripe_webhook::{EventObject, Webhook, WebhookError};
    let payload = std::str::from_utf8(payload)
        .map_err(|_| ProcessorError::InvalidRequest("webhook body is not UTF-8".to_owned()))?;
    for (index, secret) in endpoint_secrets.iter().enumerate() {
        let event = match Webhook::construct_event(payload, signature, secret.expose_secret()) {
            Ok(event) => event,
            Err(WebhookError::BadSignature) => continue,
            Err(WebhookError::BadTimestamp(_)) => {
                return Err(ProcessorError::InvalidRequest("webhook signature is too old".to_owned()));
            }
            // The signature matched (it is checked first) but async-stripe could not
            // type the object: money events are read from the JSON itself.
            Err(WebhookError::BadParse(_)) => match untyped_money_event(payload) {
                Some(event) => return Ok((index, event)),
                None => {
                    return Err(ProcessorError::InvalidRequest("webhook signature or body is invalid".to_owned()));
                }
            },
            Err(_) => {
                return Err(ProcessorError::InvalidRequest("webhook signature or body is invalid".to_owned()));
            }
        };
        let event_id = event.id.to_string();
        let parsed = match (&event.data.object, event.account.clone()) {
            (EventObject::AccountApplicationDeauthorized(_), Some(account)) => {
                WebhookEvent::AccountDeauthorized { event_id, connected_account_id: account }
            }
            (EventObject::AccountUpdated(account), _) => WebhookEvent::AccountUpdated {
                event_id,
                connected_account_id: account.id.to_string(),
                charges_enabled: account.charges_enabled.unwrap_or(false),
                payouts_enabled: account.payouts_enabled.unwrap_or(false),
            },
            _ => money_event(event_id, event.type_.as_str(), payload),
        };
        return Ok((index, parsed));
    }
    Err(ProcessorError::InvalidRequest("webhook signature does not match any app".to_owned()))
}

/// The money events curbpay acts on, read from the verified payload (their objects are
/// outside the async-stripe features this build compiles); anything else is `Other`.
fn money_event(event_id: String, kind: &str, payload: &str) -> WebhookEvent {
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
fn untyped_money_event(payload: &str) -> Option<WebhookEvent> {
    let event: Value = serde_json::from_str(payload).ok()?;
    let (id, kind) = (text(&event, &["id"])?, text(&event, &["type"])?);
    match money_event(id, &kind, payload) {
        WebhookEvent::Other { .. } => None,
        known => Some(known),
    }
}
