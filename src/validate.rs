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
    /// Each node type's validator, and the schema it was built from.
    by_type: HashMap<String, (jsonschema::Validator, Value)>,
}

impl Validators {
    pub fn compile(dictionary: &Dictionary) -> Result<Self, DictionaryError> {
        let mut by_type = HashMap::new();
        for node in dictionary.nodes() {
            let schema = node.validation_schema();
            let validator = jsonschema::draft4::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| {
                    DictionaryError(format!(
                        "node '{}': invalid JSON schema at {}: {e}",
                        node.id,
                        e.schema_path()
                    ))
                })?;
            by_type.insert(node.id.clone(), (validator, schema));
        }
        Ok(Self { by_type })
    }

    /// Every violation of `node_type`'s schema by `doc` (empty when valid).
    pub fn check(&self, node_type: &str, doc: &Value) -> Vec<SchemaError> {
        let Some((validator, schema)) = self.by_type.get(node_type) else {
            return Vec::new();
        };
        // Most documents are valid, and the yes/no check is much cheaper.
        if validator.is_valid(doc) {
            return Vec::new();
        }
        validator
            .iter_errors(doc)
            .map(|e| describe(&e, schema))
            .collect()
    }
}

/// A violation of `schema`, in the words clients know.
fn describe(error: &jsonschema::ValidationError<'_>, schema: &Value) -> SchemaError {
    let path: Vec<String> = error
        .instance_path()
        .into_iter()
        .map(|segment| match segment {
            jsonschema::paths::LocationSegment::Property(p) => p.to_string(),
            jsonschema::paths::LocationSegment::Index(i) => i.to_string(),
        })
        .collect();
    let keys = match error.kind() {
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
        message: shortened(message(error, schema)),
    }
}

/// jsonschema's message, except that several allowed types are named in
/// the schema's order (`"integer", "null"`), as they always were: jsonschema
/// names them in an order of its own.
fn message(error: &jsonschema::ValidationError<'_>, schema: &Value) -> String {
    if let ValidationErrorKind::Type {
        kind: jsonschema::error::TypeKind::Multiple(_),
    } = error.kind()
        && let Some(Value::Array(types)) = schema.pointer(error.schema_path().as_str())
    {
        let names: Vec<String> = types.iter().map(Value::to_string).collect();
        return format!("{} is not of types {}", error.instance(), names.join(", "));
    }
    error.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The message of every kind of violation a dictionary's schemas can
    /// produce, as clients read it: pinned, so a new jsonschema release
    /// cannot change what users see unnoticed.
    #[test]
    fn violation_messages_keep_their_wording() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["submitter_id", "type"],
            "properties": {
                "submitter_id": {"type": "string"},
                "type": {"enum": ["sample"]},
                "count": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
                "ratio": {"type": "number"},
                "flag": {"type": "boolean"},
                "code": {"type": "string", "pattern": "^[A-Z]+$"},
                "kind": {"enum": ["a", "b", null]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "when": {"type": "string", "format": "date-time"},
                "subjects": {"anyOf": [
                    {"type": "object", "required": ["submitter_id"]},
                    {"type": "array", "items": {"type": "object", "required": ["submitter_id"]}}
                ]},
                "parent": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            }
        });
        let validator = jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let cases = [
            json!({"type": "sample"}),
            json!({"submitter_id": "s", "type": "sample", "extra": 1, "other": 2}),
            json!({"submitter_id": 7, "type": "sample"}),
            json!({"submitter_id": "s", "type": "case"}),
            json!({"submitter_id": "s", "type": "sample", "count": "many"}),
            json!({"submitter_id": "s", "type": "sample", "count": -1}),
            json!({"submitter_id": "s", "type": "sample", "count": 101}),
            json!({"submitter_id": "s", "type": "sample", "ratio": "half"}),
            json!({"submitter_id": "s", "type": "sample", "flag": "yes"}),
            json!({"submitter_id": "s", "type": "sample", "code": "abc"}),
            json!({"submitter_id": "s", "type": "sample", "kind": "c"}),
            json!({"submitter_id": "s", "type": "sample", "tags": ["x", 3]}),
            json!({"submitter_id": "s", "type": "sample", "when": "yesterday"}),
            json!({"submitter_id": "s", "type": "sample", "subjects": {"id": "x"}}),
            json!({"submitter_id": "s", "type": "sample", "parent": 1.5}),
        ];
        let mut report = String::new();
        for case in &cases {
            for error in validator.iter_errors(case) {
                let described = describe(&error, &schema);
                report.push_str(&format!("{:?}: {}\n", described.keys, described.message));
            }
        }
        insta::assert_snapshot!(report);
    }
}
