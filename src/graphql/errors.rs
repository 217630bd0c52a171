//! Gives every error a stable `extensions.code`, and keeps internal detail out of
//! responses. Domain errors (`ApiError`) carry their own code; parse and validation
//! errors are BAD_USER_INPUT; anything else is INTERNAL, logged and masked. A response
//! carries at most `MAX_ERRORS` errors: one document can provoke thousands.
//! `graphql::executor` applies these to every response, HTTP and WebSocket alike.

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};
use async_graphql::{Response, ServerError, ServerResult, Variables};

use crate::error::{ApiError, ErrorChain, ErrorCode};

/// Most errors in one response; the last one then says how many were left out.
pub const MAX_ERRORS: usize = 50;

/// Gives a response's errors their codes (after capping how many it carries).
pub(crate) fn finish(response: &mut Response) {
    cap(&mut response.errors);
    response.errors.iter_mut().for_each(classify);
}

/// The GraphQL spec makes a missing value for a required variable (non-null, no
/// default) a request error; async-graphql would run the operation as if the argument
/// were absent.
pub(crate) fn check_required_variables(document: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
    let operations: Vec<_> = match &document.operations {
        DocumentOperations::Single(op) => vec![op],
        // With several operations only the one selected by name is run; checking is
        // left to execution there.
        DocumentOperations::Multiple(_) => vec![],
    };
    for op in operations {
        for definition in &op.node.variable_definitions {
            let definition = &definition.node;
            let given = variables.get(&definition.name.node).is_some_and(|v| *v != async_graphql::Value::Null);
            if !definition.var_type.node.nullable && definition.default_value.is_none() && !given {
                let mut err = ServerError::new(
                    format!(
                        "Variable \"${}\" of required type \"{}\" was not provided.",
                        definition.name.node, definition.var_type.node
                    ),
                    Some(definition.name.pos),
                );
                set_code(&mut err, ErrorCode::BadUserInput);
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Keeps the first `MAX_ERRORS - 1` errors and replaces the rest with one that says
/// how many were omitted; it takes the code of the first one omitted.
fn cap(errors: &mut Vec<ServerError>) {
    if errors.len() <= MAX_ERRORS {
        return;
    }
    let mut omitted = errors.split_off(MAX_ERRORS - 1);
    let count = omitted.len();
    let mut first = omitted.swap_remove(0);
    classify(&mut first);
    let mut summary =
        ServerError::new(format!("{count} more errors omitted (at most {MAX_ERRORS} are reported)"), None);
    let extensions = summary.extensions.get_or_insert_with(Default::default);
    if let Some(code) = first.extensions.as_ref().and_then(|e| e.get("code")) {
        extensions.set("code", code.clone());
    }
    extensions.set("omittedErrors", count);
    errors.push(summary);
}

fn set_code(err: &mut ServerError, code: ErrorCode) {
    err.extensions.get_or_insert_with(Default::default).set("code", code.as_str());
}

/// Decides the code and the client-facing message of one error.
pub(crate) fn classify(err: &mut ServerError) {
    if err.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some()) {
        return;
    }
    if let Some(api) = err.source::<ApiError>() {
        let (code, message) = (api.code(), api.client_message());
        if matches!(code, ErrorCode::Internal | ErrorCode::Unavailable) {
            tracing::error!(error = %ErrorChain(api), path = ?err.path, "request failed");
        }
        let reason = api.reason();
        err.message = message;
        set_code(err, code);
        if let Some(reason) = reason {
            err.extensions.get_or_insert_with(Default::default).set("reason", reason);
        }
        return;
    }
    // Without a path the error came before execution: the document or its variables
    // (syntax, validation, limits, coercion). Argument coercion during execution says
    // "Failed to parse".
    const COERCION: [&str; 4] = ["Failed to parse", "Invalid value", "Expected input type", "Variable "];
    if err.path.is_empty() || COERCION.iter().any(|prefix| err.message.starts_with(prefix)) {
        set_code(err, ErrorCode::BadUserInput);
        return;
    }
    tracing::error!(error = %err.message, path = ?err.path, "unclassified error");
    err.message = ApiError::internal("").client_message();
    set_code(err, ErrorCode::Internal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{PathSegment, Pos};

    fn code(err: &ServerError) -> String {
        let value = err.extensions.as_ref().and_then(|e| e.get("code")).cloned().unwrap();
        value.to_string().trim_matches('"').to_owned()
    }

    #[test]
    fn domain_errors_keep_their_code_and_safe_message() {
        let source: async_graphql::Error = ApiError::NotFound("link").into();
        let mut err = source.into_server_error(Pos::default()).with_path(vec![PathSegment::Field("link".into())]);
        classify(&mut err);
        assert_eq!(code(&err), "NOT_FOUND");
        assert_eq!(err.message, "link not found");
    }

    #[test]
    fn internal_errors_are_masked() {
        let source: async_graphql::Error = ApiError::internal("duplicate key value violates").into();
        let mut err = source.into_server_error(Pos::default()).with_path(vec![PathSegment::Field("x".into())]);
        classify(&mut err);
        assert_eq!(code(&err), "INTERNAL");
        assert!(!err.message.contains("duplicate"));

        let mut err = ServerError::new("some panic-ish text", None).with_path(vec![PathSegment::Field("x".into())]);
        classify(&mut err);
        assert_eq!(code(&err), "INTERNAL");
        assert!(!err.message.contains("panic"));
    }

    #[test]
    fn responses_carry_at_most_fifty_errors() {
        let mut errors: Vec<_> = (0..1000).map(|n| ServerError::new(format!("Unknown field \"f{n}\""), None)).collect();
        cap(&mut errors);
        assert_eq!(errors.len(), MAX_ERRORS);
        assert_eq!(errors[MAX_ERRORS - 2].message, "Unknown field \"f48\"");
        let last = &errors[MAX_ERRORS - 1];
        assert_eq!(last.message, "951 more errors omitted (at most 50 are reported)");
        assert_eq!(code(last), "BAD_USER_INPUT");

        let mut few: Vec<_> = (0..MAX_ERRORS).map(|_| ServerError::new("x", None)).collect();
        cap(&mut few);
        assert_eq!(few.len(), MAX_ERRORS);
        assert!(few.iter().all(|e| e.message == "x"));
    }

    #[test]
    fn document_errors_are_bad_user_input() {
        let mut err = ServerError::new("Unknown field \"nope\"", None);
        classify(&mut err);
        assert_eq!(code(&err), "BAD_USER_INPUT");
    }
}
