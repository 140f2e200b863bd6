//! Fence-compatible `/user` endpoints: API keys, token exchange, user info,
//! and the public signing keys (API.md §1.3).

use std::collections::HashMap;

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, Caller, Credentials, SharedState, UserInfo, parse_json_body};
use crate::auth::tokens::USER_ALLOWED_SCOPES;
use crate::auth::{TokenError, create_api_key};
use crate::store::now_unix;

pub fn routes() -> Router<SharedState> {
    // `/credentials/cdis/...` is fence's older alias of `/credentials/api/...`; the SDK uses it.
    Router::new()
        .route("/credentials/api/access_token", post(exchange))
        .route("/credentials/cdis/access_token", post(exchange))
        .route("/credentials/api", post(create_key).get(list_keys))
        .route("/credentials/cdis", post(create_key).get(list_keys))
        .route("/credentials/api/{jti}", delete(revoke_key))
        .route("/credentials/cdis/{jti}", delete(revoke_key))
        .route("/user", get(user_info).post(user_info))
        .route("/.well-known/jwks", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/jwt/keys", get(legacy_keys))
}

/// Fields of a JSON or form-encoded body.
pub(super) fn body_fields(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    if form {
        let fields: HashMap<String, String> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::bad_request(format!("Unable to parse form: {e}")))?;
        return Ok(json!(fields));
    }
    parse_json_body(body)
}

fn expires_in(query: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    query
        .get("expires_in")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid 'expires_in' value '{v}'")))
        })
        .transpose()
}

/// `POST /user/credentials/{api,cdis}/access_token`: API key -> access token.
async fn exchange(
    State(state): State<SharedState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // Failed exchanges are throttled per client address and claimed user, so
    // one client guessing does not lock out others behind the same proxy.
    let claimed_user = claimed_subject(&body).unwrap_or_else(|| "-".to_string());
    let throttle_key = format!(
        "exchange:{}:{claimed_user}",
        peer.map_or_else(|| "local".to_string(), |p| p.0.0.ip().to_string())
    );
    let result = exchange_key(&state, &query, &headers, &body).await;
    // A client past its failures gets 429 instead of 401: a made-up key
    // cannot pass the signature check anyway, so the check runs first and
    // a right key is never held up by others' failures.
    if let Err(e) = &result
        && e.status == StatusCode::UNAUTHORIZED
    {
        state.failed_exchanges.take(&throttle_key)?;
    }
    result
}

/// The `sub` an API key in the body claims (unverified: only to group failures).
fn claimed_subject(body: &[u8]) -> Option<String> {
    use base64::Engine;
    let fields: Value = serde_json::from_slice(body).ok()?;
    let payload = fields.get("api_key")?.as_str()?.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?,
    )
    .ok()?;
    claims
        .get("sub")
        .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
}

async fn exchange_key(
    state: &SharedState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let fields = body_fields(headers, body)?;
    let api_key = fields
        .get("api_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad_request("Please provide an api_key in payload"))?;
    let unauthorized = |e: TokenError| match e {
        TokenError::Store(s) => ApiError::from(s),
        other => ApiError::new(401, other.to_string()),
    };
    let claims = state
        .tokens
        .verify(&state.store, api_key, "api_key")
        .await
        .map_err(unauthorized)?;
    let record = state.store.api_key(&claims.jti).await?;
    if record.is_none_or(|r| r.revoked) {
        return Err(unauthorized(TokenError::Revoked));
    }
    if !claims.has_scope("fence") {
        return Err(unauthorized(TokenError::MissingScope("fence".into())));
    }
    let user = match claims.sub.parse::<i64>() {
        Ok(id) => state.store.user_by_id(id).await?,
        Err(_) => None,
    }
    .filter(|u| u.active)
    .ok_or_else(|| ApiError::new(401, "the key's user does not exist or is inactive"))?;
    let default_ttl = state.tokens.lifetimes.access_token;
    let ttl = expires_in(query)?
        .filter(|&t| t > 0)
        .map_or(default_ttl, |t| t.min(default_ttl));
    if claims.exp < now_unix() + ttl {
        return Err(ApiError::bad_request(
            "Cannot issue an access token that would expire after the provided API key does. Please obtain a new API key and try again",
        ));
    }
    let token = state.tokens.issue_access_token(
        &user,
        claims.scope.clone(),
        ttl,
        Some(claims.jti.as_str()),
    );
    Ok(Json(json!({"access_token": token})))
}

/// `POST /user/credentials/api/`: a new API key for the caller (needs `credentials` scope).
async fn create_key(
    State(state): State<SharedState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Caller(principal, _): Caller<Credentials>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let fields = body_fields(&headers, &body)?;
    let requested: Vec<String> = match fields.get("scope") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    if let Some(bad) = requested
        .iter()
        .find(|s| !USER_ALLOWED_SCOPES.contains(&s.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "Scope {bad} is not supported"
        )));
    }
    let mut scopes = requested;
    scopes.extend(
        principal
            .claims
            .scope
            .iter()
            .filter(|s| USER_ALLOWED_SCOPES.contains(&s.as_str()))
            .cloned(),
    );
    let credentials = create_api_key(
        &state.store,
        &state.tokens,
        &principal.user,
        scopes,
        expires_in(&query)?,
    )
    .await?;
    Ok(Json(credentials))
}

async fn list_keys(
    State(state): State<SharedState>,
    Caller(principal, _): Caller<Credentials>,
) -> Result<Json<Value>, ApiError> {
    let keys = state.store.list_api_keys(principal.user.id).await?;
    let jtis: Vec<Value> = keys
        .iter()
        .map(|k| json!({"jti": k.jti, "exp": k.exp}))
        .collect();
    Ok(Json(json!({"jtis": jtis})))
}

async fn revoke_key(
    State(state): State<SharedState>,
    Path(jti): Path<String>,
    Caller(principal, _): Caller<Credentials>,
) -> Result<Response, ApiError> {
    if state.store.revoke_api_key(&jti, principal.user.id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            404,
            format!("token not found with JTI {jti} for current user"),
        ))
    }
}

/// `GET /user/user`: who the caller is and what they may do.
async fn user_info(
    State(state): State<SharedState>,
    Caller(principal, _): Caller<UserInfo>,
) -> Result<Json<Value>, ApiError> {
    let resources = state.store.list_resources().await?;
    let authz = principal.permissions.mapping(&resources);
    let user = &principal.user;
    let resource_list: Vec<&String> = authz
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    Ok(Json(json!({
        "user_id": user.id,
        "sub": user.id.to_string(),
        "idp": "local",
        "username": user.username,
        "name": user.username,
        "display_name": user.username,
        "preferred_username": user.username,
        "phone_number": "",
        "email": null,
        "is_admin": user.is_admin,
        "active": user.active,
        "role": if user.is_admin { "admin" } else { "user" },
        "project_access": {},
        "certificates_uploaded": [],
        "resources_granted": [],
        "groups": [],
        "message": "",
        "primary_google_service_account": null,
        "resources": resource_list,
        "authz": authz,
    })))
}

async fn jwks(State(state): State<SharedState>) -> Json<Value> {
    Json(state.tokens.jwks())
}

async fn legacy_keys(State(state): State<SharedState>) -> Json<Value> {
    Json(state.tokens.pem_keys())
}

async fn openid_configuration(State(state): State<SharedState>) -> Json<Value> {
    let base = &state.tokens.issuer;
    Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks"),
        "userinfo_endpoint": format!("{base}/user"),
        "scopes_supported": USER_ALLOWED_SCOPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["aud", "sub", "iss", "exp", "jti", "auth_time", "azp", "scope", "nonce", "context"],
    }))
}
