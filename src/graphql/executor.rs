//! Runs every GraphQL operation, HTTP and WebSocket alike, with curbpay's checks and
//! bookkeeping around async-graphql's: document limits (`limits`), required variables
//! and error codes (`errors`), the introspection switch (`introspection`), metrics and
//! trace fields (`observe`).
//!
//! These run once per operation here rather than as async-graphql extensions: with any
//! extension registered, async-graphql builds a `ResolveInfo` and runs the extension
//! chain for every field it resolves (about a fifth of the server's CPU on a 50-link
//! page, almost all of it in fields no hook cared about). So queries and subscriptions
//! run on a schema without extensions. Mutations run on a twin schema that carries the
//! one per-field hook they need, `scopes::WriteScope`; they are few, and cost a write
//! each anyway.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Request, Response, ServerResult};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::CurbpaySchema;
use super::observe::{self, Operation};

/// The GraphQL API as the HTTP and WebSocket layers run it. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    /// Runs queries and subscriptions: no extensions.
    reads: CurbpaySchema,
    /// Runs mutations: with the write-scope check on each root field.
    writes: CurbpaySchema,
    /// Whether introspection is allowed (`CURBPAY_GRAPHQL_INTROSPECTION`).
    introspection: bool,
}

impl Api {
    pub(crate) fn new(reads: CurbpaySchema, writes: CurbpaySchema, introspection: bool) -> Api {
        Api { reads, writes, introspection }
    }

    /// The checks async-graphql does not make, in the order they were always made:
    /// limits, then (once parsed) the introspection switch and required variables.
    /// Picks the schema the operation runs on.
    fn prepare(&self, request: &mut Request, operation: &mut Operation) -> ServerResult<&CurbpaySchema> {
        super::limits::check_request(request)?;
        // Out of the request while its parsed document is borrowed, and back.
        let variables = std::mem::take(&mut request.variables);
        let checked = Self::check_document(request, &variables, self.introspection, operation);
        request.variables = variables;
        checked?;
        Ok(match operation.selected() {
            Some((_, OperationType::Mutation)) => &self.writes,
            _ => &self.reads,
        })
    }

    fn check_document(
        request: &mut Request,
        variables: &async_graphql::Variables,
        introspection: bool,
        operation: &mut Operation,
    ) -> ServerResult<()> {
        let document = request.parsed_query()?;
        if !introspection {
            super::introspection::refuse(document)?;
        }
        super::errors::check_required_variables(document, variables)?;
        operation.define(document);
        Ok(())
    }

    /// Runs one operation (over HTTP).
    pub async fn execute(&self, mut request: Request) -> Response {
        let started = Instant::now();
        let span = crate::telemetry::current_operation();
        let mut operation = Operation::new(request.operation_name.clone());
        let mut response = match self.prepare(&mut request, &mut operation) {
            Ok(schema) => schema.execute(request).await,
            Err(err) => Response::from_errors(vec![err]),
        };
        super::errors::finish(&mut response);
        observe::finished(&operation, started, span, &response);
        response
    }

    /// Runs one operation over a WebSocket: a subscription's stream of responses, or
    /// a query's or mutation's one response.
    pub fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let mut operation = Operation::new(request.operation_name.clone());
        let responses = match self.prepare(&mut request, &mut operation) {
            Ok(schema) => schema.execute_stream_with_session_data(request, session_data.unwrap_or_default()),
            Err(err) => futures_util::stream::once(async move { Response::from_errors(vec![err]) }).boxed(),
        };
        let coded = responses
            .map(|mut response| {
                super::errors::finish(&mut response);
                response
            })
            .boxed();
        observe::stream(Arc::new(operation), coded)
    }
}

impl async_graphql::Executor for Api {
    async fn execute(&self, request: Request) -> Response {
        Api::execute(self, request).await
    }

    fn execute_stream(&self, request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        Api::execute_stream(self, request, session_data)
    }
}
