//! Step 8 of an upload: every link reference names exactly one node of
//! the project, stored or named by the same request.

use std::collections::HashMap;

use super::*;
use crate::dictionary::Link;
use crate::store::{NodeRef, StoreError};
use crate::submission::envelope::ErrorType;
use crate::submission::{Project, Submission};

impl Submission<'_> {
    /// Step 8: each link reference names exactly one node of the project,
    /// stored or named by this request. With `may_wait`, an entity with a
    /// target not found yet is marked waiting instead of failing.
    pub(super) async fn resolve_links(
        &self,
        project: &Project,
        seen: &Seen<'_>,
        staged: &mut [Staged<'_>],
        may_wait: bool,
    ) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        let mut keys_by_type: HashMap<String, Vec<String>> = HashMap::new();
        for entity in staged.iter() {
            for (link, refs) in &entity.link_refs {
                for r in refs {
                    match r {
                        TargetRef::Id(id) => ids.push(id.clone()),
                        TargetRef::NaturalKey(key) => keys_by_type
                            .entry(link.target_type.clone())
                            .or_default()
                            .push(key.clone()),
                    }
                }
            }
        }
        let stored_by_id: HashMap<String, NodeRef> = self
            .store
            .node_refs_by_ids(&ids)
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut stored_by_key: HashMap<(String, String), NodeRef> = HashMap::new();
        for (node_type, keys) in &keys_by_type {
            let keys: Vec<String> = keys
                .iter()
                .map(|k| self.qualify_key(project, node_type, k))
                .collect();
            for (key, row) in self
                .store
                .node_refs_by_natural_keys(node_type, &keys)
                .await?
            {
                stored_by_key.insert((node_type.clone(), key), row);
            }
        }
        for entity in staged.iter_mut() {
            let mut errors = Vec::new();
            entity.waiting = false;
            entity.targets.clear();
            for (link, refs) in &entity.link_refs {
                let mut resolved = Vec::new();
                for r in refs {
                    let hit: Result<String, (ErrorType, String)> = match r {
                        TargetRef::Id(id) => match (seen.type_of(id), stored_by_id.get(id)) {
                            (Some(t), _) if t == link.target_type => Ok(canonical_id(id)),
                            (_, Some(row)) if row.node_type == link.target_type => {
                                self.check_target_project(project, link, row)
                            }
                            _ if may_wait => {
                                entity.waiting = true;
                                continue;
                            }
                            _ => Err((
                                ErrorType::InvalidLink,
                                format!("No link destination found for {}, id='{id}'", link.name),
                            )),
                        },
                        TargetRef::NaturalKey(key) => {
                            let qualified = self.qualify_key(project, &link.target_type, key);
                            // The request's own entities first; a stored one only if none.
                            let in_request = seen.id_of(&link.target_type, &qualified);
                            let stored = match in_request {
                                Some(_) => None,
                                None => stored_by_key.get(&(link.target_type.clone(), qualified)),
                            };
                            match (in_request, stored) {
                                (Some(id), _) => Ok(id),
                                (None, Some(row)) => self.check_target_project(project, link, row),
                                (None, None) if may_wait => {
                                    entity.waiting = true;
                                    continue;
                                }
                                (None, None) => Err((
                                    ErrorType::InvalidLink,
                                    format!(
                                        "No link destination found for {}, unique_keys='{key}'",
                                        link.name
                                    ),
                                )),
                            }
                        }
                    };
                    match hit {
                        Ok(id) if !resolved.contains(&id) => resolved.push(id),
                        Ok(_) => {}
                        Err((kind, message)) => errors.push((kind, link.name.as_str(), message)),
                    }
                }
                entity.targets.insert(link.name.clone(), resolved);
            }
            if !entity.waiting {
                for (kind, link, message) in errors {
                    entity.result.error(kind, &[link], message);
                }
            }
        }
        Ok(())
    }

    /// The lower-cased natural key a link reference means inside `project`.
    pub(super) fn qualify_key(&self, project: &Project, target_type: &str, key: &str) -> String {
        let scoped = self
            .dictionary
            .node(target_type)
            .is_some_and(|n| n.natural_key.first().is_some_and(|k| k == "project_id"));
        if scoped {
            format!(
                "{}\u{1f}{}",
                project.project_id.to_lowercase(),
                key.to_lowercase()
            )
        } else {
            key.to_lowercase()
        }
    }

    /// A stored link target by id: only one of this project. One elsewhere is
    /// answered as missing, so nothing tells of records the caller may not read.
    pub(super) fn check_target_project(
        &self,
        project: &Project,
        link: &Link,
        row: &NodeRef,
    ) -> Result<String, (ErrorType, String)> {
        if row.project_id.as_deref() == Some(project.project_id.as_str()) {
            return Ok(row.id.clone());
        }
        Err((
            ErrorType::InvalidLink,
            format!(
                "No link destination found for {}, id='{}'",
                link.name, row.id
            ),
        ))
    }
}
