//! Measures every GraphQL operation (HTTP and WebSocket alike): a count by operation
//! name, type and outcome code, and a latency histogram. Registered first, so it sees
//! the codes `ErrorCodes` gives. Subscriptions are counted when they start. With traces
//! on, it also records the operation's name, type and outcome on its trace span.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest, NextSubscribe,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerResult, Variables};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::error::ErrorCode;

pub struct Observe;

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveExtension::default())
    }
}

#[derive(Default)]
struct ObserveExtension {
    operation: Arc<Operation>,
}

/// What is known of the operation as it goes through the hooks (shared with the
/// response stream of a WebSocket operation).
#[derive(Default)]
struct Operation {
    /// The operation the request names, if it names one.
    requested: Mutex<Option<String>>,
    /// The operations the document defines: (name, type).
    defined: Mutex<Vec<(Option<String>, OperationType)>>,
}

impl Operation {
    /// The one that runs: the one named, else the only one.
    fn selected(&self) -> Option<(Option<String>, OperationType)> {
        let requested = self.requested.lock().expect("observe lock").clone();
        let defined = self.defined.lock().expect("observe lock");
        requested
            .and_then(|name| defined.iter().find(|(n, _)| n.as_deref() == Some(name.as_str())).cloned())
            .or_else(|| (defined.len() == 1).then(|| defined[0].clone()))
    }

    /// The metric labels: operation name and type.
    fn labels(&self) -> (String, &'static str) {
        match self.selected() {
            Some((name, ty)) => (crate::metrics::operation_label(name.as_deref()), type_label(ty)),
            None => ("unparsed".to_owned(), "unknown"),
        }
    }

    /// Records the operation and its outcome on its trace span.
    fn record(&self, span: &tracing::Span, response: &Response) {
        let selected = self.selected();
        let name = selected.as_ref().and_then(|(name, _)| name.as_deref());
        let kind = selected.as_ref().map(|(_, ty)| type_label(*ty));
        crate::telemetry::record_operation(span, name, kind, outcome(response));
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
    /// An operation over HTTP (the HTTP layer runs it in its trace span, if any).
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let span = crate::telemetry::current_operation();
        let response = next.run(ctx).await;
        let (name, kind) = self.operation.labels();
        crate::metrics::graphql_operation(name, kind, outcome(&response), started.elapsed());
        if let Some(span) = span {
            self.operation.record(&span, &response);
        }
        response
    }

    /// An operation over a WebSocket: with traces on, its responses are produced in a
    /// span of its own, which records the outcome as they come (the first error's code
    /// stays) and ends with the stream.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let mut stream = next.run(ctx, stream);
        if !crate::telemetry::enabled() {
            return stream;
        }
        let span = crate::telemetry::websocket_operation_span();
        let operation = self.operation.clone();
        let mut failed = false;
        Box::pin(futures_util::stream::poll_fn(move |cx| {
            let _entered = span.enter();
            let item = stream.poll_next_unpin(cx);
            if let Poll::Ready(Some(response)) = &item
                && !failed
            {
                operation.record(&span, response);
                failed = !response.errors.is_empty();
            }
            item
        }))
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *self.operation.requested.lock().expect("observe lock") = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let defined = match &document.operations {
            DocumentOperations::Single(op) => vec![(None, op.node.ty)],
            DocumentOperations::Multiple(ops) => {
                ops.iter().map(|(name, op)| (Some(name.as_str().to_owned()), op.node.ty)).collect()
            }
        };
        *self.operation.defined.lock().expect("observe lock") = defined;
        Ok(document)
    }
}
