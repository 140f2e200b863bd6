//! Users, API keys, token-signing keys and the arborist-style authorization
//! objects (resources, roles, policies, grants).

use serde_json::Value;
use sqlx::Row;

use super::{Result, Store, StoreError, now_unix};

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub active: bool,
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

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRow> {
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get("is_admin")?,
        active: row.try_get("active")?,
    })
}

fn string_list(text: &str) -> Result<Vec<String>> {
    Ok(serde_json::from_str(text)?)
}

impl Store {
    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        is_admin: bool,
    ) -> Result<UserRow> {
        let _guard = self.write_lock.lock().await;
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, is_admin, created) VALUES (?1, ?2, ?3, ?4) \
             RETURNING id, username, password_hash, is_admin, active",
        )
        .bind(username)
        .bind(password_hash)
        .bind(is_admin)
        .bind(now_unix())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("user '{username}' already exists")),
            other => other,
        })?;
        user_from_row(&row)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, is_admin, active FROM users WHERE username = ?1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, is_admin, active FROM users WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(
            "SELECT id, username, password_hash, is_admin, active FROM users ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn insert_api_key(&self, jti: &str, user_id: i64, exp: i64) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query("INSERT INTO api_keys (jti, user_id, exp, created) VALUES (?1, ?2, ?3, ?4)")
            .bind(jti)
            .bind(user_id)
            .bind(exp)
            .bind(now_unix())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn api_key(&self, jti: &str) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query("SELECT jti, user_id, exp, revoked FROM api_keys WHERE jti = ?1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(ApiKeyRow {
                jti: r.try_get("jti")?,
                user_id: r.try_get("user_id")?,
                exp: r.try_get("exp")?,
                revoked: r.try_get("revoked")?,
            })
        })
        .transpose()
    }

    /// A user's keys that are neither revoked nor expired, newest expiry first.
    pub async fn list_api_keys(&self, user_id: i64) -> Result<Vec<ApiKeyRow>> {
        let rows = sqlx::query(
            "SELECT jti, user_id, exp, revoked FROM api_keys \
             WHERE user_id = ?1 AND revoked = 0 AND exp > ?2 ORDER BY exp DESC",
        )
        .bind(user_id)
        .bind(now_unix())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyRow {
                    jti: r.try_get("jti")?,
                    user_id: r.try_get("user_id")?,
                    exp: r.try_get("exp")?,
                    revoked: r.try_get("revoked")?,
                })
            })
            .collect()
    }

    /// Revoke one of a user's keys; false when the user has no such key.
    pub async fn revoke_api_key(&self, jti: &str, user_id: i64) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked = 1 WHERE jti = ?1 AND user_id = ?2 AND revoked = 0",
        )
        .bind(jti)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT kid, private_der, created, retired FROM signing_keys ORDER BY created, kid",
        )
        .fetch_all(&self.pool)
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
    }

    pub async fn insert_signing_key(&self, kid: &str, private_der: &[u8]) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query("INSERT INTO signing_keys (kid, private_der, created) VALUES (?1, ?2, ?3)")
            .bind(kid)
            .bind(private_der)
            .bind(now_unix())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ authorization

    pub async fn upsert_resource(&self, path: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query("INSERT OR IGNORE INTO authz_resources (path) VALUES (?1)")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_resource(&self, path: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query("DELETE FROM authz_resources WHERE path = ?1 OR path LIKE ?1 || '/%'")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_resources(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT path FROM authz_resources ORDER BY path")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Create or replace a role; returns false when it already existed.
    pub async fn upsert_role(&self, role: &RoleRow) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        let existed: i64 = sqlx::query_scalar("SELECT count(*) FROM authz_roles WHERE id = ?1")
            .bind(&role.id)
            .fetch_one(&self.pool)
            .await?;
        sqlx::query("INSERT OR REPLACE INTO authz_roles (id, permissions) VALUES (?1, ?2)")
            .bind(&role.id)
            .bind(role.permissions.to_string())
            .execute(&self.pool)
            .await?;
        Ok(existed == 0)
    }

    pub async fn delete_role(&self, id: &str) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        let done = sqlx::query("DELETE FROM authz_roles WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn roles(&self) -> Result<Vec<RoleRow>> {
        let rows = sqlx::query("SELECT id, permissions FROM authz_roles ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("permissions")?;
                Ok(RoleRow {
                    id: r.try_get("id")?,
                    permissions: serde_json::from_str(&text)?,
                })
            })
            .collect()
    }

    /// Create or replace a policy; returns false when it already existed.
    pub async fn upsert_policy(&self, policy: &PolicyRow) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        let existed: i64 = sqlx::query_scalar("SELECT count(*) FROM authz_policies WHERE id = ?1")
            .bind(&policy.id)
            .fetch_one(&self.pool)
            .await?;
        sqlx::query(
            "INSERT OR REPLACE INTO authz_policies (id, role_ids, resource_paths) VALUES (?1, ?2, ?3)",
        )
        .bind(&policy.id)
        .bind(serde_json::to_string(&policy.role_ids)?)
        .bind(serde_json::to_string(&policy.resource_paths)?)
        .execute(&self.pool)
        .await?;
        Ok(existed == 0)
    }

    pub async fn delete_policy(&self, id: &str) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM authz_user_policies WHERE policy_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM authz_group_policies WHERE policy_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM authz_policies WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn policies(&self) -> Result<Vec<PolicyRow>> {
        let rows =
            sqlx::query("SELECT id, role_ids, resource_paths FROM authz_policies ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(policy_from_row).collect()
    }

    pub async fn policy_exists(&self, id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM authz_policies WHERE id = ?1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n == 1)
    }

    pub async fn grant_user_policy(&self, username: &str, policy_id: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query(
            "INSERT OR IGNORE INTO authz_user_policies (username, policy_id) VALUES (?1, ?2)",
        )
        .bind(username)
        .bind(policy_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn revoke_user_policy(&self, username: &str, policy_id: &str) -> Result<bool> {
        let _guard = self.write_lock.lock().await;
        let done =
            sqlx::query("DELETE FROM authz_user_policies WHERE username = ?1 AND policy_id = ?2")
                .bind(username)
                .bind(policy_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn grant_group_policy(&self, group: &str, policy_id: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query(
            "INSERT OR IGNORE INTO authz_group_policies (group_name, policy_id) VALUES (?1, ?2)",
        )
        .bind(group)
        .bind(policy_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn add_group_user(&self, group: &str, username: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query(
            "INSERT OR IGNORE INTO authz_group_users (group_name, username) VALUES (?1, ?2)",
        )
        .bind(group)
        .bind(username)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every policy that applies to `username` (None: an anonymous caller),
    /// directly or through groups, including the built-in `anonymous` and
    /// `logged-in` groups.
    pub async fn policies_for(&self, username: Option<&str>) -> Result<Vec<PolicyRow>> {
        let rows = sqlx::query(
            "SELECT id, role_ids, resource_paths FROM authz_policies WHERE id IN ( \
               SELECT policy_id FROM authz_user_policies WHERE username = ?1 \
               UNION SELECT policy_id FROM authz_group_policies WHERE group_name = 'anonymous' \
               UNION SELECT policy_id FROM authz_group_policies \
                     WHERE group_name = 'logged-in' AND ?1 IS NOT NULL \
               UNION SELECT gp.policy_id FROM authz_group_policies gp \
                     JOIN authz_group_users gu ON gu.group_name = gp.group_name \
                     WHERE gu.username = ?1)",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }
}

fn policy_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<PolicyRow> {
    let roles: String = row.try_get("role_ids")?;
    let paths: String = row.try_get("resource_paths")?;
    Ok(PolicyRow {
        id: row.try_get("id")?,
        role_ids: string_list(&roles)?,
        resource_paths: string_list(&paths)?,
    })
}

impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        sqlx::query("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
