//! Entities: submit (POST/PUT, dry runs), read, delete, and the data-file
//! manifests (API.md §2.5-2.8).

use crate::server::Caller;
use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value, json};

use super::*;
use crate::auth::Principal;
use crate::formats::DocumentLimits;
use crate::server::{ApiError, BodyLimit, SharedState};
use crate::store::NodeRow;
use crate::submission::{Mode, Project, Rights};

/// `POST` (create, `UPSERT = false`) or `PUT` (upsert) of entities, for real or
/// as a dry run (`DRY_RUN`).
pub(super) async fn submit<const UPSERT: bool, const DRY_RUN: bool>(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    headers: HeaderMap,
    Caller(principal, _): Caller,
    Extension(limit): Extension<BodyLimit>,
    Extension(documents): Extension<DocumentLimits>,
    body: Body,
) -> Result<Response, ApiError> {
    let (mode, dry_run) = (if UPSERT { Mode::Upsert } else { Mode::Create }, DRY_RUN);
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

pub(super) fn split_ids(ids: &str) -> Vec<String> {
    ids.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The project `program`-`code`, which the caller must be allowed `methods` in.
pub(super) async fn project_for(
    state: &SharedState,
    principal: &Principal,
    program: &str,
    code: &str,
    methods: &[&str],
) -> Result<Project, ApiError> {
    let project = submission(state, principal).project(program, code).await?;
    require_project(principal, &project, methods)?;
    Ok(project)
}

/// `GET /P/Q/manifest?ids=` (also `/upload_manifest`): the YAML manifest of
/// the named data files, as sheepdog answers it.
pub(super) async fn file_manifest(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    Caller(principal, _): Caller,
) -> Result<Response, ApiError> {
    let project = project_for(&state, &principal, &program, &code, &["read"]).await?;
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
pub(super) async fn nodes_in_project(
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

pub(super) async fn get_entities(
    State(state): State<SharedState>,
    Path((program, code, ids)): Path<(String, String, String)>,
    Caller(principal, _): Caller,
) -> Result<Json<Value>, ApiError> {
    let project = project_for(&state, &principal, &program, &code, &["read"]).await?;
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

pub(super) async fn delete_entities(
    State(state): State<SharedState>,
    Path((program, code, ids)): Path<(String, String, String)>,
    Caller(principal, _): Caller,
) -> Result<Response, ApiError> {
    remove(state, program, code, ids, principal, false).await
}

pub(super) async fn delete_entities_dry_run(
    State(state): State<SharedState>,
    Path((program, code, ids)): Path<(String, String, String)>,
    Caller(principal, _): Caller,
) -> Result<Response, ApiError> {
    remove(state, program, code, ids, principal, true).await
}

pub(super) async fn remove(
    state: SharedState,
    program: String,
    code: String,
    ids: String,
    principal: Principal,
    dry_run: bool,
) -> Result<Response, ApiError> {
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
