//! GraphQL parse and plan: any query text either fails to parse or plans
//! every root field into SQL (or a planning error) on both dialects, never
//! panicking.
#![no_main]

use std::sync::OnceLock;

use async_graphql_parser::types::{DocumentOperations, Selection as AstSelection, SelectionSet};
use commons::plan::ReadScope;
use commons::dictionary::Dictionary;
use commons::plan::{RootList, Selection, root_count, root_list};
use commons::sql::Dialect;
use libfuzzer_sys::fuzz_target;


fn dictionary() -> &'static Dictionary {
    static DICTIONARY: OnceLock<Dictionary> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/dictionaries/gdcdictionary");
        commons::dictionary::load_path(std::path::Path::new(path)).expect("gdcdictionary loads")
    })
}

/// The planner's IR for a selection set (fragments and variables left out).
fn selections(set: &SelectionSet, depth: usize) -> Vec<Selection> {
    if depth > 12 {
        return Vec::new();
    }
    set.items
        .iter()
        .filter_map(|item| match &item.node {
            AstSelection::Field(field) => {
                let field = &field.node;
                let args = field
                    .arguments
                    .iter()
                    .filter_map(|(name, value)| {
                        let value = value.node.clone().into_const()?.into_json().ok()?;
                        Some((name.node.to_string(), value))
                    })
                    .collect();
                Some(Selection {
                    key: field.response_key().node.to_string(),
                    name: field.name.node.to_string(),
                    args,
                    children: selections(&field.selection_set.node, depth + 1),
                })
            }
            _ => None,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(document) = async_graphql_parser::parse_query(text) else { return };
    let operations: Vec<_> = match &document.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values().collect(),
    };
    let scope = ReadScope::Projects(["P-Q".to_string()].into());
    for operation in operations {
        for root in selections(&operation.node.selection_set.node, 0) {
            for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                let list = match root.name.as_str() {
                    "node" => RootList::Node,
                    "datanode" => RootList::DataNode,
                    name => RootList::Type(name),
                };
                let _ = root_list(dictionary(), dialect, &scope, list, &root);
                if let Some(t) = root.name.strip_prefix('_').and_then(|n| n.strip_suffix("_count")) {
                    let _ = root_count(dictionary(), dialect, &scope, t, &root.args);
                }
            }
        }
    }
});
