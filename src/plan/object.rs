//! The shape of each listed row: a JSON object of the selected fields, with
//! nested lists and counts as correlated subqueries.

use std::collections::HashSet;

use super::args::ListArgs;
use super::source::{Source, SourceRows};
use super::{Builder, PlanError, Selection, TYPE_KEY};
use crate::dictionary::NodeType;
use crate::sql::{is_identifier, where_clause};

impl<'a> Builder<'a> {
    /// A JSON array of the selected objects of one list.
    pub(super) fn list(
        &mut self,
        source: Source<'_>,
        node: Option<&'a NodeType>,
        selection: &Selection,
    ) -> Result<String, PlanError> {
        let root = source.is_root();
        let rows = self.rows(source, node, selection, false)?;
        Ok(self.dialect.aggregate(&rows, root))
    }

    /// One row per listed node, its JSON object in column `obj` (as text if
    /// `text`, see [`crate::sql::Dialect::json_object`]).
    pub(super) fn rows(
        &mut self,
        source: Source<'_>,
        node: Option<&'a NodeType>,
        selection: &Selection,
        text: bool,
    ) -> Result<String, PlanError> {
        let alias = self.alias();
        // `_links` lists every neighbour: Gen3 applies no `first` to it.
        let paged = !matches!(source, Source::Neighbours { .. });
        let args = ListArgs::decode(&selection.args)?;
        let SourceRows {
            from,
            conditions,
            edge_seq,
        } = self.source_rows(&alias, &source, &args, node)?;
        let object = self.object(&alias, node, &selection.children, text)?;
        let root = source.is_root();
        let tail = self.order_limit(&alias, edge_seq.as_deref(), node, &args, paged, root)?;
        let filtered = where_clause(&conditions);
        Ok(self
            .dialect
            .shaped_rows(&object, &alias, &from, &filtered, &tail, paged))
    }

    /// The number of rows of a list (counts ignore `first` and `offset`).
    pub(super) fn count(
        &mut self,
        source: Source<'_>,
        node: Option<&NodeType>,
        args: &ListArgs,
    ) -> Result<String, PlanError> {
        let alias = self.alias();
        let SourceRows {
            from, conditions, ..
        } = self.source_rows(&alias, &source, args, node)?;
        Ok(format!(
            "SELECT count(*) FROM {from}{}",
            where_clause(&conditions)
        ))
    }

    /// A count of one type by projects alone, from the counts writers maintain
    /// (`node_counts`): the sum of a few rows instead of a scan of the nodes.
    pub(super) fn maintained_count(
        &mut self,
        node: &NodeType,
        args: &ListArgs,
    ) -> Result<String, PlanError> {
        let alias = self.alias();
        let mut conditions = vec![format!("{alias}.node_type = {}", self.bind_text(&node.id))];
        conditions.extend(self.authorization(&alias, &Source::Root(node)));
        conditions.extend(self.filters(&alias, &args.filters, Some(node))?);
        Ok(format!(
            "SELECT CAST(coalesce(sum({alias}.delta), 0) AS BIGINT) FROM node_counts {alias}{}",
            where_clause(&conditions)
        ))
    }

    /// The JSON object of the selected fields of the row `alias`.
    fn object(
        &mut self,
        alias: &str,
        node: Option<&'a NodeType>,
        fields: &[Selection],
        text: bool,
    ) -> Result<String, PlanError> {
        let mut pairs: Vec<String> = vec![format!("'{TYPE_KEY}', {alias}.node_type")];
        let mut seen = HashSet::new();
        for field in fields {
            if field.name.starts_with("__") || !seen.insert(field.key.clone()) {
                continue;
            }
            let key = self.bind_text(&field.key);
            let key = self.dialect.object_key(key);
            let expr = match field.name.as_str() {
                "id" => format!("{alias}.node_id"),
                "type" => format!("{alias}.node_type"),
                "project_id" => format!("{alias}.project_id"),
                name => match node {
                    None if is_identifier(name) => self.dialect.prop_json(alias, name),
                    None => "NULL".into(),
                    Some(node) => self.node_field(alias, node, field)?,
                },
            };
            pairs.push(format!("{key}, {expr}"));
        }
        Ok(self.dialect.json_object(&pairs, text))
    }

    fn node_field(
        &mut self,
        alias: &str,
        node: &'a NodeType,
        field: &Selection,
    ) -> Result<String, PlanError> {
        let name = field.name.as_str();
        if name == "_links" {
            let source = Source::Neighbours {
                parent: alias.into(),
            };
            return Ok(format!("({})", self.list(source, None, field)?));
        }
        if let Some(link) = node.link(name) {
            let target = self.node_type(&link.target_type)?;
            let source = Source::Forward {
                parent: alias.into(),
                link: &link.name,
                target,
            };
            return Ok(format!("({})", self.list(source, Some(target), field)?));
        }
        if let Some(backref) = node.backrefs.iter().find(|b| b.name == name) {
            let source_type = self.node_type(&backref.source_type)?;
            let source = Source::Backward {
                parent: alias.into(),
                link: &backref.link_name,
                source: source_type,
            };
            return Ok(format!(
                "({})",
                self.list(source, Some(source_type), field)?
            ));
        }
        if let Some(edge) = name
            .strip_prefix('_')
            .and_then(|n| n.strip_suffix("_count"))
        {
            // `_<edge>_count` takes the owner's arguments, applied to the neighbours.
            let args = ListArgs::decode(&field.args)?;
            if let Some(link) = node.link(edge) {
                let target = self.node_type(&link.target_type)?;
                let source = Source::Forward {
                    parent: alias.into(),
                    link: &link.name,
                    target,
                };
                return Ok(format!("({})", self.count(source, Some(target), &args)?));
            }
            if let Some(backref) = node.backrefs.iter().find(|b| b.name == edge) {
                let source_type = self.node_type(&backref.source_type)?;
                let source = Source::Backward {
                    parent: alias.into(),
                    link: &backref.link_name,
                    source: source_type,
                };
                return Ok(format!(
                    "({})",
                    self.count(source, Some(source_type), &args)?
                ));
            }
        }
        if node.property(name).is_some() && is_identifier(name) {
            return Ok(self.dialect.prop_json(alias, name));
        }
        Ok("NULL".into())
    }
}
