//! Where a list's rows come from: a type, any type, or the edges of a
//! parent row; and which of them the caller may read.

use super::args::ListArgs;
use super::{Builder, PlanError, ReadScope};
use crate::dictionary::NodeType;

/// Edges of one link or backref seen from a node: the edge column holding the
/// node, the stored link name, and for backrefs the type of the other end.
pub(super) struct EdgeRef {
    pub own_column: &'static str,
    pub label: String,
    pub source_type: Option<String>,
}

/// The `FROM` and `WHERE` of a list's rows (see [`Builder::source_rows`]).
pub(super) struct SourceRows {
    pub from: String,
    pub conditions: Vec<String>,
    /// The column of the edge that carries each row's `seq`, when the rows
    /// come through edges in that order.
    pub edge_seq: Option<String>,
}

/// Which rows a list starts from.
pub(super) enum Source<'a> {
    /// Root field over one node type.
    Root(&'a NodeType),
    /// The `node` / `datanode` root fields: any node type, or any of these types.
    AnyType(Option<Vec<String>>),
    /// Parents of `parent_alias` via forward link `link`.
    Forward {
        parent: String,
        link: &'a str,
        target: &'a NodeType,
    },
    /// Every neighbour of `parent` in either direction (`_links`), project
    /// nodes only.
    Neighbours { parent: String },
    /// Children of type `source` pointing at `parent_alias` via its link `link`.
    Backward {
        parent: String,
        link: &'a str,
        source: &'a NodeType,
    },
}

impl Source<'_> {
    /// A root field's list, not one nested in a parent's object.
    pub fn is_root(&self) -> bool {
        matches!(self, Source::Root(_) | Source::AnyType(_))
    }
}

impl Builder<'_> {
    /// `FROM ... WHERE ...` of a list: source rows, authorization, argument filters.
    pub(super) fn source_rows(
        &mut self,
        alias: &str,
        source: &Source<'_>,
        args: &ListArgs,
        filter_type: Option<&NodeType>,
    ) -> Result<SourceRows, PlanError> {
        let mut conditions = Vec::new();
        let mut edge_seq = None;
        let from = match source {
            Source::Root(node) => {
                conditions.push(format!("{alias}.node_type = {}", self.bind_text(&node.id)));
                format!("nodes {alias}")
            }
            Source::AnyType(None) => format!("nodes {alias}"),
            Source::Neighbours { parent } => {
                let e = self.alias();
                conditions.push(format!(
                    "(({e}.src_id = {parent}.node_id AND {alias}.node_id = {e}.dst_id) \
                     OR ({e}.dst_id = {parent}.node_id AND {alias}.node_id = {e}.src_id))"
                ));
                conditions.push(format!("{alias}.project_id IS NOT NULL"));
                format!("edges {e}, nodes {alias}")
            }
            Source::AnyType(Some(types)) => {
                let p = self.bind_text(&serde_json::to_string(types).expect("strings serialize"));
                conditions.push(self.dialect.in_text_list(&format!("{alias}.node_type"), &p));
                format!("nodes {alias}")
            }
            Source::Forward {
                parent,
                link,
                target,
            } => {
                let e = self.alias();
                conditions.push(format!("{e}.src_id = {parent}.node_id"));
                conditions.push(format!("{e}.link = {}", self.bind_text(link)));
                conditions.push(format!(
                    "{alias}.node_type = {}",
                    self.bind_text(&target.id)
                ));
                format!("edges {e} JOIN nodes {alias} ON {alias}.node_id = {e}.dst_id")
            }
            Source::Backward {
                parent,
                link,
                source,
            } => {
                let e = self.alias();
                conditions.push(format!("{e}.dst_id = {parent}.node_id"));
                conditions.push(format!("{e}.link = {}", self.bind_text(link)));
                conditions.push(format!(
                    "{alias}.node_type = {}",
                    self.bind_text(&source.id)
                ));
                // The child's seq comes with the index entry (edges_by_dst):
                // a seek by integer key instead of by UUID. The entries of one
                // parent and link are in that order, so a page of children
                // reads just its rows: ordered by the node's own column, a
                // study's first 10 of 10,000 subjects read all 10,000.
                edge_seq = Some(format!("{e}.src_seq"));
                format!("edges {e} JOIN nodes {alias} ON {alias}.seq = {e}.src_seq")
            }
        };
        conditions.extend(self.authorization(alias, source));
        conditions.extend(self.filters(alias, &args.filters, filter_type)?);
        Ok(SourceRows {
            from,
            conditions,
            edge_seq,
        })
    }

    /// Rows of project-scoped types (and projects) only from readable projects.
    pub(super) fn authorization(&mut self, alias: &str, source: &Source<'_>) -> Option<String> {
        let ReadScope::Projects(set) = self.scope else {
            return None;
        };
        let list: Vec<&String> = set.iter().collect();
        let json = serde_json::to_string(&list).expect("strings serialize");
        let param = self.bind_text(&json);
        let restricted = self
            .dialect
            .in_text_list(&format!("{alias}.project_id"), &param);
        match source {
            Source::AnyType(_) => Some(format!("({alias}.node_type = 'program' OR {restricted})")),
            Source::Neighbours { .. } => Some(restricted),
            Source::Root(n)
            | Source::Forward { target: n, .. }
            | Source::Backward { source: n, .. } => (n.id != "program").then_some(restricted),
        }
    }

    /// How edges named `name` (a link or a backref of `node`) touch `node`.
    pub(super) fn edge_ref(&self, node: &NodeType, name: &str) -> Result<EdgeRef, PlanError> {
        if let Some(link) = node.link(name) {
            return Ok(EdgeRef {
                own_column: "src_id",
                label: link.name.clone(),
                source_type: None,
            });
        }
        if let Some(backref) = node.backrefs.iter().find(|b| b.name == name) {
            return Ok(EdgeRef {
                own_column: "dst_id",
                label: backref.link_name.clone(),
                source_type: Some(backref.source_type.clone()),
            });
        }
        Err(PlanError(format!("Invalid link name '{name}'")))
    }
}
