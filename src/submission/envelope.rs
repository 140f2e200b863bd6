//! Sheepdog's response shapes: per-entity results and the transaction envelope.

use serde_json::{Map, Value, json};

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
        json!({
            "id": self.id,
            "type": self.node_type,
            "valid": self.valid(),
            "action": self.action,
            "errors": self.errors,
            "warnings": self.warnings,
            "unique_keys": self.unique_keys,
        })
    }
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

/// An upload envelope (API.md §2.5) built entity by entity, so a request of a
/// million entities keeps their results as compact JSON text rather than as
/// values.
#[derive(Debug, Default)]
pub struct UploadEnvelope {
    /// The entity results so far, serialized and comma-separated.
    entities: Vec<u8>,
    invalid: usize,
    created: usize,
    updated: usize,
    transactional_errors: Vec<Value>,
}

impl UploadEnvelope {
    pub fn add(&mut self, entity: &EntityResult) {
        if !self.entities.is_empty() {
            self.entities.push(b',');
        }
        serde_json::to_writer(&mut self.entities, &entity.to_json())
            .expect("writing JSON to memory cannot fail");
        if !entity.valid() {
            self.invalid += 1;
        }
        match entity.action {
            Some("create") => self.created += 1,
            Some("update") => self.updated += 1,
            _ => {}
        }
    }

    pub fn transactional_error(&mut self, error: Value) {
        self.transactional_errors.push(error);
    }

    /// Whether the submission can no longer succeed.
    pub fn failed(&self) -> bool {
        self.invalid > 0 || !self.transactional_errors.is_empty()
    }

    /// The HTTP status and the body as JSON text.
    pub fn finish(self, transaction_id: i64, dry_run: bool, success_code: u16) -> (u16, Vec<u8>) {
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
        // Both are objects: splice the entity list between them.
        let mut body = Vec::with_capacity(head.len() + self.entities.len() + tail.len() + 16);
        body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        body.extend_from_slice(b",\"entities\":[");
        body.extend_from_slice(&self.entities);
        body.extend_from_slice(b"],");
        body.extend_from_slice(&tail.as_bytes()[1..]);
        (code, body)
    }
}

/// The upload envelope of a few entities as a value, for the program and
/// project endpoints that add to it.
pub fn upload_envelope(transaction_id: i64, entities: &[EntityResult]) -> Value {
    let mut envelope = UploadEnvelope::default();
    for entity in entities {
        envelope.add(entity);
    }
    let (_, body) = envelope.finish(transaction_id, false, 200);
    serde_json::from_slice(&body).expect("the envelope is JSON")
}
