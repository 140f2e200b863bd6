//! Compiles one GraphQL root field, whatever its nesting, into ONE SQL
//! statement that returns the response-shaped JSON. Nested links become
//! correlated subqueries aggregating child rows into JSON (`jsonb_group_array`
//! on SQLite, `json_agg` on PostgreSQL). SQLite keeps the objects in its
//! binary JSONB until the root turns them into text, since a text object is
//! parsed again by every level that aggregates it; PostgreSQL's `json` is
//! text that its aggregates append as is, cheaper than building `jsonb`.
//! Identifiers come only from the dictionary; every value is a bind parameter.

use serde_json::Value;

use crate::auth::ReadScope;
use crate::dictionary::{Dictionary, NodeType, PropKind};
use crate::store::{BindValue, Dialect};

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

/// Key-value pairs per JSON object call: both databases cap a function's
/// arguments (PostgreSQL at 100).
const PAIRS_PER_CALL: usize = 50;

/// Key under which every object carries its node type (for `Node` resolution).
pub const TYPE_KEY: &str = "__node_type";

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct PlanError(pub String);

struct Builder<'a> {
    dictionary: &'a Dictionary,
    dialect: Dialect,
    scope: &'a ReadScope,
    binds: Vec<BindValue>,
    aliases: usize,
}

impl<'a> Builder<'a> {
    fn new(dictionary: &'a Dictionary, dialect: Dialect, scope: &'a ReadScope) -> Self {
        Self {
            dictionary,
            dialect,
            scope,
            binds: Vec::new(),
            aliases: 0,
        }
    }
}

/// Edges of one link or backref seen from a node: the edge column holding the
/// node, the stored link name, and for backrefs the type of the other end.
struct EdgeRef {
    own_column: &'static str,
    label: String,
    source_type: Option<String>,
}

/// The `FROM` and `WHERE` of a list's rows (see [`Builder::source_rows`]).
struct SourceRows {
    from: String,
    conditions: Vec<String>,
    /// The column of the edge that carries each row's `seq`, when the rows
    /// come through edges in that order.
    edge_seq: Option<String>,
}

/// Which rows a list starts from.
enum Source<'a> {
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
    fn is_root(&self) -> bool {
        matches!(self, Source::Root(_) | Source::AnyType(_))
    }
}

impl<'a> Builder<'a> {
    fn bind(&mut self, value: BindValue) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    // ---- the few SQL shapes that differ between SQLite and PostgreSQL

    /// `expr IN` the JSON array of strings bound to `param`.
    fn in_text(&self, expr: &str, param: &str) -> String {
        self.dialect.in_text_list(expr, param)
    }

    /// A property as a comparable, orderable value (numbers stay numbers).
    fn prop_value(&self, alias: &str, name: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("({alias}.props ->> '{}')", json_path(name)),
            Dialect::Postgres => format!("({alias}.props -> '{}')", pg_key(name)),
        }
    }

    /// `value IN` the JSON array of typed values bound to `param`.
    fn in_values(&self, value: &str, param: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("{value} IN (SELECT value FROM json_each({param}))"),
            Dialect::Postgres => {
                format!("{value} IN (SELECT jsonb_array_elements({param}::jsonb))")
            }
        }
    }

    /// A property as text (NULL when absent).
    fn prop_text(&self, alias: &str, name: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("CAST(({alias}.props ->> '{}') AS TEXT)", json_path(name)),
            Dialect::Postgres => format!("({alias}.props ->> '{}')", pg_key(name)),
        }
    }

    /// A property as JSON, for the response document.
    fn prop_json(&self, alias: &str, name: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("json({alias}.props -> '{}')", json_path(name)),
            Dialect::Postgres => format!("({alias}.props -> '{}')", pg_key(name)),
        }
    }

    /// The array property `name` has an element whose text is bound to `param`.
    fn array_contains(&self, alias: &str, name: &str, param: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!(
                "EXISTS (SELECT 1 FROM json_each({alias}.props, '{}') WHERE CAST(value AS TEXT) = {param})",
                json_path(name)
            ),
            Dialect::Postgres => {
                format!(
                    "({alias}.props -> '{}') @> jsonb_build_array({param}::text)",
                    pg_key(name)
                )
            }
        }
    }

    /// `haystack` contains the text bound to `param`.
    fn contains(&self, haystack: &str, param: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("instr({haystack}, {param}) > 0"),
            Dialect::Postgres => format!("strpos({haystack}, {param}) > 0"),
        }
    }

    /// A JSON array of the `obj` column of `rows`, in their order: text at
    /// the `root`, else a value to embed in the parent's object.
    fn aggregate(&self, rows: &str, root: bool) -> String {
        match (self.dialect, root) {
            (Dialect::Sqlite, true) => {
                format!("SELECT coalesce(json_group_array(obj), '[]') FROM ({rows})")
            }
            (Dialect::Sqlite, false) => {
                format!("SELECT coalesce(jsonb_group_array(obj), jsonb('[]')) FROM ({rows})")
            }
            (Dialect::Postgres, _) => {
                format!("SELECT coalesce(json_agg(t.obj), '[]'::json) FROM ({rows}) t")
            }
        }
    }

    /// A JSON object of `(key param, value)` pairs. On SQLite it is JSONB
    /// unless `text` (a streamed root row, which leaves the database as is).
    /// On PostgreSQL it is `json` (a three-level list of 1,100 objects: 8.9 →
    /// 7.7 ms) unless too wide for one call, since only `jsonb` objects merge.
    fn json_object(&self, pairs: &[String], text: bool) -> String {
        // Both databases cap function arguments; merge several objects for wide selections.
        let wide = pairs.len() > PAIRS_PER_CALL;
        let (build, merge): (&str, fn(String, String) -> String) = match (self.dialect, text) {
            (Dialect::Sqlite, true) => ("json_object", |a, b| format!("json_patch({a}, {b})")),
            (Dialect::Sqlite, false) => ("jsonb_object", |a, b| format!("jsonb_patch({a}, {b})")),
            (Dialect::Postgres, _) if wide => {
                ("jsonb_build_object", |a, b| format!("({a} || {b})"))
            }
            (Dialect::Postgres, _) => ("json_build_object", |a, b| format!("({a} || {b})")),
        };
        pairs
            .chunks(PAIRS_PER_CALL)
            .map(|c| format!("{build}({})", c.join(", ")))
            .reduce(merge)
            .unwrap_or_else(|| format!("{build}()"))
    }

    /// `LIMIT`/`OFFSET`; no limit when `limit` is None.
    fn limit_offset(&mut self, limit: Option<i64>, offset: i64) -> String {
        let o = self.bind(BindValue::Int(offset));
        match (limit, self.dialect) {
            (Some(l), _) => {
                let l = self.bind(BindValue::Int(l));
                format!(" LIMIT {l} OFFSET {o}")
            }
            (None, Dialect::Sqlite) => format!(" LIMIT -1 OFFSET {o}"),
            (None, Dialect::Postgres) => format!(" OFFSET {o}"),
        }
    }

    fn bind_text(&mut self, s: &str) -> String {
        self.bind(BindValue::Text(s.to_string()))
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("n{}", self.aliases)
    }

    /// `FROM ... WHERE ...` of a list: source rows, authorization, argument filters.
    fn source_rows(
        &mut self,
        alias: &str,
        source: &Source<'_>,
        args: &[(String, Value)],
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
                conditions.push(self.in_text(&format!("{alias}.node_type"), &p));
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
        conditions.extend(self.filters(alias, args, filter_type)?);
        Ok(SourceRows {
            from,
            conditions,
            edge_seq,
        })
    }

    /// Rows of project-scoped types (and projects) only from readable projects.
    fn authorization(&mut self, alias: &str, source: &Source<'_>) -> Option<String> {
        let ReadScope::Projects(set) = self.scope else {
            return None;
        };
        let list: Vec<&String> = set.iter().collect();
        let json = serde_json::to_string(&list).expect("strings serialize");
        let param = self.bind_text(&json);
        let restricted = self.in_text(&format!("{alias}.project_id"), &param);
        match source {
            Source::AnyType(_) => Some(format!("({alias}.node_type = 'program' OR {restricted})")),
            Source::Neighbours { .. } => Some(restricted),
            Source::Root(n)
            | Source::Forward { target: n, .. }
            | Source::Backward { source: n, .. } => (n.id != "program").then_some(restricted),
        }
    }

    fn filters(
        &mut self,
        alias: &str,
        args: &[(String, Value)],
        node: Option<&NodeType>,
    ) -> Result<Vec<String>, PlanError> {
        let mut out = Vec::new();
        for (name, value) in args {
            if value.is_null() {
                continue;
            }
            match name.as_str() {
                "first" | "offset" | "order_by_asc" | "order_by_desc" => {}
                "id" => {
                    let p = self.bind_text(&text(value));
                    out.push(format!("{alias}.node_id = {p}"));
                }
                "ids" => {
                    let p = self.bind_text(&json_strings(value));
                    out.push(self.in_text(&format!("{alias}.node_id"), &p));
                }
                "project_id" => {
                    let p = self.bind_text(&json_strings(value));
                    out.push(self.in_text(&format!("{alias}.project_id"), &p));
                }
                "quick_search" => {
                    let needle = text(value).to_lowercase();
                    if needle.is_empty() {
                        continue;
                    }
                    let p = self.bind_text(&needle);
                    let by_id = self.contains(&format!("lower({alias}.node_id)"), &p);
                    let submitter = format!(
                        "lower(coalesce({}, ''))",
                        self.prop_text(alias, "submitter_id")
                    );
                    let by_submitter = self.contains(&submitter, &p);
                    out.push(format!("({by_id} OR {by_submitter})"));
                }
                "created_after" | "created_before" | "updated_after" | "updated_before" => {
                    let (column, op) = match name.as_str() {
                        "created_after" => ("created_datetime", ">"),
                        "created_before" => ("created_datetime", "<"),
                        "updated_after" => ("updated_datetime", ">"),
                        _ => ("updated_datetime", "<"),
                    };
                    let at = normalize_datetime(&text(value)).ok_or_else(|| {
                        PlanError(format!("Invalid datetime for {name}: '{}'", text(value)))
                    })?;
                    let p = self.bind_text(&at);
                    out.push(format!("{} {op} {p}", self.prop_text(alias, column)));
                }
                "of_type" => {
                    let p = self.bind_text(&json_strings(value));
                    out.push(self.in_text(&format!("{alias}.node_type"), &p));
                }
                "category" => {
                    let types: Vec<String> = self
                        .dictionary
                        .nodes()
                        .iter()
                        .filter(|n| n.category == text(value))
                        .map(|n| n.id.clone())
                        .collect();
                    let p =
                        self.bind_text(&serde_json::to_string(&types).expect("strings serialize"));
                    out.push(self.in_text(&format!("{alias}.node_type"), &p));
                }
                "with_links" | "with_links_any" | "without_links" => {
                    let Some(node) = node else { continue };
                    let mut parts = Vec::new();
                    for link in list(value) {
                        let edge = self.edge_ref(node, &text(&link))?;
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
                    out.push(match name.as_str() {
                        "with_links" => parts.join(" AND "),
                        "with_links_any" => format!("({})", parts.join(" OR ")),
                        _ => parts
                            .iter()
                            .map(|p| format!("NOT {p}"))
                            .collect::<Vec<_>>()
                            .join(" AND "),
                    });
                }
                "with_path_to" | "with_path_to_any" | "without_path_to" => {
                    let Some(node) = node else { continue };
                    let mut parts = Vec::new();
                    for entry in list(value) {
                        parts.push(self.path_to(alias, node, &entry)?);
                    }
                    if parts.is_empty() {
                        continue;
                    }
                    out.push(match name.as_str() {
                        "with_path_to" => parts.join(" AND "),
                        "with_path_to_any" => format!("({})", parts.join(" OR ")),
                        _ => format!("NOT ({})", parts.join(" AND ")),
                    });
                }
                "not" => {
                    let Some(node) = node else { continue };
                    for item in list(value) {
                        let Some(obj) = item.as_object() else {
                            continue;
                        };
                        let Some(property) =
                            node.properties.iter().find(|p| obj.contains_key(&p.name))
                        else {
                            continue;
                        };
                        let p = self.bind_text(&text(&obj[&property.name]));
                        let value = self.prop_text(alias, &property.name);
                        out.push(format!("{value} IS NOT NULL AND {value} <> {p}"));
                    }
                }
                property => {
                    let Some(node) = node else {
                        // `node` / `datanode`: property arguments are single values.
                        if !is_identifier(property) {
                            return Err(PlanError(format!("Unknown argument '{property}'")));
                        }
                        let p = self.bind_text(&Value::Array(list(value)).to_string());
                        out.push(self.in_values(&self.prop_value(alias, property), &p));
                        continue;
                    };
                    let Some(prop) = node.property(property) else {
                        // Count fields take the owner's arguments; the neighbour may lack them.
                        continue;
                    };
                    let values = list(value);
                    if matches!(prop.kind, PropKind::Array(_)) {
                        if values.is_empty() {
                            out.push("FALSE".into());
                        }
                        for v in values {
                            let p = self.bind_text(&text(&v));
                            out.push(self.array_contains(alias, &prop.name, &p));
                        }
                    } else {
                        let p = self.bind_text(&Value::Array(values).to_string());
                        out.push(self.in_values(&self.prop_value(alias, &prop.name), &p));
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
                    conditions.push(self.in_values(&self.prop_value(&previous, key), &p));
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

    /// How edges named `name` (a link or a backref of `node`) touch `node`.
    fn edge_ref(&self, node: &NodeType, name: &str) -> Result<EdgeRef, PlanError> {
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

    /// `ORDER BY` (the arguments' order, then storage order: `edge_seq` if
    /// the rows come through edges that carry it, else their own `seq`) and
    /// the page.
    fn order_limit(
        &mut self,
        alias: &str,
        edge_seq: Option<&str>,
        node: Option<&NodeType>,
        args: &[(String, Value)],
        paged: bool,
        root: bool,
    ) -> Result<String, PlanError> {
        let arg = |name: &str| {
            args.iter()
                .find(|(n, v)| n == name && !v.is_null())
                .map(|(_, v)| v)
        };
        let mut order = Vec::new();
        for (name, direction) in [("order_by_asc", "ASC"), ("order_by_desc", "DESC")] {
            let Some(key) = arg(name) else { continue };
            let key = text(key);
            let nulls = if direction == "ASC" {
                "NULLS FIRST"
            } else {
                "NULLS LAST"
            };
            match key.as_str() {
                "id" => order.push(format!("{alias}.node_id {direction}")),
                "type" => {}
                "project_id" => order.push(format!("{alias}.project_id {direction} {nulls}")),
                other => {
                    let known =
                        is_identifier(other) && node.is_none_or(|n| n.property(other).is_some());
                    if !known {
                        let type_name = node.map_or("node", |n| n.id.as_str());
                        return Err(PlanError(format!("Cannot order by {other} on {type_name}")));
                    }
                    order.push(format!(
                        "{} {direction} {nulls}",
                        self.prop_value(alias, other)
                    ));
                }
            }
        }
        // SQLite has no statistics to choose by, and left to itself it would
        // walk a whole type in `seq` order through `nodes_by_type` whenever a
        // list is ordered by `seq`: right for a root list of every project, ruinous
        // for a node's neighbours (found through `edges`) and for rows of a few
        // projects (found through `nodes_by_type_project`). A unary `+` takes
        // `seq` out of its choice there. PostgreSQL chooses by its statistics.
        let whole_type =
            root && !matches!(self.scope, ReadScope::Projects(_)) && arg("project_id").is_none();
        let seq = match edge_seq {
            Some(column) => column.to_string(),
            None if whole_type || self.dialect == Dialect::Postgres => format!("{alias}.seq"),
            None => format!("+{alias}.seq"),
        };
        order.push(format!("{seq} ASC"));
        let mut sql = format!(" ORDER BY {}", order.join(", "));
        if paged {
            let first = arg("first")
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_FIRST);
            let offset = arg("offset").and_then(Value::as_i64).unwrap_or(0).max(0);
            let limit = (first > 0).then_some(first);
            sql.push_str(&self.limit_offset(limit, offset));
        }
        Ok(sql)
    }

    /// A JSON array of the selected objects of one list.
    fn list(
        &mut self,
        source: Source<'_>,
        node: Option<&'a NodeType>,
        selection: &Selection,
    ) -> Result<String, PlanError> {
        let root = source.is_root();
        let rows = self.rows(source, node, selection, false)?;
        Ok(self.aggregate(&rows, root))
    }

    /// One row per listed node, its JSON object in column `obj` (as text if
    /// `text`, see [`Builder::json_object`]).
    fn rows(
        &mut self,
        source: Source<'_>,
        node: Option<&'a NodeType>,
        selection: &Selection,
        text: bool,
    ) -> Result<String, PlanError> {
        let alias = self.alias();
        // `_links` lists every neighbour: Gen3 applies no `first` to it.
        let paged = !matches!(source, Source::Neighbours { .. });
        let SourceRows {
            from,
            conditions,
            edge_seq,
        } = self.source_rows(&alias, &source, &selection.args, node)?;
        let object = self.object(&alias, node, &selection.children, text)?;
        let root = source.is_root();
        let tail = self.order_limit(
            &alias,
            edge_seq.as_deref(),
            node,
            &selection.args,
            paged,
            root,
        )?;
        let filtered = where_clause(&conditions);
        Ok(match self.dialect {
            // PostgreSQL evaluates a query's select list for the rows an
            // `OFFSET` skips, nested lists included: the page is chosen
            // first, then only its rows are shaped (1,000 samples at offset
            // 90,000: 60 → 15 ms). SQLite skips before it evaluates.
            Dialect::Postgres if paged => format!(
                "SELECT {object} AS obj FROM (SELECT {alias}.* FROM {from}{filtered}{tail}) {alias}"
            ),
            _ => format!("SELECT {object} AS obj FROM {from}{filtered}{tail}"),
        })
    }

    /// The number of rows of a list (counts ignore `first` and `offset`).
    fn count(
        &mut self,
        source: Source<'_>,
        node: Option<&NodeType>,
        args: &[(String, Value)],
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
    fn maintained_count(
        &mut self,
        node: &NodeType,
        args: &[(String, Value)],
    ) -> Result<String, PlanError> {
        let alias = self.alias();
        let mut conditions = vec![format!("{alias}.node_type = {}", self.bind_text(&node.id))];
        conditions.extend(self.authorization(&alias, &Source::Root(node)));
        conditions.extend(self.filters(&alias, args, Some(node))?);
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
        let mut seen = std::collections::HashSet::new();
        for field in fields {
            if field.name.starts_with("__") || !seen.insert(field.key.clone()) {
                continue;
            }
            let key = self.bind_text(&field.key);
            let key = match self.dialect {
                Dialect::Sqlite => key,
                Dialect::Postgres => format!("{key}::text"),
            };
            let expr = match field.name.as_str() {
                "id" => format!("{alias}.node_id"),
                "type" => format!("{alias}.node_type"),
                "project_id" => format!("{alias}.project_id"),
                name => match node {
                    None if is_identifier(name) => self.prop_json(alias, name),
                    None => "NULL".into(),
                    Some(node) => self.node_field(alias, node, field)?,
                },
            };
            pairs.push(format!("{key}, {expr}"));
        }
        Ok(self.json_object(&pairs, text))
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
            if let Some(link) = node.link(edge) {
                let target = self.node_type(&link.target_type)?;
                let source = Source::Forward {
                    parent: alias.into(),
                    link: &link.name,
                    target,
                };
                return Ok(format!(
                    "({})",
                    self.count(source, Some(target), &field.args)?
                ));
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
                    self.count(source, Some(source_type), &field.args)?
                ));
            }
        }
        if node.property(name).is_some() && is_identifier(name) {
            return Ok(self.prop_json(alias, name));
        }
        Ok("NULL".into())
    }

    fn node_type(&self, id: &str) -> Result<&'a NodeType, PlanError> {
        self.dictionary
            .node(id)
            .ok_or_else(|| PlanError(format!("unknown node type {id}")))
    }
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// PostgreSQL object key of a property; callers pass checked identifiers only.
fn pg_key(name: &str) -> &str {
    debug_assert!(
        is_identifier(name),
        "property names are checked identifiers"
    );
    name
}

/// SQLite JSON path of a property; callers pass checked identifiers only.
fn json_path(name: &str) -> String {
    debug_assert!(
        is_identifier(name),
        "property names are checked identifiers"
    );
    format!("$.{name}")
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A single value is accepted where a list is expected.
fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_strings(value: &Value) -> String {
    let items: Vec<String> = list(value).iter().map(text).collect();
    serde_json::to_string(&items).expect("strings serialize")
}

/// Parse a user-supplied datetime into the stored timestamp format (UTC).
fn normalize_datetime(input: &str) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(input)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(input, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|n| n.and_utc())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(input, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        })
        .ok()?;
    Some(crate::format_timestamp(parsed))
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
    Ok(Statement {
        sql,
        binds: b.binds,
    })
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
    let sql = match dialect {
        Dialect::Sqlite => rows,
        Dialect::Postgres => format!("SELECT t.obj::text FROM ({rows}) t"),
    };
    Ok(Statement {
        sql,
        binds: b.binds,
    })
}

/// Whether a count argument leaves the count to the maintained per-project
/// counts: only `project_id` selects; paging and order do not apply to counts.
fn maintained_count_answers((name, value): &(String, Value)) -> bool {
    value.is_null()
        || matches!(
            name.as_str(),
            "project_id" | "first" | "offset" | "order_by_asc" | "order_by_desc"
        )
}

/// The statement of a root `_<type>_count` field.
pub fn root_count(
    dictionary: &Dictionary,
    dialect: Dialect,
    scope: &ReadScope,
    node_type: &str,
    args: &[(String, Value)],
) -> Result<Statement, PlanError> {
    let mut b = Builder::new(dictionary, dialect, scope);
    let node = b.node_type(node_type)?;
    let sql = if args.iter().all(maintained_count_answers) {
        b.maintained_count(node, args)?
    } else {
        b.count(Source::Root(node), Some(node), args)?
    };
    Ok(Statement {
        sql,
        binds: b.binds,
    })
}
