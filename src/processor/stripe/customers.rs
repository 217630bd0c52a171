//! Customers on the app's platform account and their cards: creating a customer from a
//! card token (a `tok_…` as its source, or a `pm_…` as its default PaymentMethod) and
//! replacing its card.

use stripe_shared::PaymentSource;
use stripe_types::Expandable;

use stripe_client_core::StripeRequest;

use super::client::{CallError, KeyedClient};
use super::{RECONCILE_PAGES, REF_KEY, StripeProcessor, call_strategy, recent};
use crate::domain::cards::CardFacts;
use crate::processor::{CreatedCustomer, Platform, ProcessorError, ProcessorResult};

/// What a customer is read with: its card, wherever Stripe keeps it.
fn expand(prefix: &str) -> Vec<String> {
    vec![format!("{prefix}sources"), format!("{prefix}invoice_settings.default_payment_method")]
}

fn card_facts(brand: &str, last4: &str, exp_month: i64, exp_year: i64) -> CardFacts {
    CardFacts {
        brand: brand.to_owned(),
        last4: last4.to_owned(),
        exp_month: exp_month as i16,
        exp_year: exp_year as i16,
    }
}

/// The card behind a customer's default source, or its default PaymentMethod.
fn customer_card(customer: &stripe_shared::Customer) -> Option<CardFacts> {
    let from_source = |source: &PaymentSource| match source {
        PaymentSource::Card(card) => Some(card_facts(&card.brand, &card.last4, card.exp_month, card.exp_year)),
        _ => None,
    };
    if let Some(Expandable::Object(source)) = &customer.default_source {
        return from_source(source);
    }
    if let Some(sources) = &customer.sources
        && let Some(card) = sources.data.iter().find_map(from_source)
    {
        return Some(card);
    }
    let pm = customer.invoice_settings.as_ref()?.default_payment_method.as_ref()?;
    match pm {
        Expandable::Object(pm) => {
            let card = pm.card.as_ref()?;
            Some(card_facts(&card.brand, &card.last4, card.exp_month, card.exp_year))
        }
        Expandable::Id(_) => None,
    }
}

fn card_of(customer: &stripe_shared::Customer) -> ProcessorResult<CardFacts> {
    customer_card(customer)
        .ok_or_else(|| ProcessorError::Failed("Stripe returned a customer without a card".to_owned()))
}

impl StripeProcessor {
    pub(super) async fn stripe_create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        reference: &str,
    ) -> ProcessorResult<CreatedCustomer> {
        let client = &self.client(platform)?;
        let customer = self
            .keyed(
                reference,
                |key| async move { create_customer_once(client, card_token, reference, &key).await },
                self.find_customer(client, reference),
            )
            .await?;
        Ok(CreatedCustomer { customer_id: customer.id.to_string(), card: card_of(&customer)? })
    }

    pub(super) async fn stripe_update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
        reference: &str,
    ) -> ProcessorResult<CardFacts> {
        let client = &self.client(platform)?;
        // A card token is single-use and only curbpay holds it: spent means this update
        // took effect.
        let reconcile = async move {
            match token_spent(client, card_token).await {
                true => Ok(Some(retrieve_customer(client, customer_id).await?)),
                false => Ok(None),
            }
        };
        let customer = self
            .keyed(
                reference,
                |key| async move { update_card_once(client, customer_id, card_token, &key).await },
                reconcile,
            )
            .await?;
        card_of(&customer)
    }

    /// Finds the customer curbpay made for `reference`. Search first (cheap, but it lags
    /// behind writes), then the list of recent customers, which reads what was just
    /// written: a saved 500 is reconciled moments after the request.
    async fn find_customer(
        &self,
        client: &KeyedClient,
        reference: &str,
    ) -> ProcessorResult<Option<stripe_shared::Customer>> {
        let query = format!("metadata['{REF_KEY}']:'{reference}'");
        let found = stripe_core::customer::SearchCustomer::new(query).expand(expand("data.")).send(client).await?;
        if let Some(customer) = found.data.into_iter().next() {
            return Ok(Some(customer));
        }
        let mut after: Option<String> = None;
        for _ in 0..RECONCILE_PAGES {
            let mut list =
                stripe_core::customer::ListCustomer::new().created(recent()).limit(100).expand(expand("data."));
            if let Some(after) = &after {
                list = list.starting_after(after.clone());
            }
            let page = list.send(client).await?;
            if let Some(customer) = page
                .data
                .iter()
                .find(|c| c.metadata.as_ref().and_then(|m| m.get(REF_KEY)).map(String::as_str) == Some(reference))
            {
                return Ok(Some(customer.clone()));
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => after = Some(last.id.to_string()),
                _ => break,
            }
        }
        Ok(None)
    }
}

async fn create_customer_once(
    client: &KeyedClient,
    card_token: &str,
    reference: &str,
    key: &str,
) -> Result<stripe_shared::Customer, CallError> {
    let metadata = std::collections::HashMap::from([(REF_KEY.to_owned(), reference.to_owned())]);
    let mut request = stripe_core::customer::CreateCustomer::new().metadata(metadata).expand(expand(""));
    request = if card_token.starts_with("pm_") {
        request.payment_method(card_token).invoice_settings(stripe_core::customer::CreateCustomerInvoiceSettings {
            default_payment_method: Some(card_token.to_owned()),
            ..Default::default()
        })
    } else {
        request.source(card_token)
    };
    request.customize().request_strategy(call_strategy(key)?).send(client).await
}

/// Replaces the customer's card (a `pm_…` is attached first).
async fn update_card_once(
    client: &KeyedClient,
    customer_id: &str,
    card_token: &str,
    key: &str,
) -> Result<stripe_shared::Customer, CallError> {
    let request = stripe_core::customer::UpdateCustomer::new(customer_id.to_owned()).expand(expand(""));
    let request = if card_token.starts_with("pm_") {
        // A PaymentMethod must be attached to the customer before it can be its
        // default. (Attaching a test PaymentMethod such as pm_card_visa makes a new one.)
        let attached = stripe_payment::payment_method::AttachPaymentMethod::new(card_token.to_owned())
            .customer(customer_id.to_owned())
            .customize()
            .request_strategy(call_strategy(&format!("{key}:attach"))?)
            .send(client)
            .await?;
        request.invoice_settings(stripe_core::customer::UpdateCustomerInvoiceSettings {
            default_payment_method: Some(attached.id.to_string()),
            ..Default::default()
        })
    } else {
        request.source(card_token)
    };
    request.customize().request_strategy(call_strategy(key)?).send(client).await
}

/// Whether Stripe marks a card token as used (false when it cannot tell).
async fn token_spent(client: &KeyedClient, card_token: &str) -> bool {
    if !card_token.starts_with("tok_") {
        return false;
    }
    match stripe_core::token::RetrieveToken::new(card_token.to_owned()).send(client).await {
        Ok(token) => token.used,
        Err(_) => false,
    }
}

pub(super) async fn retrieve_customer(
    client: &KeyedClient,
    customer_id: &str,
) -> ProcessorResult<stripe_shared::Customer> {
    let found =
        stripe_core::customer::RetrieveCustomer::new(customer_id.to_owned()).expand(expand("")).send(client).await?;
    match found {
        stripe_core::customer::RetrieveCustomerReturned::Customer(customer) => Ok(customer),
        stripe_core::customer::RetrieveCustomerReturned::DeletedCustomer(_) => {
            Err(ProcessorError::Failed("the customer was deleted at Stripe".to_owned()))
        }
    }
}
