//! Arborist-compatible `/authz` endpoints: the caller's auth mapping, auth
//! checks, and the admin API that manages users, roles, policies and grants.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::caller::require_admin;
use super::{ApiError, ArboristAdmin, Caller, CallerPermissions, SharedState, parse_json_body};
use crate::auth::PolicyError;
use crate::auth::{Permissions, add_user};
use crate::store::{PolicyRow, RoleRow, StoreError};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/mapping", get(own_mapping).post(user_mapping))
        .route("/resources", get(resources))
        .route("/auth/request", post(auth_request))
        .route("/user", post(create_user).get(list_users))
        .route("/user/{name}/policy", post(grant_policy))
        .route("/user/{name}/policy/{policy}", delete(revoke_policy))
        .route("/role", post(create_role).get(list_roles))
        .route("/role/{id}", delete(delete_role))
        .route("/policy", post(create_policy).get(list_policies))
        .route("/policy/{id}", delete(delete_policy))
        .route("/group/{name}/policy", post(grant_group_policy))
        .route("/group/{name}/user", post(add_group_user))
}

async fn own_mapping(
    State(state): State<SharedState>,
    CallerPermissions(permissions): CallerPermissions,
) -> Result<Json<Value>, ApiError> {
    let resources = state.store.list_resources().await?;
    Ok(Json(permissions.mapping(&resources)))
}

async fn user_mapping(
    State(state): State<SharedState>,
    Caller(principal, _): Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json_body(&body)?;
    let username = body
        .get("username")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("missing 'username'"))?;
    if !username.eq_ignore_ascii_case(&principal.user.username) {
        require_admin(&principal)?;
    }
    let permissions = Permissions::load(&state.store, Some(username)).await?;
    let resources = state.store.list_resources().await?;
    Ok(Json(permissions.mapping(&resources)))
}

async fn resources(
    State(state): State<SharedState>,
    CallerPermissions(permissions): CallerPermissions,
) -> Result<Json<Value>, ApiError> {
    let all = state.store.list_resources().await?;
    let mapping = permissions.mapping(&all);
    let paths: Vec<&String> = mapping
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    Ok(Json(json!({"resources": paths})))
}

/// `POST /authz/auth/request`: `{"requests": [{"resource", "action": {"service", "method"}}]}`.
async fn auth_request(
    State(_state): State<SharedState>,
    CallerPermissions(permissions): CallerPermissions,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_json_body(&body)?;
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("missing 'requests'"))?;
    let auth = !requests.is_empty()
        && requests.iter().all(|r| {
            let resource = r["resource"].as_str().unwrap_or_default();
            let service = r["action"]["service"].as_str().unwrap_or_default();
            let method = r["action"]["method"].as_str().unwrap_or_default();
            permissions.allows(resource, service, method)
        });
    Ok(Json(json!({"auth": auth})))
}

fn string_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("missing or empty '{key}'")))
}

fn string_list(body: &Value, key: &str) -> Result<Vec<String>, ApiError> {
    body.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .ok_or_else(|| ApiError::bad_request(format!("missing list '{key}'")))
}

async fn create_user(
    State(state): State<SharedState>,
    _admin: ArboristAdmin,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json_body(&body)?;
    let name = string_field(&body, "name")?;
    match add_user(&state.store, name, None, false).await {
        Ok(user) => Ok((StatusCode::CREATED, Json(json!({"name": user.username}))).into_response()),
        Err(StoreError::Conflict(m)) => Err(ApiError::new(409, m)),
        Err(e) => Err(e.into()),
    }
}

async fn list_users(
    State(state): State<SharedState>,
    _admin: ArboristAdmin,
) -> Result<Json<Value>, ApiError> {
    let users = state.store.list_users().await?;
    let users: Vec<Value> = users
        .iter()
        .map(|u| json!({"name": u.username, "is_admin": u.is_admin}))
        .collect();
    Ok(Json(json!({"users": users})))
}

async fn grant_policy(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    _admin: ArboristAdmin,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let body = parse_json_body(&body)?;
    let policy = string_field(&body, "policy")?;
    if state.store.user_by_name(&name).await?.is_none() {
        return Err(ApiError::new(404, format!("user not found: {name}")));
    }
    if !state.store.policy_exists(policy).await? {
        return Err(ApiError::bad_request(format!("policy not found: {policy}")));
    }
    state.store.grant_user_policy(&name, policy).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_policy(
    State(state): State<SharedState>,
    Path((name, policy)): Path<(String, String)>,
    _admin: ArboristAdmin,
) -> Result<StatusCode, ApiError> {
    if state.store.revoke_user_policy(&name, &policy).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            404,
            format!("user {name} has no policy {policy}"),
        ))
    }
}

async fn create_role(
    State(state): State<SharedState>,
    _admin: ArboristAdmin,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json_body(&body)?;
    let id = string_field(&body, "id")?.to_string();
    let permissions = body
        .get("permissions")
        .filter(|p| p.is_array())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("missing list 'permissions'"))?;
    for permission in permissions.as_array().into_iter().flatten() {
        if permission["action"]["service"].as_str().is_none()
            || permission["action"]["method"].as_str().is_none()
        {
            return Err(ApiError::bad_request(format!(
                "each permission needs action.service and action.method: {permission}"
            )));
        }
    }
    if state.store.roles().await?.iter().any(|r| r.id == id) {
        return Err(ApiError::new(
            409,
            format!("role with this ID already exists: {id}"),
        ));
    }
    state
        .store
        .upsert_role(&RoleRow {
            id: id.clone(),
            permissions,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"created": {"id": id}}))).into_response())
}

async fn list_roles(
    State(state): State<SharedState>,
    _admin: ArboristAdmin,
) -> Result<Json<Value>, ApiError> {
    let roles: Vec<Value> = state
        .store
        .roles()
        .await?
        .into_iter()
        .map(|r| json!({"id": r.id, "permissions": r.permissions}))
        .collect();
    Ok(Json(json!({"roles": roles})))
}

async fn delete_role(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    _admin: ArboristAdmin,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_role(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(404, format!("role not found: {id}")))
    }
}

async fn create_policy(
    State(state): State<SharedState>,
    _admin: ArboristAdmin,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_json_body(&body)?;
    let policy = PolicyRow {
        id: string_field(&body, "id")?.to_string(),
        role_ids: string_list(&body, "role_ids")?,
        resource_paths: string_list(&body, "resource_paths")?,
    };
    crate::auth::create_policy(&state.store, &policy)
        .await
        .map_err(|e| match e {
            PolicyError::Exists(_) => ApiError::new(409, e.to_string()),
            PolicyError::Store(e) => e.into(),
            other => ApiError::bad_request(other.to_string()),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"created": {"id": policy.id}})),
    )
        .into_response())
}

async fn list_policies(
    State(state): State<SharedState>,
    _admin: ArboristAdmin,
) -> Result<Json<Value>, ApiError> {
    let policies: Vec<Value> = state
        .store
        .policies()
        .await?
        .into_iter()
        .map(|p| json!({"id": p.id, "role_ids": p.role_ids, "resource_paths": p.resource_paths}))
        .collect();
    Ok(Json(json!({"policies": policies})))
}

async fn delete_policy(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    _admin: ArboristAdmin,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_policy(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(404, format!("policy not found: {id}")))
    }
}

/// `POST /authz/group/<name>/policy`: grant a policy to a group; the groups
/// `anonymous` and `logged-in` reach every caller and every signed-in user.
async fn grant_group_policy(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    _admin: ArboristAdmin,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let body = parse_json_body(&body)?;
    let policy = string_field(&body, "policy")?;
    if !state.store.policy_exists(policy).await? {
        return Err(ApiError::bad_request(format!("policy not found: {policy}")));
    }
    state.store.grant_group_policy(&name, policy).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /authz/group/<name>/user`: add a user to a group.
async fn add_group_user(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    _admin: ArboristAdmin,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let body = parse_json_body(&body)?;
    let username = string_field(&body, "username")?;
    if state.store.user_by_name(username).await?.is_none() {
        return Err(ApiError::new(404, format!("user not found: {username}")));
    }
    state.store.add_group_user(&name, username).await?;
    Ok(StatusCode::NO_CONTENT)
}
