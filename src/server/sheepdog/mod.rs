//! Sheepdog-compatible submission endpoints under `/api/v0/submission`:
//! programs, projects, entity upload/read/delete, export, templates and the
//! dictionary (API.md §2).

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::Value;

mod body;
mod dictionary;
mod entities;
mod export;
mod programs;

use super::{ApiError, SharedState};
use crate::auth::Principal;
use crate::submission::envelope::EnvelopeText;
use crate::submission::{Project, Submission};
use body::*;
use dictionary::*;
use entities::*;
use export::*;
use programs::*;

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
        landing: Some(&state.objects),
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
    if state.refusal_log.take(&key).is_err() {
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
