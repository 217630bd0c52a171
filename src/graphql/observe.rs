//! Measures every GraphQL operation (HTTP and WebSocket alike): a count by operation
//! name, type and outcome code, and a latency histogram. Registered first, so it sees
//! the codes `ErrorCodes` gives. Subscriptions are counted when they start.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};

use crate::error::ErrorCode;

pub struct Observe;

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveExtension::default())
    }
}

#[derive(Default)]
struct ObserveExtension {
    /// The operations the document defines: (name, type).
    operations: Mutex<Vec<(Option<String>, OperationType)>>,
    /// The one selected for execution.
    selected: Mutex<Option<(Option<String>, OperationType)>>,
}

impl ObserveExtension {
    fn operation(&self) -> (String, &'static str) {
        let selected = self.selected.lock().expect("observe lock").clone();
        let chosen = selected.or_else(|| {
            let operations = self.operations.lock().expect("observe lock");
            (operations.len() == 1).then(|| operations[0].clone())
        });
        match chosen {
            Some((name, ty)) => (crate::metrics::operation_label(name.as_deref()), type_label(ty)),
            None => ("unparsed".to_owned(), "unknown"),
        }
    }
}

fn type_label(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// `OK`, or the first error's code (one of ours; anything else counts as INTERNAL).
fn outcome(response: &Response) -> &'static str {
    let Some(error) = response.errors.first() else { return "OK" };
    let code = error.extensions.as_ref().and_then(|e| e.get("code")).and_then(|v| match v {
        async_graphql::Value::String(s) => Some(s.as_str()),
        _ => None,
    });
    code.and_then(ErrorCode::parse).unwrap_or(ErrorCode::Internal).as_str()
}

#[async_trait::async_trait]
impl Extension for ObserveExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let (name, kind) = self.operation();
        crate::metrics::graphql_operation(name, kind, outcome(&response), started.elapsed());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let operations = match &document.operations {
            DocumentOperations::Single(op) => vec![(None, op.node.ty)],
            DocumentOperations::Multiple(ops) => {
                ops.iter().map(|(name, op)| (Some(name.as_str().to_owned()), op.node.ty)).collect()
            }
        };
        *self.operations.lock().expect("observe lock") = operations;
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let selected = {
            let operations = self.operations.lock().expect("observe lock");
            match operation_name {
                Some(name) => operations.iter().find(|(n, _)| n.as_deref() == Some(name)).cloned(),
                None if operations.len() == 1 => Some(operations[0].clone()),
                None => None,
            }
        };
        *self.selected.lock().expect("observe lock") = selected;
        next.run(ctx, operation_name).await
    }
}
