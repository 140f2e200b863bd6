//! Deleting entities (API.md §2.11): refused while other entities depend on
//! them through required links, unless those dependents go in the same request.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::envelope::{EntityResult, ErrorType};
use super::{Project, Submission};
use crate::store::{ChangeSet, EntityIds, NodeRow, StoreError, TransactionRecord};

impl Submission<'_> {
    pub async fn delete(
        &self,
        project: &Project,
        ids: &[String],
        dry_run: bool,
    ) -> Result<(u16, Value), StoreError> {
        let guard = self.store.lock_writes().await;
        let ids: Vec<String> = ids.iter().map(|i| i.trim().to_lowercase()).collect();
        let found: HashMap<String, NodeRow> = self
            .store
            .nodes_by_ids(&ids)
            .await?
            .into_iter()
            .filter(|n| {
                n.project_id.as_deref() == Some(project.project_id.as_str())
                    && n.node_type != "project"
            })
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut results: Vec<EntityResult> = Vec::new();
        for id in &ids {
            let mut result = EntityResult {
                id: Some(id.clone()),
                action: Some("delete"),
                ..EntityResult::default()
            };
            match found.get(id) {
                None => {
                    let mut error = Map::new();
                    error.insert("message".into(), "Entity not found.".into());
                    error.insert("keys".into(), json!(["id"]));
                    error.insert("type".into(), ErrorType::NotFound.as_str().into());
                    error.insert("id".into(), Value::String(id.clone()));
                    result.error_with(error);
                }
                Some(row) => {
                    result.node_type = Some(row.node_type.clone());
                    self.check_deletable(row, &mut result);
                }
            }
            results.push(result);
        }

        let requested: HashSet<String> = found.keys().cloned().collect();
        let dependents = self.dependents(&requested).await?;
        let mut all_dependents = Vec::new();
        for result in results.iter_mut() {
            let Some(id) = &result.id else { continue };
            let Some(list) = dependents.get(id) else {
                continue;
            };
            let list: Vec<&(String, String)> = list
                .iter()
                .filter(|(d, _)| !requested.contains(d))
                .collect();
            if list.is_empty() {
                continue;
            }
            let mut error = Map::new();
            error.insert(
                "message".into(),
                Value::String(format!(
                    "Unable to delete entity because at least {} other(s) directly or indirectly depend on it. You can only delete this entity by deleting its dependents prior to, or during the same transaction as this one.",
                    list.len()
                )),
            );
            error.insert("keys".into(), json!([]));
            error.insert("type".into(), ErrorType::InvalidLink.as_str().into());
            error.insert(
                "dependents".into(),
                Value::Array(
                    list.iter()
                        .map(|(id, t)| json!({"id": id, "type": t}))
                        .collect(),
                ),
            );
            result.error_with(error);
            all_dependents.extend(list.iter().map(|(id, _)| id.clone()));
        }

        let success = results.iter().all(EntityResult::valid) && !results.is_empty();
        let mut record = TransactionRecord::new(
            &project.program,
            Some(&project.code),
            "delete",
            self.username,
        );
        record.is_dry_run = dry_run;
        if !success {
            record.state = "FAILED".into();
        }
        record.entity_ids = EntityIds::new(&ids);
        let transaction_id = if success && !dry_run {
            let change = ChangeSet {
                delete_nodes: requested.iter().cloned().collect(),
                ..ChangeSet::default()
            };
            self.store.write(&guard, &change, &record).await?
        } else {
            self.store.log_transaction(&record).await?
        };
        let deleted = if success { results.len() } else { 0 };
        let message = match (success, dry_run) {
            (true, false) => format!("Successfully deleted {deleted} entities"),
            (true, true) => format!("Dry run successful. Would have deleted {deleted} entities"),
            (false, _) => "Deletion transaction failed.".into(),
        };
        let invalid = results.iter().filter(|r| !r.valid()).count();
        let code = if success { 200 } else { 400 };
        all_dependents.sort();
        all_dependents.dedup();
        Ok((
            code,
            json!({
                "transaction_id": transaction_id,
                "success": success,
                "code": code,
                "message": message,
                "entities": results.iter().map(EntityResult::to_json).collect::<Vec<_>>(),
                "entity_error_count": invalid,
                "transactional_error_count": 0,
                "transactional_errors": [],
                "deleted_entity_count": if dry_run { 0 } else { deleted },
                "dependent_ids": all_dependents.join(","),
            }),
        ))
    }

    fn check_deletable(&self, row: &NodeRow, result: &mut EntityResult) {
        let Some(node) = self.dictionary.node(&row.node_type) else {
            return;
        };
        if node.property("state").is_some() {
            match row.props.get("state").and_then(Value::as_str) {
                None | Some("validated") => {}
                Some("submitted") => result.error(
                    ErrorType::InvalidPermissions,
                    &["state"],
                    "This node has been submitted. Deletion is disallowed for submitted entities. This node must be redacted.",
                ),
                Some(other) => result.error(
                    ErrorType::InvalidPermissions,
                    &["state"],
                    format!("Unable to delete entity because it is in state '{other}'."),
                ),
            }
        }
        if let Some(property) = node.property("file_state") {
            let state = row.props.get("file_state").and_then(Value::as_str);
            let default = property.default.as_ref().and_then(Value::as_str);
            if let Some(s) = state
                && Some(s) != default
            {
                result.error(
                    ErrorType::InvalidPermissions,
                    &["file_state"],
                    format!("This node has file_state '{s}'. Deletion is disallowed for entities that have raw data uploaded to the Gen3 commons. Please contact the commons administrators."),
                );
            }
        }
    }

    /// For each requested id, the entities that would lose every target of a
    /// required link (directly or transitively) once the requested ones are gone.
    async fn dependents(
        &self,
        requested: &HashSet<String>,
    ) -> Result<HashMap<String, Vec<(String, String)>>, StoreError> {
        let mut gone: HashSet<String> = requested.clone();
        let mut root_of: HashMap<String, String> = requested
            .iter()
            .map(|id| (id.clone(), id.clone()))
            .collect();
        let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let mut frontier: Vec<String> = requested.iter().cloned().collect();
        while !frontier.is_empty() {
            let incoming = self.store.edges_to(&frontier).await?;
            let children: Vec<String> = incoming
                .iter()
                .map(|e| e.src_id.clone())
                .filter(|id| !gone.contains(id))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let child_rows = self.store.nodes_by_ids(&children).await?;
            let mut child_edges: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for edge in self.store.edges_from(&children).await? {
                child_edges
                    .entry(edge.src_id)
                    .or_default()
                    .push((edge.link, edge.dst_id));
            }
            let mut next = Vec::new();
            for child in child_rows {
                let Some(node) = self.dictionary.node(&child.node_type) else {
                    continue;
                };
                let edges = child_edges.get(&child.id).cloned().unwrap_or_default();
                let remaining = |link: &str| {
                    edges
                        .iter()
                        .filter(|(l, dst)| l == link && !gone.contains(dst))
                        .count()
                };
                let loses_required = node
                    .links
                    .iter()
                    .any(|l| l.required && remaining(&l.name) == 0)
                    || node
                        .subgroups
                        .iter()
                        .any(|g| g.required && g.members.iter().all(|m| remaining(m) == 0));
                if !loses_required {
                    continue;
                }
                let parent = incoming
                    .iter()
                    .find(|e| e.src_id == child.id)
                    .map(|e| e.dst_id.clone())
                    .unwrap_or_default();
                let root = root_of.get(&parent).cloned().unwrap_or(parent);
                root_of.insert(child.id.clone(), root.clone());
                out.entry(root)
                    .or_default()
                    .push((child.id.clone(), child.node_type.clone()));
                gone.insert(child.id.clone());
                next.push(child.id);
            }
            frontier = next;
        }
        Ok(out)
    }
}
