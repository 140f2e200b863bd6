//! Which edge paths `with_path_to` follows between two node types
//! (GRAPHQL.md §3.2): simple paths over links and backrefs, expanded only
//! while they keep moving in one direction of category level, and never
//! beyond the edges Gen3 treats as dead ends.

use crate::dictionary::{Dictionary, NodeType};

/// One step of a path: follow `link` (named on the source type of the edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The stored link name (always the name on the child type).
    pub link: String,
    /// True: from child to parent (a forward link); false: from parent to child.
    pub forward: bool,
    /// The node type reached.
    pub to: String,
}

/// Edges after which a path is not expanded further.
const STOP_EDGES: [&str; 7] = [
    "annotations",
    "centers",
    "archives",
    "tissue_source_sites",
    "files",
    "related_files",
    "describing_files",
];

/// Paths enumerated per query at most; beyond this the rest are not considered.
const MAX_PATHS: usize = 256;

fn level(node: &NodeType) -> u8 {
    match node.category.as_str() {
        "administrative" => 0,
        "biospecimen" | "clinical" => 1,
        "data_file" => 3,
        _ => 4,
    }
}

/// Every path from `from` to `to` that the rules allow.
pub fn paths(dictionary: &Dictionary, from: &str, to: &str) -> Vec<Vec<Step>> {
    let (Some(start), Some(_)) = (dictionary.node(from), dictionary.node(to)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut path = Vec::new();
    let mut visited = vec![start.id.clone()];
    walk(
        dictionary,
        start,
        start,
        to,
        &mut path,
        &mut visited,
        &mut out,
    );
    out
}

fn neighbours(node: &NodeType) -> Vec<(Step, &str)> {
    let forward = node.links.iter().map(|l| {
        (
            Step {
                link: l.name.clone(),
                forward: true,
                to: l.target_type.clone(),
            },
            l.name.as_str(),
        )
    });
    let backward = node.backrefs.iter().map(|b| {
        (
            Step {
                link: b.link_name.clone(),
                forward: false,
                to: b.source_type.clone(),
            },
            b.name.as_str(),
        )
    });
    forward.chain(backward).collect()
}

fn walk(
    dictionary: &Dictionary,
    start: &NodeType,
    current: &NodeType,
    target: &str,
    path: &mut Vec<Step>,
    visited: &mut Vec<String>,
    out: &mut Vec<Vec<Step>>,
) {
    for (step, edge_name) in neighbours(current) {
        if out.len() >= MAX_PATHS || visited.contains(&step.to) {
            continue;
        }
        let Some(next) = dictionary.node(&step.to) else {
            continue;
        };
        path.push(step.clone());
        if next.id == target {
            out.push(path.clone());
        }
        let upward = level(start) > level(current);
        let keeps_direction = if upward {
            level(next) <= level(current)
        } else {
            level(next) >= level(current)
        };
        if keeps_direction && !STOP_EDGES.contains(&edge_name) && next.id != target {
            visited.push(next.id.clone());
            walk(dictionary, start, next, target, path, visited, out);
            visited.pop();
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gdc() -> Dictionary {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/dictionaries/gdcdictionary");
        crate::dictionary::load_path(&path).unwrap()
    }

    #[test]
    fn aliquot_reaches_case_but_not_experiment() {
        let d = gdc();
        let to_case = paths(&d, "aliquot", "case");
        assert!(
            to_case
                .iter()
                .any(|p| p.iter().map(|s| s.to.as_str()).collect::<Vec<_>>() == ["sample", "case"])
        );
        assert!(paths(&d, "aliquot", "experiment").is_empty());
    }

    #[test]
    fn unknown_types_have_no_paths() {
        assert!(paths(&gdc(), "case", "BAD_TYPE").is_empty());
    }
}
