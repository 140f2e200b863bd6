//! Users, API keys, token-signing keys and the arborist-style authorization
//! objects (resources, roles, policies, grants).

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;

use super::{Result, Store, StoreError, now_unix, on_pool};

/// How often a server reads the database's identity epoch to learn of
/// changes other processes made to users, keys, sessions and grants.
pub const IDENTITY_POLL: Duration = Duration::from_millis(100);

/// How long after a change that takes access away every server has seen
/// it: a server trusts the callers it keeps only while its last completed
/// read of the identity epoch began less than this long ago, and whatever
/// made such a change (a request, a `commons` command) answers only after
/// this long. So once a revocation is answered, it holds everywhere.
pub const IDENTITY_SETTLE: Duration = Duration::from_millis(300);

/// What a write to users, keys, sessions or grants may do to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdentityChange {
    /// Adds users, keys or grants: no caller loses anything.
    Extends,
    /// May take access away (a revocation, a disabled user, a narrower policy).
    Restricts,
}

/// An identity write in progress. When it ends, the callers this process
/// keeps are verified again before they are trusted.
pub(super) struct IdentityWrite<'a> {
    _lock: tokio::sync::MutexGuard<'a, ()>,
    store: &'a Store,
    change: IdentityChange,
}

impl Drop for IdentityWrite<'_> {
    fn drop(&mut self) {
        self.store
            .identity_generation
            .fetch_add(1, Ordering::SeqCst);
        if self.change == IdentityChange::Restricts {
            // Outside a settling scope (tests, start-up) no one waits.
            let _ = RESTRICTED_AT.try_with(|at| at.set(Some(Instant::now())));
        }
    }
}

tokio::task_local! {
    /// When the work in this scope last took access away, if it did.
    static RESTRICTED_AT: Cell<Option<Instant>>;
}

/// Run `work` (a request, a command) and, if it took access away from
/// anyone, return only once every server has seen that ([`IDENTITY_SETTLE`]).
pub async fn restrictions_settled<F: Future>(work: F) -> F::Output {
    let (output, restricted_at) = RESTRICTED_AT
        .scope(Cell::new(None), async {
            let output = work.await;
            (output, RESTRICTED_AT.with(Cell::get))
        })
        .await;
    if let Some(at) = restricted_at {
        tokio::time::sleep_until((at + IDENTITY_SETTLE).into()).await;
    }
    output
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub active: bool,
    /// Session tokens issued before this time (Unix seconds) no longer work.
    pub sessions_after: i64,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub jti: String,
    pub user_id: i64,
    pub exp: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub created: i64,
    pub retired: bool,
}

#[derive(Debug, Clone)]
pub struct RoleRow {
    pub id: String,
    /// Arborist permission objects: `[{"id", "action": {"service", "method"}}]`.
    pub permissions: Value,
}

#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub id: String,
    pub role_ids: Vec<String>,
    pub resource_paths: Vec<String>,
}

macro_rules! user_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<UserRow, StoreError>(UserRow {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            is_admin: row.try_get("is_admin")?,
            active: row.try_get("active")?,
            sessions_after: row.try_get("sessions_after")?,
        })
    }};
}

macro_rules! api_key_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<ApiKeyRow, StoreError>(ApiKeyRow {
            jti: row.try_get("jti")?,
            user_id: row.try_get("user_id")?,
            exp: row.try_get("exp")?,
            revoked: row.try_get("revoked")?,
        })
    }};
}

macro_rules! policy_from_row {
    ($row:expr) => {{
        let row = $row;
        let roles: String = row.try_get("role_ids")?;
        let paths: String = row.try_get("resource_paths")?;
        Ok::<PolicyRow, StoreError>(PolicyRow {
            id: row.try_get("id")?,
            role_ids: string_list(&roles)?,
            resource_paths: string_list(&paths)?,
        })
    }};
}

fn string_list(text: &str) -> Result<Vec<String>> {
    Ok(serde_json::from_str(text)?)
}

const USER_COLUMNS: &str = "id, username, password_hash, is_admin, active, sessions_after";

/// Run one statement that changes rows; returns how many it changed.
macro_rules! execute {
    ($store:expr, $sql:expr $(, $bind:expr)*) => {
        on_pool!($store, pool => {
            let done = sqlx::query($sql)$(.bind($bind))*.execute(pool).await?;
            Ok::<u64, StoreError>(done.rows_affected())
        })
    };
}

/// Longest user name accepted.
pub const MAX_USERNAME_BYTES: usize = 256;

/// The form two user names share when they read the same: compatibility
/// normalization (NFKC: the Kelvin sign `K` is `K`, full-width letters are
/// letters) and Unicode lower case. Grants are keyed by lower case, so two
/// users of one canonical form would share them; only one may exist.
pub fn canonical_username(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.nfkc().collect::<String>().to_lowercase()
}

impl Store {
    /// Serialises this process's identity writes (see [`IdentityWrite`]).
    pub(super) async fn identity_write(&self, change: IdentityChange) -> IdentityWrite<'_> {
        IdentityWrite {
            _lock: self.identity_lock.lock().await,
            store: self,
            change,
        }
    }

    /// A number that changes whenever users, keys, sessions or grants may
    /// have changed: at once for this process's own writes, and when the
    /// server's watch reads a new identity epoch for everyone else's.
    pub fn identity_generation(&self) -> u64 {
        self.identity_generation.load(Ordering::SeqCst)
    }

    /// Another process changed users, keys, sessions or grants.
    pub fn identity_changed_elsewhere(&self) {
        self.identity_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The database's identity epoch, raised by every change to users,
    /// keys, sessions or grants in the change's own transaction.
    pub async fn identity_epoch(&self) -> Result<i64> {
        on_pool!(self, pool => Ok(sqlx::query_scalar("SELECT n FROM identity_epoch WHERE id = 1")
            .fetch_one(pool)
            .await?))
    }

    pub async fn user_count(&self) -> Result<i64> {
        on_pool!(self, pool => Ok(sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await?))
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        is_admin: bool,
    ) -> Result<UserRow> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        if username.is_empty() || username.len() > MAX_USERNAME_BYTES {
            return Err(StoreError::Invalid(format!(
                "a user name must have 1 to {MAX_USERNAME_BYTES} bytes"
            )));
        }
        let canonical = canonical_username(username);
        let names: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT username FROM users").fetch_all(pool).await?
        });
        if let Some(taken) = names.iter().find(|n| canonical_username(n) == canonical) {
            return Err(StoreError::Conflict(format!(
                "user '{username}' already exists, or one that reads the same: '{taken}'"
            )));
        }
        let sql = format!(
            "INSERT INTO users (username, password_hash, is_admin, created) VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
        );
        let conflict = |e: sqlx::Error| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("user '{username}' already exists"))
            }
            other => other,
        };
        on_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(username)
                .bind(password_hash)
                .bind(is_admin)
                .bind(now_unix())
                .fetch_one(pool)
                .await
                .map_err(conflict)?;
            user_from_row!(&row)
        })
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)");
        on_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(username).fetch_optional(pool).await?;
            row.as_ref().map(|r| user_from_row!(r)).transpose()
        })
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        on_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(|r| user_from_row!(r)).transpose()
        })
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(|r| user_from_row!(r)).collect()
        })
    }

    /// Set a password; the user's sessions end (a session must not outlive
    /// the password that opened it).
    pub async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        execute!(
            self,
            "UPDATE users SET password_hash = $2, sessions_after = $3 WHERE id = $1",
            user_id,
            password_hash,
            now_unix()
        )?;
        Ok(())
    }

    /// End every session of a user: session tokens issued until now stop
    /// working (API keys are not sessions: revoke them on their own).
    pub async fn end_sessions(&self, user_id: i64) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        execute!(
            self,
            "UPDATE users SET sessions_after = $2 WHERE id = $1",
            user_id,
            now_unix()
        )?;
        Ok(())
    }

    /// Disable (`false`) or enable a user: a disabled user's tokens, keys and
    /// sessions are all refused, and it cannot log in.
    pub async fn set_active(&self, user_id: i64, active: bool) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        execute!(
            self,
            "UPDATE users SET active = $2 WHERE id = $1",
            user_id,
            active
        )?;
        Ok(())
    }

    /// Stop verifying tokens signed with `kid`; false if there is no such
    /// key still in use. The newest key, which signs, cannot be retired.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<bool> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        let keys = self.signing_keys().await?;
        let in_use: Vec<&SigningKeyRow> = keys.iter().filter(|k| !k.retired).collect();
        if in_use.last().is_some_and(|k| k.kid == kid) {
            return Err(StoreError::Invalid(format!(
                "{kid} is the newest signing key: rotate first (`commons keys rotate`), then retire it"
            )));
        }
        if !in_use.iter().any(|k| k.kid == kid) {
            return Ok(false);
        }
        execute!(
            self,
            "UPDATE signing_keys SET retired = TRUE WHERE kid = $1",
            kid
        )?;
        Ok(true)
    }

    pub async fn insert_api_key(&self, jti: &str, user_id: i64, exp: i64) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO api_keys (jti, user_id, exp, created) VALUES ($1, $2, $3, $4)",
            jti,
            user_id,
            exp,
            now_unix()
        )?;
        Ok(())
    }

    pub async fn api_key(&self, jti: &str) -> Result<Option<ApiKeyRow>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT jti, user_id, exp, revoked FROM api_keys WHERE jti = $1")
                .bind(jti)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| api_key_from_row!(r)).transpose()
        })
    }

    /// A user's keys that are neither revoked nor expired, newest expiry first.
    pub async fn list_api_keys(&self, user_id: i64) -> Result<Vec<ApiKeyRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT jti, user_id, exp, revoked FROM api_keys \
                 WHERE user_id = $1 AND revoked = FALSE AND exp > $2 ORDER BY exp DESC",
            )
            .bind(user_id)
            .bind(now_unix())
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| api_key_from_row!(r)).collect()
        })
    }

    /// Revoke one of a user's keys; false when the user has no such key.
    pub async fn revoke_api_key(&self, jti: &str, user_id: i64) -> Result<bool> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        let n = execute!(
            self,
            "UPDATE api_keys SET revoked = TRUE WHERE jti = $1 AND user_id = $2 AND revoked = FALSE",
            jti,
            user_id
        )?;
        Ok(n == 1)
    }

    /// End a session token before its expiry (logout); expired entries are pruned.
    pub async fn revoke_session(&self, jti: &str, exp: i64) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        execute!(
            self,
            "DELETE FROM revoked_sessions WHERE exp < $1",
            now_unix()
        )?;
        execute!(
            self,
            "INSERT INTO revoked_sessions (jti, exp) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            jti,
            exp
        )?;
        Ok(())
    }

    pub async fn session_revoked(&self, jti: &str) -> Result<bool> {
        on_pool!(self, pool => Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM revoked_sessions WHERE jti = $1",
        )
        .bind(jti)
        .fetch_one(pool)
        .await? > 0))
    }

    /// Record a one-time login link by the hash of its secret.
    pub async fn insert_login_link(&self, token_hash: &str, user_id: i64, exp: i64) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO login_links (token_hash, user_id, exp) VALUES ($1, $2, $3)",
            token_hash,
            user_id,
            exp
        )?;
        Ok(())
    }

    /// Use up a login link: the user it logs in, if it exists and has not expired.
    pub async fn take_login_link(&self, token_hash: &str) -> Result<Option<i64>> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        let link = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(
            "DELETE FROM login_links WHERE token_hash = $1 RETURNING user_id, exp",
        )
        .bind(token_hash)
        .fetch_optional(pool)
        .await?);
        Ok(link
            .filter(|&(_, exp)| exp > now_unix())
            .map(|(user_id, _)| user_id))
    }

    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT kid, private_der, created, retired FROM signing_keys ORDER BY created, kid")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(SigningKeyRow {
                        kid: r.try_get("kid")?,
                        private_der: r.try_get("private_der")?,
                        created: r.try_get("created")?,
                        retired: r.try_get("retired")?,
                    })
                })
                .collect()
        })
    }

    pub async fn insert_signing_key(&self, kid: &str, private_der: &[u8]) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO signing_keys (kid, private_der, created) VALUES ($1, $2, $3)",
            kid,
            private_der,
            now_unix()
        )?;
        Ok(())
    }

    // ------------------------------------------------------------ authorization

    pub async fn upsert_resource(&self, path: &str) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO authz_resources (path) VALUES ($1) ON CONFLICT DO NOTHING",
            path
        )?;
        Ok(())
    }

    pub async fn delete_resource(&self, path: &str) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            // A prefix compared exactly: `LIKE` would read `_` and `%` in the path as wildcards.
            "DELETE FROM authz_resources WHERE path = $1 OR substr(path, 1, length($1) + 1) = $1 || '/'",
            path
        )?;
        Ok(())
    }

    pub async fn list_resources(&self) -> Result<Vec<String>> {
        on_pool!(self, pool => Ok(sqlx::query_scalar("SELECT path FROM authz_resources ORDER BY path").fetch_all(pool).await?))
    }

    /// Create or replace a role; returns true when it is new.
    pub async fn upsert_role(&self, role: &RoleRow) -> Result<bool> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        let new = !self.roles().await?.iter().any(|r| r.id == role.id);
        execute!(
            self,
            "INSERT INTO authz_roles (id, permissions) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET permissions = excluded.permissions",
            &role.id,
            role.permissions.to_string()
        )?;
        Ok(new)
    }

    pub async fn delete_role(&self, id: &str) -> Result<bool> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        Ok(execute!(self, "DELETE FROM authz_roles WHERE id = $1", id)? == 1)
    }

    pub async fn roles(&self) -> Result<Vec<RoleRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT id, permissions FROM authz_roles ORDER BY id").fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    let text: String = r.try_get("permissions")?;
                    Ok(RoleRow { id: r.try_get("id")?, permissions: serde_json::from_str(&text)? })
                })
                .collect()
        })
    }

    /// Create or replace a policy; returns true when it is new.
    pub async fn upsert_policy(&self, policy: &PolicyRow) -> Result<bool> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        let new = !self.policy_exists(&policy.id).await?;
        execute!(
            self,
            "INSERT INTO authz_policies (id, role_ids, resource_paths) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET role_ids = excluded.role_ids, resource_paths = excluded.resource_paths",
            &policy.id,
            serde_json::to_string(&policy.role_ids)?,
            serde_json::to_string(&policy.resource_paths)?
        )?;
        Ok(new)
    }

    pub async fn delete_policy(&self, id: &str) -> Result<bool> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM authz_user_policies WHERE policy_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM authz_group_policies WHERE policy_id = $1").bind(id).execute(&mut *tx).await?;
            let done = sqlx::query("DELETE FROM authz_policies WHERE id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn policies(&self) -> Result<Vec<PolicyRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT id, role_ids, resource_paths FROM authz_policies ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| policy_from_row!(r)).collect()
        })
    }

    pub async fn policy_exists(&self, id: &str) -> Result<bool> {
        on_pool!(self, pool => {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM authz_policies WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await?;
            Ok(n == 1)
        })
    }

    /// Grants are stored by lower-cased user name: names compare case-insensitively.
    pub async fn grant_user_policy(&self, username: &str, policy_id: &str) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO authz_user_policies (username, policy_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            username.to_lowercase(),
            policy_id
        )?;
        Ok(())
    }

    pub async fn revoke_user_policy(&self, username: &str, policy_id: &str) -> Result<bool> {
        let _guard = self.identity_write(IdentityChange::Restricts).await;
        let n = execute!(
            self,
            "DELETE FROM authz_user_policies WHERE username = $1 AND policy_id = $2",
            username.to_lowercase(),
            policy_id
        )?;
        Ok(n == 1)
    }

    pub async fn grant_group_policy(&self, group: &str, policy_id: &str) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO authz_group_policies (group_name, policy_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            group,
            policy_id
        )?;
        Ok(())
    }

    pub async fn add_group_user(&self, group: &str, username: &str) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO authz_group_users (group_name, username) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            group,
            username.to_lowercase()
        )?;
        Ok(())
    }

    /// Every policy that applies to `username` (None: an anonymous caller),
    /// directly or through groups, including the built-in `anonymous` and
    /// `logged-in` groups.
    pub async fn policies_for(&self, username: Option<&str>) -> Result<Vec<PolicyRow>> {
        let name = username.map(str::to_lowercase);
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, role_ids, resource_paths FROM authz_policies WHERE id IN ( \
                   SELECT policy_id FROM authz_user_policies WHERE username = $1 \
                   UNION SELECT policy_id FROM authz_group_policies WHERE group_name = 'anonymous' \
                   UNION SELECT policy_id FROM authz_group_policies \
                         WHERE group_name = 'logged-in' AND $1 IS NOT NULL \
                   UNION SELECT gp.policy_id FROM authz_group_policies gp \
                         JOIN authz_group_users gu ON gu.group_name = gp.group_name \
                         WHERE gu.username = $1)",
            )
            .bind(&name)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| policy_from_row!(r)).collect()
        })
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        on_pool!(self, pool => Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?))
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let _guard = self.identity_write(IdentityChange::Extends).await;
        execute!(
            self,
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value
        )?;
        Ok(())
    }
}
