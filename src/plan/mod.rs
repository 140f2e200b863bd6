//! Compiles one GraphQL root field, whatever its nesting, into ONE SQL
//! statement that returns the response-shaped JSON. Nested links become
//! correlated subqueries aggregating child rows into JSON (`jsonb_group_array`
//! on SQLite, `json_agg` on PostgreSQL). SQLite keeps the objects in its
//! binary JSONB until the root turns them into text, since a text object is
//! parsed again by every level that aggregates it; PostgreSQL's `json` is
//! text that its aggregates append as is, cheaper than building `jsonb`.
//! Identifiers come only from the dictionary; every value is a bind parameter.
//!
//! The planner is pure: no IO, no async, no GraphQL library, no store. Its
//! input is [`Selection`] (library-free) and a [`ReadScope`]; its output a
//! [`Statement`] in one [`Dialect`]. The parts follow a list's SQL:
//! [`args`] decodes the arguments, `source` finds the rows, `filters`
//! narrows them, `order` pages them and `object` shapes each row.

pub mod args;
mod filters;
mod object;
mod order;
pub mod paths;
mod source;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::dictionary::{Dictionary, NodeType};
use crate::sql::{BindValue, Dialect, Params};
use args::ListArgs;
use source::Source;

/// A field of a GraphQL selection, independent of the GraphQL library.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Response key: the alias, or the field name.
    pub key: String,
    pub name: String,
    pub args: Vec<(String, Value)>,
    pub children: Vec<Selection>,
}

/// A compiled statement with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub binds: Vec<BindValue>,
}

/// The default page size at every level (peregrine's DEFAULT_LIMIT).
pub const DEFAULT_FIRST: i64 = 10;

/// Key under which every object carries its node type (for `Node` resolution).
pub const TYPE_KEY: &str = "__node_type";

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct PlanError(pub String);

/// The projects a statement may read rows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    All,
    Projects(BTreeSet<String>),
}

impl ReadScope {
    pub fn allows(&self, project_id: &str) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::Projects(set) => set.contains(project_id),
        }
    }
}

struct Builder<'a> {
    dictionary: &'a Dictionary,
    dialect: Dialect,
    scope: &'a ReadScope,
    params: Params,
    aliases: usize,
}

impl<'a> Builder<'a> {
    fn new(dictionary: &'a Dictionary, dialect: Dialect, scope: &'a ReadScope) -> Self {
        Self {
            dictionary,
            dialect,
            scope,
            params: Params::default(),
            aliases: 0,
        }
    }

    fn bind(&mut self, value: BindValue) -> String {
        self.params.push(value)
    }

    fn bind_text(&mut self, s: &str) -> String {
        self.params.text(s)
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("n{}", self.aliases)
    }

    fn node_type(&self, id: &str) -> Result<&'a NodeType, PlanError> {
        self.dictionary
            .node(id)
            .ok_or_else(|| PlanError(format!("unknown node type {id}")))
    }

    fn statement(self, sql: String) -> Statement {
        Statement {
            sql,
            binds: self.params.into_binds(),
        }
    }
}

/// What a root list field lists.
#[derive(Debug, Clone, Copy)]
pub enum RootList<'a> {
    /// `<type>(...)`
    Type(&'a str),
    /// `node(...)`: every node type.
    Node,
    /// `datanode(...)`: every data-file type.
    DataNode,
}

/// The statement of a root list field.
pub fn root_list(
    dictionary: &Dictionary,
    dialect: Dialect,
    scope: &ReadScope,
    list: RootList<'_>,
    selection: &Selection,
) -> Result<Statement, PlanError> {
    let mut b = Builder::new(dictionary, dialect, scope);
    let sql = match list {
        RootList::Type(t) => {
            let node = b.node_type(t)?;
            b.list(Source::Root(node), Some(node), selection)?
        }
        RootList::Node => b.list(Source::AnyType(None), None, selection)?,
        RootList::DataNode => {
            let types = dictionary
                .nodes()
                .iter()
                .filter(|n| n.is_data_file())
                .map(|n| n.id.clone())
                .collect();
            b.list(Source::AnyType(Some(types)), None, selection)?
        }
    };
    Ok(b.statement(sql))
}

/// A root list of `node_type` as one row per node (column `obj`, JSON text),
/// for streaming a large result instead of aggregating it.
pub fn root_rows(
    dictionary: &Dictionary,
    dialect: Dialect,
    scope: &ReadScope,
    node_type: &str,
    selection: &Selection,
) -> Result<Statement, PlanError> {
    let mut b = Builder::new(dictionary, dialect, scope);
    let node = b.node_type(node_type)?;
    let rows = b.rows(Source::Root(node), Some(node), selection, true)?;
    let sql = dialect.rows_as_text(rows);
    Ok(b.statement(sql))
}

/// The statement of a root `_<type>_count` field. A count by projects alone
/// (paging and order do not apply to counts) comes from the per-project
/// counts writers maintain.
pub fn root_count(
    dictionary: &Dictionary,
    dialect: Dialect,
    scope: &ReadScope,
    node_type: &str,
    args: &[(String, Value)],
) -> Result<Statement, PlanError> {
    let mut b = Builder::new(dictionary, dialect, scope);
    let node = b.node_type(node_type)?;
    let args = ListArgs::decode(args)?;
    let sql = if args
        .filters
        .iter()
        .all(args::Filter::maintained_counts_answer)
    {
        b.maintained_count(node, &args)?
    } else {
        b.count(Source::Root(node), Some(node), &args)?
    };
    Ok(b.statement(sql))
}
