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

use super::envelope::{EntityResult, EnvelopeText, ErrorType, UploadEnvelope};
use super::{Project, Submission, natural_key_of};
use crate::dictionary::{ItemKind, Link, NodeType, PropKind};
use crate::store::{
    ChangeSet, Edge, EntityIds, KEPT_DOCUMENT_BYTES, NodeRef, NodeRow, NodeWrite, StoreError,
    TransactionDocument, TransactionRecord, WriteGuard, Writer,
};

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
}

/// The request body as the transaction log keeps it: its size, and its text
/// while it is no larger than [`KEPT_DOCUMENT_BYTES`]. The body reader records
/// each piece as it arrives.
#[derive(Debug, Clone)]
pub struct BodyCapture {
    format: &'static str,
    seen: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    size: usize,
    kept: Vec<u8>,
}

impl BodyCapture {
    /// A capture of a body in `format` (`JSON`, `TSV`, `CSV`).
    pub fn new(format: &'static str) -> Self {
        Self {
            format,
            seen: Arc::default(),
        }
    }

    pub fn record(&self, piece: &[u8]) {
        let mut seen = self.seen.lock().expect("capture lock poisoned");
        seen.size += piece.len();
        if seen.size <= KEPT_DOCUMENT_BYTES {
            seen.kept.extend_from_slice(piece);
        } else {
            seen.kept = Vec::new();
        }
    }

    fn document(&self) -> TransactionDocument {
        let seen = self.seen.lock().expect("capture lock poisoned");
        TransactionDocument {
            format: self.format.to_string(),
            size: seen.size as i64,
            text: (seen.size <= KEPT_DOCUMENT_BYTES)
                .then(|| String::from_utf8_lossy(&seen.kept).into_owned()),
        }
    }
}

/// The request's database transaction, written one chunk behind validation
/// so that the database writes one chunk while the service checks the next.
#[derive(Default)]
struct WriteBehind {
    /// Opened with the first chunk to write; dropped (rolled back) on failure.
    writer: Option<Writer>,
    /// Another writer committed one of these entities first.
    lost_race: bool,
}

/// A chunk being written on a task of its own; it hands the writer back.
type Writing = JoinHandle<(Writer, Result<(), StoreError>)>;

impl WriteBehind {
    /// Start writing `change` on a task of its own. Polled within the
    /// request's task, the write could send its next statement to the
    /// database only when checking the next chunk paused, and on SQLite the
    /// database waited a third of the time.
    async fn start(
        &mut self,
        store: &crate::store::Store,
        guard: &WriteGuard<'_>,
        change: Option<ChangeSet>,
    ) -> Result<Option<Writing>, StoreError> {
        let Some(change) = change else {
            return Ok(None);
        };
        if self.lost_race {
            return Ok(None);
        }
        let mut writer = match self.writer.take() {
            Some(writer) => writer,
            None => store.begin_write(guard).await?,
        };
        let writing = tokio::spawn(async move {
            let result = writer.apply(&change).await;
            (writer, result)
        });
        // A task spawned here first waits for this one to pause; let it send
        // its first statement before checking goes on.
        tokio::task::yield_now().await;
        Ok(Some(writing))
    }

    /// Wait for a chunk started by [`WriteBehind::start`].
    async fn finish(&mut self, writing: Option<Writing>) -> Result<(), StoreError> {
        let Some(writing) = writing else {
            return Ok(());
        };
        let (writer, result) = match writing.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(StoreError::Other(format!("writing was cancelled: {e}"))),
        };
        self.writer = Some(writer);
        match result {
            Err(StoreError::Conflict(detail)) => {
                self.lose_race(&detail);
                Ok(())
            }
            other => other,
        }
    }

    async fn write(
        &mut self,
        store: &crate::store::Store,
        guard: &WriteGuard<'_>,
        change: Option<ChangeSet>,
    ) -> Result<(), StoreError> {
        let writing = self.start(store, guard, change).await?;
        self.finish(writing).await
    }

    /// A concurrent request wrote one of these natural keys first.
    fn lose_race(&mut self, detail: &str) {
        tracing::info!(%detail, "submission lost a race with another writer");
        self.lost_race = true;
        self.writer = None;
    }
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

    /// Step 1-2: shape, type, id format, JSON schema.
    fn parse(&self, project: &Project, doc: Value, mode: Mode) -> Staged<'_> {
        let mut staged = Staged {
            result: EntityResult::default(),
            node: None,
            doc: Map::new(),
            existing: None,
            natural_key: None,
            link_refs: Vec::new(),
            targets: HashMap::new(),
            cleared_links: Vec::new(),
            props: Map::new(),
            waiting: false,
        };
        let result = &mut staged.result;
        let Value::Object(raw) = doc else {
            result.error(
                ErrorType::InvalidValue,
                &[],
                format!(
                    "Entity document must be an object, not a {}",
                    json_type(&doc)
                ),
            );
            return staged;
        };
        let mut doc: Map<String, Value> = raw
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches('*').to_string(), v))
            .collect();
        let Some(type_name) = doc.get("type").and_then(Value::as_str).map(str::to_string) else {
            result.error(ErrorType::InvalidType, &["type"], "missing 'type'");
            return staged;
        };
        result.node_type = Some(type_name.clone());
        let Some(node) = self.dictionary.node(&type_name) else {
            let hint = self
                .dictionary
                .suggest(&type_name)
                .map(|s| format!(" Did you mean '{s}'?"))
                .unwrap_or_default();
            result.error(
                ErrorType::InvalidType,
                &["type"],
                format!("Invalid entity type: {type_name}.{hint}"),
            );
            return staged;
        };
        if !node.is_project_scoped() {
            result.error(
                ErrorType::InvalidType,
                &["type"],
                format!(
                    "{type_name} is not an entity that can be upload via the project endpoint."
                ),
            );
            return staged;
        }
        staged.node = Some(node);
        result.unique_keys = node
            .unique_keys
            .iter()
            .map(|keys| {
                let map: Map<String, Value> = keys
                    .iter()
                    .map(|k| {
                        let v = if k == "project_id" {
                            Value::String(project.project_id.clone())
                        } else {
                            doc.get(k).cloned().unwrap_or(Value::Null)
                        };
                        (k.clone(), v)
                    })
                    .collect();
                Value::Object(map)
            })
            .collect();
        if node.is_data_file() {
            doc.remove("urls");
        }
        match doc.get("id") {
            None | Some(Value::Null) => {
                doc.remove("id");
            }
            Some(Value::String(id)) if let Ok(id) = Uuid::parse_str(id) => {
                // One spelling (hyphenated, lower case), as stored and as linked to.
                result.id = Some(id.to_string());
            }
            Some(_) => {
                let message = match mode {
                    Mode::Create => "Cannot create entity with custom id that is not a UUID.",
                    Mode::Upsert => "The id of an entity must be a UUID.",
                };
                result.error(ErrorType::InvalidValue, &["id"], message);
            }
        }
        if let Some(given) = doc.get("project_id")
            && !given.is_null()
            && given.as_str() != Some(project.project_id.as_str())
        {
            result.error(
                ErrorType::InvalidValue,
                &["project_id"],
                format!(
                    "Key 'project_id' is a system property and cannot be updated from '{}' to '{}'",
                    project.project_id,
                    crate::formats::cell_text(Some(given))
                ),
            );
        }
        let checked = Value::Object(doc);
        let problems = self.validators.check(&type_name, &checked);
        let Value::Object(doc) = checked else {
            unreachable!("wrapped just above")
        };
        for problem in problems {
            let kind = if problem.message.contains("is not of type") {
                ErrorType::InvalidValue
            } else if problem.message.contains("is a required property") {
                ErrorType::MissingProperty
            } else if problem
                .message
                .contains("Additional properties are not allowed")
            {
                ErrorType::InvalidProperty
            } else if problem.keys.first().is_some_and(|k| {
                let first = k.split('.').next().unwrap_or(k);
                node.link(first).is_some()
            }) {
                ErrorType::InvalidLink
            } else {
                ErrorType::Error
            };
            let keys: Vec<&str> = problem.keys.iter().map(String::as_str).collect();
            result.error(kind, &keys, problem.message);
        }
        staged.doc = doc;
        staged
    }

    /// Steps 3-4: find the stored node each document means; create or update.
    async fn identify(
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

    /// Step 5: the stored property document after this submission, stamped
    /// `now` where it is created or changed.
    fn set_properties(&self, project: &Project, entity: &mut Staged<'_>, now: &Value) {
        let Some(node) = entity.node else { return };
        let mut props = entity
            .existing
            .as_ref()
            .map(|e| e.props.clone())
            .unwrap_or_default();
        let before = props.clone();
        let is_new = entity.existing.is_none();
        let mut link_refs = Vec::new();
        let mut cleared_links = Vec::new();
        for (key, value) in &entity.doc {
            if matches!(
                key.as_str(),
                "type" | "id" | "project_id" | "created_datetime" | "updated_datetime"
            ) {
                continue;
            }
            if let Some(link) = node.link(key) {
                if value.is_null() {
                    cleared_links.push(link.name.clone());
                } else {
                    link_refs.push((link, target_refs(value)));
                }
                continue;
            }
            let Some(property) = node.property(key) else {
                let hint = crate::dictionary::closest(
                    key,
                    node.properties.iter().map(|p| p.name.as_str()),
                )
                .map(|s| format!(" Did you mean '{s}'?"))
                .unwrap_or_default();
                entity.result.error(
                    ErrorType::InvalidProperty,
                    &[key],
                    format!(
                        "Key '{key}' is not a valid property for type '{}'.{hint}",
                        node.id
                    ),
                );
                continue;
            };
            if node.is_system_property(key) {
                let current = props
                    .get(key)
                    .cloned()
                    .or_else(|| property.default.clone())
                    .unwrap_or(Value::Null);
                if *value == current || value.is_null() {
                    continue;
                }
                if property.default.is_some() {
                    entity.result.warning(
                        &[key],
                        format!(
                            "Property '{key}' ({}) is a system property and will be ignored.",
                            crate::formats::cell_text(Some(value))
                        ),
                    );
                } else {
                    entity.result.error(
                        ErrorType::InvalidPermissions,
                        &[key],
                        format!(
                            "Key '{key}' is a system property and cannot be updated from '{}' to '{}'",
                            crate::formats::cell_text(Some(&current)),
                            crate::formats::cell_text(Some(value))
                        ),
                    );
                }
                continue;
            }
            if value.is_null() {
                props.remove(key);
            } else {
                props.insert(key.clone(), canonical_number(property.kind, value));
            }
        }
        entity.link_refs = link_refs;
        entity.cleared_links = cleared_links;
        if node.property("project_id").is_some() {
            props.insert(
                "project_id".into(),
                Value::String(project.project_id.clone()),
            );
        }
        for property in &node.properties {
            if node.is_system_property(&property.name)
                && let Some(default) = &property.default
                && props.get(&property.name).is_none_or(Value::is_null)
            {
                props.insert(property.name.clone(), default.clone());
            }
        }
        if is_new && node.property("created_datetime").is_some() {
            props.insert("created_datetime".into(), now.clone());
        }
        if node.property("updated_datetime").is_some() && (is_new || props != before) {
            props.insert("updated_datetime".into(), now.clone());
        }
        entity.props = props;
    }

    /// Step 8: each link reference names exactly one node of the project,
    /// stored or named by this request. With `may_wait`, an entity with a
    /// target not found yet is marked waiting instead of failing.
    async fn resolve_links(
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
    fn qualify_key(&self, project: &Project, target_type: &str, key: &str) -> String {
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
    fn check_target_project(
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

    /// Steps 6 and 9: merge with stored links, then required/subgroup/multiplicity rules.
    async fn check_graph(
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
    async fn check_one_source_per_target(
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
        let now = Value::String(crate::timestamp());
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

    /// Steps 6 and 9 for entities whose links are resolved, then their
    /// results; returns their changes unless the request can no longer
    /// succeed or is a dry run.
    async fn finish(
        &mut self,
        mut ready: Vec<Staged<'a>>,
    ) -> Result<Option<ChangeSet>, StoreError> {
        self.submission
            .check_graph(&mut ready, &mut self.seen)
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
        Ok(Some(change_set(self.project, ready)))
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

/// The references of one link value: an object or a list of objects.
fn target_refs(value: &Value) -> Vec<TargetRef> {
    let items: Vec<&Value> = match value {
        Value::Array(list) => list.iter().collect(),
        Value::Object(_) => vec![value],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|item| {
            let obj = item.as_object()?;
            if let Some(id) = obj
                .get("id")
                .or_else(|| obj.get("node_id"))
                .and_then(Value::as_str)
                && !id.is_empty()
            {
                return Some(TargetRef::Id(id.to_lowercase()));
            }
            obj.iter()
                .find(|(k, v)| *k != "project_id" && v.is_string())
                .and_then(|(_, v)| v.as_str())
                .map(|s| TargetRef::NaturalKey(s.to_string()))
        })
        .collect()
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

/// Integral values of `number` properties are stored as integers, as TSV
/// conversion reads them: `12.0` and `12` are one value, so a TSV export
/// re-uploaded unchanged changes nothing.
fn canonical_number(kind: PropKind, value: &Value) -> Value {
    let integral = |v: &Value| match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
        _ => v.clone(),
    };
    match (kind, value) {
        (PropKind::Number, Value::Number(_)) => integral(value),
        (PropKind::Array(ItemKind::Number), Value::Array(items)) => {
            Value::Array(items.iter().map(integral).collect())
        }
        _ => value.clone(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}
