//! Programs and projects: list, create or update, delete (API.md §2.2-2.4).

use crate::server::{Caller, OpenId};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::server::{ApiError, SharedState};

// ------------------------------------------------------------------ programs

pub(super) async fn list_programs(
    State(state): State<SharedState>,
    Caller(_, _): Caller<OpenId>,
) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn upsert_program(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Caller(principal, _): Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn delete_program(
    State(state): State<SharedState>,
    Path(program): Path<String>,
    Caller(principal, _): Caller,
) -> Result<StatusCode, ApiError> {
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

pub(super) async fn list_projects(
    State(state): State<SharedState>,
    Path(program): Path<String>,
    Caller(principal, _): Caller<OpenId>,
) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn upsert_project(
    State(state): State<SharedState>,
    Path(program): Path<String>,
    headers: HeaderMap,
    Caller(principal, _): Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn delete_project(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Caller(principal, _): Caller,
) -> Result<StatusCode, ApiError> {
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

pub(super) async fn open_project(
    State(state): State<SharedState>,
    Path((program, code)): Path<(String, String)>,
    Caller(principal, _): Caller,
) -> Result<Json<Value>, ApiError> {
    let sub = submission(&state, &principal);
    let project = sub.project(&program, &code).await?;
    require_project(&principal, &project, &["release"])?;
    Ok(Json(sub.transition_project(&project, "open").await?))
}
