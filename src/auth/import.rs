//! `commons authz import FILE`: load a Gen3 `user.yaml` (fence's format) into
//! the authorization tables. It only adds and updates: nothing that the file
//! does not name is removed.

use serde_json::Value;

use crate::store::{PolicyRow, RoleRow, Store, StoreError};

/// What an import created or updated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub resources: usize,
    pub roles: usize,
    pub policies: usize,
    pub users: usize,
    pub grants: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Resource paths of a `resources` tree (`name` + `subresources`).
fn resource_paths(nodes: &Value, prefix: &str, out: &mut Vec<String>) -> Result<(), ImportError> {
    for node in nodes.as_array().into_iter().flatten() {
        let name = node["name"]
            .as_str()
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| {
                ImportError::Invalid(format!("resource without a valid name: {node}"))
            })?;
        let path = format!("{prefix}/{name}");
        out.push(path.clone());
        resource_paths(&node["subresources"], &path, out)?;
    }
    Ok(())
}

/// Parse `text` (YAML) and apply it to `store`.
pub async fn import_user_yaml(store: &Store, text: &str) -> Result<ImportSummary, ImportError> {
    let doc: Value = crate::yaml::from_str(text)
        .map_err(|e| ImportError::Invalid(format!("invalid YAML: {e}")))?;
    let authz = &doc["authz"];
    let mut summary = ImportSummary::default();
    super::ensure_builtin_authz(store).await?;
    check_references(store, &doc).await?;

    let mut paths = Vec::new();
    resource_paths(&authz["resources"], "", &mut paths)?;
    for path in &paths {
        store.upsert_resource(path).await?;
    }
    summary.resources = paths.len();

    for role in authz["roles"].as_array().into_iter().flatten() {
        let id = role["id"]
            .as_str()
            .ok_or_else(|| ImportError::Invalid(format!("role without id: {role}")))?;
        let permissions = role["permissions"].clone();
        for permission in permissions.as_array().into_iter().flatten() {
            if permission["action"]["service"].as_str().is_none()
                || permission["action"]["method"].as_str().is_none()
            {
                return Err(ImportError::Invalid(format!(
                    "role {id}: permission needs action.service and action.method"
                )));
            }
        }
        store
            .upsert_role(&RoleRow {
                id: id.to_string(),
                permissions,
            })
            .await?;
        summary.roles += 1;
    }

    for policy in authz["policies"].as_array().into_iter().flatten() {
        let id = policy["id"]
            .as_str()
            .ok_or_else(|| ImportError::Invalid(format!("policy without id: {policy}")))?;
        let row = PolicyRow {
            id: id.to_string(),
            role_ids: strings(&policy["role_ids"]),
            resource_paths: strings(&policy["resource_paths"]),
        };
        for path in &row.resource_paths {
            store.upsert_resource(path).await?;
        }
        store.upsert_policy(&row).await?;
        summary.policies += 1;
    }

    for (group, key) in [
        ("anonymous", "anonymous_policies"),
        ("logged-in", "all_users_policies"),
    ] {
        for policy in strings(&authz[key]) {
            require_policy(store, &policy).await?;
            store.grant_group_policy(group, &policy).await?;
            summary.grants += 1;
        }
    }
    for group in authz["groups"].as_array().into_iter().flatten() {
        let name = group["name"]
            .as_str()
            .ok_or_else(|| ImportError::Invalid(format!("group without name: {group}")))?;
        for policy in strings(&group["policies"]) {
            require_policy(store, &policy).await?;
            store.grant_group_policy(name, &policy).await?;
            summary.grants += 1;
        }
        for user in strings(&group["users"]) {
            ensure_user(store, &user, false, &mut summary).await?;
            store.add_group_user(name, &user).await?;
        }
    }

    if let Some(users) = doc["users"].as_object() {
        for (name, user) in users {
            let admin = user["admin"].as_bool().unwrap_or(false);
            ensure_user(store, name, admin, &mut summary).await?;
            if admin {
                store.grant_user_policy(name, super::ADMIN_POLICY).await?;
            }
            for policy in strings(&user["policies"]) {
                require_policy(store, &policy).await?;
                store.grant_user_policy(name, &policy).await?;
                summary.grants += 1;
            }
        }
    }
    Ok(summary)
}

/// The file is well formed, and every granted policy and every role of a
/// policy exists in the file or the database: checked before anything is
/// written, so a bad file changes nothing.
async fn check_references(store: &Store, doc: &Value) -> Result<(), ImportError> {
    let authz = &doc["authz"];
    let ids = |list: &Value, key: &str| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v[key].as_str().map(str::to_string))
            .collect()
    };
    resource_paths(&authz["resources"], "", &mut Vec::new())?;
    for role in authz["roles"].as_array().into_iter().flatten() {
        let id = role["id"]
            .as_str()
            .ok_or_else(|| ImportError::Invalid(format!("role without id: {role}")))?;
        for permission in role["permissions"].as_array().into_iter().flatten() {
            if permission["action"]["service"].as_str().is_none()
                || permission["action"]["method"].as_str().is_none()
            {
                return Err(ImportError::Invalid(format!(
                    "role {id}: permission needs action.service and action.method"
                )));
            }
        }
    }
    for (list, what) in [
        (&authz["policies"], "policy without id"),
        (&authz["groups"], "group without name"),
    ] {
        let key = if what.starts_with("policy") {
            "id"
        } else {
            "name"
        };
        if let Some(bad) = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v[key].as_str().is_none())
        {
            return Err(ImportError::Invalid(format!("{what}: {bad}")));
        }
    }
    let mut roles = ids(&authz["roles"], "id");
    roles.extend(store.roles().await?.into_iter().map(|r| r.id));
    let mut policies = ids(&authz["policies"], "id");
    policies.extend(store.policies().await?.into_iter().map(|p| p.id));
    for policy in authz["policies"].as_array().into_iter().flatten() {
        for role in strings(&policy["role_ids"]) {
            if !roles.contains(&role) {
                return Err(ImportError::Invalid(format!(
                    "policy {}: role '{role}' is not defined",
                    policy["id"]
                )));
            }
        }
    }
    let mut granted = strings(&authz["anonymous_policies"]);
    granted.extend(strings(&authz["all_users_policies"]));
    for group in authz["groups"].as_array().into_iter().flatten() {
        granted.extend(strings(&group["policies"]));
    }
    for user in doc["users"]
        .as_object()
        .into_iter()
        .flat_map(|u| u.values())
    {
        granted.extend(strings(&user["policies"]));
    }
    match granted.iter().find(|p| !policies.contains(p)) {
        Some(missing) => Err(ImportError::Invalid(format!(
            "policy '{missing}' is granted but not defined"
        ))),
        None => Ok(()),
    }
}

async fn require_policy(store: &Store, id: &str) -> Result<(), ImportError> {
    if store.policy_exists(id).await? {
        Ok(())
    } else {
        Err(ImportError::Invalid(format!(
            "policy '{id}' is granted but not defined"
        )))
    }
}

async fn ensure_user(
    store: &Store,
    name: &str,
    admin: bool,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    if store.user_by_name(name).await?.is_none() {
        store.create_user(name, None, admin).await?;
        summary.users += 1;
    }
    Ok(())
}
