//! The planner's golden cases, as data: each folder of `tests/plan/cases/`
//! holds a `query.graphql` (one root field, over gdcdictionary) and a
//! `scope.json` (`"all"` or the readable project ids). Every case is planned
//! in both dialects and pinned in `tests/plan/snapshots/`: the SQL as
//! `<case>@<dialect>.snap`, its binds as `<case>@<dialect>.binds.snap`. A
//! new case is a new folder; `INSTA_UPDATE=always` writes its snapshots.

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

fn plan(dictionary: &Dictionary, dialect: Dialect, scope: &ReadScope, root: &Selection) -> Statement {
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
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/dictionaries/gdcdictionary"),
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
                insta::assert_snapshot!(format!("{name}@{suffix}"), statement.sql);
                insta::assert_debug_snapshot!(format!("{name}@{suffix}.binds"), statement.binds);
            });
        }
    }
}
