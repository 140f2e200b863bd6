//! The conditions a list's arguments put on its rows, one per argument in
//! the order they came, and the `with_path_to` paths through the graph.

use serde_json::Value;

use super::args::{Combine, Filter, text};
use super::source::Source;
use super::{Builder, PlanError};
use crate::dictionary::{NodeType, PropKind};
use crate::sql::is_identifier;

/// Conditions joined as `combine` says.
fn combined(parts: Vec<String>, combine: Combine, negate_each: bool) -> String {
    match combine {
        Combine::All => parts.join(" AND "),
        Combine::Any => format!("({})", parts.join(" OR ")),
        Combine::None if negate_each => parts
            .iter()
            .map(|p| format!("NOT {p}"))
            .collect::<Vec<_>>()
            .join(" AND "),
        Combine::None => format!("NOT ({})", parts.join(" AND ")),
    }
}

impl Builder<'_> {
    pub(super) fn filters(
        &mut self,
        alias: &str,
        filters: &[Filter],
        node: Option<&NodeType>,
    ) -> Result<Vec<String>, PlanError> {
        let mut out = Vec::new();
        for filter in filters {
            match filter {
                Filter::Id(id) => {
                    let p = self.bind_text(id);
                    out.push(format!("{alias}.node_id = {p}"));
                }
                Filter::Ids(ids) => {
                    let p = self.bind_text(&json_strings(ids));
                    out.push(self.dialect.in_text_list(&format!("{alias}.node_id"), &p));
                }
                Filter::ProjectIds(ids) => {
                    let p = self.bind_text(&json_strings(ids));
                    out.push(
                        self.dialect
                            .in_text_list(&format!("{alias}.project_id"), &p),
                    );
                }
                Filter::QuickSearch(needle) => {
                    if needle.is_empty() {
                        continue;
                    }
                    let p = self.bind_text(needle);
                    let by_id = self
                        .dialect
                        .contains(&format!("lower({alias}.node_id)"), &p);
                    let submitter = format!(
                        "lower(coalesce({}, ''))",
                        self.dialect.prop_text(alias, "submitter_id")
                    );
                    let by_submitter = self.dialect.contains(&submitter, &p);
                    out.push(format!("({by_id} OR {by_submitter})"));
                }
                Filter::Time { column, op, at } => {
                    let p = self.bind_text(at);
                    out.push(format!(
                        "{} {op} {p}",
                        self.dialect.prop_text(alias, column)
                    ));
                }
                Filter::OfType(types) => {
                    let p = self.bind_text(&json_strings(types));
                    out.push(self.dialect.in_text_list(&format!("{alias}.node_type"), &p));
                }
                Filter::Category(category) => {
                    let types: Vec<String> = self
                        .dictionary
                        .nodes()
                        .iter()
                        .filter(|n| &n.category == category)
                        .map(|n| n.id.clone())
                        .collect();
                    let p =
                        self.bind_text(&serde_json::to_string(&types).expect("strings serialize"));
                    out.push(self.dialect.in_text_list(&format!("{alias}.node_type"), &p));
                }
                Filter::Links { combine, names } => {
                    let Some(node) = node else { continue };
                    let mut parts = Vec::new();
                    for link in names {
                        let edge = self.edge_ref(node, link)?;
                        let e = self.alias();
                        let label = self.bind_text(&edge.label);
                        let source_check = match &edge.source_type {
                            Some(t) => {
                                let t = self.bind_text(t);
                                format!(
                                    " AND EXISTS (SELECT 1 FROM nodes s WHERE s.seq = {e}.src_seq AND s.node_type = {t})"
                                )
                            }
                            None => String::new(),
                        };
                        parts.push(format!(
                            "EXISTS (SELECT 1 FROM edges {e} WHERE {e}.{} = {alias}.node_id AND {e}.link = {label}{source_check})",
                            edge.own_column
                        ));
                    }
                    if parts.is_empty() {
                        continue;
                    }
                    out.push(combined(parts, *combine, true));
                }
                Filter::PathTo { combine, entries } => {
                    let Some(node) = node else { continue };
                    let mut parts = Vec::new();
                    for entry in entries {
                        parts.push(self.path_to(alias, node, entry)?);
                    }
                    if parts.is_empty() {
                        continue;
                    }
                    out.push(combined(parts, *combine, false));
                }
                Filter::Not(items) => {
                    let Some(node) = node else { continue };
                    for item in items {
                        let Some(obj) = item.as_object() else {
                            continue;
                        };
                        let Some(property) =
                            node.properties.iter().find(|p| obj.contains_key(&p.name))
                        else {
                            continue;
                        };
                        let p = self.bind_text(&text(&obj[&property.name]));
                        let value = self.dialect.prop_text(alias, &property.name);
                        out.push(format!("{value} IS NOT NULL AND {value} <> {p}"));
                    }
                }
                Filter::Property {
                    name: property,
                    values,
                } => {
                    let Some(node) = node else {
                        // `node` / `datanode`: property arguments are single values.
                        if !is_identifier(property) {
                            return Err(PlanError(format!("Unknown argument '{property}'")));
                        }
                        let p = self.bind_text(&Value::Array(values.clone()).to_string());
                        out.push(
                            self.dialect
                                .in_values(&self.dialect.prop_value(alias, property), &p),
                        );
                        continue;
                    };
                    let Some(prop) = node.property(property) else {
                        // Count fields take the owner's arguments; the neighbour may lack them.
                        continue;
                    };
                    if matches!(prop.kind, PropKind::Array(_)) {
                        if values.is_empty() {
                            out.push("FALSE".into());
                        }
                        for v in values {
                            let p = self.bind_text(&text(v));
                            out.push(self.dialect.array_contains(alias, &prop.name, &p));
                        }
                    } else {
                        let p = self.bind_text(&Value::Array(values.clone()).to_string());
                        out.push(
                            self.dialect
                                .in_values(&self.dialect.prop_value(alias, &prop.name), &p),
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// A node of `node` at `alias` has a path (GRAPHQL.md §3.2) to a node
    /// matching `entry` (`{type, id?, <property>?...}`); no path means false.
    fn path_to(
        &mut self,
        alias: &str,
        node: &NodeType,
        entry: &Value,
    ) -> Result<String, PlanError> {
        let Some(fields) = entry.as_object() else {
            return Ok("FALSE".into());
        };
        let target_type = fields
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(target) = self.dictionary.node(target_type) else {
            return Ok("FALSE".into());
        };
        let mut alternatives = Vec::new();
        for path in super::paths::paths(self.dictionary, &node.id, target_type) {
            let mut tables = Vec::new();
            let mut conditions = Vec::new();
            let mut previous = alias.to_string();
            for step in &path {
                let (e, m) = (self.alias(), self.alias());
                let (own, join) = if step.forward {
                    ("src_id", format!("{m}.node_id = {e}.dst_id"))
                } else {
                    ("dst_id", format!("{m}.seq = {e}.src_seq"))
                };
                tables.push(format!("edges {e}, nodes {m}"));
                let link = self.bind_text(&step.link);
                let to = self.bind_text(&step.to);
                conditions.push(format!(
                    "{e}.{own} = {previous}.node_id AND {e}.link = {link} AND {join} AND {m}.node_type = {to}"
                ));
                previous = m;
            }
            for (key, value) in fields {
                if key == "type" || value.is_null() {
                    continue;
                }
                if key == "id" {
                    let p = self.bind_text(&text(value));
                    conditions.push(format!("{previous}.node_id = {p}"));
                } else if is_identifier(key) {
                    let p = self.bind_text(&Value::Array(vec![value.clone()]).to_string());
                    conditions.push(
                        self.dialect
                            .in_values(&self.dialect.prop_value(&previous, key), &p),
                    );
                } else {
                    return Err(PlanError(format!("Invalid with_path_to key '{key}'")));
                }
            }
            conditions.extend(self.authorization(&previous, &Source::Root(target)));
            alternatives.push(format!(
                "EXISTS (SELECT 1 FROM {} WHERE {})",
                tables.join(", "),
                conditions.join(" AND ")
            ));
        }
        if alternatives.is_empty() {
            return Ok("FALSE".into());
        }
        Ok(format!("({})", alternatives.join(" OR ")))
    }
}

fn json_strings(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}
