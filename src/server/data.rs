//! fence's data endpoints (`/user/data/...`, FILES.md 1.5 and F2) over the
//! configured buckets. An upload (single or multipart) makes a blank index
//! record and hands out presigned URLs; the record is filled with the
//! object's size and hashes when its last byte lands (the local store's PUT,
//! a multipart `complete`, or the first read after a PUT straight to S3), so
//! a record is never seen half indexed. Authorization follows fence:
//! `read-storage` on a record's `authz` to download, `write-storage` to
//! upload to it, `delete` to delete it; without `authz`, the uploader (and,
//! to download, `acl: ["*"]`); uploads and deletions need a token with the
//! `data` scope, as fence's. The local store's signed URLs are served by
//! `objects.rs`.

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, Caller, Data, SharedState, parse_json_body};
use crate::auth::Principal;
use crate::file_index::{IndexError, UPLOAD_RESOURCE, filled, is_blank};
use crate::storage::{Bucket, MAX_PARTS, Part, StorageError, StoredObject};
use crate::store::IndexRecord;

/// Longest a signed URL lives, and its default life (fence's MAX_PRESIGNED_URL_TTL).
pub const MAX_EXPIRES_IN: i64 = 3600;

/// URL schemes a download may ask for (fence's, and `file` for this store).
const PROTOCOLS: [&str; 7] = ["s3", "http", "ftp", "https", "gs", "az", "file"];

/// Most guids one bulk download request may name.
pub const MAX_BULK_GUIDS: usize = 1000;

/// Largest body of these routes: a multipart `complete` naming 10,000
/// parts is about 600 KB (the other `/user` routes take 64 KiB).
pub const DATA_BODY_BYTES: usize = 1 << 20;

/// `/user/data/...`, nested under `/user`.
pub fn routes() -> Router<SharedState> {
    let routes = Router::new()
        .route("/data/upload", post(upload))
        .route("/data/upload/{*guid}", get(upload_url))
        .route("/data/multipart/init", post(multipart_init))
        .route("/data/multipart/upload", post(multipart_part_url))
        .route("/data/multipart/complete", post(multipart_complete))
        .route("/data/download/bulk", post(download_bulk))
        .route("/data/download/{*guid}", get(download))
        .route("/data/{*guid}", axum::routing::delete(delete_file));
    super::limit_body(routes, DATA_BODY_BYTES)
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

/// The object key of a record's file, relative to a bucket's prefix:
/// `<guid>/<file_name>`.
fn relative_key(guid: &str, file_name: &str) -> Result<String, ApiError> {
    if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".." {
        return Err(ApiError::bad_request(format!(
            "file_name {file_name:?} cannot name an object: it must be a name without '/'"
        )));
    }
    Ok(format!("{guid}/{file_name}"))
}

/// The bucket a request names in `bucket` (the default without one).
fn bucket<'s>(state: &'s SharedState, name: Option<&Value>) -> Result<&'s Bucket, ApiError> {
    let name = match name {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.as_str()),
        Some(_) => return Err(ApiError::bad_request("bucket must be a bucket's name")),
    };
    state.objects.bucket(name).map_err(storage_error)
}

/// A required string argument of a JSON body, with fence's message.
fn required_str<'b>(body: &'b Value, name: &str) -> Result<&'b str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("missing required argument '{name}'")))
}

/// A blank record for a new upload by `principal`: fence's rules on who
/// may upload, with or without `authz`.
async fn new_blank_record(
    state: &SharedState,
    principal: &Principal,
    body: &Value,
    file_name: &str,
    with_authz: bool,
) -> Result<IndexRecord, ApiError> {
    let authz: Vec<String> = match body.get("authz").filter(|_| with_authz) {
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
    } else if !(allows_all(principal, &authz, "create")
        && allows_all(principal, &authz, "write-storage"))
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
    Ok(record)
}

/// `POST /user/data/upload`: a blank record and a URL to PUT its bytes to.
async fn upload(
    State(state): State<SharedState>,
    Caller(principal, _): Caller<Data>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json_body(&body)?;
    let file_name = required_str(&body, "file_name")?;
    let expires = expires_in(body.get("expires_in"))?;
    let bucket = bucket(&state, body.get("bucket"))?;
    let record = new_blank_record(&state, &principal, &body, file_name, true).await?;
    let key = bucket.object_key(&relative_key(&record.did, file_name)?);
    state
        .file_index()
        .insert(vec![(record.clone(), Vec::new())])
        .await
        .map_err(index_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"guid": record.did, "url": bucket.upload_url(&key, expires)})),
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
    // Without a file name, fence names the object after the guid.
    let file_name = query
        .get("file_name")
        .filter(|name| !name.is_empty())
        .cloned()
        .unwrap_or_else(|| guid.replace('/', "_"));
    let expires = expires_in(query.get("expires_in").map(|v| json!(v)).as_ref())?;
    let bucket = bucket(&state, query.get("bucket").map(|b| json!(b)).as_ref())?;
    let key = bucket.object_key(&relative_key(&record.did, &file_name)?);
    Ok(Json(json!({"url": bucket.upload_url(&key, expires)})))
}

/// Multipart routes need fence's `file_upload` on `/data_file`.
fn may_upload_parts(principal: &Principal) -> Result<(), ApiError> {
    if principal
        .permissions
        .allows(UPLOAD_RESOURCE, "fence", "file_upload")
    {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            format!(
                "You do not have permission to upload data files: (file_upload) on {UPLOAD_RESOURCE} for service fence"
            ),
        ))
    }
}

/// `POST /user/data/multipart/init`: a blank record and an upload id.
async fn multipart_init(
    State(state): State<SharedState>,
    Caller(principal, _): Caller<Data>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    may_upload_parts(&principal)?;
    let body = parse_json_body(&body)?;
    let file_name = required_str(&body, "file_name")?;
    expires_in(body.get("expires_in"))?;
    let bucket = bucket(&state, body.get("bucket"))?;
    let record = new_blank_record(&state, &principal, &body, file_name, false).await?;
    let key = bucket.object_key(&relative_key(&record.did, file_name)?);
    state
        .file_index()
        .insert(vec![(record.clone(), Vec::new())])
        .await
        .map_err(index_error)?;
    let upload_id = bucket.start_multipart(&key).await.map_err(storage_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"guid": record.did, "uploadId": upload_id})),
    )
        .into_response())
}

/// The arguments fence names as missing, in its words.
fn require_arguments(body: &Value, names: &[&str]) -> Result<(), ApiError> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| body.get(name).is_none_or(Value::is_null))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "missing required arguments: {missing:?}"
        )))
    }
}

/// A part number, 1 to [`MAX_PARTS`], as a number or a numeric string.
fn part_number(value: &Value) -> Result<u16, ApiError> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (1..=MAX_PARTS).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "partNumber must be an integer from 1 to {MAX_PARTS}; got {value}"
            ))
        })
}

/// The body of a multipart request by a caller who may upload parts, with
/// the arguments it requires (`key` and `uploadId` among them).
fn multipart_body(
    principal: &Principal,
    body: &[u8],
    required: &[&str],
) -> Result<Value, ApiError> {
    may_upload_parts(principal)?;
    let body = parse_json_body(body)?;
    require_arguments(&body, required)?;
    Ok(body)
}

/// `POST /user/data/multipart/upload`: a URL to PUT one part to.
async fn multipart_part_url(
    State(state): State<SharedState>,
    Caller(principal, _): Caller<Data>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = multipart_body(&principal, &body, &["key", "uploadId", "partNumber"])?;
    let key = required_str(&body, "key")?;
    let upload_id = required_str(&body, "uploadId")?;
    let number = part_number(&body["partNumber"])?;
    let expires = expires_in(body.get("expires_in"))?;
    let bucket = bucket(&state, body.get("bucket"))?;
    let url = bucket.part_url(&bucket.object_key(key), upload_id, number, expires);
    Ok(Json(json!({"presigned_url": url})))
}

/// `POST /user/data/multipart/complete`: join the parts, fill the record.
async fn multipart_complete(
    State(state): State<SharedState>,
    Caller(principal, _): Caller<Data>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = multipart_body(&principal, &body, &["key", "uploadId", "parts"])?;
    let key = required_str(&body, "key")?;
    let upload_id = required_str(&body, "uploadId")?;
    let mut parts: Vec<Part> = body["parts"]
        .as_array()
        .ok_or_else(|| ApiError::bad_request("parts must be a list of {PartNumber, ETag}"))?
        .iter()
        .map(|part| {
            let etag = part.get("ETag").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request("every part needs its ETag, as the part's PUT answered it")
            })?;
            Ok(Part {
                number: part_number(part.get("PartNumber").unwrap_or(&Value::Null))?,
                etag: etag.to_string(),
            })
        })
        .collect::<Result<_, ApiError>>()?;
    parts.sort_by_key(|p| p.number);
    let bucket = bucket(&state, body.get("bucket"))?;
    let (guid, _file_name) = key
        .rsplit_once('/')
        .ok_or_else(|| ApiError::bad_request(format!("key {key:?} is not <guid>/<file_name>")))?;
    let blank = record(&state, guid).await?;
    if !is_blank(&blank) {
        return Err(ApiError::new(
            409,
            format!("File {guid} already has its content; upload to a new record."),
        ));
    }
    let object_key = bucket.object_key(key);
    let stored = bucket
        .complete_multipart(&object_key, upload_id, &parts)
        .await
        .map_err(storage_error)?;
    fill_record(&state, bucket, &blank, &object_key, &stored).await?;
    Ok(Json(json!({"message": "OK"})))
}

/// Fill the blank record of a completed upload; if the record changed
/// meanwhile (another upload, a delete), the new bytes go.
pub(super) async fn fill_record(
    state: &SharedState,
    bucket: &Bucket,
    blank: &IndexRecord,
    key: &str,
    stored: &StoredObject,
) -> Result<IndexRecord, ApiError> {
    let mut full = filled(blank, bucket.url_of(key), stored);
    if full.file_name.is_none() {
        full.file_name = key.rsplit('/').next().map(str::to_string);
    }
    match state.file_index().replace(full, &blank.rev).await {
        Ok(full) => Ok(full),
        Err(e) => {
            let _ = bucket.delete(key).await;
            Err(index_error(e))
        }
    }
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

/// The query's pairs; the last of a repeated name counts.
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

fn last<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p String> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// `GET /user/data/download/<guid>`: a URL to read the file from.
async fn download(
    State(state): State<SharedState>,
    Path(guid): Path<String>,
    RawQuery(query): RawQuery,
    caller: Result<Caller, ApiError>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let expires = expires_in(last(&pairs, "expires_in").map(|v| json!(v)).as_ref())?;
    let protocol = last(&pairs, "protocol").filter(|p| !p.is_empty());
    let principal = optional_caller(caller, &headers)?;
    let signed = signed_download_url(
        &state,
        principal.as_ref(),
        &guid,
        protocol.map(String::as_str),
        expires,
    )
    .await?;
    if last(&pairs, "redirect").is_some() {
        // 302, as fence's redirect.
        return Ok((StatusCode::FOUND, [(header::LOCATION, signed)]).into_response());
    }
    Ok(Json(json!({"url": signed})).into_response())
}

/// `POST /user/data/download/bulk`: a URL per readable guid; the others
/// listed by what went wrong (404 no record or location, 401 not allowed),
/// as fence answers.
async fn download_bulk(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    caller: Result<Caller, ApiError>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let expires = expires_in(last(&pairs, "expires_in").map(|v| json!(v)).as_ref())?;
    let protocol = last(&pairs, "protocol").filter(|p| !p.is_empty());
    let principal = optional_caller(caller, &headers)?;
    let body = parse_json_body(&body)?;
    let guids: Vec<String> = body
        .get("guids")
        .ok_or_else(|| ApiError::bad_request("missing required argument `guids`"))?
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|g| g.as_str().map(str::to_string))
                .collect::<Option<_>>()
        })
        .ok_or_else(|| ApiError::bad_request("guids must be a list of strings"))?;
    if guids.len() > MAX_BULK_GUIDS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BULK_GUIDS} guids per request; split the list"
        )));
    }
    let mut urls = Vec::new();
    let mut failed: Vec<(u16, Vec<String>)> = Vec::new();
    for guid in guids {
        match signed_download_url(
            &state,
            principal.as_ref(),
            &guid,
            protocol.map(String::as_str),
            expires,
        )
        .await
        {
            Ok(url) => urls.push(json!({"drs_object_id": guid, "url": url})),
            Err(e) => {
                // Refusals are 401 in fence's bulk answer, whatever the reason.
                let code = match e.status.as_u16() {
                    401 | 403 => 401,
                    400 | 404 => 404,
                    other => other,
                };
                match failed.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, ids)) => ids.push(guid),
                    None => failed.push((code, vec![guid])),
                }
            }
        }
    }
    let failed_guids: Vec<Value> = failed
        .into_iter()
        .map(|(code, ids)| json!({"error_code": code, "object_ids": ids}))
        .collect();
    Ok(Json(json!({"urls": urls, "failed_guids": failed_guids})))
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
    if let Some((bucket, key)) = state.objects.holding(url) {
        Ok(bucket.download_url(key, expires))
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
    Caller(principal, _): Caller<Data>,
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
        if let Some((bucket, key)) = state.objects.holding(url) {
            bucket.delete(key).await.map_err(storage_error)?;
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
        StorageError::Incomplete(_)
        | StorageError::UnknownBucket(_)
        | StorageError::InvalidParts(_) => ApiError::bad_request(e.to_string()),
        StorageError::NoSuchUpload(_) => ApiError::new(404, e.to_string()),
        StorageError::PartMismatch(_) => ApiError::new(409, e.to_string()),
        StorageError::Remote(message) => {
            tracing::error!(error = %message, "the object store refused a call");
            ApiError::new(
                502,
                format!("The object store could not complete the request: {message}"),
            )
        }
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
