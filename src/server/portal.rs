//! The web portal: a single page (`/`, and `/files/<guid>` where Gen3's
//! portal has its file pages) and its assets (`/portal/...`), embedded in
//! the binary so the portal works offline and needs no build step. The page
//! talks to the same API as every other client, and PUTs uploads to the
//! buckets' presigned URLs, so their origins are in its content policy.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use super::{ApiError, SharedState};

#[derive(Embed)]
#[folder = "portal/static"]
struct Assets;

/// Only the page's own files: no inline scripts, no other origins, except
/// that uploads go to the buckets (`connect-src`).
fn content_security_policy(state: &SharedState) -> String {
    let buckets: Vec<String> = state
        .objects
        .buckets()
        .iter()
        .filter_map(crate::storage::Bucket::origin)
        .collect();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'{}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        buckets.iter().map(|o| format!(" {o}")).collect::<String>()
    )
}

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(index))
        .route("/files/{*guid}", get(index))
        .route("/portal/{*path}", get(asset))
}

async fn index(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    serve(&state, "index.html", &headers).unwrap_or_else(|e| e.into_response())
}

async fn asset(
    State(state): State<SharedState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&state, &path, &headers).unwrap_or_else(|e| e.into_response())
}

/// One embedded file, revalidated by its content hash (ETag).
fn serve(state: &SharedState, path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let file = Assets::get(path)
        .ok_or_else(|| ApiError::new(404, "The requested URL was not found on the server."))?;
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(state),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v == HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("")));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        common,
        [(header::CONTENT_TYPE, file.metadata.mimetype().to_string())],
        file.data.into_owned(),
    )
        .into_response())
}
