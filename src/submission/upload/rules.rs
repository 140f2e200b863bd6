//! Steps 6 and 9 of an upload: links merged with the stored ones, then the
//! dictionary's required, subgroup and multiplicity rules over the graph.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::store::StoreError;
use crate::submission::Submission;
use crate::submission::envelope::ErrorType;

impl Submission<'_> {
    /// Steps 6 and 9: merge with stored links, then required/subgroup/multiplicity rules.
    pub(super) async fn check_graph(
        &self,
        staged: &mut [Staged<'_>],
        seen: &mut Seen<'_>,
    ) -> Result<(), StoreError> {
        let updated: Vec<String> = staged
            .iter()
            .filter_map(|s| s.existing.as_ref().map(|e| e.id.clone()))
            .collect();
        let mut stored: HashMap<(String, String), Vec<String>> = HashMap::new();
        for edge in self.store.edges_from(&updated).await? {
            stored
                .entry((edge.src_id, edge.link))
                .or_default()
                .push(edge.dst_id);
        }
        for entity in staged.iter_mut() {
            let (Some(node), Some(id)) = (entity.node, entity.result.id.clone()) else {
                continue;
            };
            for link in &node.links {
                // A link given as null keeps none of its stored targets.
                let mut final_targets = if entity.cleared_links.contains(&link.name) {
                    Vec::new()
                } else {
                    stored
                        .get(&(id.clone(), link.name.clone()))
                        .cloned()
                        .unwrap_or_default()
                };
                if let Some(given) = entity.targets.get(&link.name) {
                    if link.multiplicity.to_one() && given.len() == 1 {
                        final_targets = given.clone();
                    } else {
                        for t in given {
                            if !final_targets.contains(t) {
                                final_targets.push(t.clone());
                            }
                        }
                    }
                }
                entity.targets.insert(link.name.clone(), final_targets);
            }
            if !entity.result.valid() {
                continue;
            }
            let count = |name: &str| entity.targets.get(name).map_or(0, Vec::len);
            for link in &node.links {
                let n = count(&link.name);
                if link.required && n == 0 {
                    entity.result.error(
                        ErrorType::InvalidLink,
                        &[&link.name],
                        format!("Entity is missing required link to {}", link.name),
                    );
                }
                if link.multiplicity.to_one() && n > 1 {
                    entity.result.error(
                        ErrorType::InvalidLink,
                        &[&link.name],
                        format!(
                            "'{}' link has to be {}",
                            link.name,
                            link.multiplicity.as_str()
                        ),
                    );
                }
            }
            for group in &node.subgroups {
                let used: Vec<&String> = group.members.iter().filter(|m| count(m) > 0).collect();
                let keys: Vec<&str> = group.members.iter().map(String::as_str).collect();
                if group.required && used.is_empty() {
                    let names = match group.members.split_last() {
                        Some((last, rest)) if !rest.is_empty() => {
                            format!("{} or {last}", rest.join(", "))
                        }
                        _ => group.members.join(""),
                    };
                    entity.result.error(
                        ErrorType::InvalidLink,
                        &keys,
                        format!("Entity is missing a required link to {names}"),
                    );
                }
                if group.exclusive && used.len() > 1 {
                    entity.result.error(
                        ErrorType::InvalidLink,
                        &keys,
                        format!(
                            "Links to {:?} are exclusive.  More than one was provided.",
                            group.members
                        ),
                    );
                }
            }
        }
        self.check_one_source_per_target(staged, &mut seen.one_sources)
            .await
    }

    /// Multiplicity `one_to_*`: a target has at most one source via the link.
    pub(super) async fn check_one_source_per_target(
        &self,
        staged: &mut [Staged<'_>],
        request_sources: &mut HashMap<(String, String, String), HashSet<String>>,
    ) -> Result<(), StoreError> {
        let mut targets = Vec::new();
        for entity in staged.iter() {
            let Some(node) = entity.node else { continue };
            for link in node.links.iter().filter(|l| l.multiplicity.from_one()) {
                targets.extend(
                    entity
                        .targets
                        .get(&link.name)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        // (target, link, source type) -> sources: link names are only unique per source type.
        let mut sources: HashMap<(String, String, String), HashSet<String>> = HashMap::new();
        for (edge, source_type) in self.store.incoming_edges(&targets).await? {
            sources
                .entry((edge.dst_id, edge.link, source_type))
                .or_default()
                .insert(edge.src_id);
        }
        // Only entities that can still be written count as sources, from
        // earlier chunks of the request too.
        for entity in staged.iter().filter(|e| e.result.valid()) {
            let (Some(node), Some(id)) = (entity.node, &entity.result.id) else {
                continue;
            };
            for link in node.links.iter().filter(|l| l.multiplicity.from_one()) {
                for t in entity.targets.get(&link.name).into_iter().flatten() {
                    request_sources
                        .entry((t.clone(), link.name.clone(), node.id.clone()))
                        .or_default()
                        .insert(id.clone());
                }
            }
        }
        for entity in staged.iter_mut() {
            let (Some(node), Some(id)) = (entity.node, entity.result.id.clone()) else {
                continue;
            };
            for link in node.links.iter().filter(|l| l.multiplicity.from_one()) {
                for t in entity.targets.get(&link.name).cloned().unwrap_or_default() {
                    let key = (t.clone(), link.name.clone(), node.id.clone());
                    let all: HashSet<&String> = [sources.get(&key), request_sources.get(&key)]
                        .into_iter()
                        .flatten()
                        .flatten()
                        .collect();
                    if all.len() > 1 && all.contains(&id) {
                        entity.result.error(
                            ErrorType::InvalidLink,
                            &[&link.name],
                            format!(
                                "'{}' link has to be {}, target node {} already has {}",
                                link.name,
                                link.multiplicity.as_str(),
                                link.target_type,
                                link.backref
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
