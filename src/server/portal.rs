//! The web portal: a single page (`/`) and its assets (`/portal/...`),
//! embedded in the binary so the portal works offline and needs no build
//! step. The page talks to the same API as every other client.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use super::{ApiError, SharedState};

#[derive(Embed)]
#[folder = "portal/static"]
struct Assets;

/// Only the page's own files: no inline scripts, no other origins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(index))
        .route("/portal/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(|e| e.into_response())
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers).unwrap_or_else(|e| e.into_response())
}

/// One embedded file, revalidated by its content hash (ETag).
fn serve(path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let file = Assets::get(path)
        .ok_or_else(|| ApiError::new(404, "The requested URL was not found on the server."))?;
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY.to_string(),
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
