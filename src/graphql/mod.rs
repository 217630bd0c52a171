//! The GraphQL API: one `schema()` builder shared by the server, the tests and
//! `curbpay schema`. Roots are merged per domain; types are thin wrappers over model
//! rows whose `///` docs become the published SDL; authorization is decided in
//! `payments::policy`, and every to-one edge goes through a per-request loader. Reads
//! follow the operation: a query's go to the read replica, a mutation's and a
//! subscription's to the primary (`freshness`).

mod connection;
mod errors;
mod events;
mod executor;
mod introspection;
pub mod limits;
pub mod loaders;
mod mutations;
mod observe;
mod queries;
mod scopes;
mod subscriptions;
mod types;
mod webhooks;

use async_graphql::parser::types::OperationType;
use async_graphql::{Context, ID, Schema};
use uuid::Uuid;

use crate::auth::Principal;
use crate::broker::{BrokerState, Freshness};
use crate::db::ReadConn;
use crate::error::{ApiError, ApiResult};
use loaders::{LoaderSet, Loaders};

pub use executor::Api;
pub use mutations::MutationRoot;
pub use queries::QueryRoot;
pub use subscriptions::SubscriptionRoot;

/// The async-graphql schema type of the API.
pub type CurbpaySchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Largest page a list returns.
pub const MAX_PAGE_SIZE: i32 = 100;
/// Page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i32 = 20;

/// The most a request may cost (see `page_cost`).
pub const MAX_COMPLEXITY: usize = 5000;
/// What one database statement costs in the complexity count: a connection, or a
/// `totalCount`, runs one per parent object.
pub const STATEMENT_COST: usize = 10;

/// The complexity of a connection field: one statement, plus its items' cost times the
/// page size it will return. Nested connections multiply, as their statements do.
pub(crate) fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    // An out-of-range `first` is refused by the resolver; count it as the largest page.
    let page = match first.unwrap_or(DEFAULT_PAGE_SIZE) {
        n if (0..=MAX_PAGE_SIZE).contains(&n) => n,
        _ => MAX_PAGE_SIZE,
    };
    STATEMENT_COST.saturating_add((page.max(1) as usize).saturating_mul(child_complexity))
}

/// Builds the API. `broker` is `None` only to print the SDL (settings at their defaults
/// then: suggestions off, introspection on).
pub fn schema(broker: Option<BrokerState>) -> Api {
    let introspection = broker.as_ref().is_none_or(|broker| broker.config.graphql_introspection);
    Api::new(build(broker.clone(), false), build(broker, true), introspection)
}

/// One schema: `writes` adds the write-scope check that mutations need (see
/// `executor`); every other check runs in `executor`, once per operation.
fn build(broker: Option<BrokerState>, writes: bool) -> CurbpaySchema {
    let (suggestions, introspection) = broker
        .as_ref()
        .map_or((false, true), |broker| (broker.config.graphql_suggestions, broker.config.graphql_introspection));
    let mut builder = Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot::default())
        // The standard introspection query (GraphiQL, codegen) needs depth 15 and
        // complexity ~220; these limits leave room for it and stop abusive documents.
        // Lists cost their page size times their items (see `page_cost`).
        .limit_depth(16)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .limit_directives(16)
        .limit_aliases(64);
    builder = describe_connections(builder);
    if writes {
        builder = builder.extension(scopes::WriteScope);
    }
    if !suggestions {
        // "Did you mean …" spells out the schema to callers that guess.
        builder = builder.disable_suggestions();
    }
    if !introspection {
        builder = builder.disable_introspection();
    }
    if let Some(broker) = broker {
        builder = builder.data(broker);
    }
    builder.finish()
}

/// Describes the connection types, which async-graphql generates without a description
/// (their fields, `PageInfo` and the edges are described by async-graphql).
fn describe_connections(
    builder: async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    use async_graphql::connection::Connection;
    use connection::Conn;
    builder
        .override_output_type_description::<Conn<types::App>>(
            "A page of apps, oldest first. Pass `pageInfo.endCursor` as `after` for the next page.",
        )
        .override_output_type_description::<Conn<types::Operator>>(
            "A page of operators, oldest first. Pass `pageInfo.endCursor` as `after` for the next page.",
        )
        .override_output_type_description::<Conn<types::Link>>(
            "A page of links, oldest first. Pass `pageInfo.endCursor` as `after` for the next page.",
        )
        .override_output_type_description::<Conn<types::Customer>>(
            "A page of customers, oldest first. Pass `pageInfo.endCursor` as `after` for the next page.",
        )
        .override_output_type_description::<Conn<types::ParkingSession>>(
            "A page of parking sessions, oldest first. Pass `pageInfo.endCursor` as `after` for the next page.",
        )
        .override_output_type_description::<Connection<String, events::Event>>(
            "A page of the event log, oldest first. Pass `pageInfo.endCursor` as `after` for the next page, \
             or to the `events` subscription to follow the log live from there.",
        )
        .override_output_type_description::<Connection<String, webhooks::WebhookEndpoint>>(
            "A page of webhook endpoints, oldest first. Pass `pageInfo.endCursor` as `after` for the next page.",
        )
        .override_output_type_description::<Connection<String, webhooks::WebhookDeliveryAttempt>>(
            "A page of delivery attempts, oldest first. Pass `pageInfo.endCursor` as `after` for the next page.",
        )
}

/// The SDL as published in `schema.graphql`.
pub fn sdl() -> String {
    build(None, false).sdl()
}

/// How the request authenticated, put in each request's data by the HTTP layer.
#[derive(Clone)]
pub enum Auth {
    /// No credentials were sent.
    Anonymous,
    /// Credentials were sent and rejected; the message says why (never the token).
    Invalid(String),
    /// The credentials could not be checked (the database did not answer).
    Unavailable,
    /// A valid token: the caller.
    Principal(Principal),
}

/// The authenticated caller, or UNAUTHENTICATED.
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> ApiResult<&'a Principal> {
    match ctx.data_opt::<Auth>() {
        Some(Auth::Principal(principal)) if principal.is_expired(chrono::Utc::now()) => {
            Err(ApiError::Unauthenticated("invalid token: the token has expired".to_owned()))
        }
        Some(Auth::Principal(principal)) => Ok(principal),
        Some(Auth::Invalid(why)) => Err(ApiError::Unauthenticated(why.clone())),
        Some(Auth::Unavailable) => Err(ApiError::unavailable("checking the token's party")),
        _ => Err(ApiError::Unauthenticated("authentication required: send Authorization: Bearer <JWT>".to_owned())),
    }
}

pub(crate) fn broker<'a>(ctx: &Context<'a>) -> &'a BrokerState {
    ctx.data_unchecked::<BrokerState>()
}

/// What the operation's reads must see, decided by its type alone so that no resolver
/// has to choose: a query may read from the replica; a mutation reads the primary (its
/// payload must show what it wrote, and its checks must see the latest rows), and so
/// does a subscription (its events are read from the primary, and their fields must
/// match them). A field shared by queries and mutation payloads follows the operation.
pub(crate) fn freshness(ctx: &Context<'_>) -> Freshness {
    // async-graphql (pinned with `=`) has no accessor for the operation's type; its
    // `query_env` field is public but undocumented. The replica tests fail if this
    // ever stops telling a mutation from a query.
    match ctx.query_env.operation.node.ty {
        OperationType::Query => Freshness::MayLag,
        OperationType::Mutation | OperationType::Subscription => Freshness::Latest,
    }
}

/// The connection for a resolver's own reads (see [`freshness`]).
pub(crate) async fn read_db(ctx: &Context<'_>) -> ApiResult<ReadConn> {
    broker(ctx).read_db(freshness(ctx)).await
}

/// The request's loaders for the operation's freshness.
pub(crate) fn loader_set<'a>(ctx: &Context<'a>) -> &'a LoaderSet {
    ctx.data_unchecked::<Loaders>().get(freshness(ctx))
}

/// Parses an ID argument; a malformed one is BAD_USER_INPUT naming the argument.
pub(crate) fn parse_id(field: &str, id: &ID) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| ApiError::bad_input(format!("{field} is not a valid id")))
}
