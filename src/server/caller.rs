//! Who is calling. Handlers name the caller they need as an argument, and
//! the request is authenticated before the handler runs: [`Caller`] (a
//! token with an optional scope), [`PasswordOrToken`] (also HTTP Basic, for
//! index writes), [`ArboristAdmin`], or [`CallerPermissions`] (anonymous
//! allowed). A handler without one of
//! these serves anyone (the authorization table test lists which).

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};

use super::{ApiError, AppState, SharedState};
use crate::auth::{Permissions, Principal, TokenError};

/// The scope a token must carry (fence's `openid`, `credentials`, `user`, `data`).
pub trait RequiredScope: Send + Sync + 'static {
    const SCOPE: Option<&'static str>;
}

/// Any valid token.
pub enum AnyScope {}
/// A token with the `openid` scope.
pub enum OpenId {}
/// A token with the `credentials` scope (API keys).
pub enum Credentials {}
/// A token with the `user` scope (`/user/user`).
pub enum UserInfo {}
/// A token with the `data` scope (fence's uploads and deletions of data files).
pub enum Data {}

impl RequiredScope for AnyScope {
    const SCOPE: Option<&'static str> = None;
}
impl RequiredScope for OpenId {
    const SCOPE: Option<&'static str> = Some("openid");
}
impl RequiredScope for Credentials {
    const SCOPE: Option<&'static str> = Some("credentials");
}
impl RequiredScope for UserInfo {
    const SCOPE: Option<&'static str> = Some("user");
}
impl RequiredScope for Data {
    const SCOPE: Option<&'static str> = Some("data");
}

/// The authenticated caller: a valid access token of an active user, with
/// scope `S`, and the caller's grants.
pub struct Caller<S: RequiredScope = AnyScope>(pub Principal, pub PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<SharedState> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let principal = state.principal(&parts.headers, S::SCOPE).await?;
        note_user(parts, &principal);
        Ok(Caller(principal, PhantomData))
    }
}

/// A caller who may administer authorization (arborist's `/` `*`).
pub struct ArboristAdmin(pub Principal);

impl FromRequestParts<SharedState> for ArboristAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let principal = state.principal(&parts.headers, None).await?;
        note_user(parts, &principal);
        require_admin(&principal)?;
        Ok(ArboristAdmin(principal))
    }
}

/// Refuses a caller who may not administer authorization.
pub fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.permissions.allows("/", "arborist", "*") {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Unauthorized: User must be an authorization administrator",
        ))
    }
}

/// The caller's permissions; without a token, the anonymous group's.
pub struct CallerPermissions(pub Permissions);

impl FromRequestParts<SharedState> for CallerPermissions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let permissions = match bearer(&parts.headers)? {
            None => Permissions::load(&state.store, None).await?,
            Some(token) => state
                .principal_from_token(token, None)
                .await
                .map(|p| {
                    note_user(parts, &p);
                    p.permissions
                })
                // Arborist answers 400 for an undecodable token; other failures
                // (e.g. the database away, 503) keep their status.
                .map_err(|e| {
                    if e.status == StatusCode::UNAUTHORIZED {
                        ApiError::bad_request(e.message)
                    } else {
                        e
                    }
                })?,
        };
        Ok(CallerPermissions(permissions))
    }
}

/// The caller of an index write: a bearer token, or HTTP Basic with a local
/// account's name and password, as indexd takes writes from its own
/// accounts (here the commons' users, with their grants; the password check
/// is the login's, throttled alike). A wrong Basic password is indexd's 403.
pub struct PasswordOrToken(pub Principal);

impl FromRequestParts<SharedState> for PasswordOrToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let Some((username, password)) = basic_credentials(&parts.headers)? else {
            let Caller(principal, _) = Caller::<AnyScope>::from_request_parts(parts, state).await?;
            return Ok(Self(principal));
        };
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let user = super::session::check_password(state, &username, &password, address)
            .await
            .map_err(|e| {
                if e.status == StatusCode::UNAUTHORIZED {
                    ApiError::new(403, "username / password mismatch")
                } else {
                    e
                }
            })?;
        let permissions = Permissions::load(&state.store, Some(&user.username)).await?;
        // No token: claims that name the user and nothing else.
        let now = crate::store::now_unix();
        let claims = crate::auth::tokens::Claims {
            pur: "basic".into(),
            iss: state.tokens.issuer.clone(),
            sub: user.id.to_string(),
            aud: Vec::new(),
            iat: now,
            exp: now,
            jti: String::new(),
            azp: String::new(),
            scope: Vec::new(),
            context: None,
            api_key_jti: None,
        };
        let principal = Principal {
            user,
            claims,
            permissions,
        };
        note_user(parts, &principal);
        Ok(Self(principal))
    }
}

/// `Authorization: Basic <base64 of name:password>`, when the request has it.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    use base64::Engine;
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || ApiError::unauthorized("could not parse authorization header");
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (name, password) = text.split_once(':').ok_or_else(malformed)?;
    Ok(Some((name.to_string(), password.to_string())))
}

/// The access log names the user a request acted as.
fn note_user(parts: &Parts, principal: &Principal) {
    if let Some(notes) = parts.extensions.get::<super::RequestNotes>() {
        notes.user(&principal.user.username);
    }
}

/// The bearer token of a request (API.md G3), or why there is none.
pub(super) fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("could not parse authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer")
                && !token.is_empty()
                && !token.contains(' ') =>
        {
            Ok(Some(token))
        }
        _ => Err(ApiError::unauthorized(
            "could not parse authorization header",
        )),
    }
}

impl AppState {
    /// Verify the access token of a request and load the caller's grants.
    pub async fn principal(
        &self,
        headers: &HeaderMap,
        scope: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let token = bearer(headers)?
            .ok_or_else(|| ApiError::unauthorized("no authorization header provided"))?;
        self.principal_from_token(token, scope).await
    }

    pub async fn principal_from_token(
        &self,
        token: &str,
        scope: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let missing_scope = |principal: &Principal| {
            scope
                .filter(|scope| !principal.claims.has_scope(scope))
                .map(|scope| ApiError::unauthorized(TokenError::MissingScope(scope.into())))
        };
        // Read before anything the caller is built from: a write that
        // lands meanwhile changes it, and the caller is not trusted again.
        let generation = self.store.identity_generation();
        if let Some(principal) = self.callers.get(token, generation) {
            return match missing_scope(&principal) {
                Some(refused) => Err(refused),
                None => Ok(principal),
            };
        }
        let claims = self
            .tokens
            .verify(&self.store, token, "access")
            .await
            .map_err(|e| match e {
                TokenError::Store(s) => s.into(),
                other => ApiError::unauthorized(other),
            })?;
        // The revocation check, the user lookup and the grants of the user
        // the token names depend on the claims alone: one round trip's wait
        // instead of two (the grants are read again if the names disagree).
        let claimed_name = claims
            .context
            .as_ref()
            .and_then(|c| c["user"]["name"].as_str())
            .map(str::to_string);
        let claimed_permissions = async {
            match &claimed_name {
                Some(name) => Permissions::load(&self.store, Some(name)).await.map(Some),
                None => Ok(None),
            }
        };
        let revoked = async {
            match &claims.api_key_jti {
                Some(key) => Ok(self.store.api_key(key).await?.is_none_or(|k| k.revoked)),
                None => self.store.session_revoked(&claims.jti).await,
            }
        };
        let user = async {
            match claims.sub.parse::<i64>() {
                Ok(id) => self.store.user_by_id(id).await,
                Err(_) => Ok(None),
            }
        };
        let (revoked, user, claimed_permissions) =
            tokio::try_join!(revoked, user, claimed_permissions)?;
        if revoked {
            return Err(ApiError::unauthorized(TokenError::Revoked));
        }
        if let Some(scope) = scope
            && !claims.has_scope(scope)
        {
            return Err(ApiError::unauthorized(TokenError::MissingScope(
                scope.into(),
            )));
        }
        let user = user.filter(|u| u.active).ok_or_else(|| {
            ApiError::unauthorized("the token's user does not exist or is inactive")
        })?;
        // A session opened before the user's sessions were ended (a new
        // password, `commons users end-sessions`).
        if claims.api_key_jti.is_none() && claims.iat < user.sessions_after {
            return Err(ApiError::unauthorized(TokenError::Revoked));
        }
        let permissions = match claimed_permissions {
            Some(permissions) if claimed_name.as_deref() == Some(user.username.as_str()) => {
                permissions
            }
            _ => Permissions::load(&self.store, Some(&user.username)).await?,
        };
        let principal = Principal {
            user,
            claims,
            permissions,
        };
        self.callers.insert(token, generation, principal.clone());
        Ok(principal)
    }
}
