//! GA4GH DRS 1.5 as Gen3 serves it (FILES.md 1.4, F3): objects are index
//! records (indexd's side: anonymous, errors `{"msg", "status_code"}`),
//! access URLs come from the data endpoints' rules (fence's side: a token
//! and `read-storage`). `created_time` is the content's date, else the
//! record's, never empty **[beat]**: drs-pull parses it.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::data;
use super::{ApiError, Caller, SharedState};
use crate::auth::Principal;
use crate::file_index::IndexError;
use crate::store::{IndexQuery, IndexRecord};

/// Most objects one bulk request may name (indexd's and fence's default).
pub const MAX_BULK: usize = 100;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/ga4gh/drs/v1/service-info", get(service_info))
        .route("/ga4gh/drs/v1/objects", get(list).post(bulk_objects))
        .route(
            "/ga4gh/drs/v1/objects/{*rest}",
            get(object_or_access).post(object_or_access_post),
        )
        .route("/wts/external_oidc", get(external_oidc))
}

/// indexd's DRS error: `{"msg", "status_code"}`.
struct DrsError(StatusCode, String);

impl IntoResponse for DrsError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"msg": self.1, "status_code": self.0.as_u16()})),
        )
            .into_response()
    }
}

impl From<ApiError> for DrsError {
    fn from(e: ApiError) -> Self {
        DrsError(e.status, e.message)
    }
}

impl From<IndexError> for DrsError {
    fn from(e: IndexError) -> Self {
        data::index_error(e).into()
    }
}

impl From<crate::store::StoreError> for DrsError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// `GET /wts/external_oidc/`: no external identity providers (drs-pull
/// asks, and needs a JSON answer).
async fn external_oidc() -> Json<Value> {
    Json(json!({"providers": []}))
}

async fn service_info(State(state): State<SharedState>) -> Result<Json<Value>, DrsError> {
    let (count, size) = state.store.index_stats().await?;
    let host = public_host(&state);
    let id = host.split('.').rev().collect::<Vec<_>>().join(".");
    Ok(Json(json!({
        "id": id,
        "name": "DRS System",
        "version": "1.5.0",
        "type": {"group": "org.ga4gh", "artifact": "drs", "version": "1.5.0"},
        "organization": {"name": "Commons", "url": state.tokens.issuer.trim_end_matches("/user")},
        "drs": {"maxBulkRequestLength": MAX_BULK, "objectCount": count, "totalObjectSize": size},
        "maxBulkRequestLength": MAX_BULK,
    })))
}

/// The host of the public URL (without port), as indexd names itself.
fn public_host(state: &SharedState) -> String {
    let url = state.tokens.issuer.trim_end_matches("/user");
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = after_scheme.split('/').next().unwrap_or("");
    host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host)
        .to_string()
}

/// `drs://<prefix>:<accession>` with a did prefix, else `drs://<did>` (indexd's `create_drs_uri`).
fn self_uri(prefix: &str, did: &str) -> String {
    let bare = prefix.trim_end_matches('/').replacen(':', "", 1);
    if prefix.is_empty() {
        return format!("drs://{did}");
    }
    let accession = did
        .replacen(prefix.trim_end_matches('/'), "", 1)
        .replacen('/', "", 1)
        .replacen(':', "", 1);
    format!("drs://{bare}:{accession}")
}

/// A record as a DrsObject.
fn drs_object(state: &SharedState, record: &IndexRecord, aliases: Vec<String>) -> Value {
    let authorizations = authorizations(state, record);
    let access_methods: Vec<Value> = record
        .urls
        .iter()
        .map(|url| {
            let scheme = url.split(':').next().unwrap_or("");
            json!({
                "type": scheme,
                "cloud": null,
                "access_url": {"url": url},
                "access_id": scheme,
                "available": true,
                "region": "",
                "authorizations": authorizations,
            })
        })
        .collect();
    let checksums: Vec<Value> = record
        .hashes
        .iter()
        .map(|(kind, value)| json!({"checksum": value, "type": kind}))
        .collect();
    json!({
        "id": record.did,
        "mime_type": "application/json",
        "name": record.file_name,
        "index_created_time": record.created_date,
        "index_updated_time": record.updated_date,
        "created_time": record.content_created_date.as_ref().unwrap_or(&record.created_date),
        "updated_time": record.content_updated_date.as_ref().unwrap_or(&record.updated_date),
        "size": record.size,
        "aliases": aliases,
        "self_uri": self_uri(&state.index_prefix, &record.did),
        "version": record.version.as_ref().unwrap_or(&record.rev),
        "form": record.form.as_deref().unwrap_or("object"),
        "checksums": checksums,
        "description": record.description,
        "access_methods": access_methods,
    })
}

/// Records as DrsObjects, their aliases read in one statement.
async fn drs_objects(state: &SharedState, records: &[IndexRecord]) -> Result<Vec<Value>, DrsError> {
    let dids: Vec<String> = records.iter().map(|r| r.did.clone()).collect();
    let mut aliases = state.store.index_aliases_of(&dids).await?;
    Ok(records
        .iter()
        .map(|r| drs_object(state, r, aliases.remove(&r.did).unwrap_or_default()))
        .collect())
}

/// How a client may be authorized for a record's access URLs.
fn authorizations(state: &SharedState, record: &IndexRecord) -> Value {
    let mut info = json!({
        "drs_object_id": record.did,
        "supported_types": [],
        "bearer_auth_issuers": [],
        "passport_auth_issuers": [],
    });
    if record.authz.iter().any(|path| path.contains("/open")) {
        info["supported_types"] = json!(["None"]);
    } else if !record.authz.is_empty() {
        info["supported_types"] = json!(["BearerAuth"]);
        info["bearer_auth_issuers"] = json!([state.tokens.issuer]);
    }
    info
}

async fn object(state: &SharedState, id: &str) -> Result<Value, DrsError> {
    let record = state.file_index().get(id).await.map_err(|e| match e {
        IndexError::NotFound => {
            DrsError(StatusCode::NOT_FOUND, format!("no record found for {id}"))
        }
        other => other.into(),
    })?;
    let aliases = state.store.index_aliases(&record.did).await?;
    Ok(drs_object(state, &record, aliases))
}

async fn list(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, DrsError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| DrsError(StatusCode::BAD_REQUEST, format!("bad query string: {e}")))?;
    let param = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let limit = match param("limit") {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| DrsError(StatusCode::BAD_REQUEST, "limit must be an integer".into()))?,
    };
    if !(0..=1024).contains(&limit) {
        return Err(DrsError(
            StatusCode::BAD_REQUEST,
            "limit must be between 0 and 1024".into(),
        ));
    }
    let page = param("page")
        .map(|v| v.parse::<i64>())
        .transpose()
        .map_err(|_| DrsError(StatusCode::BAD_REQUEST, "page must be an integer".into()))?;
    let records = state
        .store
        .index_list(&IndexQuery {
            limit,
            page,
            start: param("start"),
            ..IndexQuery::default()
        })
        .await?;
    Ok(Json(
        json!({"drs_objects": drs_objects(&state, &records).await?}),
    ))
}

/// `POST /ga4gh/drs/v1/objects {"bulk_object_ids": [...]}`.
async fn bulk_objects(
    State(state): State<SharedState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, DrsError> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(ids) = body.get("bulk_object_ids").and_then(Value::as_array) else {
        return Err(DrsError(
            StatusCode::BAD_REQUEST,
            "Request is malformed. Missing bulk object ids.".into(),
        ));
    };
    let ids: Vec<String> = ids
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if ids.len() > MAX_BULK {
        return Err(DrsError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request too large: {} objects requested, maximum is {MAX_BULK}",
                ids.len()
            ),
        ));
    }
    let records = state.store.index_records(&ids).await?;
    let resolved = drs_objects(&state, &records).await?;
    let mut missing: Vec<&String> = ids
        .iter()
        .filter(|id| !records.iter().any(|r| &&r.did == id))
        .collect();
    missing.sort();
    let unresolved = if missing.is_empty() {
        json!([])
    } else {
        json!([{"error_code": 404, "object_ids": missing}])
    };
    Ok(Json(json!({
        "summary": {"requested": ids.len(), "resolved": resolved.len(), "unresolved": ids.len() - resolved.len()},
        "unresolved_drs_objects": unresolved,
        "resolved_drs_objects": resolved,
    })))
}

/// What a path under `/objects/` names.
enum Target<'a> {
    Object(&'a str),
    Access(&'a str, &'a str),
    AccessWithoutId,
}

fn target(rest: &str) -> Target<'_> {
    match rest.rsplit_once("/access") {
        Some((_, "" | "/")) => Target::AccessWithoutId,
        Some((id, access)) if access.starts_with('/') => Target::Access(id, &access[1..]),
        _ => Target::Object(rest),
    }
}

async fn object_or_access(
    State(state): State<SharedState>,
    Path(rest): Path<String>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    match target(&rest) {
        Target::Object(id) => Ok(Json(
            object(&state, id)
                .await
                .map_err(IntoResponse::into_response)?,
        )
        .into_response()),
        Target::AccessWithoutId => {
            Err(ApiError::bad_request("Access ID/Protocol is required.").into_response())
        }
        Target::Access(id, access_id) => {
            let principal =
                data::optional_caller(caller, &headers).map_err(IntoResponse::into_response)?;
            let url = data::signed_download_url(
                &state,
                principal.as_ref(),
                id,
                Some(access_id),
                data::MAX_EXPIRES_IN,
            )
            .await
            .map_err(IntoResponse::into_response)?;
            Ok(Json(json!({"url": url})).into_response())
        }
    }
}

/// POST: the object (as GET), an access URL (passports are not supported),
/// or, at `/objects/access`, access URLs in bulk.
async fn object_or_access_post(
    State(state): State<SharedState>,
    Path(rest): Path<String>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Response> {
    if rest == "access" {
        let principal =
            data::optional_caller(caller, &headers).map_err(IntoResponse::into_response)?;
        return bulk_access(&state, principal.as_ref(), &body).await;
    }
    let passports = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b.get("passports").cloned())
        .is_some_and(|p| !p.is_null());
    if passports && matches!(target(&rest), Target::Access(..)) {
        return Err(ApiError::bad_request(
            "GA4GH passports are not supported by this commons: send a bearer token.",
        )
        .into_response());
    }
    object_or_access(State(state), Path(rest), caller, headers).await
}

async fn bulk_access(
    state: &SharedState,
    principal: Option<&Principal>,
    body: &[u8],
) -> Result<Response, Response> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")).into_response())?;
    let Some(items) = body.get("bulk_object_access_ids").and_then(Value::as_array) else {
        return Err(ApiError::bad_request("bulk_object_access_ids is required").into_response());
    };
    let mut pairs = Vec::new();
    for item in items {
        let (Some(id), Some(access_ids)) = (
            item.get("bulk_object_id").and_then(Value::as_str),
            item.get("bulk_access_ids").and_then(Value::as_array),
        ) else {
            return Err(ApiError::bad_request(
                "each entry needs bulk_object_id and bulk_access_ids",
            )
            .into_response());
        };
        for access_id in access_ids.iter().filter_map(Value::as_str) {
            pairs.push((id.to_string(), access_id.to_string()));
        }
    }
    if pairs.len() > MAX_BULK {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({
                "error_code": 413,
                "error_description": format!("Request too large: {} objects requested, maximum is {MAX_BULK}", pairs.len()),
            })),
        )
            .into_response());
    }
    let mut resolved = Vec::new();
    let mut unresolved: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for (id, access_id) in &pairs {
        match data::signed_download_url(state, principal, id, Some(access_id), data::MAX_EXPIRES_IN)
            .await
        {
            Ok(url) => resolved.push(json!({
                "drs_object_id": id, "drs_access_id": access_id, "url": url, "headers": [],
            })),
            Err(e) => unresolved
                .entry(e.status.as_u16())
                .or_default()
                .push(id.clone()),
        }
    }
    let requested = pairs.len();
    let status = if resolved.is_empty() {
        unresolved
            .iter()
            .max_by_key(|(_, ids)| ids.len())
            .and_then(|(code, _)| StatusCode::from_u16(*code).ok())
            .unwrap_or(StatusCode::OK)
    } else {
        StatusCode::OK
    };
    let unresolved: Vec<Value> = unresolved
        .into_iter()
        .map(|(code, ids)| json!({"error_code": code, "object_ids": ids}))
        .collect();
    Ok((
        status,
        Json(json!({
            "summary": {"requested": requested, "resolved": resolved.len(), "unresolved": requested - resolved.len()},
            "unresolved_drs_objects": unresolved,
            "resolved_drs_object_access_urls": resolved,
        })),
    )
        .into_response())
}
