//! Customers in the sandbox: made from one of Stripe's test card tokens on the app's
//! platform account, and their card replaced.

use super::{SandboxProcessor, cards, object_id, store};
use crate::domain::cards::CardFacts;
use crate::processor::{CreatedCustomer, Platform, ProcessorError, ProcessorResult};

fn unknown_card_token() -> ProcessorError {
    // Never echo the value: a caller might have sent a card number by mistake.
    ProcessorError::InvalidRequest(
        "cardToken is not a card token the sandbox accepts; use one of Stripe's test tokens \
         such as tok_visa, tok_mastercard or tok_chargeDeclined"
            .to_owned(),
    )
}

fn facts(card: &cards::TestCard) -> CardFacts {
    CardFacts {
        brand: card.brand.to_owned(),
        last4: card.last4.to_owned(),
        exp_month: cards::EXP_MONTH,
        exp_year: cards::EXP_YEAR,
    }
}

impl SandboxProcessor {
    pub(super) async fn sandbox_create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CreatedCustomer> {
        let card = cards::lookup(card_token).ok_or_else(unknown_card_token)?;
        let mut conn = self.conn().await?;
        let inserted =
            store::insert_customer(&mut conn, &object_id("cus"), &platform.account_id, idempotency_key, card).await;
        match inserted {
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _)) => {
                return Err(ProcessorError::InvalidRequest("no such platform account".to_owned()));
            }
            other => other?,
        };
        // A replay returns the customer the key made first, as Stripe's idempotency does;
        // the same key with another card is an error there too.
        let (customer_id, test_token) = store::customer_by_key(&mut conn, idempotency_key).await?;
        if test_token != card.token {
            return Err(ProcessorError::InvalidRequest(
                "this request's idempotency key was already used with another card token".to_owned(),
            ));
        }
        Ok(CreatedCustomer { customer_id, card: facts(card) })
    }

    /// Setting a customer's card is naturally idempotent: no key bookkeeping needed.
    pub(super) async fn sandbox_update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
    ) -> ProcessorResult<CardFacts> {
        let card = cards::lookup(card_token).ok_or_else(unknown_card_token)?;
        let mut conn = self.conn().await?;
        let updated = store::update_customer_card(&mut conn, customer_id, &platform.account_id, card).await?;
        if updated == 0 {
            return Err(ProcessorError::Failed("no such customer on the app's platform account".to_owned()));
        }
        Ok(facts(card))
    }
}
