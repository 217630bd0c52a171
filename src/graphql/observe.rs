//! Measures every GraphQL operation: over HTTP a count by operation name, type and
//! outcome code, and a latency histogram; with traces on, the operation's name, type
//! and outcome on its trace span (over a WebSocket, a span of the operation's own).
//! `graphql::executor` calls these around each operation, after the error codes are
//! given, so the outcome is the code the client sees.

use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use async_graphql::Response;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::error::ErrorCode;

/// What is known of the operation before it runs.
#[derive(Default)]
pub(crate) struct Operation {
    /// The operation the request names, if it names one.
    requested: Option<String>,
    /// The operations the document defines: (name, type); empty until the document
    /// has passed the checks before execution.
    defined: Vec<(Option<String>, OperationType)>,
}

impl Operation {
    pub(crate) fn new(requested: Option<String>) -> Operation {
        Operation { requested, defined: Vec::new() }
    }

    /// Notes the operations a document that passed the checks defines.
    pub(crate) fn define(&mut self, document: &ExecutableDocument) {
        self.defined = match &document.operations {
            DocumentOperations::Single(op) => vec![(None, op.node.ty)],
            DocumentOperations::Multiple(ops) => {
                ops.iter().map(|(name, op)| (Some(name.as_str().to_owned()), op.node.ty)).collect()
            }
        };
    }

    /// The one that runs: the one named, else the only one.
    pub(crate) fn selected(&self) -> Option<(Option<&str>, OperationType)> {
        let found = match &self.requested {
            Some(name) => self.defined.iter().find(|(n, _)| n.as_deref() == Some(name.as_str())),
            None => None,
        };
        found.or_else(|| (self.defined.len() == 1).then(|| &self.defined[0])).map(|(name, ty)| (name.as_deref(), *ty))
    }

    /// The metric labels: operation name and type.
    fn labels(&self) -> (String, &'static str) {
        match self.selected() {
            Some((name, ty)) => (crate::metrics::operation_label(name), type_label(ty)),
            None => ("unparsed".to_owned(), "unknown"),
        }
    }

    /// Records the operation and its outcome on its trace span.
    fn record(&self, span: &tracing::Span, response: &Response) {
        let selected = self.selected();
        let name = selected.and_then(|(name, _)| name);
        let kind = selected.map(|(_, ty)| type_label(ty));
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

/// An operation over HTTP has answered: counts it, and records it on `span` (the
/// operation's trace span, when traces are on).
pub(crate) fn finished(operation: &Operation, started: Instant, span: Option<tracing::Span>, response: &Response) {
    let (name, kind) = operation.labels();
    crate::metrics::graphql_operation(name, kind, outcome(response), started.elapsed());
    if let Some(span) = span {
        operation.record(&span, response);
    }
}

/// An operation over a WebSocket: with traces on, its responses are produced in a
/// span of its own, which records the outcome as they come (the first error's code
/// stays) and ends with the stream.
pub(crate) fn stream<'s>(operation: Arc<Operation>, mut stream: BoxStream<'s, Response>) -> BoxStream<'s, Response> {
    if !crate::telemetry::enabled() {
        return stream;
    }
    let span = crate::telemetry::websocket_operation_span();
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
