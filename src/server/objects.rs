//! The signed object URLs of the local store (`/_objects/<guid>/<file_name>`,
//! handed out by `data.rs`): no token, the signature is the permission. A
//! PUT stores the bytes and fills the blank record with their size and
//! hashes in the same request; a GET or HEAD serves them with
//! `Content-Length`, `Accept-Ranges`/`Range`, `ETag` and the file name.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;

use super::data::{index_error, record, storage_error};
use super::{ApiError, SharedState};
use crate::store::now_unix;

/// The largest object one PUT may store (S3's limit for a single PUT).
pub const MAX_OBJECT_BYTES: u64 = 5 << 30;

pub fn routes() -> Router<SharedState> {
    Router::new().route(
        "/_objects/{*key}",
        get(get_object)
            .put(put_object)
            .layer(axum::extract::DefaultBodyLimit::disable()),
    )
}

#[derive(serde::Deserialize)]
struct Signature {
    expires: i64,
    sig: String,
}

/// The signature of a request to `key` (its query), checked for `method`.
fn check_signature(
    state: &SharedState,
    method: &str,
    key: &str,
    query: Option<String>,
) -> Result<(), ApiError> {
    let signature: Option<Signature> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).ok();
    match signature {
        Some(s)
            if state
                .objects
                .verify(method, key, s.expires, &s.sig, now_unix()) =>
        {
            Ok(())
        }
        _ => Err(ApiError::forbidden(
            "This URL's signature is invalid or has expired.",
        )),
    }
}

/// The guid and file name of an object key.
fn split_key(key: &str) -> Result<(&str, &str), ApiError> {
    key.rsplit_once('/')
        .ok_or_else(|| ApiError::new(404, "no such object"))
}

/// `PUT /_objects/<guid>/<file_name>`: store the bytes and fill the record.
async fn put_object(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    RawQuery(signature): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    check_signature(&state, "PUT", &key, signature)?;
    let (guid, file_name) = split_key(&key)?;
    let stored_record = record(&state, guid).await?;
    if stored_record.size.is_some() || !stored_record.hashes.is_empty() {
        return Err(ApiError::new(
            409,
            format!("File {guid} already has its content; upload to a new record."),
        ));
    }
    let stored = state
        .objects
        .put(&key, body.into_data_stream(), MAX_OBJECT_BYTES)
        .await
        .map_err(storage_error)?;
    let mut filled = stored_record.clone();
    filled.size = Some(stored.size as i64);
    filled.hashes = [
        ("md5".to_string(), stored.md5.clone()),
        ("sha256".to_string(), stored.sha256.clone()),
    ]
    .into_iter()
    .collect();
    filled.urls = vec![state.objects.url_of(&key)];
    if filled.file_name.is_none() {
        filled.file_name = Some(file_name.to_string());
    }
    if let Err(e) = state.file_index().replace(filled, &stored_record.rev).await {
        // The record changed meanwhile (another PUT, a delete): the bytes go.
        let _ = state.objects.delete(&key).await;
        return Err(index_error(e));
    }
    let etag =
        HeaderValue::from_str(&format!("\"{}\"", stored.md5)).expect("hex is a valid header");
    Ok(([(header::ETAG, etag)], StatusCode::OK).into_response())
}

/// `GET|HEAD /_objects/<guid>/<file_name>`: the bytes, with `Range`.
async fn get_object(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    RawQuery(signature): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    check_signature(&state, "GET", &key, signature)?;
    let (guid, file_name) = split_key(&key)?;
    let path = state
        .objects
        .path(&key)
        .filter(|p| p.is_file())
        .ok_or_else(|| ApiError::new(404, "no such object"))?;
    let md5 = record(&state, guid)
        .await
        .ok()
        .and_then(|r| r.hashes.get("md5").cloned());
    // tower-http's ServeFile answers Range (206, 416), HEAD and the lengths.
    let served = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "serving an object failed");
            ApiError::new(500, "internal server error")
        })?;
    let mut response = served.map(Body::new);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file_name.replace(['"', '\\'], "_")
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Some(md5) = md5
        && let Ok(value) = HeaderValue::from_str(&format!("\"{md5}\""))
    {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
