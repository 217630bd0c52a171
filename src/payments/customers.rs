//! Customers: an app's end user, created at the processor from a card token that the
//! app's frontend made with the platform's publishable key. curbpay keeps the
//! processor's customer id and the card's brand, last 4 digits and expiry: never a number.

use uuid::Uuid;

use super::policy::{self, CustomerVisibility};
use super::required_text;
use crate::auth::Principal;
use crate::broker::Broker;
use crate::db::ReadConn;
use crate::error::{ApiError, ApiResult};
use crate::models::{self, Customer};

/// `tokenizeCustomer`: creates the app's customer for `external_ref`, or replaces the
/// card of the existing one. Returns the customer and whether it was new.
pub async fn tokenize(
    broker: &Broker,
    principal: &Principal,
    external_ref: &str,
    card_token: &str,
) -> ApiResult<(Customer, bool)> {
    let app_id = policy::require_app(principal)?;
    let external_ref = required_text("externalRef", external_ref, 255)?;
    let card_token = card_token.trim();
    check_card_token(card_token)?;
    let mut conn = broker.db().await?;
    let row = models::App::find(&mut conn, app_id).await?.ok_or(ApiError::NotFound("app"))?;
    let platform = super::parties::platform(broker, &row)?;
    // The row comes first: its id names the processor request, so a retry after a
    // timeout or crash finds the same processor customer instead of making another.
    let (customer, _) = Customer::upsert_ref(&mut conn, app_id, external_ref).await?;
    drop(conn);
    let (customer_id, card, created) = match &customer.processor_customer_id {
        None => {
            let key = format!("customer:{}", customer.id);
            let made = broker.processor.create_customer(&platform, card_token, &key).await?;
            (made.customer_id, made.card, true)
        }
        Some(existing) => {
            let key = format!("customer-card:{}:{}", customer.id, customer.updated_at.timestamp_micros());
            let card = broker.processor.update_customer_card(&platform, existing, card_token, &key).await?;
            (existing.clone(), card, false)
        }
    };
    let mut conn = broker.db().await?;
    let customer = Customer::set_processor_card(&mut conn, customer.id, &customer_id, &card).await?;
    tracing::info!(customer_id = %customer.id, %app_id, created, "customer tokenized");
    Ok((customer, created))
}

/// Rejects what is plainly not a token. Never echoes the value: it may be a card number.
fn check_card_token(card_token: &str) -> ApiResult<()> {
    if card_token.is_empty() {
        return Err(ApiError::bad_input("cardToken must not be empty"));
    }
    let digits = card_token.chars().filter(|c| c.is_ascii_digit()).count();
    let only_number_chars = card_token.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    if only_number_chars && (12..=19).contains(&digits) {
        return Err(ApiError::bad_input(
            "cardToken looks like a card number; send the token your frontend got from the processor, never the number",
        ));
    }
    if card_token.len() > 255 || !card_token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ApiError::bad_input("cardToken is not a processor card token (such as tok_… or pm_…)"));
    }
    Ok(())
}

/// A customer as the caller may see it: its own app's, or (for an operator) one with a
/// session at that operator. Otherwise `None`, exactly as for a missing one. A read that
/// may lag: it serves only reads.
pub async fn visible(conn: &mut ReadConn, principal: &Principal, id: Uuid) -> ApiResult<Option<Customer>> {
    let Some(customer) = Customer::find(conn, id).await?.filter(|c| c.processor_customer_id.is_some()) else {
        return Ok(None);
    };
    let visible = match policy::customer_visibility(principal, customer.app_id) {
        CustomerVisibility::Visible => true,
        CustomerVisibility::IfSessionAt(operator_id) => Customer::has_session_at(conn, id, operator_id).await?,
        CustomerVisibility::Hidden => false,
    };
    Ok(visible.then_some(customer))
}

#[cfg(test)]
mod tests {
    use super::check_card_token;

    #[test]
    fn card_numbers_are_refused_without_echo() {
        for pan in ["4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242"] {
            let err = check_card_token(pan).unwrap_err();
            assert!(!err.to_string().contains("4242"), "{err}");
        }
        assert!(check_card_token("tok_visa").is_ok());
        assert!(check_card_token("pm_card_visa").is_ok());
        assert!(check_card_token("").is_err());
        assert!(check_card_token("tok visa; drop").is_err());
    }
}
