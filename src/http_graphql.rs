//! GraphQL over HTTP (the GraphQL Foundation's specification): which media type a
//! response uses (by the request's `Accept`), how request parameters are read from a
//! POST body or a GET query string, and which status code a response gets.
//!
//! - `Accept: application/graphql-response+json` gets that media type, and a request
//!   error (the document did not parse or validate, a variable did not coerce: no
//!   `data` at all) answers 400 without a `data` entry.
//! - `application/json`, `*/*` or no `Accept` (legacy clients) get `application/json`,
//!   and every well-formed GraphQL request answers 200.
//! - Anything else is 406. A POST must say `Content-Type: application/json` (415
//!   otherwise, which also keeps simple cross-site form posts out).

use std::collections::BTreeMap;

use async_graphql::{ServerError, Variables};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::ErrorCode;

/// The media types a GraphQL response can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/graphql-response+json`: status codes carry request errors.
    GraphqlResponseJson,
    /// `application/json`: the legacy type; GraphQL results are always 200.
    Json,
}

impl MediaType {
    fn content_type(self) -> &'static str {
        match self {
            MediaType::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }
}

/// Picks the response media type from `Accept` (highest `q` first, then the order
/// given); `None` when the client accepts neither.
pub fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let accept: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    let ranges: Vec<(&str, f32)> = accept
        .iter()
        .flat_map(|value| value.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!media.is_empty()).then_some((media, q))
        })
        .collect();
    if ranges.is_empty() {
        return Some(MediaType::Json);
    }
    let mut ranked: Vec<(usize, &(&str, f32))> = ranges.iter().enumerate().collect();
    ranked.sort_by(|(i, (_, a)), (j, (_, b))| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal).then(i.cmp(j)));
    ranked.into_iter().filter(|(_, (_, q))| *q > 0.0).find_map(|(_, (media, _))| {
        match media.to_ascii_lowercase().as_str() {
            "application/graphql-response+json" => Some(MediaType::GraphqlResponseJson),
            "application/json" | "application/*" | "*/*" => Some(MediaType::Json),
            _ => None,
        }
    })
}

/// Whether a POST's `Content-Type` is JSON in UTF-8 (the only body curbpay reads).
pub fn is_json_body(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| match param.trim().split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
            charset.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

/// Builds an async-graphql request from the parameters of a POST body (a JSON object)
/// or a GET query string (where `variables` and `extensions` are JSON text). A bad
/// parameter is a message for a 400.
pub fn request_from_params(
    params: serde_json::Map<String, Value>,
    from_query_string: bool,
) -> Result<async_graphql::Request, String> {
    let query = match params.get("query") {
        Some(Value::String(query)) => query.clone(),
        Some(_) => return Err("the query parameter must be a string".to_owned()),
        None => return Err("the request has no query parameter".to_owned()),
    };
    let operation_name = match params.get("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if from_query_string && name.is_empty() => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err("the operationName parameter must be a string".to_owned()),
    };
    let map = |name: &str| -> Result<Option<serde_json::Map<String, Value>>, String> {
        let value = match params.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(text)) if from_query_string => {
                if text.is_empty() {
                    return Ok(None);
                }
                serde_json::from_str::<Value>(text).map_err(|_| format!("the {name} parameter is not valid JSON"))?
            }
            Some(value) => value.clone(),
        };
        match value {
            Value::Object(map) => Ok(Some(map)),
            Value::Null => Ok(None),
            _ => Err(format!("the {name} parameter must be a map")),
        }
    };
    let variables = map("variables")?;
    // Checked for shape; curbpay uses no request extensions (no persisted queries).
    map("extensions")?;
    let mut request = async_graphql::Request::new(query);
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = variables {
        request = request.variables(Variables::from_json(Value::Object(variables)));
    }
    Ok(request)
}

/// A response body as the spec lays it out: `data` unless the request failed before
/// execution, then `errors` and `extensions` when there are any.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, async_graphql::Value>,
}

/// The HTTP response for a GraphQL result.
pub fn response(media: MediaType, response: async_graphql::Response) -> Response {
    // Before execution (parse, validation, coercion, limits) errors have no path and
    // there is no `data` at all.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let status = match media {
        MediaType::GraphqlResponseJson if request_error => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    // Written straight from the response (no `serde_json::Value` in between): object
    // fields keep the order the query selected them in, as the spec asks.
    let body = Body {
        data: (!request_error).then_some(&response.data),
        errors: &response.errors,
        extensions: &response.extensions,
    };
    let mut bytes = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut bytes, &body).is_err() {
        bytes.clear();
    }
    let mut http =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static(media.content_type()))], bytes).into_response();
    for (name, value) in response.http_headers.iter() {
        http.headers_mut().append(name.clone(), value.clone());
    }
    http
}

/// A GraphQL-shaped error for requests that never reach the executor.
pub fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let mut error = ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", code.as_str());
    let body = serde_json::to_vec(&serde_json::json!({ "errors": [error] })).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(MediaType::Json.content_type()))], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(MediaType::Json));
        assert_eq!(negotiate(&accept("application/json")), Some(MediaType::Json));
        assert_eq!(negotiate(&accept("*/*")), Some(MediaType::Json));
        assert_eq!(negotiate(&accept("application/graphql-response+json")), Some(MediaType::GraphqlResponseJson));
        assert_eq!(
            negotiate(&accept("application/graphql-response+json, application/json;q=0.9")),
            Some(MediaType::GraphqlResponseJson)
        );
        assert_eq!(
            negotiate(&accept("application/json;q=0.5, application/graphql-response+json")),
            Some(MediaType::GraphqlResponseJson)
        );
        assert_eq!(negotiate(&accept("application/json, application/graphql-response+json")), Some(MediaType::Json));
        assert_eq!(negotiate(&accept("text/html")), None);
        assert_eq!(negotiate(&accept("application/json;q=0")), None);
    }

    #[test]
    fn json_content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json_body(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=UTF-8"));
        assert!(!with("application/json; charset=latin1"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json_body(&HeaderMap::new()));
    }

    #[test]
    fn parameters_are_type_checked() {
        let params = |v: Value| v.as_object().unwrap().clone();
        assert!(request_from_params(params(serde_json::json!({ "query": "{ a }" })), false).is_ok());
        assert!(request_from_params(params(serde_json::json!({ "qeury": "{ a }" })), false).is_err());
        assert!(request_from_params(params(serde_json::json!({ "query": 1 })), false).is_err());
        assert!(request_from_params(params(serde_json::json!({ "query": "{ a }", "variables": "x" })), false).is_err());
        assert!(
            request_from_params(
                params(serde_json::json!({ "query": "{ a }", "variables": null, "operationName": null })),
                false
            )
            .is_ok()
        );
        assert!(
            request_from_params(params(serde_json::json!({ "query": "{ a }", "variables": "{\"x\":1}" })), true)
                .is_ok()
        );
        assert!(
            request_from_params(params(serde_json::json!({ "query": "{ a }", "operationName": 5 })), false).is_err()
        );
    }
}
