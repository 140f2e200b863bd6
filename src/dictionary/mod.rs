//! The data dictionary: Gen3 YAML/JSON node schemas resolved into an immutable model.
//!
//! Everything else in Commons (validation, storage keys, TSV conversion, exports,
//! GraphQL) is derived from the [`Dictionary`] built here once at start-up, so a
//! broken dictionary fails loudly before the server accepts a request.

mod load;
mod resolve;

use std::collections::HashMap;

use serde_json::{Map, Value};

pub use load::{load, load_bundle_value, load_path};

/// A dictionary problem, naming the file, node and key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DictionaryError(pub String);

/// How a property's value is typed (first entry of its JSON-schema `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropKind {
    String,
    Integer,
    Number,
    Boolean,
    Array(ItemKind),
}

/// Element type of an array property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    String,
    Integer,
    Number,
    Boolean,
}

#[derive(Debug, Clone)]
pub struct Property {
    pub name: String,
    pub kind: PropKind,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multiplicity {
    OneToOne,
    OneToMany,
    ManyToOne,
    ManyToMany,
}

impl Multiplicity {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "one_to_one" => Self::OneToOne,
            "one_to_many" => Self::OneToMany,
            "many_to_one" => Self::ManyToOne,
            "many_to_many" => Self::ManyToMany,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneToOne => "one_to_one",
            Self::OneToMany => "one_to_many",
            Self::ManyToOne => "many_to_one",
            Self::ManyToMany => "many_to_many",
        }
    }

    /// At most one target per source.
    pub fn to_one(self) -> bool {
        matches!(self, Self::OneToOne | Self::ManyToOne)
    }

    /// At most one source per target.
    pub fn from_one(self) -> bool {
        matches!(self, Self::OneToOne | Self::OneToMany)
    }
}

/// A forward link from a child (source) type to a parent (target) type.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub backref: String,
    pub label: String,
    pub target_type: String,
    pub multiplicity: Multiplicity,
    pub required: bool,
}

/// A group of links with its own `required` / `exclusive` rules.
#[derive(Debug, Clone)]
pub struct Subgroup {
    pub members: Vec<String>,
    pub required: bool,
    pub exclusive: bool,
}

/// A link received from another type, seen from its target.
#[derive(Debug, Clone)]
pub struct Backref {
    pub name: String,
    pub source_type: String,
    pub link_name: String,
}

#[derive(Debug, Clone)]
pub struct NodeType {
    pub id: String,
    pub title: String,
    pub category: String,
    /// The resolved schema as served by `/_dictionary/<id>` (no null allowance).
    pub schema: Value,
    /// Stored properties in dictionary order (links, `id` and `type` excluded).
    pub properties: Vec<Property>,
    pub links: Vec<Link>,
    pub subgroups: Vec<Subgroup>,
    pub backrefs: Vec<Backref>,
    pub required: Vec<String>,
    pub system_properties: Vec<String>,
    /// The natural key (first `uniqueKeys` entry without `id`), e.g. `[project_id, submitter_id]`.
    pub natural_key: Vec<String>,
    /// All non-`[id]` unique keys, in dictionary order (for the submission envelope).
    pub unique_keys: Vec<Vec<String>>,
}

impl NodeType {
    /// Whether entities of this type are submitted through a project endpoint.
    pub fn is_project_scoped(&self) -> bool {
        self.property("project_id").is_some()
    }

    /// Data-file nodes (category ending in `_file`) get index records and `DataNode`.
    pub fn is_data_file(&self) -> bool {
        self.category.ends_with("_file")
    }

    /// The schema documents are validated against: optional properties also
    /// accept `null` (DICTIONARY.md §6). Built when the validators are compiled
    /// rather than kept beside `schema`.
    pub fn validation_schema(&self) -> Value {
        // As dictionaryutils' `allow_nulls`: required links count as required.
        let mut required = self.required.clone();
        required.extend(
            self.links
                .iter()
                .filter(|l| l.required)
                .map(|l| l.name.clone()),
        );
        load::validation_schema(&self.schema, &required)
    }

    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn is_system_property(&self, name: &str) -> bool {
        self.system_properties.iter().any(|p| p == name)
    }

    pub fn is_required(&self, name: &str) -> bool {
        self.required.iter().any(|p| p == name)
    }
}

/// The loaded, resolved dictionary.
#[derive(Debug)]
pub struct Dictionary {
    nodes: Vec<NodeType>,
    index: HashMap<String, usize>,
    /// Node types by the base name of their file (`case` for `case.yaml`).
    files: HashMap<String, usize>,
    /// The resolved shared documents by base name (`_definitions`, `_terms`,
    /// ...); a node type's document is its `schema`.
    documents: Map<String, Value>,
    pub version: String,
    pub commit: String,
}

impl Dictionary {
    pub fn nodes(&self) -> &[NodeType] {
        &self.nodes
    }

    pub fn node(&self, id: &str) -> Option<&NodeType> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    /// The resolved shared documents (`_definitions`, `_terms`, ...) by base name.
    pub fn shared_documents(&self) -> &Map<String, Value> {
        &self.documents
    }

    /// A resolved document by base file name: a shared one, or a node type's
    /// schema (found by its id, or by its file's name).
    pub fn document(&self, name: &str) -> Option<&Value> {
        self.documents.get(name).or_else(|| {
            self.node(name)
                .or_else(|| self.files.get(name).map(|&i| &self.nodes[i]))
                .map(|n| &n.schema)
        })
    }

    /// The closest node type name, for "Did you mean" hints.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        closest(name, self.nodes.iter().map(|n| n.id.as_str()))
    }

    /// Length of the longest chain of required links from any type to the root.
    pub fn depth(&self) -> usize {
        fn depth_of(d: &Dictionary, id: &str, seen: &mut Vec<String>) -> usize {
            if seen.iter().any(|s| s == id) {
                return 0;
            }
            seen.push(id.to_string());
            let node = d.node(id).expect("link targets are checked at load");
            let deepest = node
                .links
                .iter()
                .map(|l| 1 + depth_of(d, &l.target_type, seen))
                .max()
                .unwrap_or(0);
            seen.pop();
            deepest
        }
        self.nodes
            .iter()
            .map(|n| depth_of(self, &n.id, &mut Vec::new()))
            .max()
            .unwrap_or(0)
    }
}

/// The candidate closest to `name` by edit distance, if it is reasonably close.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::normalized_levenshtein(name, c), c))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests;
