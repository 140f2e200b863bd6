//! Step 5 of an upload: the property document stored after it, with
//! system properties stamped.

use serde_json::Value;

use super::*;
use crate::dictionary::{ItemKind, PropKind};
use crate::submission::envelope::ErrorType;
use crate::submission::{Project, Submission};

impl Submission<'_> {
    /// Step 5: the stored property document after this submission, stamped
    /// `now` where it is created or changed.
    pub(super) fn set_properties(&self, project: &Project, entity: &mut Staged<'_>, now: &Value) {
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
}

/// Integral values of `number` properties are stored as integers, as TSV
/// conversion reads them: `12.0` and `12` are one value, so a TSV export
/// re-uploaded unchanged changes nothing.
pub(super) fn canonical_number(kind: PropKind, value: &Value) -> Value {
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
