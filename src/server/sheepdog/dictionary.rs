//! The dictionary and templates as sheepdog serves them (API.md §2.10-2.11).

use crate::server::Caller;
use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::*;
use crate::export::{self, Format};
use crate::formats::{delimited_line, template_headers, template_json};
use crate::server::{ApiError, SharedState};

// --------------------------------------------------------- dictionary, templates

pub(super) async fn dictionary_index(State(state): State<SharedState>) -> Json<Value> {
    let mut links: Vec<String> = state
        .dictionary
        .nodes()
        .iter()
        .map(|n| format!("/v0/submission/_dictionary/{}", n.id))
        .collect();
    links.push("/v0/submission/_dictionary/_all".into());
    Json(json!({"links": links}))
}

pub(super) fn dictionary_document(state: &SharedState, entry: &str) -> Result<Value, ApiError> {
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

pub(super) async fn dictionary_entry(
    State(state): State<SharedState>,
    Path(entry): Path<String>,
) -> Result<Json<Value>, ApiError> {
    dictionary_document(&state, &entry).map(Json)
}

pub(super) async fn project_dictionary_index(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Caller(principal, _): Caller,
) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn project_dictionary_entry(
    State(state): State<SharedState>,
    Path((program, code, entry)): Path<(String, String, String)>,
    Caller(principal, _): Caller,
) -> Result<Json<Value>, ApiError> {
    submission(&state, &principal)
        .project(&program, &code)
        .await?;
    dictionary_document(&state, &entry).map(Json)
}

pub(super) fn template_format(query: &HashMap<String, String>) -> Result<Format, ApiError> {
    let text = query.get("format").map_or("tsv", String::as_str);
    Format::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Format {text} is not supported; supported formats are: csv,tsv,json."
        ))
    })
}

pub(super) fn template_bytes(
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

pub(super) async fn template(
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

pub(super) async fn project_template(
    State(state): State<SharedState>,
    Path((_, _, node)): Path<(String, String, String)>,
    query: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    template(State(state), Path(node), query).await
}

pub(super) async fn all_templates(
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
            let archive = export::tar_gz(&files)
                .map_err(|e| ApiError::new(500, format!("cannot build the archive: {e}")))?;
            Ok(attachment(
                "submission_templates.tar.gz",
                format,
                Body::from(archive),
            ))
        }
    }
}
