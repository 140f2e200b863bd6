//! Steps 1-2 of an upload: a document's shape, type, id format and JSON
//! schema, and the link references it makes.

use std::collections::HashMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::*;
use crate::submission::envelope::{EntityResult, ErrorType};
use crate::submission::{Project, Submission};

impl Submission<'_> {
    /// Step 1-2: shape, type, id format, JSON schema.
    pub(super) fn parse(&self, project: &Project, doc: Value, mode: Mode) -> Staged<'_> {
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
            urls: None,
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
        // A data file's locations go to its index record, not to the node.
        let urls = node
            .is_data_file()
            .then(|| doc.remove("urls"))
            .flatten()
            .and_then(|urls| file_urls(&urls));
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
        staged.urls = urls;
        staged
    }
}

/// The `urls` of a data-file document: a comma-separated text (a TSV cell)
/// or a list; `None` when it names none.
fn file_urls(value: &Value) -> Option<Vec<String>> {
    let urls: Vec<String> = match value {
        Value::String(text) => text
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    (!urls.is_empty()).then_some(urls)
}

/// The references of one link value: an object or a list of objects.
pub(super) fn target_refs(value: &Value) -> Vec<TargetRef> {
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

pub(super) fn json_type(value: &Value) -> &'static str {
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
