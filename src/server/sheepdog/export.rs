//! Export of a project's entities: a whole type streamed, or named ids
//! (as a tar.gz when they span types) (API.md §2.9).

use crate::server::Caller;
use std::collections::{BTreeMap, HashMap};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Map, Value};
use sha2::Digest;

use super::*;
use crate::export::{self, Exporter, Format};
use crate::server::{ApiError, SharedState, parse_json_body};
use crate::store::NodeRow;
use crate::submission::Project;

// -------------------------------------------------------------------- export

/// Export parameters from the query string (GET) or a JSON body (POST).
pub(super) struct ExportParams {
    ids: Vec<String>,
    node_label: Option<String>,
    format: Format,
    with_id: bool,
}

pub(super) fn export_params(fields: &Map<String, Value>) -> Result<ExportParams, ApiError> {
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

pub(super) async fn export_get(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    Caller(principal, _): Caller,
) -> Result<Response, ApiError> {
    let fields: Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    export(state, program, code, principal, fields).await
}

pub(super) async fn export_post(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    Caller(principal, _): Caller,
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
    export(state, program, code, principal, fields).await
}

pub(super) fn attachment(name: &str, format: Format, body: Body) -> Response {
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

pub(super) async fn export(
    state: SharedState,
    program: String,
    code: String,
    principal: Principal,
    fields: Map<String, Value>,
) -> Result<Response, ApiError> {
    let project = project_for(&state, &principal, &program, &code, &["read"]).await?;
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
        Body::from_stream(export::stream(
            state.store.clone(),
            state.dictionary.clone(),
            project.project_id,
            label,
            params.format,
            params.with_id,
        )),
    ))
}

pub(super) async fn export_ids(
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
            let archive = export::tar_gz(&files)
                .map_err(|e| ApiError::new(500, format!("cannot build the archive: {e}")))?;
            Ok(attachment(
                &format!("gdc_export_{digest}.tar.gz"),
                params.format,
                Body::from(archive),
            ))
        }
    }
}
