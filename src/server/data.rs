//! fence's data endpoints (`/user/data/...`, FILES.md 1.5 and F2) over the
//! local object store, and the signed object URLs they hand out
//! (`/_objects/<guid>/<file_name>`). An upload makes a blank index record;
//! the signed PUT stores the bytes and fills the record with their size,
//! MD5 and SHA-256 in the same request, so a record is never seen half
//! indexed. Authorization follows fence: `read-storage` on a record's
//! `authz` to download, `write-storage` to upload to it, `delete` to delete
//! it; without `authz`, the uploader (and, to download, `acl: ["*"]`).
//! The signed URLs themselves are served by `objects.rs`.

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, Caller, SharedState, parse_json_body};
use crate::auth::Principal;
use crate::file_index::{IndexError, UPLOAD_RESOURCE};
use crate::storage::StorageError;
use crate::store::{IndexRecord, now_unix};

/// Longest a signed URL lives, and its default life (fence's MAX_PRESIGNED_URL_TTL).
pub const MAX_EXPIRES_IN: i64 = 3600;

/// URL schemes a download may ask for (fence's, and `file` for this store).
const PROTOCOLS: [&str; 7] = ["s3", "http", "ftp", "https", "gs", "az", "file"];

/// `/user/data/...`, nested under `/user`.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/data/upload", post(upload))
        .route("/data/upload/{*guid}", get(upload_url))
        .route("/data/download/{*guid}", get(download))
        .route("/data/{*guid}", axum::routing::delete(delete_file))
}

/// A record, or fence's 404.
pub(super) async fn record(state: &SharedState, guid: &str) -> Result<IndexRecord, ApiError> {
    state.file_index().get(guid).await.map_err(|e| match e {
        IndexError::NotFound => {
            ApiError::new(404, format!("No indexed document found with id {guid}"))
        }
        other => index_error(other),
    })
}

pub(super) fn index_error(e: IndexError) -> ApiError {
    match e {
        IndexError::Store(store) => store.into(),
        IndexError::NotFound => ApiError::new(404, "not found"),
        IndexError::Conflict(m) => ApiError::new(409, m),
        IndexError::Invalid(m) => ApiError::bad_request(m),
        IndexError::Forbidden(m) => ApiError::new(403, m),
    }
}

/// `expires_in`: a positive integer, at most [`MAX_EXPIRES_IN`].
fn expires_in(value: Option<&Value>) -> Result<i64, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(MAX_EXPIRES_IN);
    };
    let seconds = value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            ApiError::bad_request(format!(
                "Requested expiry must be a positive integer; instead got {shown}"
            ))
        })?;
    Ok(seconds.min(MAX_EXPIRES_IN))
}

/// Whether `principal` may `method` (service fence) on every one of `authz`.
fn allows_all(principal: &Principal, authz: &[String], method: &str) -> bool {
    authz
        .iter()
        .all(|resource| principal.permissions.allows(resource, "fence", method))
}

fn is_uploader(principal: &Principal, record: &IndexRecord) -> bool {
    record.uploader.as_deref() == Some(principal.user.username.as_str())
}

/// The object key of a record's file: `<guid>/<file_name>`.
fn object_key(guid: &str, file_name: &str) -> Result<String, ApiError> {
    if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".." {
        return Err(ApiError::bad_request(format!(
            "file_name {file_name:?} cannot name an object: it must be a name without '/'"
        )));
    }
    Ok(format!("{guid}/{file_name}"))
}

/// `POST /user/data/upload`: a blank record and a URL to PUT its bytes to.
async fn upload(
    State(state): State<SharedState>,
    Caller(principal, _): Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json_body(&body)?;
    let file_name = body
        .get("file_name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("missing required argument 'file_name'"))?;
    let expires = expires_in(body.get("expires_in"))?;
    let authz: Vec<String> = match body.get("authz") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_request("authz must be a list of resource paths"))?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "authz must be a list of resource paths",
            ));
        }
    };
    if authz.is_empty() {
        if !principal
            .permissions
            .allows(UPLOAD_RESOURCE, "fence", "file_upload")
        {
            return Err(ApiError::new(
                403,
                format!(
                    "You do not have permission to upload data files: (file_upload) on {UPLOAD_RESOURCE} for service fence"
                ),
            ));
        }
    } else if !(allows_all(&principal, &authz, "create")
        && allows_all(&principal, &authz, "write-storage"))
    {
        return Err(ApiError::new(
            403,
            format!(
                "You do not have permission to upload to {}: (create, write-storage) for service fence",
                authz.join(", ")
            ),
        ));
    }
    let mut blank =
        json!({"uploader": principal.user.username, "file_name": file_name, "authz": authz});
    if let Some(guid) = body.get("guid").filter(|g| !g.is_null()) {
        blank["did"] = guid.clone();
    }
    let index = state.file_index();
    let mut record = index.blank_record(&blank, None).map_err(index_error)?;
    if !authz.is_empty() {
        // Files with authz belong to their resources, not to the uploader.
        record.uploader = None;
    }
    let key = object_key(&record.did, file_name)?;
    index
        .insert(vec![(record.clone(), Vec::new())])
        .await
        .map_err(index_error)?;
    let url = state.objects.signed_url("PUT", &key, now_unix() + expires);
    Ok((
        StatusCode::CREATED,
        Json(json!({"guid": record.did, "url": url})),
    )
        .into_response())
}

/// `GET /user/data/upload/<guid>`: a URL to PUT the bytes of an existing record.
async fn upload_url(
    State(state): State<SharedState>,
    Path(guid): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    Caller(principal, _): Caller,
) -> Result<Json<Value>, ApiError> {
    let record = record(&state, &guid).await?;
    let allowed = if record.authz.is_empty() {
        is_uploader(&principal, &record)
    } else {
        allows_all(&principal, &record.authz, "write-storage")
    };
    if !allowed {
        return Err(ApiError::new(
            403,
            "You do not have permission to upload the content of this file.",
        ));
    }
    let file_name = query
        .get("file_name")
        .cloned()
        .or_else(|| record.file_name.clone())
        .ok_or_else(|| ApiError::bad_request("missing required argument 'file_name'"))?;
    let expires = expires_in(query.get("expires_in").map(|v| json!(v)).as_ref())?;
    let key = object_key(&record.did, &file_name)?;
    Ok(Json(json!({
        "url": state.objects.signed_url("PUT", &key, now_unix() + expires)
    })))
}

/// Whether the caller may read `record`'s bytes (fence's download rules).
fn may_download(principal: Option<&Principal>, record: &IndexRecord) -> Result<(), ApiError> {
    let public = record.authz.is_empty() && record.acl.iter().any(|a| a == "*");
    if public {
        return Ok(());
    }
    let Some(principal) = principal else {
        return Err(ApiError::unauthorized(
            "You must be logged in to download this file.",
        ));
    };
    let allowed = if record.authz.is_empty() {
        is_uploader(principal, record)
    } else {
        allows_all(principal, &record.authz, "read-storage")
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            "You don't have access permission on this file",
        ))
    }
}

/// `GET /user/data/download/<guid>`: a URL to read the file from.
async fn download(
    State(state): State<SharedState>,
    Path(guid): Path<String>,
    RawQuery(query): RawQuery,
    caller: Result<Caller, ApiError>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let param = |name: &str| pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    let expires = expires_in(param("expires_in").map(|v| json!(v)).as_ref())?;
    let protocol = param("protocol").filter(|p| !p.is_empty());
    let principal = optional_caller(caller, &headers)?;
    let signed = signed_download_url(
        &state,
        principal.as_ref(),
        &guid,
        protocol.map(String::as_str),
        expires,
    )
    .await?;
    if param("redirect").is_some() {
        // 302, as fence's redirect.
        return Ok((StatusCode::FOUND, [(header::LOCATION, signed)]).into_response());
    }
    Ok(Json(json!({"url": signed})).into_response())
}

/// The caller when the request carries a token: a missing token is
/// anonymous (public files), a bad one is refused.
pub(super) fn optional_caller(
    caller: Result<Caller, ApiError>,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    match caller {
        Ok(Caller(principal, _)) => Ok(Some(principal)),
        Err(_) if !headers.contains_key(header::AUTHORIZATION) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A URL to read `guid`'s bytes from, valid `expires` seconds, under
/// fence's download rules (also DRS access URLs).
pub(super) async fn signed_download_url(
    state: &SharedState,
    principal: Option<&Principal>,
    guid: &str,
    protocol: Option<&str>,
    expires: i64,
) -> Result<String, ApiError> {
    if let Some(protocol) = protocol
        && !PROTOCOLS.contains(&protocol)
    {
        return Err(ApiError::bad_request(format!(
            "The specified protocol {protocol} is not supported"
        )));
    }
    let record = record(state, guid).await?;
    may_download(principal, &record)?;
    if record.urls.is_empty() {
        return Err(ApiError::new(404, "Can't find any file locations."));
    }
    let url = match protocol {
        None => record.urls[0].as_str(),
        Some(protocol) => record
            .urls
            .iter()
            .find(|u| {
                let scheme = u.split_once("://").map_or("", |(s, _)| s);
                scheme == protocol || (protocol == "http" && scheme == "https")
            })
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    format!(
                        "File {guid} does not have a location with specified protocol {protocol}."
                    ),
                )
            })?,
    };
    if let Some(key) = state.objects.key_of(url) {
        Ok(state.objects.signed_url("GET", key, now_unix() + expires))
    } else if ["http://", "https://", "ftp://"]
        .iter()
        .any(|p| url.starts_with(p))
    {
        Ok(url.to_string())
    } else {
        Err(ApiError::new(
            404,
            format!("File {guid} is stored at {url}, which this commons does not serve."),
        ))
    }
}

/// `DELETE /user/data/<guid>`: the stored objects, then the record.
async fn delete_file(
    State(state): State<SharedState>,
    Path(guid): Path<String>,
    Caller(principal, _): Caller,
) -> Result<StatusCode, ApiError> {
    let record = record(&state, &guid).await?;
    if record.authz.is_empty() {
        if !is_uploader(&principal, &record) {
            return Err(ApiError::new(
                403,
                "You cannot delete this file because the uploader field indicates it does not belong to you.",
            ));
        }
    } else if !allows_all(&principal, &record.authz, "delete") {
        return Err(ApiError::new(
            403,
            "You do not have arborist permissions to delete this file.",
        ));
    }
    for url in &record.urls {
        if let Some(key) = state.objects.key_of(url) {
            state.objects.delete(key).await.map_err(storage_error)?;
        }
    }
    state
        .file_index()
        .delete(&record, &record.rev)
        .await
        .map_err(index_error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::TooLarge(_) => ApiError::new(413, e.to_string()),
        StorageError::Incomplete(_) => ApiError::bad_request(e.to_string()),
        StorageError::Io(io) => {
            tracing::error!(error = %io, "object storage failed");
            if io.kind() == std::io::ErrorKind::StorageFull {
                ApiError::new(507, "The object store is full; nothing was stored.")
            } else {
                ApiError::new(500, "internal server error")
            }
        }
    }
}
