//! Charges on the operator's connected account: a Charge from a token, or a confirmed
//! PaymentIntent from a cloned PaymentMethod; a decline is an outcome.

use stripe_client_core::StripeRequest;

use super::attempts::KeyedError;
use super::client::{CallError, KeyedClient};
use super::{REF_KEY, StripeProcessor, account_id, call_strategy, recent};
use crate::processor::{ChargeOutcome, ChargeRequest, ProcessorError, ProcessorResult};

impl StripeProcessor {
    pub(super) async fn stripe_charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome> {
        let client = &self.client(request.platform)?;
        let sent = self
            .keyed(
                request.idempotency_key,
                |key| async move { charge_once(client, request, &key).await },
                find_charge(client, request),
            )
            .await;
        match sent {
            Ok(outcome) => Ok(outcome),
            // Only curbpay holds the token: if it is spent when the charge is sent again,
            // the first attempt charged it after all; find that charge.
            Err(KeyedError::Resent(CallError::Api { code, .. })) if code == "token_already_used" => {
                find_charge(client, request).await?.ok_or_else(|| {
                    ProcessorError::Unavailable("the charge's outcome is not visible yet; retry".to_owned())
                })
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// Finds the charge (or PaymentIntent) curbpay made for the request on the connected
/// account: search first, then the list of recent ones, which reads what was just
/// written.
async fn find_charge(client: &KeyedClient, request: &ChargeRequest<'_>) -> ProcessorResult<Option<ChargeOutcome>> {
    let reference = request.idempotency_key;
    let account = || account_id(request.connected_account_id);
    if request.token.starts_with("pm_") {
        let page = stripe_core::payment_intent::ListPaymentIntent::new()
            .created(recent())
            .limit(100)
            .customize()
            .account_id(account())
            .send(client)
            .await?;
        let found = page.data.into_iter().find(|pi| pi.metadata.get(REF_KEY).map(String::as_str) == Some(reference));
        return Ok(found.map(|pi| match pi.status {
            stripe_shared::PaymentIntentStatus::Succeeded => ChargeOutcome::Succeeded { charge_id: pi.id.to_string() },
            _ => {
                let error = pi.last_payment_error.as_deref();
                ChargeOutcome::Declined {
                    code: error
                        .and_then(|e| e.code.as_ref())
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_else(|| "card_declined".to_owned()),
                    decline_code: error.and_then(|e| e.decline_code.clone()),
                    message: error
                        .and_then(|e| e.message.clone())
                        .unwrap_or_else(|| "Your card was declined.".to_owned()),
                }
            }
        }));
    }
    let query = format!("metadata['{REF_KEY}']:'{reference}'");
    let found = stripe_core::charge::SearchCharge::new(query).customize().account_id(account()).send(client).await?;
    let mut charge = found.data.into_iter().next();
    if charge.is_none() {
        let page = stripe_core::charge::ListCharge::new()
            .created(recent())
            .limit(100)
            .customize()
            .account_id(account())
            .send(client)
            .await?;
        charge = page.data.into_iter().find(|c| c.metadata.get(REF_KEY).map(String::as_str) == Some(reference));
    }
    Ok(charge.map(|charge| {
        if charge.paid {
            ChargeOutcome::Succeeded { charge_id: charge.id.to_string() }
        } else {
            ChargeOutcome::Declined {
                code: charge.failure_code.clone().unwrap_or_else(|| "card_declined".to_owned()),
                decline_code: None,
                message: charge.failure_message.clone().unwrap_or_else(|| "Your card was declined.".to_owned()),
            }
        }
    }))
}

async fn charge_once(client: &KeyedClient, request: &ChargeRequest<'_>, key: &str) -> Result<ChargeOutcome, CallError> {
    let metadata = std::collections::HashMap::from([(REF_KEY.to_owned(), request.idempotency_key.to_owned())]);
    let currency = request
        .currency
        .to_ascii_lowercase()
        .parse::<stripe_types::Currency>()
        .map_err(|_| CallError::Decode("unsupported currency".to_owned()))?;
    let strategy = call_strategy(key)?;
    let result = if request.token.starts_with("pm_") {
        let mut pi = stripe_core::payment_intent::CreatePaymentIntent::new(request.amount, currency)
            .payment_method(request.token)
            .confirm(true)
            .off_session(stripe_core::payment_intent::CreatePaymentIntentOffSession::Bool(true))
            .metadata(metadata);
        if let Some(fee) = request.application_fee {
            pi = pi.application_fee_amount(fee);
        }
        pi.customize()
            .account_id(account_id(request.connected_account_id))
            .request_strategy(strategy)
            .send(client)
            .await
            .map(|pi| pi.id.to_string())
    } else {
        let mut charge = stripe_core::charge::CreateCharge::new()
            .source(request.token)
            .amount(request.amount)
            .currency(currency)
            .metadata(metadata);
        if let Some(fee) = request.application_fee {
            charge = charge.application_fee_amount(fee);
        }
        charge
            .customize()
            .account_id(account_id(request.connected_account_id))
            .request_strategy(strategy)
            .send(client)
            .await
            .map(|charge| charge.id.to_string())
    };
    match result {
        Ok(charge_id) => Ok(ChargeOutcome::Succeeded { charge_id }),
        Err(CallError::Api { kind, code, decline_code, message, .. }) if kind == "card_error" => {
            Ok(ChargeOutcome::Declined { code, decline_code, message })
        }
        Err(err) => Err(err),
    }
}
