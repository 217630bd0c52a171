//! Bounds the work a GraphQL document may cost before any library walks it.
//!
//! async-graphql's own pre-execution checks (recursive depth, directives, aliases,
//! complexity) follow fragment spreads without memoization: a chain of named fragments
//! that each spread the previous one k times costs k^levels steps, synchronously on a
//! runtime worker, before any resolver runs. A 2 KB document could stall the server for
//! minutes. So before those checks, every document passes two linear passes here:
//!
//! 1. a lexical scan of the source (before parsing): at most [`MAX_TOKENS`] tokens and
//!    [`MAX_NESTING`] levels of brackets, so the parser's own work is bounded;
//! 2. a walk of the parsed document that computes each fragment's expanded size once
//!    (memoized), refusing documents with more than [`MAX_FRAGMENT_SPREADS`] spreads or
//!    whose operations and fragments expand to more than [`MAX_EXPANDED_SELECTIONS`]
//!    selections, directives and arguments.
//!
//! Both run in `check_request`, which `graphql::executor` calls before handing the
//! request to async-graphql (the parsed document goes with it, so the query is parsed
//! once).

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Positioned, Request, ServerError, ServerResult};

use crate::error::ErrorCode;

/// Tokens a document may have (the standard introspection query has about 300).
pub const MAX_TOKENS: usize = 5_000;
/// Levels of `{`, `(` and `[` a document may nest.
pub const MAX_NESTING: usize = 64;
/// Fragment spreads a document may contain, as written.
pub const MAX_FRAGMENT_SPREADS: usize = 256;
/// Selections, arguments and directives the document may expand to, with every
/// fragment spread replaced by its fragment.
pub const MAX_EXPANDED_SELECTIONS: usize = 10_000;

/// Why a document was refused; `limit` names the limit for `extensions.limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    /// The limit's name, sent as `extensions.limit`.
    pub limit: &'static str,
    /// What the client sees.
    pub message: String,
}

impl LimitError {
    fn new(limit: &'static str, message: String) -> LimitError {
        LimitError { limit, message }
    }

    /// The GraphQL error for a response: BAD_USER_INPUT with the limit's name.
    pub fn into_server_error(self) -> ServerError {
        let mut err = ServerError::new(self.message, None);
        let extensions = err.extensions.get_or_insert_with(Default::default);
        extensions.set("code", ErrorCode::BadUserInput.as_str());
        extensions.set("limit", self.limit);
        err
    }
}

/// The lexical pass: counts tokens and bracket nesting without parsing.
pub fn check_source(source: &str) -> Result<(), LimitError> {
    let bytes = source.as_bytes();
    let (mut i, mut tokens, mut depth) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => i = skip_block_string(bytes, i + 3),
            b'"' => i = skip_string(bytes, i + 1),
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(LimitError::new(
                        "nesting",
                        format!("the document nests deeper than {MAX_NESTING} levels"),
                    ));
                }
                i += 1;
            }
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                i += 1;
                // Names, and numbers with their fraction and exponent.
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'+')) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if tokens > MAX_TOKENS {
            return Err(LimitError::new("tokens", format!("the document has more than {MAX_TOKENS} tokens")));
        }
    }
    Ok(())
}

fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' | b'\r' => return i,
            _ => i += 1,
        }
    }
    i
}

fn skip_block_string(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        if bytes[i..].starts_with(b"\\\"\"\"") {
            i += 4;
        } else if bytes[i..].starts_with(b"\"\"\"") {
            return i + 3;
        } else {
            i += 1;
        }
    }
    i
}

/// The structural pass over a parsed document: linear in its size, whatever its
/// fragments expand to.
pub fn check_document(document: &ExecutableDocument) -> Result<(), LimitError> {
    let mut walk = Walk { document, sizes: HashMap::new(), spreads: 0 };
    let mut total = 0usize;
    for (_, operation) in document.operations.iter() {
        let node = &operation.node;
        let own = node.directives.len() + node.variable_definitions.len();
        total = total.saturating_add(own).saturating_add(walk.selection_set(&node.selection_set));
    }
    // Validation walks every fragment definition on its own as well.
    for name in document.fragments.keys() {
        total = total.saturating_add(walk.fragment(name.as_str()));
    }
    if walk.spreads > MAX_FRAGMENT_SPREADS {
        return Err(LimitError::new(
            "fragmentSpreads",
            format!("the document has more than {MAX_FRAGMENT_SPREADS} fragment spreads"),
        ));
    }
    if total > MAX_EXPANDED_SELECTIONS {
        return Err(LimitError::new(
            "expandedSize",
            format!(
                "the document expands to more than {MAX_EXPANDED_SELECTIONS} selections once its fragments are \
                 spread; use fewer or smaller fragments"
            ),
        ));
    }
    Ok(())
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    /// Expanded size of each fragment; `None` while it is being computed (a cycle,
    /// which validation reports, counts as nothing here).
    sizes: HashMap<&'a str, Option<usize>>,
    /// Spreads as written (each counted once, however often its fragment is used).
    spreads: usize,
}

impl<'a> Walk<'a> {
    fn fragment(&mut self, name: &'a str) -> usize {
        match self.sizes.get(name) {
            Some(size) => return size.unwrap_or(0),
            None => {
                self.sizes.insert(name, None);
            }
        }
        let size = match self.document.fragments.iter().find(|(n, _)| n.as_str() == name) {
            Some((_, fragment)) => {
                let node = &fragment.node;
                node.directives.len().saturating_add(self.selection_set(&node.selection_set))
            }
            None => 0,
        };
        self.sizes.insert(name, Some(size));
        size
    }

    fn selection_set(&mut self, set: &'a Positioned<SelectionSet>) -> usize {
        let mut size = 0usize;
        for selection in &set.node.items {
            let n = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let own = 1 + field.arguments.len() + field.directives.len();
                    own.saturating_add(self.selection_set(&field.selection_set))
                }
                Selection::FragmentSpread(spread) => {
                    self.spreads += 1;
                    1 + spread.node.directives.len() + self.fragment(spread.node.fragment_name.node.as_str())
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    (1 + inline.directives.len()).saturating_add(self.selection_set(&inline.selection_set))
                }
            };
            size = size.saturating_add(n);
        }
        size
    }
}

/// Applies both passes to a request (HTTP and WebSocket alike) before async-graphql
/// validates it; the document stays parsed in the request, so it is parsed once.
pub(crate) fn check_request(request: &mut Request) -> ServerResult<()> {
    check_source(&request.query).map_err(LimitError::into_server_error)?;
    check_document(request.parsed_query()?).map_err(LimitError::into_server_error)?;
    absent_variables_as_null(request)
}

/// A nullable variable without a default that the request leaves out is null (the
/// spec's "absent"). async-graphql's complexity count instead fails with "Variable $f
/// is not defined" when a list's `first` is such a variable, so it is given explicitly.
/// (No resolver here tells absent from null: none takes `MaybeUndefined`.)
fn absent_variables_as_null(request: &mut Request) -> ServerResult<()> {
    let mut optional = Vec::new();
    for (_, operation) in request.parsed_query()?.operations.iter() {
        for definition in &operation.node.variable_definitions {
            let definition = &definition.node;
            if definition.var_type.node.nullable && definition.default_value.is_none() {
                optional.push(definition.name.node.clone());
            }
        }
    }
    for name in optional {
        request.variables.entry(name).or_insert(async_graphql::Value::Null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    /// `fragment F1 on Query { ...F0 ...F0 … }`, `levels` deep, `width` spreads each.
    pub(crate) fn fragment_bomb(levels: usize, width: usize) -> String {
        let mut doc = String::from("query { ...F0 }\nfragment F0 on Query { __typename }\n");
        for level in 1..=levels {
            doc.push_str(&format!("fragment F{level} on Query {{"));
            for _ in 0..width {
                doc.push_str(&format!(" ...F{}", level - 1));
            }
            doc.push_str(" }\n");
        }
        doc.replace("query { ...F0 }", &format!("query {{ ...F{levels} }}"))
    }

    #[test]
    fn the_fragment_bomb_is_refused_in_linear_time() {
        let doc = fragment_bomb(8, 40);
        check_source(&doc).unwrap();
        let started = std::time::Instant::now();
        let err = check_document(&parse_query(&doc).unwrap()).unwrap_err();
        assert_eq!(err.limit, "fragmentSpreads");
        // A chain within the spread cap still expands past the size cap.
        let doc = fragment_bomb(6, 10);
        let err = check_document(&parse_query(&doc).unwrap()).unwrap_err();
        assert_eq!(err.limit, "expandedSize");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn ordinary_documents_pass() {
        let doc = "query Q($id: ID!) { link(id: $id) { id ...L } } fragment L on Link { status app { name } }";
        check_source(doc).unwrap();
        check_document(&parse_query(doc).unwrap()).unwrap();
        let introspection = include_str!("../../tests/it/fixtures/introspection.graphql");
        check_source(introspection).unwrap();
        check_document(&parse_query(introspection).unwrap()).unwrap();
    }

    #[test]
    fn tokens_and_nesting_are_capped() {
        let many = format!("{{ {} }}", "__typename ".repeat(MAX_TOKENS));
        assert_eq!(check_source(&many).unwrap_err().limit, "tokens");
        let deep = format!("{}{}", "{a".repeat(MAX_NESTING + 1), "}".repeat(MAX_NESTING + 1));
        assert_eq!(check_source(&deep).unwrap_err().limit, "nesting");
        // Strings, block strings and comments are one token or none.
        let strings =
            format!("{{ a(x: \"{}\", y: \"\"\"{}\"\"\") }} # {}", "{".repeat(500), "(".repeat(500), "[".repeat(500));
        check_source(&strings).unwrap();
    }
}
