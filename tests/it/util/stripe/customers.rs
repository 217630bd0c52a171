//! Endpoints for the account, customers and their cards, search and lists, and sharing a
//! platform customer's card with a connected account.

use serde_json::{Value, json};

use super::cards::{self, StripeCard, TestCard};
use super::errors::{Reply, err};
use super::{Db, Obj, Req, new_id, now};

pub(super) fn account(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    Ok(db.account_json(&req.account))
}

/// The kind of object a `/v1/{kind}s/…` path is about.
fn kind(req: &Req) -> &'static str {
    let kinds = ["customer", "token", "payment_method", "charge", "payment_intent", "balance_transaction"];
    kinds.into_iter().find(|k| req.path.starts_with(&format!("/v1/{k}s/"))).unwrap()
}

pub(super) fn retrieve(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    Ok(db.need(kind(req), &req.account, &req.id, "id")?.body.clone())
}

/// Supports exactly `metadata['key']:'value'` (either quote), newest first.
pub(super) fn search(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn list(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn take_token(db: &mut Db, account: &str, tok: &str) -> Result<(&'static TestCard, Option<Value>), Reply> {
    if let Some(card) = cards::by_token(tok) {
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
    Ok((cards::of(&token.body["card"]), Some(token.body["card"].clone())))
}

/// A payment method: a fresh one for a `pm_card_…` test name, or one of this account.
pub(super) fn resolve_pm(db: &mut Db, account: &str, pm: &str) -> Result<(&'static TestCard, Value), Reply> {
    if let Some(card) = cards::by_pm(pm) {
        let body = card.payment_method(&new_id("pm"), None);
        db.put("payment_method", account, body.clone());
        return Ok((card, body));
    }
    let found = db.need("payment_method", account, pm, "payment_method")?;
    Ok((cards::of(&found.body["card"]), found.body.clone()))
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
pub(super) fn create_customer(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
pub(super) fn attach_payment_method(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let account = req.account.clone();
    let cus = req.need("customer")?.to_owned();
    db.need("customer", &account, &cus, "customer")?;
    let (_, mut body) = resolve_pm(db, &account, &req.id)?;
    body["customer"] = json!(cus);
    db.put("payment_method", &account, body.clone());
    Ok(body)
}

pub(super) fn update_customer(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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

// Sharing a platform customer's card with a connected account.

/// A single-use token on the connected account from a platform customer's default card.
pub(super) fn create_token(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let cus = req.need("customer")?;
    if req.home == req.account {
        let message = "The double makes tokens only from a platform customer, on a connected account (Stripe-Account).";
        return Err(err(400, "parameter_invalid", message, Some("customer")));
    }
    let source =
        db.need("customer", &req.home, cus, "customer")?.body["default_source"].as_str().unwrap_or_default().to_owned();
    let Some(card) = db.objects.get(&source).map(|o| cards::of(&o.body)) else {
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
pub(super) fn clone_payment_method(db: &mut Db, req: &Req) -> Result<Value, Reply> {
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
    let clone = cards::of(&source.body["card"]).payment_method(&new_id("pm"), None);
    db.put("payment_method", &req.account, clone.clone());
    Ok(clone)
}
