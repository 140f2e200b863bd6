//! `/index`: Gen3's indexd API over [`crate::file_index`] (FILES.md §1.3,
//! §4 F1). Reads are anonymous, as in Gen3; writes need a token whose
//! user holds the `indexd` permission on the record's `authz`. Errors are
//! indexd's `{"error": ...}`.
//!
//! A did may carry a prefix with a slash (`dg.XXXX/<uuid>`), so the routes
//! below a record take the rest of the path and split it after the did's
//! UUID ([`RecordPath`]).

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, PasswordOrToken, SharedState, parse_json_body};
use crate::auth::Principal;
use crate::file_index::{self, IndexError, UPLOAD_RESOURCE, authorize, document, receipt};
use crate::store::{IndexRecord, StoreError};

/// The largest `/index` request body (a bulk lookup of 10,000 dids fits).
pub const INDEX_BODY_BYTES: usize = 8 << 20;

/// Most dids one `POST /index/bulk/documents` may name **[beat]**.
pub const MAX_BULK_DIDS: usize = 10_000;

/// Most GUIDs one `GET /index/guid/mint` hands out.
pub const MAX_MINT: usize = 10_000;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_status", get(status))
        .route("/_version", get(version))
        .route("/_stats", get(stats))
        .route("/index", get(list).post(create))
        .route("/index/blank", post(create_blank))
        .route(
            "/index/blank/{*did}",
            put(fill_blank).post(new_blank_version),
        )
        .route(
            "/index/{*path}",
            get(read_record)
                .put(update_record)
                .post(new_version_or_aliases)
                .delete(delete_record),
        )
        .route("/bulk/documents", post(bulk_documents))
        .route("/urls", get(urls))
        .route("/_query/urls/q", get(query_urls))
        .route("/guid/mint", get(mint))
        .route("/guid/prefix", get(prefix))
        .route("/{*name}", get(resolve))
}

/// An indexd error: `{"error": ...}` with its status.
pub struct IndexdError(StatusCode, String);

impl IntoResponse for IndexdError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<ApiError> for IndexdError {
    fn from(e: ApiError) -> Self {
        IndexdError(e.status, e.message)
    }
}

impl From<StoreError> for IndexdError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<IndexError> for IndexdError {
    fn from(e: IndexError) -> Self {
        let status = match &e {
            IndexError::Invalid(_) => StatusCode::BAD_REQUEST,
            IndexError::NotFound => StatusCode::NOT_FOUND,
            IndexError::Conflict(_) => StatusCode::CONFLICT,
            IndexError::Forbidden(_) => StatusCode::FORBIDDEN,
            IndexError::Store(_) => {
                let IndexError::Store(store) = e else {
                    unreachable!()
                };
                return store.into();
            }
        };
        IndexdError(status, e.to_string())
    }
}

type Reply = Result<Response, IndexdError>;

/// The caller of a write (a token, or indexd's HTTP Basic), or indexd's
/// refusal of a missing or bad one.
fn writer(caller: Result<PasswordOrToken, ApiError>) -> Result<Principal, IndexdError> {
    caller
        .map(|PasswordOrToken(principal)| principal)
        .map_err(Into::into)
}

fn body_json(body: &Bytes) -> Result<Value, IndexdError> {
    Ok(parse_json_body(body)?)
}

fn query_pairs(query: Option<String>) -> Result<Vec<(String, String)>, IndexdError> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| IndexdError(StatusCode::BAD_REQUEST, format!("bad query string: {e}")))
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The `rev` a write must name.
fn rev(pairs: &[(String, String)]) -> Result<String, IndexdError> {
    param(pairs, "rev")
        .ok_or_else(|| IndexdError(StatusCode::BAD_REQUEST, "no revision specified".into()))
}

fn ok(value: Value) -> Reply {
    Ok(Json(value).into_response())
}

async fn status() -> &'static str {
    "Healthy"
}

async fn version(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({
        "version": state.version,
        "commit": option_env!("COMMONS_COMMIT").unwrap_or("unknown"),
    }))
}

async fn stats(State(state): State<SharedState>) -> Reply {
    let (count, size) = state.store.index_stats().await?;
    ok(json!({"fileCount": count, "totalFileSize": size}))
}

async fn list(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Reply {
    let pairs = query_pairs(query)?;
    let request = file_index::list_query(&pairs)?;
    let records = state.store.index_list(&request.query).await?;
    // Uploads that landed in a bucket show their size and hashes (a user's
    // unmapped uploads are listed so).
    let records = state.file_index().settle_all(records).await;
    let mut answer = request.echo;
    answer.insert(
        "records".into(),
        records.iter().map(document).collect::<Vec<_>>().into(),
    );
    ok(Value::Object(answer))
}

async fn create(
    State(state): State<SharedState>,
    caller: Result<PasswordOrToken, ApiError>,
    body: Bytes,
) -> Reply {
    let principal = writer(caller)?;
    let body = body_json(&body)?;
    let index = state.file_index();
    let record = index.new_record(&body, None)?;
    authorize(
        &principal.permissions,
        "create",
        &record.authz.iter().collect::<Vec<_>>(),
    )?;
    state.index_creates.create(record.clone()).await?;
    ok(receipt(&record))
}

/// Who may make or fill a blank record: `method` on its `authz`, or
/// `file_upload` on the upload resource when it has none.
fn authorize_blank(
    principal: &Principal,
    method: &str,
    authz: &[String],
) -> Result<(), IndexdError> {
    if authz.is_empty() {
        if principal
            .permissions
            .allows(UPLOAD_RESOURCE, "indexd", "file_upload")
        {
            return Ok(());
        }
        return Err(IndexError::Forbidden(format!(
            "Permission denied: (file_upload) on {UPLOAD_RESOURCE} for service indexd"
        ))
        .into());
    }
    Ok(authorize(
        &principal.permissions,
        method,
        &authz.iter().collect::<Vec<_>>(),
    )?)
}

async fn create_blank(
    State(state): State<SharedState>,
    caller: Result<PasswordOrToken, ApiError>,
    body: Bytes,
) -> Reply {
    let principal = writer(caller)?;
    let body = body_json(&body)?;
    let index = state.file_index();
    let record = index.blank_record(&body, None)?;
    authorize_blank(&principal, "create", &record.authz)?;
    index.insert(vec![(record.clone(), Vec::new())]).await?;
    Ok((StatusCode::CREATED, Json(receipt(&record))).into_response())
}

async fn fill_blank(
    State(state): State<SharedState>,
    Path(did): Path<String>,
    RawQuery(query): RawQuery,
    caller: Result<PasswordOrToken, ApiError>,
    body: Bytes,
) -> Reply {
    let principal = writer(caller)?;
    let rev = rev(&query_pairs(query)?)?;
    let body = body_json(&body)?;
    let index = state.file_index();
    let stored = index.get(&did).await?;
    let filled = file_index::update_blank(stored.clone(), &body)?;
    let mut authz = stored.authz.clone();
    authz.extend(filled.authz.iter().cloned());
    authorize_blank(&principal, "update", &authz)?;
    let record = index.replace(filled, &rev).await?;
    ok(receipt(&record))
}

async fn new_blank_version(
    State(state): State<SharedState>,
    Path(did): Path<String>,
    caller: Result<PasswordOrToken, ApiError>,
    body: Bytes,
) -> Reply {
    let principal = writer(caller)?;
    let body = body_json(&body)?;
    let index = state.file_index();
    let stored = index.get_or_latest(&did).await?;
    let record = index.blank_record(&body, Some(&stored))?;
    let mut authz = stored.authz.clone();
    authz.extend(record.authz.iter().cloned());
    authorize_blank(&principal, "update", &authz)?;
    index.insert(vec![(record.clone(), Vec::new())]).await?;
    Ok((StatusCode::CREATED, Json(receipt(&record))).into_response())
}

/// What a path below `/index/index/` names: a record, and the part of it.
enum RecordPath {
    Record(String),
    Versions(String),
    Latest(String),
    Aliases(String),
    Alias(String, String),
}

/// A did ends in a UUID: the first UUID that ends a segment ends the did.
static DID_AND_REST: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"^(.*?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})(/.*)?$",
    )
    .expect("a valid pattern")
});

fn record_path(path: &str) -> Result<RecordPath, IndexdError> {
    let not_found = || IndexdError(StatusCode::NOT_FOUND, "no record found".into());
    let Some(caps) = DID_AND_REST.captures(path) else {
        return Ok(RecordPath::Record(path.to_string()));
    };
    let did = caps[1].to_string();
    Ok(match caps.get(2).map(|m| m.as_str()) {
        None => RecordPath::Record(did),
        Some("/versions") => RecordPath::Versions(did),
        Some("/latest") => RecordPath::Latest(did),
        Some("/aliases") => RecordPath::Aliases(did),
        Some(rest) => match rest.strip_prefix("/aliases/") {
            Some(alias) if !alias.is_empty() => RecordPath::Alias(did, alias.to_string()),
            _ => return Err(not_found()),
        },
    })
}

async fn read_record(
    State(state): State<SharedState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Reply {
    let index = state.file_index();
    match record_path(&path)? {
        RecordPath::Record(did) => ok(document(&index.get_or_latest(&did).await?)),
        RecordPath::Versions(did) => {
            let record = index.get_or_latest(&did).await?;
            let versions: serde_json::Map<String, Value> = index
                .versions(&record)
                .await?
                .iter()
                .enumerate()
                .map(|(i, r)| (i.to_string(), document(r)))
                .collect();
            ok(Value::Object(versions))
        }
        RecordPath::Latest(did) => {
            let pairs = query_pairs(query)?;
            let has_version = param(&pairs, "has_version")
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
            ok(document(&index.latest(&did, has_version).await?))
        }
        RecordPath::Aliases(did) => {
            let record = index.get(&did).await?;
            ok(index.aliases(&record.did).await?)
        }
        RecordPath::Alias(..) => Err(IndexdError(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method is not allowed for the requested URL.".into(),
        )),
    }
}

fn authz_of<'r>(records: &[&'r IndexRecord]) -> Vec<&'r String> {
    let mut authz: Vec<&String> = records.iter().flat_map(|r| r.authz.iter()).collect();
    authz.sort();
    authz.dedup();
    authz
}

async fn update_record(
    State(state): State<SharedState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    caller: Result<PasswordOrToken, ApiError>,
    body: Bytes,
) -> Reply {
    let principal = writer(caller)?;
    let body = body_json(&body)?;
    let index = state.file_index();
    match record_path(&path)? {
        RecordPath::Record(did) => {
            let rev = rev(&query_pairs(query)?)?;
            let stored = index.get(&did).await?;
            let updated = file_index::update_record(stored.clone(), &body)?;
            authorize(
                &principal.permissions,
                "update",
                &authz_of(&[&stored, &updated]),
            )?;
            ok(receipt(&index.replace(updated, &rev).await?))
        }
        RecordPath::Versions(did) => {
            let record = index.get_or_latest(&did).await?;
            let versions = index.versions(&record).await?;
            let mut updated = Vec::new();
            for version in &versions {
                updated.push(file_index::update_version_authz(version.clone(), &body)?);
            }
            let all: Vec<&IndexRecord> = versions.iter().chain(updated.iter()).collect();
            authorize(&principal.permissions, "update", &authz_of(&all))?;
            let mut receipts = Vec::new();
            for (version, record) in versions.iter().zip(updated) {
                receipts.push(receipt(&index.replace(record, &version.rev).await?));
            }
            ok(Value::Array(receipts))
        }
        RecordPath::Aliases(did) => {
            let record = index.get(&did).await?;
            authorize(&principal.permissions, "update", &authz_of(&[&record]))?;
            ok(index.set_aliases(&record.did, &body, true).await?)
        }
        RecordPath::Latest(_) | RecordPath::Alias(..) => Err(method_not_allowed()),
    }
}

fn method_not_allowed() -> IndexdError {
    IndexdError(
        StatusCode::METHOD_NOT_ALLOWED,
        "The method is not allowed for the requested URL.".into(),
    )
}

async fn new_version_or_aliases(
    State(state): State<SharedState>,
    Path(path): Path<String>,
    caller: Result<PasswordOrToken, ApiError>,
    body: Bytes,
) -> Reply {
    let principal = writer(caller)?;
    let body = body_json(&body)?;
    let index = state.file_index();
    match record_path(&path)? {
        RecordPath::Record(did) => {
            let stored = index.get_or_latest(&did).await?;
            let record = index.new_record(&body, Some(&stored))?;
            authorize(
                &principal.permissions,
                "update",
                &authz_of(&[&stored, &record]),
            )?;
            index.insert(vec![(record.clone(), Vec::new())]).await?;
            ok(receipt(&record))
        }
        RecordPath::Aliases(did) => {
            let record = index.get(&did).await?;
            authorize(&principal.permissions, "update", &authz_of(&[&record]))?;
            ok(index.set_aliases(&record.did, &body, false).await?)
        }
        _ => Err(method_not_allowed()),
    }
}

async fn delete_record(
    State(state): State<SharedState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    caller: Result<PasswordOrToken, ApiError>,
) -> Reply {
    let principal = writer(caller)?;
    let index = state.file_index();
    match record_path(&path)? {
        RecordPath::Record(did) => {
            let rev = rev(&query_pairs(query)?)?;
            let record = index.get(&did).await?;
            authorize(&principal.permissions, "delete", &authz_of(&[&record]))?;
            index.delete(&record, &rev).await?;
            Ok(StatusCode::OK.into_response())
        }
        RecordPath::Aliases(did) => {
            let record = index.get(&did).await?;
            authorize(&principal.permissions, "delete", &authz_of(&[&record]))?;
            state.store.index_delete_aliases(&record.did, None).await?;
            Ok(StatusCode::OK.into_response())
        }
        RecordPath::Alias(did, alias) => {
            let record = index.get(&did).await?;
            authorize(&principal.permissions, "delete", &authz_of(&[&record]))?;
            if !state
                .store
                .index_delete_aliases(&record.did, Some(&alias))
                .await?
            {
                return Err(IndexdError(
                    StatusCode::NOT_FOUND,
                    format!("alias {alias} not found"),
                ));
            }
            Ok(StatusCode::OK.into_response())
        }
        RecordPath::Versions(_) | RecordPath::Latest(_) => Err(method_not_allowed()),
    }
}

async fn resolve(State(state): State<SharedState>, Path(name): Path<String>) -> Reply {
    ok(document(&state.file_index().resolve(&name).await?))
}

async fn bulk_documents(State(state): State<SharedState>, body: Bytes) -> Reply {
    let body = body_json(&body)?;
    let Some(items) = body.as_array() else {
        return Err(IndexdError(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON list of dids".into(),
        ));
    };
    if items.len() > MAX_BULK_DIDS {
        return Err(IndexdError(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_BULK_DIDS} dids per request; split the list"),
        ));
    }
    let dids: Vec<String> = items
        .iter()
        .map(|d| d.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| IndexdError(StatusCode::BAD_REQUEST, "every did must be a string".into()))?;
    let found = state.store.index_records(&dids).await?;
    // In the order asked, as indexd answers.
    let by_did: std::collections::HashMap<&str, &IndexRecord> =
        found.iter().map(|r| (r.did.as_str(), r)).collect();
    let records: Vec<Value> = dids
        .iter()
        .filter_map(|d| by_did.get(d.as_str()).map(|r| document(r)))
        .collect();
    ok(Value::Array(records))
}

/// `GET /index/urls/`: the urls of the records matching `ids`, or `hash` and `size`.
async fn urls(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Reply {
    let pairs = query_pairs(query)?;
    let mut listing: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "ids" | "hash" | "size" | "start" | "limit"))
        .cloned()
        .collect();
    if !listing
        .iter()
        .any(|(k, _)| matches!(k.as_str(), "ids" | "hash" | "size"))
    {
        return Err(IndexdError(
            StatusCode::BAD_REQUEST,
            "one of ids, hash or size is required".into(),
        ));
    }
    if listing.iter().any(|(k, _)| k == "ids") {
        listing.retain(|(k, _)| k != "limit" && k != "start");
    }
    let request = file_index::list_query(&listing)?;
    let records = state.store.index_list(&request.query).await?;
    let urls: Vec<Value> = records
        .iter()
        .flat_map(|r| {
            r.urls
                .iter()
                .map(|url| json!({"url": url, "metadata": r.urls_metadata.get(url).cloned().unwrap_or_else(|| json!({}))}))
        })
        .collect();
    let echo = request.echo;
    ok(json!({
        "urls": urls,
        "limit": echo.get("limit"),
        "start": echo.get("start"),
        "size": echo.get("size"),
        "hashes": echo.get("hashes"),
    }))
}

/// `GET /index/_query/urls/q`: records whose urls contain `include` and not `exclude`.
async fn query_urls(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Reply {
    let pairs = query_pairs(query)?;
    let number = |name: &str, default: i64| -> Result<i64, IndexdError> {
        match param(&pairs, name) {
            None => Ok(default),
            Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                IndexdError(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be a non-negative integer"),
                )
            }),
        }
    };
    let limit = number("limit", 100)?.min(file_index::MAX_LIMIT);
    let offset = number("offset", 0)?;
    let records = state
        .store
        .index_query_urls(
            param(&pairs, "include").as_deref(),
            param(&pairs, "exclude").as_deref(),
            param(&pairs, "version").as_deref(),
            limit,
            offset,
        )
        .await?;
    let fields: Option<Vec<String>> =
        param(&pairs, "fields").map(|f| f.split(',').map(str::to_string).collect());
    let answer: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut doc = document(r);
            match &fields {
                Some(fields) => {
                    if let Value::Object(map) = &mut doc {
                        map.retain(|k, _| fields.contains(k));
                    }
                    doc
                }
                None => json!({"did": r.did, "rev": r.rev, "urls": r.urls}),
            }
        })
        .collect();
    ok(Value::Array(answer))
}

async fn mint(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Reply {
    let pairs = query_pairs(query)?;
    let count = match param(&pairs, "count") {
        None => 1,
        Some(v) => v.parse::<usize>().map_err(|_| {
            IndexdError(
                StatusCode::BAD_REQUEST,
                "count must be a positive integer".into(),
            )
        })?,
    };
    if count == 0 || count > MAX_MINT {
        return Err(IndexdError(
            StatusCode::BAD_REQUEST,
            format!("count must be between 1 and {MAX_MINT}"),
        ));
    }
    let index = state.file_index();
    let guids: Vec<String> = (0..count).map(|_| index.mint()).collect();
    ok(json!({"guids": guids}))
}

async fn prefix(State(state): State<SharedState>) -> Reply {
    ok(json!({"prefix": state.index_prefix}))
}
