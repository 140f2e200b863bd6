//! Browser sessions for the portal: a session token in an HttpOnly cookie,
//! a CSRF check on every state-changing request that relies on that cookie,
//! password login, one-time login links, and logout.
//!
//! The cookie is only ever turned into the same bearer token an API client
//! sends, so every handler checks a browser exactly as it checks the SDK.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cookie::{Cookie, SameSite};
use serde_json::{Value, json};

use super::caller::bearer;
use super::{ApiError, SharedState, fence::body_fields};
use crate::auth::tokens::{SESSION_TTL, session_scopes};
use crate::auth::{
    DUMMY_HASH, MAX_PASSWORD_BYTES, MAX_USERNAME_BYTES, TokenError, login_link_hash,
    verify_password,
};
use crate::store::UserRow;

/// The cookie that holds the session token (HttpOnly: page scripts never see it).
pub const SESSION_COOKIE: &str = "commons_session";
/// A cookie page scripts read to learn the CSRF token after a reload.
pub const CSRF_COOKIE: &str = "commons_csrf";
/// The header in which the page echoes the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/login/local", post(login))
        .route("/login/link", get(login_link))
        .route("/logout", get(confirm_logout).post(logout))
}

/// The CSRF token that belongs to a session token. Another site can neither
/// read the HttpOnly session cookie nor, therefore, compute this.
pub fn csrf_token(session_token: &str) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"commons-csrf\0");
    hasher.update(session_token.as_bytes());
    hex::encode(hasher.finalize())
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Middleware: a request without an `Authorization` header but with a
/// session cookie is authenticated by that cookie; if it may change
/// something (any method but GET/HEAD/OPTIONS) it must also carry the
/// session's CSRF token in `X-CSRF-Token`.
pub async fn cookie_to_bearer(mut request: Request, next: Next) -> Response {
    if request.headers().contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    let Some(token) = cookie_value(request.headers(), SESSION_COOKIE) else {
        return next.run(request).await;
    };
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        let expected = csrf_token(&token);
        // The logout confirmation page is a plain form: it sends the token
        // in its action's query string, which only this server's page knows.
        let in_query = (request.uri().path() == "/user/logout")
            .then(|| query_value(request.uri().query().unwrap_or(""), "csrf_token"))
            .flatten();
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes().to_vec())
            .or(in_query.map(String::into_bytes))
            .unwrap_or_default();
        if aws_lc_rs::constant_time::verify_slices_are_equal(&sent, expected.as_bytes()).is_err() {
            return ApiError::forbidden(
                "the request was sent with the session cookie but without the page's CSRF token (X-CSRF-Token); reload the page and try again",
            )
            .into_response();
        }
    }
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(value) => {
            request.headers_mut().insert(header::AUTHORIZATION, value);
            next.run(request).await
        }
        Err(_) => {
            ApiError::unauthorized("the session cookie is malformed; log in again").into_response()
        }
    }
}

fn query_value(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// `Set-Cookie` headers (appended: a response sets both cookies).
type Cookies = AppendHeaders<[(header::HeaderName, String); 2]>;

/// `Set-Cookie` values that start a session with `token`.
fn session_cookies(state: &SharedState, token: &str) -> Cookies {
    let secure = state.tokens.issuer.starts_with("https://");
    let max_age = cookie::time::Duration::seconds(SESSION_TTL);
    let session = Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(max_age);
    let csrf = Cookie::build((CSRF_COOKIE, csrf_token(token)))
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(max_age);
    AppendHeaders([
        (header::SET_COOKIE, session.to_string()),
        (header::SET_COOKIE, csrf.to_string()),
    ])
}

/// `Set-Cookie` values that end the session in the browser.
fn cleared_cookies() -> Cookies {
    AppendHeaders([SESSION_COOKIE, CSRF_COOKIE].map(|name| {
        let cookie = Cookie::build((name, ""))
            .path("/")
            .max_age(cookie::time::Duration::ZERO);
        (header::SET_COOKIE, cookie.to_string())
    }))
}

/// A session for `user`: the token, and the cookies that carry it.
fn start_session(state: &SharedState, user: &UserRow) -> (String, Cookies) {
    let token = state
        .tokens
        .issue_access_token(user, session_scopes(), SESSION_TTL, None);
    let cookies = session_cookies(state, &token);
    (token, cookies)
}

/// `POST /user/login/local`: a local account's user name and password (JSON
/// or form) for a session token, returned in the body for API clients and
/// set as the session cookie for the portal. The session may manage the
/// user's API keys.
async fn login(
    State(state): State<SharedState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A page on another site must not log this browser in to another account.
    let public_origin = state.tokens.issuer.trim_end_matches("/user");
    if cross_site(&headers, public_origin) {
        return Err(ApiError::forbidden(
            "a login must come from this server's own pages",
        ));
    }
    let fields = body_fields(&headers, &body)?;
    let field = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return Err(ApiError::bad_request(
            "Please provide a username and a password",
        ));
    };
    let address = peer.map(|p| p.0.0.ip());
    let user = check_password(&state, username, password, address).await?;
    let (token, cookies) = start_session(&state, &user);
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": SESSION_TTL,
        "csrf_token": csrf_token(&token),
    });
    Ok((cookies, Json(body)).into_response())
}

/// The active local account `username` whose password is `password`, or
/// 401 "Invalid username or password". Throttled per name and per client
/// address; an unknown name costs a hash check too, so timing does not tell
/// which names exist (`/user/login/local`, and HTTP Basic on index writes).
pub(super) async fn check_password(
    state: &SharedState,
    username: &str,
    password: &str,
    address: Option<std::net::IpAddr>,
) -> Result<crate::store::UserRow, ApiError> {
    let refused = || ApiError::new(401, "Invalid username or password");
    // No account has a name or password this long: refuse before any work.
    if username.len() > MAX_USERNAME_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(refused());
    }
    // Counted before the password is checked, so concurrent guesses cannot
    // all pass the test first.
    state.logins_by_name.take(&username.to_lowercase())?;
    let address = address.map_or_else(|| "local".to_string(), |ip| ip.to_string());
    state.logins_by_address.take(&address)?;
    let user = state.store.user_by_name(username).await?;
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.clone());
    // Argon2 takes tens of milliseconds of CPU: off the async workers, which
    // would otherwise stop serving every other request meanwhile.
    let typed = password.to_string();
    let password_ok = tokio::task::spawn_blocking(move || verify_password(&typed, &hash))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a password check failed");
            ApiError::new(500, "internal server error")
        })?;
    user.filter(|u| u.active && u.password_hash.is_some() && password_ok)
        .ok_or_else(|| {
            tracing::warn!(username = %crate::auth::loggable(username), "failed login");
            refused()
        })
}

/// Whether a browser says the request comes from a page of another origin:
/// `Origin` is neither the public URL's origin nor the host addressed (a
/// proxy may rewrite one of them). Clients that send no `Origin`, like the
/// SDK and scripts, are not browsers on another site.
fn cross_site(headers: &HeaderMap, public_origin: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin != public_origin && (origin_host.is_none() || origin_host != host)
}

/// `GET /user/login/link?token=…`: use up a one-time login link (printed at
/// bootstrap) and open the portal logged in.
async fn login_link(
    State(state): State<SharedState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let invalid = || {
        ApiError::unauthorized(
            "this login link is invalid, expired or already used; log in with a password or ask an administrator",
        )
    };
    let secret = query.get("token").ok_or_else(invalid)?;
    let user_id = state
        .store
        .take_login_link(&login_link_hash(secret))
        .await?
        .ok_or_else(invalid)?;
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .filter(|u| u.active)
        .ok_or_else(invalid)?;
    let (_, cookies) = start_session(&state, &user);
    Ok((StatusCode::FOUND, cookies, [(header::LOCATION, "/")]).into_response())
}

/// Whether `next` can only lead to a path on this server. Browsers ignore tabs
/// and newlines in a `Location` and read `\` as `/`, so `/\t/evil.example`
/// would be `//evil.example`: no whitespace, controls or backslashes at all.
fn local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b > b' ' && b != 0x7f && b != b'\\')
}

/// `GET /user/logout?next=/path`: a page that asks before logging out. A
/// GET changes nothing, so a link or image on another site cannot log a
/// browser out; the page's button posts with the session's CSRF token.
async fn confirm_logout(
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let next = query
        .get("next")
        .filter(|n| local_path(n))
        .map_or("/", String::as_str);
    let csrf = cookie_value(&headers, SESSION_COOKIE)
        .map(|token| csrf_token(&token))
        .unwrap_or_default();
    let action = format!(
        "/user/logout?{}",
        serde_urlencoded::to_string([("next", next), ("csrf_token", csrf.as_str())])
            .unwrap_or_default()
    );
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log out</title>\
         <link rel=\"stylesheet\" href=\"/portal/style.css\"></head><body><main>\
         <h1>Log out?</h1><form method=\"post\" action=\"{}\">\
         <button type=\"submit\">Log out</button> <a href=\"{}\">Stay logged in</a>\
         </form></main></body></html>",
        html_attribute(&action),
        html_attribute(next),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page holds the session's CSRF token.
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// Text safe inside a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `POST /user/logout?next=/path`: end the session (its token stops working
/// at once, wherever it was copied) and go to `next`, a path on this server.
/// A cookie session needs its CSRF token, as every change does.
async fn logout(
    State(state): State<SharedState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Ok(Some(token)) = bearer(&headers) {
        match state.tokens.verify(&state.store, token, "access").await {
            Ok(claims) if claims.api_key_jti.is_none() => {
                state.store.revoke_session(&claims.jti, claims.exp).await?;
            }
            Err(TokenError::Store(e)) => return Err(e.into()),
            // Tokens minted from API keys end with their key; nothing to end here.
            _ => {}
        }
    }
    let next = query
        .get("next")
        .filter(|n| local_path(n))
        .and_then(|n| HeaderValue::from_str(n).ok())
        .unwrap_or(HeaderValue::from_static("/"));
    Ok((
        StatusCode::FOUND,
        cleared_cookies(),
        [(header::LOCATION, next)],
    )
        .into_response())
}
