//! Charge tokens: a single-use token on the operator's connected account, minted from the
//! platform's customer (`POST /v1/tokens` from its card, or a clone of its PaymentMethod).

use chrono::Utc;
use stripe_types::Expandable;

use stripe_client_core::StripeRequest;

use super::client::{CallError, KeyedClient};
use super::customers::retrieve_customer;
use super::{StripeProcessor, account_id, call_strategy};
use crate::processor::{IssuedToken, Platform, ProcessorResult};

impl StripeProcessor {
    pub(super) async fn stripe_issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        reference: &str,
    ) -> ProcessorResult<IssuedToken> {
        let client = &self.client(platform)?;
        let customer = retrieve_customer(client, customer_id).await?;
        let default_pm =
            customer.invoice_settings.as_ref().and_then(|s| s.default_payment_method.as_ref()).map(|pm| match pm {
                Expandable::Id(id) => id.to_string(),
                Expandable::Object(pm) => pm.id.to_string(),
            });
        let clone_pm = if customer.default_source.is_none() { default_pm } else { None };
        let clone_pm = clone_pm.as_deref();
        // Tokens carry no metadata to reconcile by, and an unused one simply expires: a
        // saved 500 is answered by a new attempt.
        let token = self
            .keyed(
                reference,
                |key| async move { token_once(client, customer_id, connected_account_id, clone_pm, &key).await },
                std::future::ready(Ok(None)),
            )
            .await?;
        Ok(IssuedToken { token, expires_at: Utc::now() + self.token_ttl })
    }
}

/// A single-use token on the connected account: `POST /v1/tokens` from the customer's
/// card, or a clone of its PaymentMethod.
async fn token_once(
    client: &KeyedClient,
    customer_id: &str,
    connected_account_id: &str,
    clone_pm: Option<&str>,
    key: &str,
) -> Result<String, CallError> {
    let strategy = call_strategy(key)?;
    match clone_pm {
        Some(pm) => stripe_payment::payment_method::CreatePaymentMethod::new()
            .customer(customer_id.to_owned())
            .payment_method(pm.to_owned())
            .customize()
            .account_id(account_id(connected_account_id))
            .request_strategy(strategy)
            .send(client)
            .await
            .map(|pm| pm.id.to_string()),
        None => stripe_core::token::CreateToken::new()
            .customer(customer_id.to_owned())
            .customize()
            .account_id(account_id(connected_account_id))
            .request_strategy(strategy)
            .send(client)
            .await
            .map(|token| token.id.to_string()),
    }
}
