//! Sheepdog-compatible submission endpoints under `/api/v0/submission`:
//! programs, projects, entity upload/read/delete, export, templates and the
//! dictionary (API.md §2).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};
use sha2::Digest;
use tokio::sync::mpsc;

use super::{ApiError, BodyLimit, SharedState, parse_json_body};
use crate::auth::Principal;
use crate::export::{self, Exporter, Format};
use crate::formats::{
    BoundedReader, Delimited, DelimitedError, DocumentLimits, delimited_line, oversized_value,
    parse_delimited, read_delimited, template_headers, template_json,
};
use crate::store::{NodeRow, StoreError};
use crate::submission::envelope::EnvelopeText;
use crate::submission::{BodyCapture, Mode, Project, Rights, Submission, UPLOAD_CHUNK};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/",
            get(list_programs)
                .post(upsert_program)
                .put(upsert_program)
                .patch(upsert_program),
        )
        .route("/_dictionary", get(dictionary_index))
        .route("/_dictionary/{entry}", get(dictionary_entry))
        .route("/template", get(all_templates))
        .route("/template/{node}", get(template))
        .route(
            "/{program}",
            get(list_projects)
                .post(upsert_project)
                .put(upsert_project)
                .patch(upsert_project)
                .delete(delete_program),
        )
        .route(
            "/{program}/{project}",
            post(submit::<false, false>)
                .put(submit::<true, false>)
                .delete(delete_project),
        )
        .route(
            "/{program}/{project}/_dry_run",
            post(submit::<false, true>).put(submit::<true, true>),
        )
        .route(
            "/{program}/{project}/entities/{ids}",
            get(get_entities).delete(delete_entities),
        )
        .route(
            "/{program}/{project}/entities/_dry_run/{ids}",
            delete(delete_entities_dry_run),
        )
        .route(
            "/{program}/{project}/export",
            get(export_get).post(export_post),
        )
        .route(
            "/{program}/{project}/_dictionary",
            get(project_dictionary_index),
        )
        .route(
            "/{program}/{project}/_dictionary/{entry}",
            get(project_dictionary_entry),
        )
        .route("/{program}/{project}/manifest", get(file_manifest))
        .route("/{program}/{project}/upload_manifest", get(file_manifest))
        .route("/{program}/{project}/template", get(all_templates))
        .route(
            "/{program}/{project}/template/{node}",
            get(project_template),
        )
        .route(
            "/{program}/{project}/open",
            post(open_project).put(open_project),
        )
}

fn submission<'a>(state: &'a SharedState, principal: &'a Principal) -> Submission<'a> {
    Submission {
        dictionary: &state.dictionary,
        validators: &state.validators,
        store: &state.store,
        username: &principal.user.username,
    }
}

const PROGRAM_ADMIN: &str = "/services/sheepdog/submission/program";
const PROJECT_ADMIN: &str = "/services/sheepdog/submission/project";

fn require(principal: &Principal, resource: &str, detail: &str) -> Result<(), ApiError> {
    if principal.permissions.allows(resource, "sheepdog", "*") {
        Ok(())
    } else {
        Err(ApiError::forbidden(detail))
    }
}

fn require_project(
    principal: &Principal,
    project: &Project,
    methods: &[&str],
) -> Result<(), ApiError> {
    if principal
        .permissions
        .allows_project(&project.program, &project.code, methods)
    {
        Ok(())
    } else {
        Err(ApiError::forbidden("user is unauthorized"))
    }
}

/// A submission or deletion the caller may not make: logged in the audit
/// trail as a failed transaction of the caller, then refused with 403.
async fn refused(
    state: &SharedState,
    principal: &Principal,
    project: &Project,
    role: &str,
    dry_run: bool,
) -> ApiError {
    let mut record = crate::store::TransactionRecord::new(
        &project.program,
        Some(&project.code),
        role,
        &principal.user.username,
    );
    record.state = "FAILED".into();
    record.is_dry_run = dry_run;
    let user = &principal.user.username;
    let key = format!("{user}\u{1e}{}", project.project_id);
    if state.refusal_log.attempt(&key).is_err() {
        tracing::warn!(
            user = %crate::auth::loggable(user),
            project = %project.project_id,
            role,
            "refused request not added to the audit trail: too many from this caller"
        );
    } else if let Err(e) = state.store.log_transaction(&record).await {
        tracing::error!(error = %e, "could not log a refused request");
    }
    ApiError::forbidden("user is unauthorized")
}

fn envelope(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

/// A response whose body is an upload envelope's text.
fn envelope_response(status: u16, text: EnvelopeText) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, "application/json")],
        match text {
            EnvelopeText::Whole(text) => Body::from(text),
            spooled => Body::from_stream(spooled.into_stream()),
        },
    )
        .into_response()
}

// ------------------------------------------------------------------ programs

async fn list_programs(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.principal(&headers, Some("openid")).await?;
    let links: Vec<String> = state
        .store
        .nodes_of_type("program")
        .await?
        .iter()
        .filter_map(|p| p.props.get("name").and_then(Value::as_str))
        .map(|name| format!("/v0/submission/{name}"))
        .collect();
    Ok(Json(json!({"links": links})))
}

async fn upsert_program(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers, None).await?;
    require(
        &principal,
        PROGRAM_ADMIN,
        "Unauthorized: User must be Sheepdog program admin",
    )?;
    let doc = single_document_body(&state, &headers, &body)?;
    Ok(Json(
        submission(&state, &principal).upsert_program(doc).await?,
    ))
}

async fn delete_program(
    State(state): State<SharedState>,
    Path(program): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let principal = state.principal(&headers, None).await?;
    let sub = submission(&state, &principal);
    sub.program(&program).await?;
    require(
        &principal,
        PROGRAM_ADMIN,
        "Unauthorized: User must be Sheepdog program admin",
    )?;
    sub.delete_program(&program).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ projects

async fn list_projects(
    State(state): State<SharedState>,
    Path(program): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers, Some("openid")).await?;
    submission(&state, &principal).program(&program).await?;
    let prefix = format!("{program}-");
    let links: Vec<String> = state
        .store
        .nodes_of_type("project")
        .await?
        .iter()
        .filter(|p| {
            p.project_id
                .as_deref()
                .is_some_and(|id| id.starts_with(&prefix))
        })
        .filter_map(|p| p.props.get("code").and_then(Value::as_str))
        .map(|code| format!("/v0/submission/{program}/{code}"))
        .collect();
    Ok(Json(json!({"links": links})))
}

async fn upsert_project(
    State(state): State<SharedState>,
    Path(program): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers, None).await?;
    let sub = submission(&state, &principal);
    sub.program(&program).await?;
    require(
        &principal,
        PROJECT_ADMIN,
        "Unauthorized: User must be Sheepdog project admin",
    )?;
    let doc = single_document_body(&state, &headers, &body)?;
    Ok(Json(sub.upsert_project(&program, doc).await?))
}

async fn delete_project(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let principal = state.principal(&headers, None).await?;
    let sub = submission(&state, &principal);
    let project = sub.project(&program, &code).await?;
    require(
        &principal,
        PROJECT_ADMIN,
        "Unauthorized: User must be Sheepdog project admin",
    )?;
    sub.delete_project(&project).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn open_project(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers, None).await?;
    let sub = submission(&state, &principal);
    let project = sub.project(&program, &code).await?;
    require_project(&principal, &project, &["release"])?;
    Ok(Json(sub.transition_project(&project, "open").await?))
}

// ------------------------------------------------------------------ entities

/// How a submission body is encoded (API.md §2.5): media type, parameters ignored.
fn body_flavour(headers: &HeaderMap) -> Option<Delimited> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())?;
    match media.as_str() {
        "text/tab-separated-values" | "text/tsv" => Some(Delimited::Tsv),
        "text/csv" => Some(Delimited::Csv),
        _ => None,
    }
}

/// `Unable to parse document` / `UnicodeDecodeError` / 413 for a failed TSV/CSV read.
fn delimited_error(e: DelimitedError, max_body_bytes: usize) -> ApiError {
    match e {
        DelimitedError::TooLarge(message) => ApiError::new(413, message),
        DelimitedError::Encoding(detail) => {
            ApiError::bad_request(format!("UnicodeDecodeError: {detail}"))
        }
        DelimitedError::Read(io) => read_error(&io, max_body_bytes),
        DelimitedError::Syntax(detail) => {
            ApiError::bad_request(format!("Unable to parse document: {detail}"))
        }
    }
}

/// A failure while reading the request body: too large, or the client went away.
fn read_error(io: &std::io::Error, max_body_bytes: usize) -> ApiError {
    // The cause sits somewhere in the chain of boxed body errors.
    let mut causes: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = io.get_ref().map(|e| e as _);
    while let Some(error) = next {
        causes.push(error);
        next = error.source();
    }
    let timed_out = causes
        .iter()
        .any(|e| e.is::<tower_http::timeout::TimeoutError>());
    let too_large = causes
        .iter()
        .any(|e| e.is::<http_body_util::LengthLimitError>());
    if let Some(document) = causes
        .iter()
        .find_map(|e| e.downcast_ref::<crate::formats::DocumentTooLarge>())
    {
        return ApiError::new(413, document.to_string());
    }
    if timed_out {
        ApiError::new(
            408,
            "The request body stalled longer than this server waits (--body-idle-timeout); check the connection and send it again",
        )
    } else if too_large {
        ApiError::new(
            413,
            format!(
                "Request body is larger than this server accepts ({max_body_bytes} bytes); split the submission into smaller files"
            ),
        )
    } else {
        ApiError::bad_request(format!("Unable to read the request body: {io}"))
    }
}

fn json_documents(value: Value) -> Result<Vec<Value>, ApiError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(map) => Ok(vec![Value::Object(map)]),
        other => Err(ApiError::bad_request(format!(
            "JSON parsed from request is an invalid type: {}",
            match other {
                Value::String(_) => "str",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "NoneType",
            }
        ))),
    }
}

/// The entity documents of a buffered body (programs, projects).
fn documents(
    state: &SharedState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Value>, ApiError> {
    match body_flavour(headers) {
        Some(flavour) => parse_delimited(&state.dictionary, body, flavour)
            .map_err(|e| delimited_error(e, body.len())),
        None => json_documents(parse_json_body(body)?),
    }
}

/// The documents of a submission body, parsed in chunks on a blocking
/// thread. The body is first spooled to a temporary file: a client that sends
/// it slowly then holds nothing shared (the write lock is taken when the
/// first chunk is parsed), and the spool keeps memory flat however large it is.
/// Also returns the body as the transaction log keeps it.
fn document_chunks(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
    BodyLimit(limit): BodyLimit,
    documents: DocumentLimits,
) -> (mpsc::Receiver<Result<Vec<Value>, ApiError>>, BodyCapture) {
    let flavour = body_flavour(headers);
    let capture = BodyCapture::new(match flavour {
        Some(Delimited::Tsv) => "TSV",
        Some(Delimited::Csv) => "CSV",
        None => "JSON",
    });
    let kept = capture.clone();
    let dictionary = state.dictionary.clone();
    let (sender, receiver) = mpsc::channel(2);
    tokio::spawn(async move {
        let file = match spool_body(body, limit, &capture).await {
            Ok(file) => file,
            Err(e) => {
                let _ = sender.send(Err(e)).await;
                return;
            }
        };
        tokio::task::spawn_blocking(move || {
            let reader = std::io::BufReader::new(file);
            let mut chunks = ChunkSender {
                sender,
                chunk: Vec::with_capacity(UPLOAD_CHUNK),
                bytes: 0,
            };
            let parsed = match flavour {
                Some(flavour) => read_delimited(&dictionary, reader, flavour, documents)
                    .and_then(|mut docs| {
                        let mut before = 0;
                        while let Some(doc) = docs.next() {
                            let consumed = docs.consumed();
                            if !chunks.push(doc?, consumed - before) {
                                break;
                            }
                            before = consumed;
                        }
                        Ok(())
                    })
                    .map_err(|e| delimited_error(e, limit)),
                None => read_json_documents(reader, limit, documents, |doc, bytes| {
                    chunks.push(doc, bytes)
                }),
            };
            chunks.finish(parsed);
        });
    });
    (receiver, kept)
}

/// Copy a request body into an unnamed temporary file (at most `limit`
/// bytes), recording it for the transaction log as it passes.
async fn spool_body(
    body: Body,
    limit: usize,
    capture: &BodyCapture,
) -> Result<std::fs::File, ApiError> {
    use futures::StreamExt;
    use std::io::Seek;
    use tokio::io::AsyncWriteExt;
    let spool_error = |e: std::io::Error| {
        tracing::error!(error = %e, "cannot spool a request body");
        ApiError::new(
            500,
            "The server could not store the request body; try again later.",
        )
    };
    let file = tempfile::tempfile().map_err(spool_error)?;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
    let mut frames = http_body_util::BodyStream::new(http_body_util::Limited::new(body, limit));
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| read_error(&std::io::Error::other(e), limit))?;
        if let Ok(piece) = frame.into_data() {
            capture.record(&piece);
            out.write_all(&piece).await.map_err(spool_error)?;
        }
    }
    out.flush().await.map_err(spool_error)?;
    let mut file = out.into_inner().into_std().await;
    file.rewind().map_err(spool_error)?;
    Ok(file)
}

/// Hands parsed documents to the submission a chunk at a time.
struct ChunkSender {
    sender: mpsc::Sender<Result<Vec<Value>, ApiError>>,
    chunk: Vec<Value>,
    /// Input bytes of the documents in `chunk`.
    bytes: u64,
}

/// Input bytes after which a chunk is sent even if it holds fewer than
/// [`UPLOAD_CHUNK`] documents: memory follows bytes, not document counts.
const CHUNK_INPUT_BYTES: u64 = 32 << 20;

impl ChunkSender {
    /// Add a document read from `bytes` of input; false once the submission
    /// has stopped listening.
    fn push(&mut self, doc: Value, bytes: u64) -> bool {
        self.chunk.push(doc);
        self.bytes += bytes;
        if self.chunk.len() < UPLOAD_CHUNK && self.bytes < CHUNK_INPUT_BYTES {
            return true;
        }
        self.bytes = 0;
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(UPLOAD_CHUNK));
        self.sender.blocking_send(Ok(full)).is_ok()
    }

    /// Send the last chunk and the end mark (an empty chunk), or the error
    /// that ended parsing. The submission may be gone already (the client
    /// hung up), so sending may fail.
    fn finish(self, parsed: Result<(), ApiError>) {
        match parsed {
            Ok(()) => {
                if !self.chunk.is_empty() && self.sender.blocking_send(Ok(self.chunk)).is_err() {
                    return;
                }
                let _ = self.sender.blocking_send(Ok(Vec::new()));
            }
            Err(e) => {
                let _ = self.sender.blocking_send(Err(e));
            }
        }
    }
}

/// Parse a JSON body (an array of documents, or one document) and pass each
/// document to `emit` as soon as it is read; `emit` returns false to stop.
fn read_json_documents(
    reader: impl std::io::Read,
    limit: usize,
    documents: DocumentLimits,
    mut emit: impl FnMut(Value, u64) -> bool,
) -> Result<(), ApiError> {
    use serde::Deserializer as _;
    let (reader, bound) = BoundedReader::new(reader, documents.max_document_bytes);
    let mut deserializer = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let parse_error = |e: serde_json::Error| match e.io_error_kind() {
        Some(_) => read_error(&std::io::Error::from(e), limit),
        None => ApiError::bad_request(format!("Unable to parse json: {e}")),
    };
    let mut oversized = None;
    let mut before = 0;
    let checked = |doc: Value| {
        bound.next_document();
        let consumed = bound.consumed();
        if let Some((key, size)) = oversized_value(&doc, documents.max_cell_bytes) {
            oversized = Some(ApiError::new(
                413,
                format!(
                    "Key '{key}': the value has {size} bytes, more than this server accepts \
                     in one value ({} bytes, --max-cell-bytes)",
                    documents.max_cell_bytes
                ),
            ));
            return false;
        }
        let bytes = consumed - before;
        before = consumed;
        emit(doc, bytes)
    };
    let outcome = deserializer.deserialize_any(JsonDocuments(checked));
    if let Some(error) = oversized {
        return Err(error);
    }
    let outcome = outcome.map_err(parse_error)?;
    if let Some(kind) = outcome {
        return Err(ApiError::bad_request(format!(
            "JSON parsed from request is an invalid type: {kind}"
        )));
    }
    deserializer.end().map_err(parse_error)
}

/// Visits a JSON body's documents; its value is the Python type name of a
/// body that is neither an object nor an array (as sheepdog reports it).
struct JsonDocuments<F>(F);

impl<'de, F: FnMut(Value) -> bool> serde::de::Visitor<'de> for JsonDocuments<F> {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        mut self,
        mut seq: A,
    ) -> Result<Self::Value, A::Error> {
        while let Some(doc) = seq.next_element::<Value>()? {
            if !(self.0)(doc) {
                break;
            }
        }
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, map: A) -> Result<Self::Value, A::Error> {
        use serde::Deserialize as _;
        let doc = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.0)(doc);
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some("str"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some("number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some("number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some("number"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some("bool"))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some("NoneType"))
    }
}

fn single_document_body(
    state: &SharedState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut docs = documents(state, headers, body)?;
    if body_flavour(headers).is_some() && docs.len() == 1 {
        return Ok(docs.remove(0));
    }
    if body_flavour(headers).is_some() {
        return Err(ApiError::bad_request("Expected exactly one row"));
    }
    parse_json_body(body)
}

/// `POST` (create, `UPSERT = false`) or `PUT` (upsert) of entities, for real or
/// as a dry run (`DRY_RUN`).
async fn submit<const UPSERT: bool, const DRY_RUN: bool>(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    headers: HeaderMap,
    Extension(limit): Extension<BodyLimit>,
    Extension(documents): Extension<DocumentLimits>,
    body: Body,
) -> Result<Response, ApiError> {
    let (mode, dry_run) = (if UPSERT { Mode::Upsert } else { Mode::Create }, DRY_RUN);
    let principal = state.principal(&headers, None).await?;
    let sub = submission(&state, &principal);
    let project = sub.project(&program, &code).await?;
    let rights = Rights {
        create: principal
            .permissions
            .allows_project(&program, &code, &["create"]),
        update: principal
            .permissions
            .allows_project(&program, &code, &["update"]),
    };
    let allowed = match mode {
        Mode::Create => rights.create,
        Mode::Upsert => rights.create || rights.update,
    };
    if !allowed {
        let role = if UPSERT { "update" } else { "create" };
        return Err(refused(&state, &principal, &project, role, dry_run).await);
    }
    if project.state() != "open" {
        return Err(ApiError::bad_request(format!(
            "Project is in state '{}', which prevents submission to {}. In order to perform this action, the project must be in state <open>.",
            project.state(),
            project.project_id
        )));
    }
    let (chunks, capture) = document_chunks(&state, &headers, body, limit, documents);
    let (status, body) = sub
        .upload(&project, chunks, mode, rights, dry_run, capture)
        .await?;
    Ok(envelope_response(status, body))
}

fn split_ids(ids: &str) -> Vec<String> {
    ids.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
        .collect()
}

async fn project_for(
    state: &SharedState,
    headers: &HeaderMap,
    program: &str,
    code: &str,
    methods: &[&str],
) -> Result<(Principal, Project), ApiError> {
    let principal = state.principal(headers, None).await?;
    let project = submission(state, &principal).project(program, code).await?;
    require_project(&principal, &project, methods)?;
    Ok((principal, project))
}

/// `GET /P/Q/manifest?ids=` (also `/upload_manifest`): the YAML manifest of
/// the named data files, as sheepdog answers it.
async fn file_manifest(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, project) = project_for(&state, &headers, &program, &code, &["read"]).await?;
    let ids = query
        .get("ids")
        .map(|ids| split_ids(ids))
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "No ids specified. Use query parameter 'ids', e.g. 'ids=id1,id2'.",
        ));
    }
    let nodes = nodes_in_project(&state, &project, &ids).await?;
    if nodes.is_empty() {
        return Err(ApiError::new(
            404,
            format!("Unable to find {}", ids.join(", ")),
        ));
    }
    let page = crate::export::with_links(&state.store, &state.dictionary, nodes).await?;
    let yaml = crate::export::manifest(&state.dictionary, &page).map_err(ApiError::bad_request)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/yaml; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=submission_manifest.yaml",
            ),
        ],
        yaml,
    )
        .into_response())
}

/// The nodes among `ids` that belong to `project`; the others are absent.
async fn nodes_in_project(
    state: &SharedState,
    project: &Project,
    ids: &[String],
) -> Result<Vec<NodeRow>, ApiError> {
    Ok(state
        .store
        .nodes_by_ids(ids)
        .await?
        .into_iter()
        .filter(|n| n.project_id.as_deref() == Some(project.project_id.as_str()))
        .collect())
}

async fn get_entities(
    State(state): State<SharedState>,
    Path((program, code, ids)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (_, project) = project_for(&state, &headers, &program, &code, &["read"]).await?;
    let ids = split_ids(&ids);
    let nodes = nodes_in_project(&state, &project, &ids).await?;
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !nodes.iter().any(|n| &n.id == *id))
        .collect();
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::new(
            404,
            format!("Not found: {}", list.join(", ")),
        ));
    }
    let node_ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let edges = state.store.edges_from(&node_ids).await?;
    let targets: HashMap<String, NodeRow> = state
        .store
        .nodes_by_ids(&edges.iter().map(|e| e.dst_id.clone()).collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let entities: Vec<Value> = nodes
        .iter()
        .map(|node| {
            let mut props = node.props.clone();
            props.insert("id".into(), Value::String(node.id.clone()));
            props.insert("type".into(), Value::String(node.node_type.clone()));
            let mut links: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for edge in edges.iter().filter(|e| e.src_id == node.id) {
                let key = targets.get(&edge.dst_id).map(|t| {
                    let k = crate::formats::target_key(&state.dictionary, &t.node_type);
                    (k.clone(), t.props.get(&k).cloned().unwrap_or(Value::Null))
                });
                let mut target = Map::new();
                target.insert("id".into(), Value::String(edge.dst_id.clone()));
                if let Some((k, v)) = key {
                    target.insert(k, v);
                }
                links
                    .entry(edge.link.clone())
                    .or_default()
                    .push(Value::Object(target));
            }
            for (link, list) in links {
                props.insert(link, Value::Array(list));
            }
            json!({"program": project.program, "project": project.code, "properties": props})
        })
        .collect();
    Ok(Json(json!({"entities": entities})))
}

async fn delete_entities(
    State(state): State<SharedState>,
    Path((program, code, ids)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    remove(state, program, code, ids, headers, false).await
}

async fn delete_entities_dry_run(
    State(state): State<SharedState>,
    Path((program, code, ids)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    remove(state, program, code, ids, headers, true).await
}

async fn remove(
    state: SharedState,
    program: String,
    code: String,
    ids: String,
    headers: HeaderMap,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let principal = state.principal(&headers, None).await?;
    let project = submission(&state, &principal)
        .project(&program, &code)
        .await?;
    if !principal
        .permissions
        .allows_project(&program, &code, &["delete"])
    {
        return Err(refused(&state, &principal, &project, "delete", dry_run).await);
    }
    if project.state() != "open" {
        return Err(ApiError::bad_request(format!(
            "Project is in state '{}', which prevents deletion. In order to perform this action, the project must be in state <open>.",
            project.state()
        )));
    }
    let (status, body) = submission(&state, &principal)
        .delete(&project, &split_ids(&ids), dry_run)
        .await?;
    Ok(envelope(status, body))
}

// -------------------------------------------------------------------- export

/// Export parameters from the query string (GET) or a JSON body (POST).
struct ExportParams {
    ids: Vec<String>,
    node_label: Option<String>,
    format: Format,
    with_id: bool,
}

fn export_params(fields: &Map<String, Value>) -> Result<ExportParams, ApiError> {
    let text = |key: &str| {
        fields
            .get(key)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    let ids = match fields.get("ids") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect(),
        Some(Value::String(s)) => split_ids(s),
        _ => Vec::new(),
    };
    let format_text = text("format").unwrap_or_else(|| "tsv".into());
    let format = Format::parse(&format_text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Format {format_text} is not supported; supported formats are: csv,tsv,json."
        ))
    })?;
    Ok(ExportParams {
        ids,
        node_label: text("node_label").filter(|s| !s.is_empty()),
        format,
        with_id: !text("without_id").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

async fn export_get(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let fields: Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    export(state, program, code, headers, fields).await
}

async fn export_post(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut fields: Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if !body.iter().all(u8::is_ascii_whitespace) {
        match parse_json_body(&body)? {
            Value::Object(map) => fields.extend(map),
            _ => {
                return Err(ApiError::bad_request(
                    "the export body must be a JSON object",
                ));
            }
        }
    }
    export(state, program, code, headers, fields).await
}

fn attachment(name: &str, format: Format, body: Body) -> Response {
    let content_type = match format {
        Format::Json => "application/json",
        Format::Delimited(_) => "application/octet-stream",
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename={name}")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn export(
    state: SharedState,
    program: String,
    code: String,
    headers: HeaderMap,
    fields: Map<String, Value>,
) -> Result<Response, ApiError> {
    let (_, project) = project_for(&state, &headers, &program, &code, &["read"]).await?;
    let params = export_params(&fields)?;
    if !params.ids.is_empty() {
        return export_ids(&state, &project, &params).await;
    }
    let label = params
        .node_label
        .clone()
        .ok_or_else(|| ApiError::bad_request("expected either `ids` or `node_label` parameter"))?;
    let node = state.dictionary.node(&label).ok_or_else(|| {
        ApiError::bad_request(format!("dictionary does not have node with type {label}"))
    })?;
    if node.category == "internal" {
        return Err(ApiError::bad_request(
            "cannot export node with category `internal`",
        ));
    }
    let name = format!("{label}.{}", params.format.extension());
    Ok(attachment(
        &name,
        params.format,
        Body::from_stream(export_stream(
            state.clone(),
            project.project_id,
            label,
            params,
        )),
    ))
}

/// Stream a whole node type page by page: memory stays flat whatever the size.
/// A producer task reads the next page while this stream renders the current
/// one, so the database and the rendering work at the same time.
fn export_stream(
    state: SharedState,
    project_id: String,
    label: String,
    params: ExportParams,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    enum Step {
        Header,
        Rows { first_row: bool },
        Done,
    }
    use futures::StreamExt;
    let (sink, pages) = tokio::sync::mpsc::channel::<Result<export::Page, StoreError>>(2);
    let producer = Arc::clone(&state);
    let producer_label = label.clone();
    tokio::spawn(async move {
        let pages = export::pages(
            producer.store.clone(),
            producer.dictionary.clone(),
            producer_label,
            project_id,
        );
        futures::pin_mut!(pages);
        loop {
            // An empty page marks the end; an error ends the stream after it.
            let page = pages.next().await.unwrap_or_else(|| Ok(Vec::new()));
            let more = matches!(&page, Ok(nodes) if !nodes.is_empty());
            if sink.send(page).await.is_err() || !more {
                return;
            }
        }
    });
    let (format, with_id) = (params.format, params.with_id);
    futures::stream::unfold(
        (Step::Header, pages, state),
        move |(step, mut pages, state)| {
            let label = label.clone();
            async move {
                let node = state.dictionary.node(&label)?;
                let exporter = Exporter::new(&state.dictionary, node, with_id);
                let first_row = match step {
                    Step::Done => return None,
                    Step::Header => {
                        let head = match format {
                            Format::Delimited(flavour) => exporter.header(flavour),
                            Format::Json => b"{\"data\": [".to_vec(),
                        };
                        let next = Step::Rows { first_row: true };
                        return Some((Ok(Bytes::from(head)), (next, pages, state)));
                    }
                    Step::Rows { first_row } => first_row,
                };
                let failed = |e: StoreError| std::io::Error::other(e.to_string());
                let page = match pages.recv().await? {
                    Ok(page) => page,
                    Err(e) => return Some((Err(failed(e)), (Step::Done, pages, state))),
                };
                if page.is_empty() {
                    let tail: &'static [u8] = if format == Format::Json { b"]}" } else { b"" };
                    return Some((Ok(Bytes::from_static(tail)), (Step::Done, pages, state)));
                }
                let chunk = match format {
                    Format::Delimited(flavour) => exporter.rows(&page, flavour),
                    Format::Json => {
                        let mut out = Vec::new();
                        exporter
                            .write_objects(&page, &mut out, first_row)
                            .map(|()| out)
                    }
                };
                match chunk {
                    Ok(bytes) => {
                        let next = Step::Rows { first_row: false };
                        Some((Ok(Bytes::from(bytes)), (next, pages, state)))
                    }
                    Err(e) => Some((Err(failed(e)), (Step::Done, pages, state))),
                }
            }
        },
    )
}

async fn export_ids(
    state: &SharedState,
    project: &Project,
    params: &ExportParams,
) -> Result<Response, ApiError> {
    let nodes: Vec<NodeRow> = state
        .store
        .nodes_by_ids(&params.ids)
        .await?
        .into_iter()
        .filter(|n| {
            n.project_id.as_deref() == Some(project.project_id.as_str()) && n.node_type != "project"
        })
        .collect();
    if nodes.is_empty() {
        return Err(ApiError::new(
            404,
            format!("Unable to find {}", params.ids.join(", ")),
        ));
    }
    let mut by_type: BTreeMap<String, Vec<NodeRow>> = BTreeMap::new();
    for node in nodes {
        by_type
            .entry(node.node_type.clone())
            .or_default()
            .push(node);
    }
    let types: Vec<String> = by_type.keys().cloned().collect();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut objects = b"[".to_vec();
    for (label, nodes) in by_type {
        let Some(node_type) = state.dictionary.node(&label) else {
            continue;
        };
        let exporter = Exporter::new(&state.dictionary, node_type, params.with_id);
        let page = export::with_links(&state.store, &state.dictionary, nodes).await?;
        match params.format {
            Format::Json => {
                let first = objects.len() == 1;
                exporter.write_objects(&page, &mut objects, first)?;
            }
            Format::Delimited(flavour) => {
                let mut bytes = exporter.header(flavour);
                bytes.extend(exporter.rows(&page, flavour)?);
                files.push((format!("{label}.{}", flavour.extension()), bytes));
            }
        }
    }
    let digest = {
        let mut hasher = sha2::Sha512::new();
        hasher.update(crate::time::timestamp().as_bytes());
        for id in &params.ids {
            hasher.update(id.as_bytes());
        }
        hex::encode(hasher.finalize())
    };
    match params.format {
        Format::Json => {
            let name = if let [label] = types.as_slice() {
                format!("{label}.json")
            } else {
                format!("gdc_export_{digest}.json")
            };
            objects.push(b']');
            Ok(attachment(&name, Format::Json, Body::from(objects)))
        }
        Format::Delimited(_) if files.len() == 1 => {
            let (name, bytes) = files.remove(0);
            Ok(attachment(&name, params.format, Body::from(bytes)))
        }
        Format::Delimited(_) => {
            let archive = tar_gz(&files)
                .map_err(|e| ApiError::new(500, format!("cannot build the archive: {e}")))?;
            Ok(attachment(
                &format!("gdc_export_{digest}.tar.gz"),
                params.format,
                Body::from(archive),
            ))
        }
    }
}

fn tar_gz(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(crate::store::now_unix().max(0) as u64);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice())?;
    }
    let mut encoder = builder.into_inner()?;
    encoder.flush()?;
    encoder.finish()
}

// --------------------------------------------------------- dictionary, templates

async fn dictionary_index(State(state): State<SharedState>) -> Json<Value> {
    let mut links: Vec<String> = state
        .dictionary
        .nodes()
        .iter()
        .map(|n| format!("/v0/submission/_dictionary/{}", n.id))
        .collect();
    links.push("/v0/submission/_dictionary/_all".into());
    Json(json!({"links": links}))
}

fn dictionary_document(state: &SharedState, entry: &str) -> Result<Value, ApiError> {
    if entry == "_all" {
        let mut all = Map::new();
        for node in state.dictionary.nodes() {
            all.insert(node.id.clone(), node.schema.clone());
        }
        for (name, document) in state.dictionary.shared_documents() {
            all.insert(name.clone(), document.clone());
        }
        return Ok(Value::Object(all));
    }
    state
        .dictionary
        .document(entry)
        .cloned()
        .ok_or_else(|| ApiError::new(404, format!("Entry {entry} not in dictionary")))
}

async fn dictionary_entry(
    State(state): State<SharedState>,
    Path(entry): Path<String>,
) -> Result<Json<Value>, ApiError> {
    dictionary_document(&state, &entry).map(Json)
}

async fn project_dictionary_index(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers, None).await?;
    submission(&state, &principal)
        .project(&program, &code)
        .await?;
    let mut links: Vec<String> = state
        .dictionary
        .nodes()
        .iter()
        .map(|n| format!("/v0/submission/{program}/{code}/_dictionary/{}", n.id))
        .collect();
    links.push(format!("/v0/submission/{program}/{code}/_dictionary/_all"));
    Ok(Json(json!({"links": links})))
}

async fn project_dictionary_entry(
    State(state): State<SharedState>,
    Path((program, code, entry)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers, None).await?;
    submission(&state, &principal)
        .project(&program, &code)
        .await?;
    dictionary_document(&state, &entry).map(Json)
}

fn template_format(query: &HashMap<String, String>) -> Result<Format, ApiError> {
    let text = query.get("format").map_or("tsv", String::as_str);
    Format::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Format {text} is not supported; supported formats are: csv,tsv,json."
        ))
    })
}

fn template_bytes(
    state: &SharedState,
    node: &crate::dictionary::NodeType,
    format: Format,
) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec_pretty(&template_json(&state.dictionary, node))
            .expect("JSON serializes"),
        Format::Delimited(flavour) => {
            let headers = template_headers(&state.dictionary, node);
            let mut row = vec![String::new(); headers.len()];
            row[0] = node.id.clone();
            let mut bytes = delimited_line(&headers, flavour);
            bytes.extend(delimited_line(&row, flavour));
            bytes
        }
    }
}

async fn template(
    State(state): State<SharedState>,
    Path(node): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let format = template_format(&query)?;
    let node_type = state
        .dictionary
        .node(&node)
        .ok_or_else(|| ApiError::new(404, format!("Entity type {node} is not in dictionary")))?;
    let mut response = attachment(
        &format!("submission_{node}_template.{}", format.extension()),
        format,
        Body::from(template_bytes(&state, node_type, format)),
    );
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

async fn project_template(
    State(state): State<SharedState>,
    Path((_, _, node)): Path<(String, String, String)>,
    query: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    template(State(state), Path(node), query).await
}

async fn all_templates(
    State(state): State<SharedState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let format = template_format(&query)?;
    let list = |key: &str| -> Vec<String> {
        query
            .get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (categories, exclude) = (list("categories"), list("exclude"));
    let nodes: Vec<&crate::dictionary::NodeType> = state
        .dictionary
        .nodes()
        .iter()
        .filter(|n| n.is_project_scoped())
        .filter(|n| categories.is_empty() || categories.contains(&n.category))
        .filter(|n| !exclude.contains(&n.id))
        .collect();
    match format {
        Format::Json => {
            let all: Vec<Value> = nodes
                .iter()
                .map(|n| template_json(&state.dictionary, n))
                .collect();
            Ok(attachment(
                "submission_templates.json",
                format,
                Body::from(Value::Array(all).to_string()),
            ))
        }
        Format::Delimited(flavour) => {
            let files: Vec<(String, Vec<u8>)> = nodes
                .iter()
                .map(|n| {
                    (
                        format!("{}.{}", n.id, flavour.extension()),
                        template_bytes(&state, n, format),
                    )
                })
                .collect();
            let archive = tar_gz(&files)
                .map_err(|e| ApiError::new(500, format!("cannot build the archive: {e}")))?;
            Ok(attachment(
                "submission_templates.tar.gz",
                format,
                Body::from(archive),
            ))
        }
    }
}
