//! Export of stored entities (API.md §2.12): rows and JSON objects in the
//! export-template column order, produced page by page so memory stays flat.

mod bundle;
mod stream;

pub use bundle::tar_gz;
pub use stream::stream;

use std::collections::HashMap;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::dictionary::{Dictionary, NodeType};
use crate::formats::{
    Delimited, ExportColumn, cell_text, delimited_line, delimited_writer, export_columns,
    target_key,
};
use crate::store::{LinkTarget, NodeRow, Store, StoreError};

/// Requested output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Delimited(Delimited),
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tsv" => Some(Format::Delimited(Delimited::Tsv)),
            "csv" => Some(Format::Delimited(Delimited::Csv)),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Delimited(d) => d.extension(),
            Format::Json => "json",
        }
    }
}

/// Rows per database page when streaming a whole node type.
pub const PAGE_SIZE: i64 = 2000;

/// A node with its outgoing links as `(link, target id, target's key value)`,
/// ordered by link and target id.
pub type NodeWithLinks = (NodeRow, Vec<LinkTarget>);

/// Nodes in storage order, with their links.
pub type Page = Vec<NodeWithLinks>;

/// Pages read at once: each is one statement on its own connection, so the
/// database works on two cores while the service renders.
pub const PAGES_IN_FLIGHT: usize = crate::store::EXPORT_READERS;

/// A project's nodes of one type, page by page in storage order: page bounds
/// come from the index one after the other, the pages themselves are read
/// [`PAGES_IN_FLIGHT`] at a time. Every statement runs on a task of its own,
/// so it finishes and gives its connection back even while the consumer
/// (a client that stopped reading) takes nothing.
pub fn pages(
    store: Arc<Store>,
    dictionary: Arc<Dictionary>,
    node_type: String,
    project_id: String,
) -> impl Stream<Item = Result<Page, StoreError>> + Send + 'static {
    let target_keys = dictionary.node(&node_type).map_or_else(Map::new, |node| {
        node.links
            .iter()
            .map(|link| {
                let key = target_key(&dictionary, &link.target_type);
                (link.target_type.clone(), Value::String(key))
            })
            .collect()
    });
    let target_keys = Arc::new(Value::Object(target_keys));
    let (bounds_store, bounds_type, bounds_project) =
        (store.clone(), node_type.clone(), project_id.clone());
    let bounds = futures::stream::try_unfold(0, move |after| {
        let (store, node_type, project_id) = (
            bounds_store.clone(),
            bounds_type.clone(),
            bounds_project.clone(),
        );
        async move {
            let end = detached(async move {
                store
                    .page_end(&node_type, &project_id, after, PAGE_SIZE)
                    .await
            })
            .await?;
            Ok::<_, StoreError>(end.map(|end| ((after, end), end)))
        }
    });
    bounds
        .map_ok(move |range| {
            let (store, node_type, project_id, target_keys) = (
                store.clone(),
                node_type.clone(),
                project_id.clone(),
                target_keys.clone(),
            );
            detached(async move {
                store
                    .export_page(&node_type, &project_id, range, &target_keys)
                    .await
            })
        })
        .try_buffered(PAGES_IN_FLIGHT)
        // A range whose nodes were all deleted after its bounds were read.
        .try_filter(|page| std::future::ready(!page.is_empty()))
        .inspect_ok(|page| {
            metrics::counter!("commons_export_rows_total").increment(page.len() as u64)
        })
}

/// Run a statement on a task of its own: it completes whether or not its
/// result is awaited in time.
async fn detached<T: Send + 'static>(
    statement: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(statement)
        .await
        .map_err(|e| StoreError::Other(format!("an export statement's task failed: {e}")))?
}

/// Any nodes with their links (export by ids): two batched queries.
pub async fn with_links(
    store: &Store,
    dictionary: &Dictionary,
    nodes: Vec<NodeRow>,
) -> Result<Page, StoreError> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let edges = store.edges_from(&ids).await?;
    let targets: Vec<String> = edges.iter().map(|e| e.dst_id.clone()).collect();
    let target_rows: HashMap<String, NodeRow> = store
        .nodes_by_ids(&targets)
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let mut links: HashMap<String, Vec<LinkTarget>> = HashMap::new();
    for edge in edges {
        let Some(target) = target_rows.get(&edge.dst_id) else {
            continue;
        };
        let key = target_key(dictionary, &target.node_type);
        let key_value = target.props.get(&key).cloned().unwrap_or(Value::Null);
        links
            .entry(edge.src_id)
            .or_default()
            .push((edge.link, edge.dst_id, key_value));
    }
    Ok(nodes
        .into_iter()
        .map(|node| {
            let mut targets = links.remove(&node.id).unwrap_or_default();
            targets.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            (node, targets)
        })
        .collect())
}

/// Renders pages of one node type.
pub struct Exporter<'a> {
    pub dictionary: &'a Dictionary,
    pub node: &'a NodeType,
    pub columns: Vec<ExportColumn>,
    /// Whether ids are exported (nodes' `id`, links' `node_id`).
    with_id: bool,
}

impl<'a> Exporter<'a> {
    pub fn new(dictionary: &'a Dictionary, node: &'a NodeType, with_id: bool) -> Self {
        Self {
            dictionary,
            node,
            columns: export_columns(dictionary, node, with_id),
            with_id,
        }
    }

    pub fn header(&self, flavour: Delimited) -> Vec<u8> {
        let cells: Vec<String> = self.columns.iter().map(ExportColumn::header).collect();
        delimited_line(&cells, flavour)
    }

    /// Delimited lines of a page.
    pub fn rows(&self, page: &[NodeWithLinks], flavour: Delimited) -> Result<Vec<u8>, StoreError> {
        let separator = flavour.target_separator().to_string();
        // One writer for the page: building one per line dominated the export's cost.
        let mut writer = delimited_writer(flavour);
        let mut cells: Vec<String> = Vec::with_capacity(self.columns.len());
        for (node, links) in page {
            cells.clear();
            cells.extend(self.columns.iter().map(|column| {
                match column {
                    ExportColumn::Type => node.node_type.clone(),
                    ExportColumn::Id => node.id.clone(),
                    ExportColumn::Property(p) if p == "project_id" => {
                        node.project_id.clone().unwrap_or_default()
                    }
                    ExportColumn::Property(p) => cell_text(node.props.get(p)),
                    ExportColumn::LinkId(link) => targets(links, link)
                        .map(|(_, id, _)| id.as_str())
                        .collect::<Vec<_>>()
                        .join(&separator),
                    ExportColumn::LinkKey(link, _) => targets(links, link)
                        .map(|(_, _, key)| cell_text(Some(key)))
                        .collect::<Vec<_>>()
                        .join(&separator),
                }
            }));
            writer
                .write_record(&cells)
                .map_err(|e| StoreError::Other(format!("export: {e}")))?;
        }
        writer
            .into_inner()
            .map_err(|e| StoreError::Other(format!("export: {e}")))
    }

    /// JSON objects of a page, comma-separated, written straight from the
    /// stored rows (no intermediate values): non-null columns, links as
    /// `[{"node_id", key}]`. `first` says no object precedes them in `out`.
    pub fn write_objects(
        &self,
        page: &[NodeWithLinks],
        out: &mut Vec<u8>,
        first: bool,
    ) -> Result<(), StoreError> {
        for (i, (node, links)) in page.iter().enumerate() {
            if !(first && i == 0) {
                out.push(b',');
            }
            let object = ExportObject {
                exporter: self,
                node,
                links,
            };
            serde_json::to_writer(&mut *out, &object)?;
        }
        Ok(())
    }
}

/// A node as its export object (see [`Exporter::write_objects`]).
struct ExportObject<'e> {
    exporter: &'e Exporter<'e>,
    node: &'e NodeRow,
    links: &'e [LinkTarget],
}

impl Serialize for ExportObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let node = self.node;
        let mut object = serializer.serialize_map(None)?;
        for column in &self.exporter.columns {
            match column {
                ExportColumn::Type => object.serialize_entry("type", &node.node_type)?,
                ExportColumn::Id => object.serialize_entry("id", &node.id)?,
                ExportColumn::Property(p) if p == "project_id" => {
                    object.serialize_entry(p, &node.project_id)?;
                }
                ExportColumn::Property(p) => {
                    if let Some(value) = node.props.get(p).filter(|v| !v.is_null()) {
                        object.serialize_entry(p, value)?;
                    }
                }
                ExportColumn::LinkId(_) => {}
                ExportColumn::LinkKey(link, key) => {
                    if targets(self.links, link).next().is_some() {
                        let targets = LinkObjects {
                            links: self.links,
                            link,
                            key,
                            with_id: self.exporter.with_id,
                        };
                        object.serialize_entry(link, &targets)?;
                    }
                }
            }
        }
        object.end()
    }
}

/// The targets of one link as `[{"node_id": id, key: value}, ...]`.
struct LinkObjects<'e> {
    links: &'e [LinkTarget],
    link: &'e str,
    key: &'e str,
    with_id: bool,
}

impl Serialize for LinkObjects<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            targets(self.links, self.link).map(|(_, id, value)| LinkObject {
                id: self.with_id.then_some(id.as_str()),
                key: self.key,
                value,
            }),
        )
    }
}

struct LinkObject<'e> {
    id: Option<&'e str>,
    key: &'e str,
    value: &'e Value,
}

impl Serialize for LinkObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_map(None)?;
        if let Some(id) = self.id {
            object.serialize_entry("node_id", id)?;
        }
        object.serialize_entry(self.key, self.value)?;
        object.end()
    }
}

/// The targets of one link, among a node's links.
fn targets<'l>(links: &'l [LinkTarget], link: &'l str) -> impl Iterator<Item = &'l LinkTarget> {
    links.iter().filter(move |(l, _, _)| l == link)
}

/// Sheepdog's data-file manifest (`GET /P/Q/manifest?ids=`): each file's
/// properties (system properties aside), its links as `{node_id, <key>}`
/// lists and `local_file_path`, keys sorted, under `files:`. Refuses
/// anything but `data_file` nodes, as sheepdog does.
pub fn manifest(dictionary: &Dictionary, page: &[NodeWithLinks]) -> Result<String, String> {
    let not_files: Vec<String> = page
        .iter()
        .filter(|(node, _)| {
            dictionary
                .node(&node.node_type)
                .is_none_or(|t| t.category != "data_file")
        })
        .map(|(node, _)| format!("{} {} is not a data file.", node.node_type, node.id))
        .collect();
    if !not_files.is_empty() {
        return Err(not_files.join(". "));
    }
    let mut yaml = String::from("files:\n");
    for (node, links) in page {
        let node_type = dictionary.node(&node.node_type).expect("checked above");
        let mut entry: std::collections::BTreeMap<String, Value> =
            std::collections::BTreeMap::new();
        entry.insert("id".into(), Value::String(node.id.clone()));
        entry.insert("type".into(), Value::String(node.node_type.clone()));
        entry.insert(
            "project_id".into(),
            node.project_id.clone().map_or(Value::Null, Value::String),
        );
        for property in &node_type.properties {
            let name = property.name.as_str();
            if name == "urls" || name == "project_id" || node_type.is_system_property(name) {
                continue;
            }
            entry.insert(
                name.into(),
                node.props.get(name).cloned().unwrap_or(Value::Null),
            );
        }
        for link in &node_type.links {
            let key = target_key(dictionary, &link.target_type);
            let targets: Vec<Value> = links
                .iter()
                .filter(|(name, _, _)| *name == link.name)
                .map(|(_, id, key_value)| {
                    let mut pair = [
                        ("node_id", Value::String(id.clone())),
                        (key.as_str(), key_value.clone()),
                    ];
                    pair.sort_by(|a, b| a.0.cmp(b.0));
                    Value::Object(pair.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                })
                .collect();
            entry.insert(link.name.clone(), Value::Array(targets));
        }
        let file_name = entry.get("file_name").cloned().unwrap_or(Value::Null);
        entry.insert("local_file_path".into(), file_name);
        write_yaml_entry(&mut yaml, &entry);
    }
    Ok(yaml)
}

/// One list item of a block-style YAML mapping. Scalars are written as JSON
/// scalars, which YAML reads back as the same values under YAML 1.1 and 1.2
/// alike (a plain `yes` or `2001-12-14` would not survive a YAML 1.1 reader).
fn write_yaml_entry(yaml: &mut String, entry: &std::collections::BTreeMap<String, Value>) {
    let mut first = true;
    for (key, value) in entry {
        yaml.push_str(if first { "- " } else { "  " });
        first = false;
        yaml.push_str(&Value::String(key.clone()).to_string());
        yaml.push(':');
        match value {
            Value::Array(items) if items.is_empty() => yaml.push_str(" []\n"),
            Value::Array(items) => {
                yaml.push('\n');
                for item in items {
                    match item {
                        Value::Object(map) => {
                            let mut inner = true;
                            for (k, v) in map {
                                yaml.push_str(if inner { "  - " } else { "    " });
                                inner = false;
                                yaml.push_str(&format!("{}: {v}\n", Value::String(k.clone())));
                            }
                        }
                        other => yaml.push_str(&format!("  - {other}\n")),
                    }
                }
            }
            other => yaml.push_str(&format!(" {other}\n")),
        }
    }
}
