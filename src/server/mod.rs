//! HTTP: the Gen3 URL layout (`/user` fence, `/authz` arborist, `/index`
//! indexd, `/api/v0/submission` sheepdog + peregrine) over one shared [`AppState`].
//! Only this module knows HTTP; errors become responses in one place.

mod arborist;
mod caller;
mod coremetadata;
mod data;
mod drs;
mod error;
mod fence;
mod graphql;
mod indexd;
mod listen;
mod objects;
mod observe;
mod portal;
mod session;
mod sheepdog;
mod throttle;

pub use caller::{
    AnyScope, ArboristAdmin, Caller, CallerPermissions, Credentials, Data, OpenId, PasswordOrToken,
    UserInfo,
};
pub use error::ApiError;
pub use listen::{ConnectionLimits, serve, tls_config};
pub use observe::{RequestNotes, current_request_id, metrics, metrics_router};
pub use throttle::RateLimit;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::auth::TokenService;
use crate::dictionary::Dictionary;
use crate::store::Store;
use crate::validate::Validators;

/// Read-only state shared by every request.
pub struct AppState {
    pub dictionary: Arc<Dictionary>,
    pub validators: Validators,
    pub store: Arc<Store>,
    pub tokens: Arc<TokenService>,
    /// Callers whose tokens were verified, kept while still exact.
    pub callers: Arc<crate::auth::VerifiedCallers>,
    pub schema: async_graphql::dynamic::Schema,
    /// `/getschema`, computed once at start-up and kept as gzip-compressed
    /// JSON text (as a value it took tens of megabytes with the largest
    /// dictionaries; as text, 2.3 MB with bdcat_gtex; compressed, a tenth).
    pub introspection_gzip: axum::body::Bytes,
    /// Time, depth, complexity and answer-size limits of GraphQL requests.
    pub graphql_limits: crate::graphql::Limits,
    /// Password attempts per user name, and per client address.
    pub logins_by_name: RateLimit,
    pub logins_by_address: RateLimit,
    /// Failed key exchanges per client address and claimed user.
    pub failed_exchanges: RateLimit,
    /// Refused submissions logged per caller and project (the rest go to
    /// the server log only, so refusals cannot flood a project's audit trail).
    pub refusal_log: RateLimit,
    /// Prefix of the dids the file index mints (`dg.XXXX/`), or empty.
    pub index_prefix: String,
    /// Record creations, committed together when they arrive together.
    pub index_creates: crate::file_index::CreateQueue,
    /// Where data files' bytes are kept.
    pub objects: crate::storage::Storage,
    pub version: &'static str,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// The file index, minting dids with this commons' prefix.
    pub fn file_index(&self) -> crate::file_index::FileIndex<'_> {
        crate::file_index::FileIndex {
            store: &self.store,
            prefix: &self.index_prefix,
            landing: Some(&self.objects),
        }
    }
}

async fn healthy() -> &'static str {
    "Healthy"
}

async fn not_found() -> ApiError {
    ApiError::new(404, "The requested URL was not found on the server.")
}

/// The largest body a `/user` (fence) request may send.
pub const USER_BODY_BYTES: usize = 64 << 10;

/// The largest accepted request body, for handlers that stream their body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The body limit of a group of routes smaller than the server's, carried
/// by its 413 so the refusal names the limit that refused.
#[derive(Debug, Clone, Copy)]
struct RefusedAbove(usize);

/// `routes`, taking bodies of at most `bytes` (the innermost limit wins).
pub(super) fn limit_body(routes: Router<SharedState>, bytes: usize) -> Router<SharedState> {
    routes
        .layer(axum::middleware::map_response(
            move |mut response: Response| async move {
                if response.status() == StatusCode::PAYLOAD_TOO_LARGE
                    && response.extensions().get::<RefusedAbove>().is_none()
                {
                    response.extensions_mut().insert(RefusedAbove(bytes));
                }
                response
            },
        ))
        .layer(DefaultBodyLimit::max(bytes))
}

/// How the application serves: limits on what one request may send (its
/// size, and how long the body may stall between two pieces: a slow or
/// stuck client gets 408, not a held slot), and whether `/metrics` is one of
/// its routes.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    pub max_body_bytes: usize,
    pub body_idle_timeout: std::time::Duration,
    /// How large one submitted document and one value in it may be.
    pub documents: crate::formats::DocumentLimits,
    /// `/metrics` on this listener (false: on `--metrics-listen` instead).
    pub metrics_route: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 30,
            body_idle_timeout: std::time::Duration::from_secs(60),
            documents: crate::formats::DocumentLimits::default(),
            metrics_route: true,
        }
    }
}

/// The application as served: trailing slashes are ignored, never redirected (API.md G2).
pub fn service(state: SharedState, limits: HttpOptions) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router(state, limits))
}

/// The whole application. Outermost first: the request id, access log and
/// metrics ([`observe`]); compression of what the client accepts; a panic
/// becomes a logged 500 instead of a dropped connection; then limits,
/// session cookies and Gen3's error shape around the routes.
pub fn router(state: SharedState, options: HttpOptions) -> Router {
    with_layers(routes(options), options).with_state(state)
}

/// Every route of the commons.
fn routes(options: HttpOptions) -> Router<SharedState> {
    let submission = sheepdog::routes().merge(graphql::routes());
    let mut routes = Router::new()
        .route("/_status", get(healthy))
        .route("/_ready", get(ready))
        .route("/api/_status", get(healthy))
        .route("/user/_status", get(healthy))
        .route("/api/_version", get(version))
        .merge(portal::routes())
        // Keys, logins and profiles are small: a large body there is abuse.
        .nest(
            "/user",
            limit_body(
                fence::routes()
                    .merge(session::routes())
                    .merge(data::routes()),
                USER_BODY_BYTES,
            ),
        )
        .nest("/authz", arborist::routes())
        .nest(
            "/index",
            limit_body(indexd::routes(), indexd::INDEX_BODY_BYTES),
        )
        .merge(objects::routes())
        .merge(drs::routes())
        .merge(coremetadata::routes())
        .nest("/api/v0/submission", submission.clone())
        .nest("/api/submission", submission);
    if options.metrics_route {
        routes = routes.route("/metrics", get(observe::scrape));
    }
    routes
}

/// The layers every request goes through, around `routes`.
pub fn with_layers(routes: Router<SharedState>, options: HttpOptions) -> Router<SharedState> {
    let max_body_bytes = options.max_body_bytes;
    // Measured from the first request on.
    observe::metrics();
    routes
        .route_layer(axum::middleware::from_fn(observe::note_route))
        .fallback(not_found)
        .layer(axum::middleware::map_response(move |response: Response| {
            json_errors(response, max_body_bytes)
        }))
        .layer(axum::middleware::from_fn(session::cookie_to_bearer))
        .layer(axum::middleware::from_fn(restrictions_settled))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::Extension(BodyLimit(max_body_bytes)))
        .layer(axum::Extension(options.documents))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            options.body_idle_timeout,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(compress_when()),
        )
        .layer(axum::middleware::from_fn(observe::observe))
        .layer(
            tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]),
        )
}

/// Which responses are gzipped (when the client asks): those of a KiB or
/// more, or of unknown length (streamed exports and lists). A small answer
/// (a presigned URL, a record) gains a few bytes and cost a fifth of the
/// request's time to compress. Data files keep their bytes and their
/// `Content-Length`; images and event streams as tower-http's default.
fn compress_when() -> impl tower_http::compression::Predicate {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    SizeAbove::new(1024)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
        .and(NotForContentType::const_new("application/octet-stream"))
}

/// A request that took access away (a revoked key, a logout, a narrower
/// grant) is answered once every server has seen that (SECURITY.md).
async fn restrictions_settled(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    crate::store::restrictions_settled(next.run(request)).await
}

/// A handler that panicked: logged, and answered as any internal error.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(detail, "a request's handler panicked");
    ApiError::new(500, "internal server error").into_response()
}

/// `GET /_ready`: 200 once the database answers and has every migration
/// this binary knows; 503 otherwise (liveness is `/_status`).
async fn ready(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> Result<&'static str, ApiError> {
    let pending = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.store.pending_migrations(),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            503,
            "not ready: the database did not answer within 5 seconds",
        )
    })?
    .map_err(|e| ApiError::new(503, format!("not ready: the database is unavailable ({e})")))?;
    if pending > 0 {
        return Err(ApiError::new(
            503,
            format!("not ready: {pending} database migrations are pending (run `commons migrate`)"),
        ));
    }
    Ok("Ready")
}

async fn version(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> axum::Json<Value> {
    axum::Json(json!({
        "version": state.version,
        "commit": option_env!("COMMONS_COMMIT").unwrap_or("unknown"),
        "dictionary": {"version": state.dictionary.version, "commit": state.dictionary.commit},
    }))
}

/// Errors produced outside the handlers (body too large, wrong method, bad
/// query string) are plain text in axum; give them Gen3's `{"message"}` shape.
async fn json_errors(response: Response, max_body_bytes: usize) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        let message = match response.extensions().get::<RefusedAbove>() {
            Some(RefusedAbove(limit)) => {
                format!("Request body is larger than this endpoint accepts ({limit} bytes)")
            }
            None => format!(
                "Request body is larger than this server accepts ({max_body_bytes} bytes); split the submission into smaller files"
            ),
        };
        return (status, axum::Json(json!({"message": message}))).into_response();
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    // A buffered body whose client stalled (RequestBodyTimeoutLayer).
    if status == StatusCode::REQUEST_TIMEOUT || text.contains("within the designated timeout") {
        let message = "The request body stalled longer than this server waits (--body-idle-timeout); check the connection and send it again";
        return (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(json!({"message": message})),
        )
            .into_response();
    }
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// Parse a request body that must be JSON (API.md G5).
pub fn parse_json_body(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("UnicodeDecodeError: {e}")))?;
    serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("Unable to parse json: {e}")))
}
