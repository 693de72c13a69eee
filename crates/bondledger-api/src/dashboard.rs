//! The dashboard: static files built into the binary, served at `/` and
//! `/assets/...` without a token. The page holds no data; it signs in with
//! a token kept in the browser's session and calls the API like any client.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Scripts, styles, images and connections from this server only; no
/// framing, no inline script.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The files under `assets/`: name, media type, content.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "vendor/chart.umd.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/chart.umd.js"),
    ),
    (
        "vendor/chart.js.LICENSE.md",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/chart.js.LICENSE.md"),
    ),
];

const INDEX: &[u8] = include_bytes!("../assets/index.html");

fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The page.
pub async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

/// One of the page's files.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => with_headers(content_type, body),
        None => ApiError::NotFound(format!("no asset {name}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_assets_that_are_served() {
        let page = String::from_utf8_lossy(INDEX);
        for part in page.split("/assets/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                ASSETS.iter().any(|(file, _, _)| *file == name),
                "{name} is not served"
            );
        }
    }
}
