//! Create (POST) and upsert (PUT) of entity documents: parse, validate,
//! identify, resolve links, check the graph, then write everything in one
//! transaction or nothing at all (API.md §2.5, DICTIONARY.md §8).
//!
//! A request is handled in chunks of [`UPLOAD_CHUNK`] documents as its body
//! is parsed: each chunk is validated against the database and against what
//! the request has named so far ([`Seen`]), then written into one open
//! database transaction, which commits only if every chunk was valid. So a
//! request of a million records needs the memory of a chunk, plus a few
//! dozen bytes a record for identities and results.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::envelope::{EntityResult, EnvelopeText, UploadEnvelope};
use super::{Project, Submission};
use crate::dictionary::{Link, NodeType};
use crate::store::{
    ChangeSet, Edge, EntityIds, KEPT_DOCUMENT_BYTES, NodeRow, NodeWrite, StoreError,
    TransactionDocument, TransactionRecord, WriteGuard, Writer,
};

mod capture;
mod files;
mod identify;
mod links;
mod parse;
mod properties;
mod rules;
mod write_behind;

pub use capture::BodyCapture;
use files::FileLinks;
use parse::target_refs;
use write_behind::WriteBehind;

/// Documents validated and written together.
pub const UPLOAD_CHUNK: usize = 5000;

/// Entities whose link targets were not found yet wait for the rest of the
/// request (their targets may come later in it), up to this many; beyond,
/// such a link is reported at once.
const WAITING_LIMIT: usize = 50_000;

/// Namespace of the name-based UUIDs that stand for natural keys in [`Seen`].
const NATURAL_KEYS: Uuid = uuid::uuid!("5d0c3f52-3e0a-4c57-9f43-2f1de0b7a0c1");

/// POST creates only; PUT creates or updates by id / natural key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Upsert,
}

/// What the caller may do in the project (checked per entity).
#[derive(Debug, Clone, Copy)]
pub struct Rights {
    pub create: bool,
    pub update: bool,
}

/// A reference from a document to a link target, before resolution.
#[derive(Debug, Clone)]
enum TargetRef {
    Id(String),
    NaturalKey(String),
}

struct Staged<'d> {
    result: EntityResult,
    node: Option<&'d NodeType>,
    doc: Map<String, Value>,
    existing: Option<NodeRow>,
    natural_key: Option<String>,
    /// Link name -> references given in the document.
    link_refs: Vec<(&'d Link, Vec<TargetRef>)>,
    /// Link name -> resolved target ids (final set after merging).
    targets: HashMap<String, Vec<String>>,
    /// Links given as null: a stored node drops them (sheepdog's way to
    /// remove an optional link).
    cleared_links: Vec<String>,
    props: Map<String, Value>,
    /// A link target was not found yet: wait for the rest of the request.
    waiting: bool,
    /// A data file's `urls`, for its index record.
    urls: Option<Vec<String>>,
}

/// The entities a request has named so far, in compact form: link targets
/// and duplicates are found among them across chunks.
#[derive(Default)]
struct Seen<'d> {
    /// Entity id -> its type, for ids the documents give and ids of stored
    /// entities the request updates: only those can be named by other
    /// documents or repeated (a new entity's assigned id is known to none).
    ids: HashMap<Uuid, &'d str>,
    /// Type and natural key, as a name-based UUID (16 bytes however long the
    /// key) -> entity id, nil when it has none.
    keys: HashMap<Uuid, Uuid>,
    /// (target, link, source type) -> the request's valid sources through a
    /// link whose target may have only one source.
    one_sources: HashMap<(String, String, String), HashSet<String>>,
}

impl<'d> Seen<'d> {
    /// Remember an entity; two documents of one request naming the same
    /// entity are a transactional error (step 7).
    fn remember(&mut self, entity: &Staged<'d>, envelope: &mut UploadEnvelope) {
        let Some(node) = entity.node else { return };
        let id = entity
            .result
            .id
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok());
        let mut repeated_id = false;
        if let Some(id) = id
            && (entity.doc.contains_key("id") || entity.existing.is_some())
        {
            repeated_id = self.ids.insert(id, node.id.as_str()).is_some();
        }
        match &entity.natural_key {
            Some(key) => {
                let first = self
                    .keys
                    .insert(Self::key(&node.id, key), id.unwrap_or_default())
                    .is_none();
                if !first {
                    envelope.transactional_error(json!({
                        "message": format!("Entity is not unique, {}", entity.result.unique_keys.first().cloned().unwrap_or_default()),
                        "type": "NOT_UNIQUE",
                    }));
                }
            }
            None if repeated_id => {
                envelope.transactional_error(json!({
                    "message": format!("Entity is not unique, {{'id': '{}'}}", entity.result.id.as_deref().unwrap_or_default()),
                    "type": "NOT_UNIQUE",
                }));
            }
            None => {}
        }
    }

    fn type_of(&self, id: &str) -> Option<&'d str> {
        Uuid::parse_str(id)
            .ok()
            .and_then(|id| self.ids.get(&id).copied())
    }

    /// The id of the request's entity of `node_type` with this natural key.
    fn id_of(&self, node_type: &str, key: &str) -> Option<String> {
        self.keys
            .get(&Self::key(node_type, key))
            .filter(|id| !id.is_nil())
            .map(Uuid::to_string)
    }

    fn key(node_type: &str, key: &str) -> Uuid {
        Uuid::new_v5(&NATURAL_KEYS, format!("{node_type}\u{1e}{key}").as_bytes())
    }
}

/// One upload request while it is processed.
struct Upload<'a> {
    submission: &'a Submission<'a>,
    project: &'a Project,
    mode: Mode,
    rights: Rights,
    dry_run: bool,
    seen: Seen<'a>,
    envelope: UploadEnvelope,
    entity_ids: EntityIds,
    body: BodyCapture,
    files: FileLinks,
}

impl Submission<'_> {
    /// Submit the documents arriving on `chunks`: the body as it is parsed,
    /// then an empty chunk to mark its end. An `Err` ends the request with
    /// that error and nothing written.
    /// Returns the HTTP status and the envelope.
    pub async fn upload<E: From<StoreError>>(
        &self,
        project: &Project,
        mut chunks: mpsc::Receiver<Result<Vec<Value>, E>>,
        mode: Mode,
        rights: Rights,
        dry_run: bool,
        body: BodyCapture,
    ) -> Result<(u16, EnvelopeText), E> {
        // A request of one chunk arrives whole before the write lock is
        // taken; a larger one holds it while the rest of its body streams in.
        let mut next = chunks.recv().await;
        let guard = self.store.lock_writes().await;
        let mut upload = Upload {
            submission: self,
            project,
            mode,
            rights,
            dry_run,
            seen: Seen::default(),
            envelope: UploadEnvelope::default(),
            entity_ids: EntityIds::default(),
            body,
            files: FileLinks::default(),
        };
        let mut transaction = WriteBehind::default();
        let mut unwritten = None;
        let mut waiting: Vec<Staged> = Vec::new();
        let mut received = false;
        loop {
            let docs = match next {
                Some(Ok(docs)) if docs.is_empty() => break,
                Some(Ok(docs)) => docs,
                Some(Err(e)) => return Err(e),
                // The parser went away without the end mark (it panicked):
                // what arrived is not the whole request.
                None => {
                    return Err(StoreError::Other(
                        "the request body was not read to its end".into(),
                    )
                    .into());
                }
            };
            received = true;
            next = chunks.recv().await;
            let more = matches!(&next, Some(Ok(docs)) if !docs.is_empty());
            let may_wait = more && waiting.len() < WAITING_LIMIT;
            let writing = transaction
                .start(self.store, &guard, unwritten.take())
                .await?;
            let checked = upload.check(docs, may_wait).await;
            transaction.finish(writing).await?;
            let (change, later) = checked?;
            unwritten = change;
            waiting.extend(later);
        }
        if !received {
            upload
                .envelope
                .transactional_error(json!({"message": "Nothing to submit", "type": "ERROR"}));
        }
        transaction
            .write(self.store, &guard, unwritten.take())
            .await?;
        if !waiting.is_empty() {
            self.resolve_links(project, &upload.seen, &mut waiting, false)
                .await?;
            let change = upload.finish(waiting).await?;
            transaction.write(self.store, &guard, change).await?;
        }
        Ok(upload.commit(transaction).await?)
    }
}

impl<'a> Upload<'a> {
    /// Steps 1-5 and 7 for one chunk: parse and validate, identify, the
    /// stored properties, duplicates within the request.
    async fn stage(&mut self, docs: Vec<Value>) -> Result<Vec<Staged<'a>>, StoreError> {
        let submission = self.submission;
        let mut staged: Vec<Staged<'a>> = docs
            .into_iter()
            .map(|d| submission.parse(self.project, d, self.mode))
            .collect();
        submission
            .identify(self.project, &mut staged, self.mode, self.rights)
            .await?;
        // One time for the chunk: formatting it took 2% of a large upload.
        let now = Value::String(crate::time::timestamp());
        for entity in staged.iter_mut() {
            submission.set_properties(self.project, entity, &now);
        }
        for entity in &staged {
            self.seen.remember(entity, &mut self.envelope);
        }
        Ok(staged)
    }

    /// One chunk up to its changes: steps 1-9, the results, and what to
    /// write unless the request can no longer succeed. Entities whose link
    /// targets may still come (`may_wait`) are returned to wait instead.
    async fn check(
        &mut self,
        docs: Vec<Value>,
        may_wait: bool,
    ) -> Result<(Option<ChangeSet>, Vec<Staged<'a>>), StoreError> {
        let mut staged = self.stage(docs).await?;
        let may_wait = may_wait && !self.envelope.failed();
        self.submission
            .resolve_links(self.project, &self.seen, &mut staged, may_wait)
            .await?;
        let (waiting, ready): (Vec<_>, Vec<_>) = staged.into_iter().partition(|s| s.waiting);
        Ok((self.finish(ready).await?, waiting))
    }

    /// Steps 6, 9 and 10 (data files' index records) for entities whose
    /// links are resolved, then their results; returns their changes unless the request can no longer
    /// succeed or is a dry run.
    async fn finish(
        &mut self,
        mut ready: Vec<Staged<'a>>,
    ) -> Result<Option<ChangeSet>, StoreError> {
        self.submission
            .check_graph(&mut ready, &mut self.seen)
            .await?;
        let index = self
            .files
            .link(self.submission, self.project, &mut ready)
            .await?;
        for entity in &ready {
            self.envelope.add(&entity.result).map_err(spool_error)?;
            if let Some(id) = &entity.result.id {
                self.entity_ids.push(id);
            }
        }
        if self.envelope.failed() || self.dry_run {
            return Ok(None);
        }
        let mut change = change_set(self.project, ready);
        change.index = index;
        Ok(Some(change))
    }

    /// Commit, or log the failed request or dry run; returns the HTTP status
    /// and the envelope.
    async fn commit(
        mut self,
        mut transaction: WriteBehind,
    ) -> Result<(u16, EnvelopeText), StoreError> {
        let (role, success_code) = match self.mode {
            Mode::Create => ("create", 201),
            Mode::Upsert => ("update", 200),
        };
        let mut record = TransactionRecord::new(
            &self.project.program,
            Some(&self.project.code),
            role,
            self.submission.username,
        );
        record.is_dry_run = self.dry_run;
        record.entity_ids = std::mem::take(&mut self.entity_ids);
        record.document = Some(self.body.document());
        let committed = match transaction.writer.take() {
            Some(writer) if !self.envelope.failed() && !self.dry_run => {
                match writer.commit(&record).await {
                    Ok(id) => Some(id),
                    Err(StoreError::Conflict(detail)) => {
                        transaction.lose_race(&detail);
                        None
                    }
                    Err(other) => return Err(other),
                }
            }
            _ => None,
        };
        if transaction.lost_race {
            self.envelope.transactional_error(json!({
                "message": "Another submission wrote some of these entities at the same time; nothing was written. Submit again to update them.",
                "type": "NOT_UNIQUE",
            }));
        }
        let id = match committed {
            Some(id) => id,
            None => {
                if self.envelope.failed() {
                    record.state = "FAILED".into();
                }
                self.submission.store.log_transaction(&record).await?
            }
        };
        let (status, text) = self
            .envelope
            .finish(id, self.dry_run, success_code)
            .map_err(spool_error)?;
        self.submission
            .store
            .record_response(id, &text.kept_json())
            .await?;
        Ok((status, text))
    }
}

/// A UUID in its stored spelling (`id` parses, or it would not be in `Seen`).
fn canonical_id(id: &str) -> String {
    Uuid::parse_str(id).map_or_else(|_| id.to_string(), |id| id.to_string())
}

fn spool_error(e: std::io::Error) -> StoreError {
    StoreError::Other(format!(
        "could not spool the reply to a temporary file: {e}"
    ))
}

fn change_set(project: &Project, staged: Vec<Staged<'_>>) -> ChangeSet {
    let mut change = ChangeSet::default();
    for mut entity in staged {
        let (Some(node), Some(id)) = (entity.node, &entity.result.id) else {
            continue;
        };
        change.nodes.push(NodeWrite {
            id: id.clone(),
            node_type: node.id.clone(),
            project_id: Some(project.project_id.clone()),
            natural_key: entity.natural_key.clone(),
            props: std::mem::take(&mut entity.props),
            stored_seq: entity.existing.as_ref().map(|row| row.seq),
        });
        for (link, targets) in &entity.targets {
            for t in targets {
                change.add_edges.push((
                    Edge {
                        src_id: id.clone(),
                        link: link.clone(),
                        dst_id: t.clone(),
                    },
                    Some(project.project_id.clone()),
                ));
            }
        }
        if entity.existing.is_some() {
            for link in &entity.cleared_links {
                change.clear_links.push((id.clone(), link.clone()));
            }
            // Replaced to-one targets: drop stored edges of this link not kept.
            for link in node.links.iter().filter(|l| l.multiplicity.to_one()) {
                if entity.targets.get(&link.name).is_some_and(|t| t.len() == 1) {
                    change.replace_links.push((
                        id.clone(),
                        link.name.clone(),
                        entity.targets[&link.name][0].clone(),
                    ));
                }
            }
        }
    }
    change
}
