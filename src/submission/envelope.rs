//! Sheepdog's response shapes: per-entity results and the transaction envelope.

use std::io::{Seek, Write};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use serde_json::{Map, Value, json};

use crate::store::KEPT_DOCUMENT_BYTES;

/// Error types sheepdog reports (exact strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidLink,
    InvalidPermissions,
    InvalidProperty,
    InvalidType,
    InvalidValue,
    MissingProperty,
    NotUnique,
    NotFound,
    Error,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidLink => "INVALID_LINK",
            ErrorType::InvalidPermissions => "INVALID_PERMISSIONS",
            ErrorType::InvalidProperty => "INVALID_PROPERTY",
            ErrorType::InvalidType => "INVALID_TYPE",
            ErrorType::InvalidValue => "INVALID_VALUE",
            ErrorType::MissingProperty => "MISSING_PROPERTY",
            ErrorType::NotUnique => "NOT_UNIQUE",
            ErrorType::NotFound => "NOT_FOUND",
            ErrorType::Error => "ERROR",
        }
    }
}

/// The outcome for one submitted (or deleted) document.
#[derive(Debug, Clone, Default)]
pub struct EntityResult {
    pub id: Option<String>,
    pub node_type: Option<String>,
    pub action: Option<&'static str>,
    pub errors: Vec<Value>,
    pub warnings: Vec<Value>,
    pub unique_keys: Vec<Value>,
}

impl EntityResult {
    pub fn error(&mut self, kind: ErrorType, keys: &[&str], message: impl Into<String>) {
        self.errors
            .push(json!({"message": message.into(), "keys": keys, "type": kind.as_str()}));
    }

    pub fn error_with(&mut self, mut error: Map<String, Value>) {
        error.entry("keys").or_insert_with(|| json!([]));
        self.errors.push(Value::Object(error));
    }

    pub fn warning(&mut self, keys: &[&str], message: impl Into<String>) {
        self.warnings
            .push(json!({"message": message.into(), "keys": keys, "type": "ERROR"}));
    }

    pub fn valid(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.shape()).expect("an entity result serializes")
    }

    /// The result in sheepdog's shape, serializable without building a value.
    fn shape(&self) -> EntityShape<'_> {
        EntityShape {
            id: &self.id,
            node_type: &self.node_type,
            valid: self.valid(),
            action: self.action,
            errors: &self.errors,
            warnings: &self.warnings,
            unique_keys: &self.unique_keys,
        }
    }
}

#[derive(serde::Serialize)]
struct EntityShape<'a> {
    id: &'a Option<String>,
    #[serde(rename = "type")]
    node_type: &'a Option<String>,
    valid: bool,
    action: Option<&'static str>,
    errors: &'a [Value],
    warnings: &'a [Value],
    unique_keys: &'a [Value],
}

/// "Transaction aborted due to 2 invalid entities and 1 transactional error(s)."
fn failure_message(invalid: usize, transactional: usize) -> String {
    let mut parts = Vec::new();
    if invalid > 0 {
        let noun = if invalid == 1 { "entity" } else { "entities" };
        parts.push(format!("{invalid} invalid {noun}"));
    }
    if transactional > 0 {
        parts.push(format!("{transactional} transactional error(s)"));
    }
    format!("Transaction aborted due to {}.", parts.join(" and "))
}

/// Entity results up to this size stay in memory; beyond, they go to an
/// unnamed temporary file.
const SPOOL_IN_MEMORY: usize = 4 << 20;

/// An upload envelope (API.md §2.5) built entity by entity, so a request of a
/// million entities keeps their results as JSON text, spooled to a temporary
/// file once large, rather than as values in memory.
#[derive(Debug, Default)]
pub struct UploadEnvelope {
    /// The entity results so far, serialized and comma-separated.
    entities: Vec<u8>,
    spool: Option<std::io::BufWriter<std::fs::File>>,
    count: usize,
    invalid: usize,
    created: usize,
    updated: usize,
    transactional_errors: Vec<Value>,
}

/// The text of a finished envelope: whole, or with the entity list in a file.
pub enum EnvelopeText {
    Whole(Vec<u8>),
    Spooled {
        head: Vec<u8>,
        entities: std::fs::File,
        tail: Vec<u8>,
    },
}

impl EnvelopeText {
    /// The reply as the transaction log keeps it: whole when no larger than
    /// [`KEPT_DOCUMENT_BYTES`], else without its list of entities.
    pub fn kept_json(&self) -> String {
        let text = match self {
            EnvelopeText::Whole(text) if text.len() <= KEPT_DOCUMENT_BYTES => {
                return String::from_utf8_lossy(text).into_owned();
            }
            EnvelopeText::Whole(text) => text.clone(),
            // `head` ends inside the entity list, `tail` starts by closing it.
            EnvelopeText::Spooled { head, tail, .. } => [head.as_slice(), tail].concat(),
        };
        let mut reply: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if let Some(reply) = reply.as_object_mut() {
            reply.remove("entities");
        }
        reply.to_string()
    }

    /// The text as a stream of chunks, for a response body.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
        match self {
            EnvelopeText::Whole(text) => stream::iter([Ok(Bytes::from(text))]).left_stream(),
            EnvelopeText::Spooled {
                head,
                entities,
                tail,
            } => {
                let file = tokio::fs::File::from_std(entities);
                stream::iter([Ok(Bytes::from(head))])
                    .chain(tokio_util::io::ReaderStream::with_capacity(file, 64 << 10))
                    .chain(stream::iter([Ok(Bytes::from(tail))]))
                    .right_stream()
            }
        }
    }
}

impl UploadEnvelope {
    pub fn add(&mut self, entity: &EntityResult) -> std::io::Result<()> {
        if self.count > 0 {
            self.entities.push(b',');
        }
        self.count += 1;
        serde_json::to_writer(&mut self.entities, &entity.shape())?;
        if !entity.valid() {
            self.invalid += 1;
        }
        match entity.action {
            Some("create") => self.created += 1,
            Some("update") => self.updated += 1,
            _ => {}
        }
        if self.entities.len() >= SPOOL_IN_MEMORY {
            let spool = match &mut self.spool {
                Some(spool) => spool,
                None => self
                    .spool
                    .insert(std::io::BufWriter::new(tempfile::tempfile()?)),
            };
            spool.write_all(&self.entities)?;
            self.entities.clear();
        }
        Ok(())
    }

    pub fn transactional_error(&mut self, error: Value) {
        self.transactional_errors.push(error);
    }

    /// Whether the submission can no longer succeed.
    pub fn failed(&self) -> bool {
        self.invalid > 0 || !self.transactional_errors.is_empty()
    }

    /// The HTTP status and the envelope's text.
    pub fn finish(
        self,
        transaction_id: i64,
        dry_run: bool,
        success_code: u16,
    ) -> std::io::Result<(u16, EnvelopeText)> {
        let success = !self.failed();
        let code = match (dry_run, success) {
            (true, _) => 200,
            (false, true) => success_code,
            (false, false) => 400,
        };
        let message = match (dry_run, success) {
            (_, false) => failure_message(self.invalid, self.transactional_errors.len()),
            (true, true) => "Transaction would have been successful. User selected dry run option, transaction aborted, no data written to database.".to_string(),
            (false, true) => "Transaction successful.".to_string(),
        };
        let head = json!({
            "transaction_id": transaction_id,
            "success": success,
            "code": code,
            "message": message,
        })
        .to_string();
        let tail = json!({
            "entity_error_count": self.invalid,
            "transactional_error_count": self.transactional_errors.len(),
            "transactional_errors": self.transactional_errors,
            "created_entity_count": if success { self.created } else { 0 },
            "updated_entity_count": if success { self.updated } else { 0 },
        })
        .to_string();
        // Both are objects: the entity list goes between them.
        let mut head = head.into_bytes();
        head.pop();
        head.extend_from_slice(b",\"entities\":[");
        let mut tail = tail.into_bytes();
        tail[0] = b',';
        tail.splice(0..0, *b"]");
        let text = match self.spool {
            None => {
                head.extend_from_slice(&self.entities);
                head.extend_from_slice(&tail);
                EnvelopeText::Whole(head)
            }
            Some(mut spool) => {
                spool.write_all(&self.entities)?;
                let mut entities = spool.into_inner().map_err(|e| e.into_error())?;
                entities.rewind()?;
                EnvelopeText::Spooled {
                    head,
                    entities,
                    tail,
                }
            }
        };
        Ok((code, text))
    }
}

/// The upload envelope of a few entities as a value, for the program and
/// project endpoints that add to it.
pub fn upload_envelope(transaction_id: i64, entities: &[EntityResult]) -> Value {
    let mut envelope = UploadEnvelope::default();
    for entity in entities {
        envelope.add(entity).expect("a few results stay in memory");
    }
    match envelope.finish(transaction_id, false, 200) {
        Ok((_, EnvelopeText::Whole(text))) => {
            serde_json::from_slice(&text).expect("the envelope is JSON")
        }
        _ => unreachable!("a few results stay in memory"),
    }
}
