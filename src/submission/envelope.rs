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

/// An upload envelope (API.md §2.5); returns the HTTP status and the body.
pub fn upload_envelope(
    transaction_id: i64,
    entities: &[EntityResult],
    transactional_errors: &[Value],
    dry_run: bool,
    success_code: u16,
) -> (u16, Value) {
    let invalid = entities.iter().filter(|e| !e.valid()).count();
    let success = invalid == 0 && transactional_errors.is_empty();
    let count = |action: &str| {
        if success {
            entities.iter().filter(|e| e.action == Some(action)).count()
        } else {
            0
        }
    };
    let code = match (dry_run, success) {
        (true, _) => 200,
        (false, true) => success_code,
        (false, false) => 400,
    };
    let message = match (dry_run, success) {
        (_, false) => failure_message(invalid, transactional_errors.len()),
        (true, true) => "Transaction would have been successful. User selected dry run option, transaction aborted, no data written to database.".to_string(),
        (false, true) => "Transaction successful.".to_string(),
    };
    let body = json!({
        "transaction_id": transaction_id,
        "success": success,
        "code": code,
        "message": message,
        "entities": entities.iter().map(EntityResult::to_json).collect::<Vec<_>>(),
        "entity_error_count": invalid,
        "transactional_error_count": transactional_errors.len(),
        "transactional_errors": transactional_errors,
        "created_entity_count": count("create"),
        "updated_entity_count": count("update"),
    });
    (code, body)
}
