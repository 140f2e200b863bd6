//! Synthetic, valid records for any dictionary: every submittable node type,
//! parents before children, with required properties and links filled from
//! the schemas themselves (enums, numeric bounds, patterns, formats).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::dictionary::{Dictionary, NodeType};

/// Submittable node types (those with `project_id`), parents first.
pub fn submission_order(dictionary: &Dictionary) -> Vec<&NodeType> {
    let mut placed: HashSet<&str> = HashSet::new();
    let mut order = Vec::new();
    let pending: Vec<&NodeType> = dictionary
        .nodes()
        .iter()
        .filter(|n| n.is_project_scoped())
        .collect();
    // Program and project exist before any submission.
    placed.insert("program");
    placed.insert("project");
    loop {
        let before = order.len();
        for node in &pending {
            if placed.contains(node.id.as_str()) {
                continue;
            }
            let ready = node
                .links
                .iter()
                .filter(|l| l.required || in_required_group(node, &l.name))
                .all(|l| placed.contains(l.target_type.as_str()) || l.target_type == node.id);
            if ready {
                placed.insert(&node.id);
                order.push(*node);
            }
        }
        if order.len() == before {
            break;
        }
    }
    order
}

fn in_required_group(node: &NodeType, link: &str) -> bool {
    node.subgroups
        .iter()
        .any(|g| g.required && g.members.first().is_some_and(|m| m == link))
}

/// `count` valid records of every submittable type for project `code`.
pub fn records(dictionary: &Dictionary, code: &str, count: usize) -> Vec<Value> {
    let order = submission_order(dictionary);
    let mut out = Vec::new();
    let mut made: HashMap<String, usize> = HashMap::new();
    for node in order {
        for i in 0..count {
            out.push(record(dictionary, node, code, i, &made));
        }
        made.insert(node.id.clone(), count);
    }
    out
}

/// The submitter_id of the `i`-th generated record of `node_type`.
pub fn submitter_id(node_type: &str, i: usize) -> String {
    format!("{node_type}-{i:05}")
}

fn record(
    dictionary: &Dictionary,
    node: &NodeType,
    code: &str,
    i: usize,
    made: &HashMap<String, usize>,
) -> Value {
    let mut doc = Map::new();
    doc.insert("type".into(), Value::String(node.id.clone()));
    doc.insert(
        "submitter_id".into(),
        Value::String(submitter_id(&node.id, i)),
    );
    let properties = node.schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for property in &node.properties {
        let name = &property.name;
        if node.is_system_property(name) || doc.contains_key(name) || name == "project_id" {
            continue;
        }
        let schema = &properties[name];
        if let Some(value) = example(schema, name, i) {
            doc.insert(name.clone(), value);
        } else if node.is_required(name) {
            doc.insert(name.clone(), Value::String(format!("{name}-{i}")));
        }
    }
    for link in &node.links {
        if !(link.required || in_required_group(node, &link.name)) {
            continue;
        }
        let target = if link.target_type == "project" {
            json!({"code": code})
        } else {
            let available = made.get(&link.target_type).copied().unwrap_or(0).max(1);
            let key = dictionary
                .node(&link.target_type)
                .and_then(|t| t.natural_key.iter().find(|k| *k != "project_id").cloned())
                .unwrap_or_else(|| "submitter_id".into());
            json!({key: submitter_id(&link.target_type, i % available)})
        };
        doc.insert(link.name.clone(), target);
    }
    Value::Object(doc)
}

/// A value satisfying a property schema, or None when none can be derived.
fn example(schema: &Value, name: &str, i: usize) -> Option<Value> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options.iter().find(|v| !v.is_null()).cloned();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|v| v.first())
        {
            return example(first, name, i);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")?,
        _ => return None,
    };
    match kind {
        "string" => string_example(schema, name, i),
        "integer" | "number" => {
            let min = schema.get("minimum").and_then(Value::as_f64);
            let max = schema.get("maximum").and_then(Value::as_f64);
            let mut v = min.map_or(1.0 + (i % 7) as f64, |m| m + 1.0);
            if let Some(max) = max {
                v = v.min(max);
            }
            if kind == "integer" {
                Some(json!(v.floor() as i64))
            } else if max.is_none_or(|m| v + 0.5 <= m) {
                Some(json!(v + 0.5))
            } else {
                Some(json!(v))
            }
        }
        "boolean" => Some(Value::Bool(i.is_multiple_of(2))),
        "array" => {
            let item = schema
                .get("items")
                .and_then(|items| example(items, name, i))?;
            Some(Value::Array(vec![item]))
        }
        _ => None,
    }
}

fn string_example(schema: &Value, name: &str, i: usize) -> Option<Value> {
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        return Some(Value::String("2024-01-02T03:04:05+00:00".into()));
    }
    let Some(pattern) = schema.get("pattern").and_then(Value::as_str) else {
        return Some(Value::String(format!("{name}-{i}")));
    };
    let regex = regex::Regex::new(pattern).ok()?;
    let candidates = [
        format!("{name}-{i}"),
        format!("{:032x}", i + 1),
        uuid::Uuid::from_u128(i as u128 + 1).to_string(),
        "2024-01-02".to_string(),
        "C00.0".to_string(),
        "10.1000/example".to_string(),
        "ABC123".to_string(),
        "abc".to_string(),
        "1".to_string(),
    ];
    candidates
        .into_iter()
        .find(|c| regex.is_match(c))
        .map(Value::String)
}
