//! `/graphiql`: the self-hosted GraphiQL page and its assets.

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

static GRAPHIQL_HTML: &str = include_str!("../../assets/graphiql/index.html");
static GRAPHIQL_JS: &[u8] = include_bytes!("../../assets/graphiql/dist/graphiql.js");
static GRAPHIQL_CSS: &[u8] = include_bytes!("../../assets/graphiql/dist/graphiql.css");

pub(super) async fn page() -> Response {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src data:; \
                 img-src 'self' data:; connect-src 'self' ws: wss:",
            ),
        )],
        Html(GRAPHIQL_HTML),
    )
        .into_response()
}

pub(super) async fn js() -> Response {
    static_asset("text/javascript; charset=utf-8", GRAPHIQL_JS)
}

pub(super) async fn css() -> Response {
    static_asset("text/css; charset=utf-8", GRAPHIQL_CSS)
}

fn static_asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}
