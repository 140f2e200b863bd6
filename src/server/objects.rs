//! The signed object URLs of the local store (`/_objects/<guid>/<file_name>`,
//! handed out by `data.rs`): no token, the signature is the permission. A
//! PUT stores the bytes and fills the blank record with their size and
//! hashes in the same request (a part's PUT, with `uploadId` and
//! `partNumber`, stores the part and answers its MD5 as ETag); a GET or
//! HEAD serves them with `Content-Length`, `Accept-Ranges`/`Range`, `ETag`
//! and the file name.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;

use super::data::{fill_record, record, storage_error};
use super::{ApiError, SharedState};
use crate::file_index::is_blank;
use crate::storage::{Bucket, LocalStore, MAX_OBJECT_BYTES};
use crate::store::now_unix;

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
    #[serde(rename = "uploadId")]
    upload_id: Option<String>,
    #[serde(rename = "partNumber")]
    part_number: Option<u16>,
}

/// The local store, which these URLs are for.
fn local(state: &SharedState) -> Result<&LocalStore, ApiError> {
    state
        .objects
        .local()
        .ok_or_else(|| ApiError::new(404, "this commons keeps no objects on local disk"))
}

/// The signature of a request to `key` (its query), checked for `method`;
/// the part it is for, if any.
fn check_signature(
    store: &LocalStore,
    method: &str,
    key: &str,
    query: Option<String>,
) -> Result<Option<(String, u16)>, ApiError> {
    let signature: Option<Signature> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).ok();
    let refused = || ApiError::forbidden("This URL's signature is invalid or has expired.");
    let s = signature.ok_or_else(refused)?;
    let part = match (s.upload_id, s.part_number) {
        (Some(upload_id), Some(number)) => Some((upload_id, number)),
        (None, None) => None,
        _ => return Err(refused()),
    };
    let signed_part = part.as_ref().map(|(id, n)| (id.as_str(), *n));
    if store.verify(method, key, signed_part, s.expires, &s.sig, now_unix()) {
        Ok(part)
    } else {
        Err(refused())
    }
}

/// The guid and file name of an object key.
fn split_key(key: &str) -> Result<(&str, &str), ApiError> {
    key.rsplit_once('/')
        .ok_or_else(|| ApiError::new(404, "no such object"))
}

/// `PUT /_objects/<guid>/<file_name>`: store the bytes and fill the record,
/// or store one part of a multipart upload.
async fn put_object(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    RawQuery(signature): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let store = local(&state)?;
    let part = check_signature(store, "PUT", &key, signature)?;
    let etag = match part {
        Some((upload_id, number)) => store
            .put_part(&key, &upload_id, number, body.into_data_stream())
            .await
            .map_err(storage_error)?,
        None => put_whole(&state, store, &key, body).await?,
    };
    let etag = HeaderValue::from_str(&format!("\"{etag}\"")).expect("hex is a valid header");
    Ok(([(header::ETAG, etag)], StatusCode::OK).into_response())
}

/// Store a whole object and fill its blank record: its MD5.
async fn put_whole(
    state: &SharedState,
    store: &LocalStore,
    key: &str,
    body: Body,
) -> Result<String, ApiError> {
    let (guid, _) = split_key(key)?;
    let blank = record(state, guid).await?;
    if !is_blank(&blank) {
        return Err(ApiError::new(
            409,
            format!("File {guid} already has its content; upload to a new record."),
        ));
    }
    let stored = store
        .put(key, body.into_data_stream(), MAX_OBJECT_BYTES)
        .await
        .map_err(storage_error)?;
    let bucket = state
        .objects
        .buckets()
        .iter()
        .find(|b| matches!(b, Bucket::Local(_)))
        .expect("the local store is a bucket");
    fill_record(state, bucket, &blank, key, &stored).await?;
    Ok(stored.md5)
}

/// `GET|HEAD /_objects/<guid>/<file_name>`: the bytes, with `Range`.
async fn get_object(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    RawQuery(signature): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let store = local(&state)?;
    if check_signature(store, "GET", &key, signature)?.is_some() {
        return Err(ApiError::forbidden(
            "This URL's signature is invalid or has expired.",
        ));
    }
    let (guid, file_name) = split_key(&key)?;
    let path = store
        .path(&key)
        .filter(|p| p.is_file())
        .ok_or_else(|| ApiError::new(404, "no such object"))?;
    let md5 = record(&state, guid)
        .await
        .ok()
        .and_then(|r| r.hashes.get("md5").cloned());
    fn failed(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "serving an object failed");
        ApiError::new(500, "internal server error")
    }
    let mut response = if is_plain_get(&request) {
        whole_object(&path).map_err(failed)?
    } else {
        // tower-http's ServeFile answers Range (206, 416), HEAD, conditions
        // and the lengths.
        tower_http::services::ServeFile::new(path)
            .with_buf_chunk_size(256 << 10)
            .oneshot(request)
            .await
            .map_err(failed)?
            .map(Body::new)
    };
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

/// A GET of the whole object, without a range or a condition: most
/// downloads.
fn is_plain_get(request: &Request) -> bool {
    let headers = request.headers();
    request.method() == axum::http::Method::GET
        && ![
            header::RANGE,
            header::IF_RANGE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
        ]
        .iter()
        .any(|name| headers.contains_key(name))
}

/// Bytes handed to the connection at a time from a mapped object.
const MAPPED_PIECE: usize = 4 << 20;

/// A whole object: its file mapped into memory and handed to the
/// connection in slices, so its bytes go from the page cache to the socket
/// in one copy, on the connection's thread. Read through a buffer instead
/// (ServeFile: each piece read on the blocking pool, then copied again),
/// those copies and hand-overs were half of the server's time in a 2 GiB
/// download. Mapping is sound because an object never changes once stored:
/// it is written aside and renamed into place, and a deletion unlinks the
/// name while a mapping keeps its pages.
fn whole_object(path: &std::path::Path) -> std::io::Result<Response> {
    let file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    let length = metadata.len();
    let body = if length == 0 {
        Body::empty()
    } else {
        // SAFETY: the file is never written or truncated once stored (above).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        // Read ahead further as pages are touched in order.
        map.advise(memmap2::Advice::Sequential)?;
        let bytes = bytes::Bytes::from_owner(map);
        let pieces = (0..bytes.len()).step_by(MAPPED_PIECE).map(move |start| {
            let end = (start + MAPPED_PIECE).min(bytes.len());
            Ok::<_, std::convert::Infallible>(bytes.slice(start..end))
        });
        Body::from_stream(futures::stream::iter(pieces))
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(modified) = metadata.modified() {
        let date = httpdate::fmt_http_date(modified);
        if let Ok(value) = HeaderValue::from_str(&date) {
            headers.insert(header::LAST_MODIFIED, value);
        }
    }
    Ok(response)
}
