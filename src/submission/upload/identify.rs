//! Steps 3-4 of an upload: the stored node each document means, and
//! whether it creates or updates it.

use std::collections::HashMap;

use super::*;
use crate::store::{NodeRow, StoreError};
use crate::submission::envelope::ErrorType;
use crate::submission::{Project, Submission, natural_key_of};

impl Submission<'_> {
    /// Steps 3-4: find the stored node each document means; create or update.
    pub(super) async fn identify(
        &self,
        project: &Project,
        staged: &mut [Staged<'_>],
        mode: Mode,
        rights: Rights,
    ) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        let mut keys_by_type: HashMap<String, Vec<String>> = HashMap::new();
        for entity in staged.iter_mut() {
            let Some(node) = entity.node else { continue };
            entity.natural_key = natural_key_of(node, &project.project_id, &entity.doc);
            if let Some(id) = &entity.result.id {
                ids.push(id.clone());
            }
            match &entity.natural_key {
                Some(key) => keys_by_type
                    .entry(node.id.clone())
                    .or_default()
                    .push(key.clone()),
                None if entity.result.id.is_none() => {
                    let message = if node.natural_key.is_empty() {
                        format!(
                            "There are no unique keys defined on type {} except for the official id. To upload this entity you must add a UUID",
                            node.id
                        )
                    } else {
                        format!(
                            "Either an id or required unique fields ({}) required",
                            node.natural_key.join(", ")
                        )
                    };
                    let keys: Vec<&str> = node.natural_key.iter().map(String::as_str).collect();
                    entity
                        .result
                        .error(ErrorType::MissingProperty, &keys, message);
                }
                None => {}
            }
        }
        let by_id: HashMap<String, NodeRow> = self
            .store
            .nodes_by_ids(&ids)
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut by_key: HashMap<(String, String), NodeRow> = HashMap::new();
        for (node_type, keys) in &keys_by_type {
            for (key, row) in self.store.nodes_by_natural_keys(node_type, keys).await? {
                by_key.insert((node_type.clone(), key), row);
            }
        }
        for entity in staged.iter_mut() {
            let Some(node) = entity.node else { continue };
            let found_id = entity.result.id.as_ref().and_then(|id| by_id.get(id));
            let found_key = entity
                .natural_key
                .as_ref()
                .and_then(|k| by_key.get(&(node.id.clone(), k.clone())));
            let result = &mut entity.result;
            let existing = match mode {
                Mode::Create => {
                    if found_id.is_some() {
                        result.error(
                            ErrorType::NotUnique,
                            &["id"],
                            "Cannot create entity that already exists. Try updating entity (PUT instead of POST)",
                        );
                        continue;
                    }
                    if found_key.is_some() {
                        let keys: Vec<&str> = node.natural_key.iter().map(String::as_str).collect();
                        result.error(
                            ErrorType::NotUnique,
                            &keys,
                            format!(
                                "{} with {} already exists in the DB",
                                node.id,
                                result.unique_keys.first().cloned().unwrap_or_default()
                            ),
                        );
                        continue;
                    }
                    None
                }
                Mode::Upsert => match (found_id, found_key) {
                    (Some(a), Some(b)) if a.id != b.id => {
                        result.error(
                            ErrorType::NotUnique,
                            &["id"],
                            format!(
                                "Existing {} entity found with id different from {}",
                                node.id, a.id
                            ),
                        );
                        continue;
                    }
                    (Some(a), _) => Some(a.clone()),
                    (None, Some(b)) => {
                        if result.id.is_some() {
                            result.error(
                                ErrorType::NotUnique,
                                &["id"],
                                format!(
                                    "Existing {} entity found with id different from {}",
                                    node.id,
                                    result.id.as_deref().unwrap_or_default()
                                ),
                            );
                            continue;
                        }
                        Some(b.clone())
                    }
                    (None, None) => None,
                },
            };
            match existing {
                Some(row) => {
                    // A record of another project: say nothing of its type or
                    // project, which the caller may not be allowed to read.
                    if row.project_id.as_deref() != Some(project.project_id.as_str()) {
                        result.error(
                            ErrorType::NotUnique,
                            &["id"],
                            format!(
                                "id {} is already in use; submit the entity without an id or with another one",
                                row.id
                            ),
                        );
                        continue;
                    }
                    if row.node_type != node.id {
                        result.error(
                            ErrorType::NotUnique,
                            &["type"],
                            format!(
                                "Existing {} entity found with type different from {}",
                                row.node_type, node.id
                            ),
                        );
                        continue;
                    }
                    result.id = Some(row.id.clone());
                    result.action = Some("update");
                    if !rights.update {
                        result.error(
                            ErrorType::InvalidPermissions,
                            &[],
                            format!(
                                "You do not have update permission for project {}",
                                project.project_id
                            ),
                        );
                    }
                    entity.existing = Some(row);
                }
                None => {
                    if result.id.is_none() {
                        result.id = Some(uuid::Uuid::now_v7().to_string());
                    }
                    result.action = Some("create");
                    if !rights.create {
                        result.error(
                            ErrorType::InvalidPermissions,
                            &[],
                            format!(
                                "You do not have create permission for project {}",
                                project.project_id
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
