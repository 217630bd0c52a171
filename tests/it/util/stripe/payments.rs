//! Endpoints for charges, payment intents (holds, increments, captures, cancels) and refunds.

use serde_json::{Value, json};

use super::cards::{StripeCard, TestCard};
use super::customers::{resolve_pm, take_token};
use super::errors::{Reply, err};
use super::{Db, Req, join, new_id, now};
use curbpay::processor::sandbox::cards::Decline;

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
        Some(Decline { decline_code: reason, .. }) => {
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
            "failure_code": decline.map(|d| d.code), "failure_message": decline.map(|d| d.message), "fraud_details": {},
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
    let Decline { code, decline_code, message } = card.decline.unwrap();
    let mut reply = Reply::error(402, "card_error", Some(code), message, None);
    reply.body["error"]["charge"] = charge["id"].clone();
    if let Some(decline_code) = decline_code {
        reply.body["error"]["decline_code"] = json!(decline_code);
    }
    reply
}

pub(super) fn create_charge(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn create_payment_intent(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn increment_authorization(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn capture_payment_intent(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn cancel_payment_intent(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn create_refund(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
