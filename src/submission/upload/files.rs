//! Step 10 of an upload, for data-file nodes (any type whose category ends
//! in `_file`): the file's index record, as sheepdog makes it (FILES.md
//! §1.6, API.md §2.8). A file not yet indexed is registered; a record named
//! by `object_id` (an upload) is checked against the node's hash and size
//! and handed to the project. The record changes go into the submission's
//! own transaction, so a node and its record commit or roll back together.
//!
//! Two departures from sheepdog, both keeping node and record in agreement:
//! an update whose hash or size contradicts the record is refused (sheepdog
//! then only pushes `urls`), and an updated node whose file is not indexed
//! (a node older than the index) is registered (sheepdog leaves it without).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::Staged;
use crate::file_index::{new_rev, now};
use crate::store::{IndexRecord, IndexWrite, StoreError};
use crate::submission::envelope::ErrorType;
use crate::submission::{Project, Submission};

/// `file_state`s in which a data-file node may still change.
const UPDATABLE_STATES: [&str; 4] = ["registered", "uploading", "uploaded", "validating"];

/// What one request has planned for the index so far, so two of its files
/// see each other's records as if they were stored.
#[derive(Default)]
pub(super) struct FileLinks {
    /// `(md5, size)` -> did of a record this request registers.
    planned: HashMap<(String, i64), String>,
    /// did -> `(md5, size)` of the same records, for lookups by id.
    planned_dids: HashMap<String, (String, i64)>,
    /// Aliases taken, in the index or by records this request registers.
    taken_aliases: HashSet<String>,
    /// The project's `acl`: `["*"]` when open, else the program's and the
    /// project's dbGaP accessions (read once).
    acl: Option<Vec<String>>,
}

/// What the index holds for one chunk's files, read in three statements
/// instead of three per file.
struct Indexed {
    by_did: HashMap<String, IndexRecord>,
    /// `(md5, size)` -> the first did (in did order) of a record with them.
    by_hash: HashMap<(String, i64), String>,
}

/// The fields of a data-file node that its record depends on.
struct FileFacts {
    md5: Option<String>,
    size: Option<i64>,
    file_name: Option<String>,
    /// The record's did: `object_id` when the type has it, else the node id.
    did: Option<String>,
    uses_object_id: bool,
}

fn facts(entity: &Staged<'_>) -> FileFacts {
    let node = entity.node.expect("only typed entities are linked");
    let props = &entity.props;
    let text = |name: &str| props.get(name).and_then(Value::as_str).map(str::to_string);
    let uses_object_id = node.property("object_id").is_some();
    FileFacts {
        md5: text("md5sum"),
        size: props.get("file_size").and_then(Value::as_i64),
        file_name: text("file_name"),
        did: if uses_object_id {
            text("object_id")
        } else {
            entity.result.id.clone()
        },
        uses_object_id,
    }
}

impl FileLinks {
    /// The index writes of the valid data-file entities among `staged`;
    /// an entity whose file contradicts the index gets its error instead.
    pub(super) async fn link(
        &mut self,
        submission: &Submission<'_>,
        project: &Project,
        staged: &mut [Staged<'_>],
    ) -> Result<Vec<IndexWrite>, StoreError> {
        let is_linked = |entity: &Staged<'_>| {
            entity.node.is_some_and(|n| n.is_data_file())
                && entity.result.valid()
                && entity.result.id.is_some()
        };
        let linked: Vec<&Staged<'_>> = staged.iter().filter(|e| is_linked(e)).collect();
        if linked.is_empty() {
            return Ok(Vec::new());
        }
        let indexed = self.look_up(submission, project, &linked).await?;
        let mut writes = Vec::new();
        for entity in staged.iter_mut() {
            if !is_linked(entity) {
                continue;
            }
            if let Some(existing) = &entity.existing {
                let state = existing.props.get("file_state").and_then(Value::as_str);
                if let Some(state) = state.filter(|s| !UPDATABLE_STATES.contains(s)) {
                    entity.result.error(
                        ErrorType::InvalidPermissions,
                        &["file_state"],
                        format!(
                            "This file is already in file_state '{state}' and cannot be updated. The raw data exists in the file storage and modifying the Entity now is unsafe and may cause problems for any processes or users consuming this data."
                        ),
                    );
                    continue;
                }
            }
            if let Some(write) = self.link_one(submission, project, entity, &indexed).await? {
                writes.push(write);
            }
        }
        Ok(writes)
    }

    /// The stored records the chunk's data files name by did, by md5 and
    /// size, and which of their aliases are taken.
    async fn look_up(
        &mut self,
        submission: &Submission<'_>,
        project: &Project,
        linked: &[&Staged<'_>],
    ) -> Result<Indexed, StoreError> {
        let store = submission.store;
        let files: Vec<FileFacts> = linked.iter().map(|e| facts(e)).collect();
        let dids: Vec<String> = files.iter().filter_map(|f| f.did.clone()).collect();
        let md5s: Vec<String> = files.iter().filter_map(|f| f.md5.clone()).collect();
        let aliases: Vec<String> = linked
            .iter()
            .filter_map(|e| e.props.get("submitter_id").and_then(Value::as_str))
            .map(|submitter_id| format!("{}/{submitter_id}", project.project_id))
            .collect();
        let index = crate::file_index::FileIndex {
            store,
            prefix: "",
            landing: submission.landing,
        };
        let mut by_did = HashMap::new();
        for record in store.index_records(&dids).await? {
            let record = match index.landed_record(&record).await {
                Some(full) => full,
                None => record,
            };
            by_did.insert(record.did.clone(), record);
        }
        let mut by_hash = HashMap::new();
        for record in store.index_records_by_md5(&md5s).await? {
            if let (Some(md5), Some(size)) = (record.hashes.get("md5"), record.size) {
                by_hash.entry((md5.clone(), size)).or_insert(record.did);
            }
        }
        self.taken_aliases
            .extend(store.index_taken_aliases(&aliases).await?);
        Ok(Indexed { by_did, by_hash })
    }

    async fn link_one(
        &mut self,
        submission: &Submission<'_>,
        project: &Project,
        entity: &mut Staged<'_>,
        indexed: &Indexed,
    ) -> Result<Option<IndexWrite>, StoreError> {
        let facts = facts(entity);
        let by_did = facts
            .did
            .as_ref()
            .and_then(|did| indexed.by_did.get(did))
            .cloned();
        let by_hash = match (&facts.md5, facts.size) {
            (Some(md5), Some(size)) => {
                let key = (md5.clone(), size);
                self.planned
                    .get(&key)
                    .or_else(|| indexed.by_hash.get(&key))
                    .cloned()
            }
            _ => None,
        };
        let creating = entity.existing.is_none();
        if let Some(record) = by_did {
            return self
                .check_indexed(submission, project, entity, &facts, record, creating)
                .await;
        }
        if let Some((md5, size)) = facts.did.as_ref().and_then(|d| self.planned_dids.get(d)) {
            // Registered by an earlier entity of this request: the same file or an error.
            if facts.md5.as_ref() != Some(md5) || facts.size != Some(*size) {
                let did = facts.did.clone().unwrap_or_default();
                entity.result.error(
                    ErrorType::InvalidValue,
                    &["md5sum", "file_size"],
                    mismatch(&facts, &did),
                );
            }
            return Ok(None);
        }
        if let Some(hash_did) = by_hash {
            // The file is indexed under another id.
            if facts.uses_object_id {
                match &facts.did {
                    None => {
                        entity.props.insert("object_id".into(), json!(hash_did));
                    }
                    Some(object_id) => entity.result.error(
                        ErrorType::InvalidValue,
                        &["object_id"],
                        format!("Provided object_id {object_id} does not match any indexed file."),
                    ),
                }
                return Ok(None);
            }
            let graph_id = facts.did.clone().unwrap_or_default();
            entity.result.error(
                ErrorType::NotUnique,
                &["id"],
                format!(
                    "Graph ID and index file ID found in index service do not match, which is currently not permitted. Graph ID: {graph_id}. Index ID found using hash/size: {hash_did}. Index ID found using uuid: None."
                ),
            );
            return Ok(None);
        }
        // Not indexed: register the file.
        let did = facts
            .did
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if facts.uses_object_id {
            entity.props.insert("object_id".into(), json!(did));
        }
        let (Some(md5), Some(size)) = (facts.md5.clone(), facts.size) else {
            // The schema requires both; an entity without them is invalid already.
            return Ok(None);
        };
        self.planned.insert((md5.clone(), size), did.clone());
        self.planned_dids.insert(did.clone(), (md5.clone(), size));
        let now = now();
        let record = IndexRecord {
            did: did.clone(),
            baseid: uuid::Uuid::new_v4().to_string(),
            rev: new_rev(),
            form: Some("object".into()),
            size: Some(size),
            file_name: facts.file_name.clone(),
            hashes: [("md5".to_string(), md5)].into_iter().collect(),
            urls: entity.urls.clone().unwrap_or_default(),
            acl: self.acl(submission, project).await?,
            authz: project_authz(project, entity),
            created_date: now.clone(),
            updated_date: now,
            ..IndexRecord::default()
        };
        let submitter_id = entity
            .props
            .get("submitter_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let alias = format!("{}/{submitter_id}", project.project_id);
        // The first of two files with one submitter id (of two types) takes it.
        let aliases = if submitter_id.is_empty() || !self.taken_aliases.insert(alias.clone()) {
            Vec::new()
        } else {
            vec![alias]
        };
        Ok(Some(IndexWrite::Insert(record, aliases)))
    }

    /// A node naming a record that exists: hash and size must agree. A new
    /// node maps an upload (sheepdog's data upload flow): a record without
    /// acl or authz becomes the project's, and the uploader's own upload
    /// also gets the project's acl and loses its uploader. An updated node's
    /// `urls` replace the record's.
    async fn check_indexed(
        &mut self,
        submission: &Submission<'_>,
        project: &Project,
        entity: &mut Staged<'_>,
        facts: &FileFacts,
        record: IndexRecord,
        creating: bool,
    ) -> Result<Option<IndexWrite>, StoreError> {
        if record.size.is_none() || record.hashes.is_empty() {
            entity.result.error(
                ErrorType::InvalidValue,
                &["object_id"],
                format!(
                    "Indexed file of id {} is not ready for metadata submission yet (no hashes and size).",
                    record.did
                ),
            );
            return Ok(None);
        }
        let hash_matches = facts
            .md5
            .as_ref()
            .is_none_or(|md5| record.hashes.get("md5") == Some(md5));
        if !hash_matches || facts.size != record.size {
            entity.result.error(
                ErrorType::InvalidValue,
                &["md5sum", "file_size"],
                mismatch(facts, &record.did),
            );
            return Ok(None);
        }
        let mut updated = record.clone();
        if creating {
            if record.acl.is_empty() && record.authz.is_empty() {
                match record.uploader.as_deref() {
                    // Already handed to a project: only its authz is set.
                    None | Some("") => {}
                    Some(uploader) if uploader == submission.username => {
                        updated.acl = self.acl(submission, project).await?;
                        updated.uploader = None;
                    }
                    Some(uploader) => {
                        entity.result.error(
                            ErrorType::InvalidValue,
                            &["object_id"],
                            format!(
                                "Failed to update acl and uploader fields in indexd: current uploader ({}) is not original file uploader ({uploader}) and/or acl ([]) is not empty.",
                                submission.username
                            ),
                        );
                        return Ok(None);
                    }
                }
                updated.authz = project_authz(project, entity);
            }
        } else if let Some(urls) = entity.urls.as_ref().filter(|u| !u.is_empty()) {
            updated.urls_metadata.retain(|url, _| urls.contains(url));
            updated.urls = urls.clone();
        }
        if updated == record {
            return Ok(None);
        }
        updated.rev = new_rev();
        updated.updated_date = now();
        Ok(Some(IndexWrite::Replace(updated)))
    }

    /// The project's `acl` for new records.
    async fn acl(
        &mut self,
        submission: &Submission<'_>,
        project: &Project,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(acl) = &self.acl {
            return Ok(acl.clone());
        }
        let accession = |props: &serde_json::Map<String, Value>| {
            props
                .get("dbgap_accession_number")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let open = project
            .node
            .props
            .get("availability_type")
            .and_then(Value::as_str)
            == Some("Open");
        let acl = if open {
            vec!["*".to_string()]
        } else {
            let program = submission
                .store
                .nodes_of_type("program")
                .await?
                .into_iter()
                .find(|p| p.props.get("name").and_then(Value::as_str) == Some(&project.program));
            program
                .as_ref()
                .and_then(|p| accession(&p.props))
                .into_iter()
                .chain(accession(&project.node.props))
                .collect()
        };
        self.acl = Some(acl.clone());
        Ok(acl)
    }
}

/// `/programs/P/projects/Q`, and a `/consents/<code>` below it per consent code.
fn project_authz(project: &Project, entity: &Staged<'_>) -> Vec<String> {
    let resource = format!("/programs/{}/projects/{}", project.program, project.code);
    let consents: Vec<String> = entity
        .props
        .get("consent_codes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|code| format!("{resource}/consents/{code}"))
        .collect();
    if consents.is_empty() {
        vec![resource]
    } else {
        consents
    }
}

/// sheepdog's error for a node whose hash or size contradicts its file's
/// record (the hashes as the Python dict it prints).
fn mismatch(facts: &FileFacts, did: &str) -> String {
    let hashes = facts
        .md5
        .as_ref()
        .map_or("None".into(), |md5| format!("{{'md5': '{md5}'}}"));
    let size = facts.size.map_or("None".into(), |s| s.to_string());
    format!(
        "Provided hash ({hashes}) and size ({size}) do not match those of indexed file of id {did}."
    )
}
