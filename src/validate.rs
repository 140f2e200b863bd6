//! Draft-04 JSON-Schema validators compiled once per node type, reporting
//! problems with the phrases Gen3 clients know (`is a required property`,
//! `is not of type`, `is not one of`, `Additional properties are not allowed`).

use std::collections::HashMap;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::dictionary::{Dictionary, DictionaryError};

/// One schema violation: the keys it concerns and a readable message.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    pub keys: Vec<String>,
    pub message: String,
}

pub struct Validators {
    by_type: HashMap<String, jsonschema::Validator>,
}

impl Validators {
    pub fn compile(dictionary: &Dictionary) -> Result<Self, DictionaryError> {
        let mut by_type = HashMap::new();
        for node in dictionary.nodes() {
            let validator = jsonschema::draft4::options()
                .should_validate_formats(true)
                .build(&node.validation_schema())
                .map_err(|e| {
                    DictionaryError(format!(
                        "node '{}': invalid JSON schema at {}: {e}",
                        node.id, e.schema_path
                    ))
                })?;
            by_type.insert(node.id.clone(), validator);
        }
        Ok(Self { by_type })
    }

    /// Every violation of `node_type`'s schema by `doc` (empty when valid).
    pub fn check(&self, node_type: &str, doc: &Value) -> Vec<SchemaError> {
        let Some(validator) = self.by_type.get(node_type) else {
            return Vec::new();
        };
        // Most documents are valid, and the yes/no check is much cheaper.
        if validator.is_valid(doc) {
            return Vec::new();
        }
        validator.iter_errors(doc).map(|e| describe(&e)).collect()
    }
}

fn describe(error: &jsonschema::ValidationError<'_>) -> SchemaError {
    let path: Vec<String> = error
        .instance_path
        .into_iter()
        .map(|segment| match segment {
            jsonschema::paths::LocationSegment::Property(p) => p.to_string(),
            jsonschema::paths::LocationSegment::Index(i) => i.to_string(),
        })
        .collect();
    let keys = match &error.kind {
        ValidationErrorKind::Required { property } => {
            vec![
                property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_string),
            ]
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected.clone(),
        _ if path.is_empty() => Vec::new(),
        _ => vec![path.join(".")],
    };
    SchemaError {
        keys,
        message: shortened(error.to_string()),
    }
}

/// Longest validation message kept whole: messages quote the value, and a
/// reply must not echo a megabyte back for each invalid entity.
const MAX_MESSAGE_CHARS: usize = 1000;

fn shortened(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message,
        Some((cut, _)) => format!(
            "{}… ({} more characters)",
            &message[..cut],
            message[cut..].chars().count()
        ),
    }
}
