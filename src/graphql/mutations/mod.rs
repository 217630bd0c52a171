//! Mutation roots, one per domain, merged into `MutationRoot`. Each mutation takes an
//! input object and returns a payload object, so both can grow without breaking clients.
//! The roots are merged in the order their fields appear in the published schema.

mod customers;
mod links;
mod parties;
mod refunds;
mod sessions;
mod tokens;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    parties::PartyMutation,
    links::LinkMutation,
    customers::CustomerMutation,
    sessions::SessionMutation,
    refunds::RefundMutation,
    tokens::TokenMutation,
    super::webhooks::WebhookMutation,
);
