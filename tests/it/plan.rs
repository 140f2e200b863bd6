//! The planner's golden cases, as data: each folder of `tests/plan/cases/`
//! holds a `query.graphql` (one root field, over gdcdictionary) and a
//! `scope.json` (`"all"` or the readable project ids). Every case is planned
//! in both dialects and pinned in `tests/plan/snapshots/`: the SQL as
//! `<case>@<dialect>.snap`, its binds as `<case>@<dialect>.binds.snap`. A
//! new case is a new folder; `INSTA_UPDATE=always` writes its snapshots.
//! The SQL is printed one clause per line, so a change reads as a diff.

use std::path::{Path, PathBuf};

use async_graphql::parser::types::{DocumentOperations, Selection as AstSelection, SelectionSet};
use commons::dictionary::Dictionary;
use commons::plan::{ReadScope, RootList, Selection, Statement, root_count, root_list};
use commons::sql::Dialect;
use serde_json::Value;

fn plan_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan")
}

/// The planner's IR for a selection set, as the GraphQL layer builds it.
fn selections(set: &SelectionSet) -> Vec<Selection> {
    set.items
        .iter()
        .map(|item| match &item.node {
            AstSelection::Field(field) => {
                let field = &field.node;
                Selection {
                    key: field.response_key().node.to_string(),
                    name: field.name.node.to_string(),
                    args: field
                        .arguments
                        .iter()
                        .map(|(name, value)| {
                            let value = value.node.clone().into_const().expect("no variables");
                            (name.node.to_string(), value.into_json().unwrap())
                        })
                        .collect(),
                    children: selections(&field.selection_set.node),
                }
            }
            _ => panic!("cases use fields only"),
        })
        .collect()
}

fn root_selection(query: &str) -> Selection {
    let document = async_graphql::parser::parse_query(query).unwrap();
    let DocumentOperations::Single(operation) = &document.operations else {
        panic!("one operation per case");
    };
    let mut roots = selections(&operation.node.selection_set.node);
    assert_eq!(roots.len(), 1, "one root field per case");
    roots.remove(0)
}

fn scope(text: &str) -> ReadScope {
    match serde_json::from_str::<Value>(text).unwrap() {
        Value::String(s) if s == "all" => ReadScope::All,
        Value::Array(ids) => ReadScope::Projects(
            ids.iter()
                .map(|id| id.as_str().unwrap().to_string())
                .collect(),
        ),
        other => panic!("scope.json: \"all\" or a list of project ids, not {other}"),
    }
}

/// `sql` one clause per line, each subquery indented by its depth: only
/// whitespace is added, so a diff of a snapshot shows the clause that changed.
fn clause_per_line(sql: &str) -> String {
    const CLAUSES: [&str; 5] = [" FROM ", " WHERE ", " ORDER BY ", " LIMIT ", " OFFSET "];
    let mut out = String::with_capacity(sql.len() * 2);
    let (mut depth, mut quoted) = (0usize, false);
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if !quoted && let Some(clause) = CLAUSES.iter().find(|k| rest.starts_with(**k)) {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
            out.push_str(&clause[1..]);
            rest = &rest[clause.len()..];
            continue;
        }
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        if c == '(' && !quoted && rest.starts_with("SELECT ") {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        }
    }
    out
}

/// `text` with every run of whitespace taken out.
fn squashed(text: &str) -> String {
    text.split_whitespace().collect()
}

#[test]
fn clause_per_line_adds_only_whitespace() {
    let sql = "SELECT a FROM (SELECT b FROM t WHERE x = 'a FROM b' ORDER BY c LIMIT $1 OFFSET $2) s WHERE y";
    let pretty = clause_per_line(sql);
    assert_eq!(squashed(&pretty), squashed(sql));
    assert_eq!(
        pretty,
        "SELECT a\nFROM (\n  SELECT b\n  FROM t\n  WHERE x = 'a FROM b'\n  ORDER BY c\n  LIMIT $1\n  OFFSET $2) s\nWHERE y"
    );
}

fn plan(
    dictionary: &Dictionary,
    dialect: Dialect,
    scope: &ReadScope,
    root: &Selection,
) -> Statement {
    let counted = root
        .name
        .strip_prefix('_')
        .and_then(|n| n.strip_suffix("_count"));
    let planned = match (counted, root.name.as_str()) {
        (Some(node_type), _) => root_count(dictionary, dialect, scope, node_type, &root.args),
        (None, "node") => root_list(dictionary, dialect, scope, RootList::Node, root),
        (None, "datanode") => root_list(dictionary, dialect, scope, RootList::DataNode, root),
        (None, name) => root_list(dictionary, dialect, scope, RootList::Type(name), root),
    };
    planned.unwrap()
}

#[test]
fn golden_cases_plan_as_pinned() {
    let dictionary = commons::dictionary::load_path(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/dictionaries/gdcdictionary"),
    )
    .unwrap();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(plan_dir().join("cases"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no planner cases found");
    for case in cases {
        let name = case.file_name().unwrap().to_str().unwrap().to_string();
        let root = root_selection(&std::fs::read_to_string(case.join("query.graphql")).unwrap());
        let scope = scope(&std::fs::read_to_string(case.join("scope.json")).unwrap());
        for (dialect, suffix) in [(Dialect::Sqlite, "sqlite"), (Dialect::Postgres, "postgres")] {
            let statement = plan(&dictionary, dialect, &scope, &root);
            insta::with_settings!({
                snapshot_path => plan_dir().join("snapshots"),
                prepend_module_to_snapshot => false,
                omit_expression => true,
            }, {
                insta::assert_snapshot!(format!("{name}@{suffix}"), clause_per_line(&statement.sql));
                insta::assert_debug_snapshot!(format!("{name}@{suffix}.binds"), statement.binds);
            });
        }
    }
}
