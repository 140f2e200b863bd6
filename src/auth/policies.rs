//! Creating a policy through arborist's API: its roles must exist, its
//! resource paths be absolute, its id be new. (`commons authz import`
//! checks a whole file against itself and the database before it writes.)

use crate::store::{PolicyRow, Store, StoreError};

/// Why a policy was not created.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("role not found: {0}")]
    UnknownRole(String),
    #[error("resource paths must start with '/': {0}")]
    RelativePath(String),
    #[error("policy with this ID already exists: {0}")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Create `policy` and the resources it names.
pub async fn create_policy(store: &Store, policy: &PolicyRow) -> Result<(), PolicyError> {
    let roles = store.roles().await?;
    if let Some(missing) = policy
        .role_ids
        .iter()
        .find(|r| !roles.iter().any(|role| &role.id == *r))
    {
        return Err(PolicyError::UnknownRole(missing.clone()));
    }
    if let Some(bad) = policy.resource_paths.iter().find(|p| !p.starts_with('/')) {
        return Err(PolicyError::RelativePath(bad.clone()));
    }
    if store.policy_exists(&policy.id).await? {
        return Err(PolicyError::Exists(policy.id.clone()));
    }
    for path in &policy.resource_paths {
        store.upsert_resource(path).await?;
    }
    store.upsert_policy(policy).await?;
    Ok(())
}
