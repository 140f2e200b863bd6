//! The layout's rules, checked: every module's imports of other modules are
//! on the allow-list below (the layers of ARCHITECTURE.md), the database
//! driver, the HTTP framework and the GraphQL library stay in the modules
//! that own them, every source file opens with a `//!` paragraph saying why
//! it exists, and no source file grows past the line cap.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which top-level modules each top-level module may use. A module not
/// listed may use none. Change this list when the architecture changes, and
/// ARCHITECTURE.md with it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("dictionary", &["outbound", "yaml"]),
    ("validate", &["dictionary"]),
    ("formats", &["dictionary"]),
    ("plan", &["dictionary", "sql", "time"]),
    ("store", &["sql", "time"]),
    ("file_index", &["auth", "storage", "store"]),
    ("storage", &["outbound", "store"]),
    (
        "submission",
        &[
            "dictionary",
            "file_index",
            "formats",
            "storage",
            "store",
            "time",
            "validate",
        ],
    ),
    ("export", &["dictionary", "formats", "store"]),
    ("graphql", &["dictionary", "plan", "sql", "store"]),
    ("auth", &["plan", "store", "yaml"]),
    ("simulate", &["dictionary", "formats"]),
    (
        "server",
        &[
            "auth",
            "dictionary",
            "export",
            "file_index",
            "formats",
            "graphql",
            "storage",
            "store",
            "submission",
            "time",
            "validate",
        ],
    ),
    (
        "cli",
        &[
            "auth",
            "dictionary",
            "file_index",
            "formats",
            "graphql",
            "server",
            "simulate",
            "storage",
            "store",
            "validate",
        ],
    ),
];

/// The most lines a source file may have.
const LINE_CAP: usize = 1000;

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

/// The top-level module a file under `src/` belongs to (`None`: the crate
/// root and the binary).
fn module_of(path: &Path) -> Option<String> {
    let relative = path
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The top-level modules `text` refers to through `crate::`, other than its own.
fn used_modules(text: &str, own: &str) -> BTreeSet<String> {
    let path = regex::Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    let group = regex::Regex::new(r"crate::\{([^}]*)\}").unwrap();
    let mut out: BTreeSet<String> = path.captures_iter(text).map(|c| c[1].to_string()).collect();
    for c in group.captures_iter(text) {
        for item in c[1].split(',') {
            let name = item.trim().split("::").next().unwrap_or_default().trim();
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out.remove(own);
    out
}

/// The import edges of `files` (module, text) that `allowed` does not list.
fn edges_outside(allowed: &[(&str, &[&str])], files: &[(String, String)]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = allowed.iter().copied().collect();
    let mut out = BTreeSet::new();
    for (module, text) in files {
        let permitted = allowed.get(module.as_str()).copied().unwrap_or_default();
        for used in used_modules(text, module) {
            if !permitted.contains(&used.as_str()) {
                out.insert(format!("{module} -> {used}"));
            }
        }
    }
    out.into_iter().collect()
}

#[test]
fn imports_follow_the_allow_list() {
    let files: Vec<(String, String)> = sources()
        .iter()
        .filter_map(|p| Some((module_of(p)?, std::fs::read_to_string(p).unwrap())))
        .collect();
    let outside = edges_outside(ALLOWED, &files);
    assert!(
        outside.is_empty(),
        "imports outside the allow-list of tests/it/tidy.rs: {outside:?}"
    );
}

#[test]
fn the_allow_list_check_catches_a_new_edge() {
    // The planner is pure: reaching into the store is refused, in `use`
    // form and in path form.
    let files = vec![
        (
            "plan".to_string(),
            "use crate::sql::Dialect;\nuse crate::{store::Store, dictionary};\n".to_string(),
        ),
        (
            "store".to_string(),
            "fn f() { crate::auth::x(); }".to_string(),
        ),
    ];
    assert_eq!(
        edges_outside(ALLOWED, &files),
        vec!["plan -> store".to_string(), "store -> auth".to_string()]
    );
}

/// Crates that only some modules may name: the database driver, the HTTP
/// framework, the GraphQL library.
const CONFINED: &[(&str, &[&str])] = &[
    ("sqlx::", &["store"]),
    ("axum::", &["server", "cli"]),
    ("async_graphql::", &["graphql", "server"]),
];

#[test]
fn confined_crates_stay_in_their_modules() {
    let mut outside = Vec::new();
    for path in sources() {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        for (krate, modules) in CONFINED {
            if text.contains(krate) && !modules.contains(&module.as_str()) {
                outside.push(format!("{} uses {krate}", path.display()));
            }
        }
    }
    assert!(outside.is_empty(), "{outside:?}");
}

#[test]
fn every_source_file_opens_with_its_purpose() {
    let missing: Vec<String> = sources()
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header: {missing:?}"
    );
}

#[test]
fn no_source_file_is_over_the_line_cap() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|p| {
            let lines = std::fs::read_to_string(p).unwrap().lines().count();
            (lines > LINE_CAP).then(|| format!("{} ({lines} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {LINE_CAP} lines: {long:?}");
}
