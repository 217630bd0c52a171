//! With `CURBPAY_GRAPHQL_INTROSPECTION=false` async-graphql answers `__schema` and
//! `__type` with a silent `null`; `graphql::executor` then refuses such documents with
//! a clear BAD_USER_INPUT error instead.

use std::collections::HashSet;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Pos, ServerError, ServerResult};

use crate::error::ErrorCode;

/// Refuses a document whose query selects `__schema` or `__type`.
pub(crate) fn refuse(document: &ExecutableDocument) -> ServerResult<()> {
    match introspection_field(document) {
        Some(pos) => {
            let mut err = ServerError::new("introspection is disabled on this server", Some(pos));
            err.extensions.get_or_insert_with(Default::default).set("code", ErrorCode::BadUserInput.as_str());
            Err(err)
        }
        None => Ok(()),
    }
}

/// Where a query selects `__schema` or `__type` on its root (through fragments too;
/// each fragment is looked at once).
fn introspection_field(document: &ExecutableDocument) -> Option<Pos> {
    let mut seen = HashSet::new();
    document
        .operations
        .iter()
        .filter(|(_, op)| op.node.ty == OperationType::Query)
        .find_map(|(_, op)| root_field(document, &op.node.selection_set.node, &mut seen))
}

fn root_field<'a>(document: &'a ExecutableDocument, set: &'a SelectionSet, seen: &mut HashSet<&'a str>) -> Option<Pos> {
    set.items.iter().find_map(|item| match &item.node {
        Selection::Field(field) => matches!(field.node.name.node.as_str(), "__schema" | "__type").then_some(field.pos),
        Selection::InlineFragment(fragment) => root_field(document, &fragment.node.selection_set.node, seen),
        Selection::FragmentSpread(spread) => {
            let name = spread.node.fragment_name.node.as_str();
            if !seen.insert(name) {
                return None;
            }
            let fragment = document.fragments.get(name)?;
            root_field(document, &fragment.node.selection_set.node, seen)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(query: &str) -> bool {
        introspection_field(&async_graphql::parser::parse_query(query).unwrap()).is_some()
    }

    #[test]
    fn finds_root_introspection_fields() {
        assert!(found("{ __schema { queryType { name } } }"));
        assert!(found("query { viewer { role } __type(name: \"Query\") { name } }"));
        assert!(found(
            "{ ...A } fragment A on Query { ... on Query { ...B } } fragment B on Query { __schema { types { name } } }"
        ));
        assert!(!found("{ __typename viewer { __typename role } }"));
        assert!(!found("{ ...A } fragment A on Query { ...A }"));
    }
}
