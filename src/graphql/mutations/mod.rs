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

/// Every change goes through a mutation: each takes one input object and answers a
/// payload object. Mutations need a token with the `write` scope; those that move money
/// or start a session take an idempotency key, and a retry with the same key answers what
/// the first attempt did.
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
