//! `tokenizeCustomer`: an app's customer and card at the processor.

use async_graphql::{Context, InputObject, Object, SimpleObject};

use crate::graphql::types::Customer;
use crate::graphql::{broker, principal};
use crate::payments::customers;

/// Input of `tokenizeCustomer`.
#[derive(InputObject)]
pub struct TokenizeCustomerInput {
    /// The app's own reference for the user (unique per app, 1–255 characters).
    pub external_ref: String,
    /// A card token made by the app's frontend with the app's publishable key
    /// (`tok_…`). Never a card number.
    pub card_token: String,
}

/// Result of `tokenizeCustomer`.
#[derive(SimpleObject)]
pub struct TokenizeCustomerPayload {
    /// The customer with its card facts.
    pub customer: Customer,
    /// True when the customer was new; false when its card was replaced.
    pub created: bool,
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Creates the app's customer at the processor from a card token, or replaces the
    /// card of the customer with the same `externalRef`. Role app.
    async fn tokenize_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The card token from the app's frontend and the app's reference for its user.")]
        input: TokenizeCustomerInput,
    ) -> async_graphql::Result<TokenizeCustomerPayload> {
        let (customer, created) =
            customers::tokenize(broker(ctx), principal(ctx)?, &input.external_ref, &input.card_token).await?;
        Ok(TokenizeCustomerPayload { customer: Customer(customer), created })
    }
}
