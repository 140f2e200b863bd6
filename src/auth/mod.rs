//! Identity and access: users, API keys and tokens (fence), and grants (arborist).

pub mod authz;
mod callers;
mod import;
mod policies;
pub mod tokens;

use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use serde_json::json;

use crate::store::{PolicyRow, RoleRow, Store, StoreError, UserRow};
pub use authz::Permissions;
pub use callers::VerifiedCallers;
pub use import::{ImportError, ImportSummary, import_user_yaml};
pub use policies::{PolicyError, create_policy};
pub use tokens::{Claims, Lifetimes, TokenError, TokenService};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRow,
    pub claims: Claims,
    pub permissions: Permissions,
}

/// An Argon2id hash of `password` with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 hashing with default parameters cannot fail")
        .to_string()
}

/// Longest user name and password a login may name: none is longer.
pub use crate::store::MAX_USERNAME_BYTES;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A hash no password matches, checked for unknown users so that a failed
/// login takes as long whether or not the name exists.
pub static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password(&uuid::Uuid::new_v4().to_string()));

/// A client-supplied value as it may appear in a log line: at most 64
/// characters, control characters escaped (no forged lines).
pub fn loggable(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars().take(64) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if value.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// Check a password against a stored argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Name of the policy that makes a user an administrator of everything.
pub const ADMIN_POLICY: &str = "commons-admin";

/// Ensure the built-in roles and the administrator policy exist.
pub async fn ensure_builtin_authz(store: &Store) -> Result<(), StoreError> {
    let roles = [
        ("admin", "*", "*"),
        ("reader", "*", "read"),
        ("creator", "*", "create"),
        ("updater", "*", "update"),
        ("deleter", "*", "delete"),
        ("peregrine_reader", "peregrine", "read"),
        ("sheepdog_admin", "sheepdog", "*"),
    ];
    let existing = store.roles().await?;
    for (id, service, method) in roles {
        if existing.iter().any(|r| r.id == id) {
            continue;
        }
        store
            .upsert_role(&RoleRow {
                id: id.to_string(),
                permissions: json!([{"id": id, "action": {"service": service, "method": method}}]),
            })
            .await?;
    }
    if !store.policy_exists(ADMIN_POLICY).await? {
        store
            .upsert_policy(&PolicyRow {
                id: ADMIN_POLICY.to_string(),
                role_ids: vec!["admin".into()],
                resource_paths: vec!["/".into()],
            })
            .await?;
    }
    Ok(())
}

/// Create a user; administrators get the administrator policy.
pub async fn add_user(
    store: &Store,
    username: &str,
    password: Option<&str>,
    admin: bool,
) -> Result<UserRow, StoreError> {
    ensure_builtin_authz(store).await?;
    let hash = password.map(hash_password);
    let user = store.create_user(username, hash.as_deref(), admin).await?;
    if admin {
        store.grant_user_policy(username, ADMIN_POLICY).await?;
    }
    Ok(user)
}

/// Mint and record an API key; returns the credentials.json document.
pub async fn create_api_key(
    store: &Store,
    tokens: &TokenService,
    user: &UserRow,
    scopes: Vec<String>,
    expires_in: Option<i64>,
) -> Result<serde_json::Value, StoreError> {
    let (api_key, claims) = tokens.issue_api_key(user, scopes, expires_in);
    store
        .insert_api_key(&claims.jti, user.id, claims.exp)
        .await?;
    Ok(json!({"api_key": api_key, "key_id": claims.jti}))
}

/// How long a one-time login link stays usable.
pub const LOGIN_LINK_TTL: i64 = 24 * 60 * 60;

/// The stored form of a login link's secret: only its hash is kept.
pub fn login_link_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A one-time secret that logs `user` in to the portal (see `GET /user/login/link`).
pub async fn create_login_link(store: &Store, user: &UserRow) -> Result<String, StoreError> {
    use base64::Engine;
    let secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    store
        .insert_login_link(
            &login_link_hash(&secret),
            user.id,
            crate::store::now_unix() + LOGIN_LINK_TTL,
        )
        .await?;
    Ok(secret)
}

/// What a first start created.
pub struct Bootstrapped {
    /// The administrator's credentials file.
    pub credentials: std::path::PathBuf,
    /// The secret of a one-time portal login link for the administrator.
    pub login_secret: String,
}

/// First start: an administrator, their credentials file (mode 0600) and a
/// one-time portal login link. None when users already exist.
pub async fn bootstrap(
    store: &Store,
    tokens: &TokenService,
    data_dir: &Path,
) -> anyhow::Result<Option<Bootstrapped>> {
    ensure_builtin_authz(store).await?;
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let admin = match add_user(store, "admin", None, true).await {
        Ok(admin) => admin,
        // Another instance on the same database bootstrapped first.
        Err(StoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let scopes = tokens::USER_ALLOWED_SCOPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let credentials = create_api_key(store, tokens, &admin, scopes, None).await?;
    let path = data_dir.join("credentials.json");
    write_private_file(&path, &serde_json::to_string_pretty(&credentials)?)?;
    let login_secret = create_login_link(store, &admin).await?;
    Ok(Some(Bootstrapped {
        credentials: path,
        login_secret,
    }))
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod loggable_tests {
    #[test]
    fn logged_values_are_short_and_on_one_line() {
        let forged = "alice\n2026-01-01 INFO admin logged in\r\u{1b}[31m";
        let logged = super::loggable(forged);
        assert!(!logged.chars().any(char::is_control), "{logged}");
        assert!(logged.contains("\\n"));
        let long = super::loggable(&"x".repeat(10_000));
        assert_eq!(long.chars().count(), 65);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_from_elsewhere_and_from_here_verify() {
        // The Argon2 reference implementation's argon2id vector (password
        // "password", salt "somesalt", m=65536, t=2, p=1): stored hashes
        // made by earlier releases or other tools keep working.
        let reference = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        assert!(verify_password("password", reference));
        assert!(!verify_password("Password", reference));
        let ours = hash_password("correct horse");
        assert!(ours.starts_with("$argon2id$v=19$"), "{ours}");
        assert!(verify_password("correct horse", &ours));
        assert!(!verify_password("correct horse ", &ours));
        assert_ne!(ours, hash_password("correct horse"), "a new salt each time");
    }
}
