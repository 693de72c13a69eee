//! The HTTP API of interchange §4: movements appended with the rules,
//! refusals and all-or-nothing batches of `import`; manuals, the timeline
//! and the audit read; every request under `/api/v1` behind a bearer token.
//!
//! This crate turns requests into calls on the ledger and answers into JSON.
//! It never writes SQL (the store does) and never holds a rule (the domain
//! decides; the ledger says who may do what).

mod auth;
mod dashboard;
mod docs;
mod error;
mod live;
mod manuals;
mod movements;
mod query;
mod replica;
mod tokens;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bondledger_ledger::Ledger;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use live::MAX_LIVE_STREAMS;
pub use movements::parse_batch as parse_movements_body;
pub use query::DEFAULT_PAGE_ENTRIES;

/// The largest request body taken.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// The most movements one request appends.
pub const MAX_BATCH_MOVEMENTS: usize = 10_000;
/// How long a request may take before it is answered 503. An append it was
/// making goes on to its end; only the answer is lost (its ids make a retry
/// harmless).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests handled at once; more wait their turn.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub ledger: Ledger,
    /// Appends in flight: a shutdown waits for them.
    pub appends: TaskTracker,
    pub openapi: Arc<Value>,
    /// Live-update streams open now.
    pub live_streams: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the primary's log stood after each token's last append, when
    /// reads go to a replica.
    pub writes: replica::Writes,
}

/// Every documented route, with its part of the OpenAPI document.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(movements::append_movements))
        .routes(routes!(manuals::list_manuals))
        .routes(routes!(manuals::balance))
        .routes(routes!(manuals::verification))
        .routes(routes!(manuals::history))
        .routes(routes!(views::timeline))
        .routes(routes!(views::deadlines))
        .routes(routes!(views::audit))
        .routes(routes!(live::events))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(docs::openapi_json))
        .routes(routes!(docs::healthz))
}

/// The OpenAPI document of the API, generated from its routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().split_for_parts().1
}

/// What one server takes at once and how long it gives a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request not answered by then is answered 503 `timeout` (an append
    /// it began still finishes: its ids make a retry harmless).
    pub request_timeout: Duration,
    /// Requests served at once; more wait their turn.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: REQUEST_TIMEOUT,
            max_concurrent_requests: MAX_CONCURRENT_REQUESTS,
        }
    }
}

/// The API's routes over `ledger`, with the default limits and request logs.
pub fn router(ledger: Ledger) -> Router {
    app(ledger, TaskTracker::new(), Limits::default())
}

/// As [`router`], with these limits.
pub fn router_with_limits(ledger: Ledger, limits: Limits) -> Router {
    app(ledger, TaskTracker::new(), limits)
}

fn app(ledger: Ledger, appends: TaskTracker, limits: Limits) -> Router {
    let (routes, document) = documented_routes().split_for_parts();
    let openapi = serde_json::to_value(&document).unwrap_or_else(|error| {
        tracing::error!(%error, "the OpenAPI document cannot be written");
        Value::Null
    });
    let state = AppState {
        ledger,
        appends,
        openapi: Arc::new(openapi),
        live_streams: Arc::default(),
        writes: replica::Writes::default(),
    };
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            time_limit,
        ))
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_requests.max(1),
        ));
    routes
        .route("/", axum::routing::get(dashboard::index))
        .route("/assets/{*name}", axum::routing::get(dashboard::asset))
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            replica::read_headers,
        ))
        .with_state(state)
        .layer(layers)
}

/// The span of a request's log lines: method, path and request id, never
/// the query (a sign-in address carries a token there); the token's id is
/// added once it is known.
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "http.request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        token = tracing::field::Empty,
    )
}

async fn time_limit(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "the request took longer than {:.3} s",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}

async fn no_such_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not take {method}", uri.path()))
}

/// Serves the API on `listen` until `shutdown` completes; then takes no new
/// request, lets those in flight finish, and waits for every append begun.
pub async fn serve(
    ledger: Ledger,
    listen: SocketAddr,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    serve_listener(ledger, listener, limits, shutdown).await
}

/// As [`serve`], on a listener already bound (its port may have been 0).
pub async fn serve_listener(
    ledger: Ledger,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let appends = TaskTracker::new();
    let keeper = ledger
        .has_replica()
        .then(|| tokio::spawn(replica::keep_read_models(ledger.clone())));
    let app = app(ledger, appends.clone(), limits);
    tracing::info!(address = %listener.local_addr()?, "serving the API");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    appends.close();
    if !appends.is_empty() {
        tracing::info!(appends = appends.len(), "waiting for appends in flight");
    }
    appends.wait().await;
    if let Some(keeper) = keeper {
        keeper.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_route_and_the_bearer_scheme() {
        let document = openapi();
        let paths: Vec<&str> = document.paths.paths.keys().map(String::as_str).collect();
        for path in [
            "/api/v1/movements",
            "/api/v1/manuals",
            "/api/v1/manuals/{manual}/balance",
            "/api/v1/manuals/{manual}/verification",
            "/api/v1/manuals/{manual}/history",
            "/api/v1/timeline",
            "/api/v1/audit",
            "/api/v1/deadlines",
            "/api/v1/events",
            "/api/v1/openapi.json",
            "/healthz",
        ] {
            assert!(paths.contains(&path), "{path} is not documented: {paths:?}");
        }
        let schemes = document
            .components
            .as_ref()
            .map(|c| c.security_schemes.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!(schemes, vec!["bearer".to_owned()]);
    }
}
