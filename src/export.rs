//! Export of stored entities (API.md §2.12): rows and JSON objects in the
//! export-template column order, produced page by page so memory stays flat.

use std::collections::HashMap;

use futures::{Stream, TryStreamExt};
use serde_json::{Map, Value};

use crate::dictionary::{Dictionary, NodeType};
use crate::formats::{
    Delimited, ExportColumn, cell_text, delimited_line, delimited_writer, export_columns,
    target_key,
};
use crate::store::{NodeRow, Store, StoreError};

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

/// Link targets of a page of nodes: source id -> link -> [(target id, key value)].
pub type Neighbours = HashMap<String, HashMap<String, Vec<(String, Option<Value>)>>>;

/// Nodes in storage order, with their link targets.
pub type Page = (Vec<NodeRow>, Neighbours);

/// Pages read at once: each is one statement on its own connection, so the
/// database works on two cores while the service renders.
const PAGES_IN_FLIGHT: usize = 2;

/// A project's nodes of one type, page by page in storage order: page bounds
/// come from the index one after the other, the pages themselves are read
/// [`PAGES_IN_FLIGHT`] at a time.
pub fn pages<'a>(
    store: &'a Store,
    dictionary: &'a Dictionary,
    node: &'a NodeType,
    project_id: &'a str,
) -> impl Stream<Item = Result<Page, StoreError>> + 'a {
    let bounds = futures::stream::try_unfold(0, move |after| async move {
        let end = store
            .page_end(&node.id, project_id, after, PAGE_SIZE)
            .await?;
        Ok::<_, StoreError>(end.map(|end| ((after, end), end)))
    });
    bounds
        .map_ok(move |range| page(store, dictionary, node, project_id, range))
        .try_buffered(PAGES_IN_FLIGHT)
}

/// One page of a project's nodes of one type, in storage order, with their
/// link targets (one statement: see [`Store::export_page`]).
async fn page(
    store: &Store,
    dictionary: &Dictionary,
    node: &NodeType,
    project_id: &str,
    seq_range: (i64, i64),
) -> Result<Page, StoreError> {
    let target_keys: Map<String, Value> = node
        .links
        .iter()
        .map(|link| {
            let key = target_key(dictionary, &link.target_type);
            (link.target_type.clone(), Value::String(key))
        })
        .collect();
    let rows = store
        .export_page(&node.id, project_id, seq_range, &Value::Object(target_keys))
        .await?;
    let mut links: Neighbours = HashMap::new();
    let mut nodes = Vec::with_capacity(rows.len());
    for (row, targets) in rows {
        for (link, id, key) in targets {
            let key = Some(key).filter(|k| !k.is_null());
            links
                .entry(row.id.clone())
                .or_default()
                .entry(link)
                .or_default()
                .push((id, key));
        }
        nodes.push(row);
    }
    Ok((nodes, links))
}

/// Link targets of any nodes (export by ids).
pub async fn neighbours(
    store: &Store,
    dictionary: &Dictionary,
    nodes: &[NodeRow],
) -> Result<Neighbours, StoreError> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let edges = store.edges_from(&ids).await?;
    let targets: Vec<String> = edges.iter().map(|e| e.dst_id.clone()).collect();
    let target_rows: HashMap<String, NodeRow> = store
        .nodes_by_ids(&targets)
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let mut out: Neighbours = HashMap::new();
    for edge in edges {
        let key_value = target_rows.get(&edge.dst_id).and_then(|t| {
            let key = target_key(dictionary, &t.node_type);
            t.props.get(&key).cloned()
        });
        out.entry(edge.src_id)
            .or_default()
            .entry(edge.link)
            .or_default()
            .push((edge.dst_id, key_value));
    }
    Ok(out)
}

/// Renders pages of one node type.
pub struct Exporter<'a> {
    pub dictionary: &'a Dictionary,
    pub node: &'a NodeType,
    pub columns: Vec<ExportColumn>,
}

impl<'a> Exporter<'a> {
    pub fn new(dictionary: &'a Dictionary, node: &'a NodeType, with_id: bool) -> Self {
        Self {
            dictionary,
            node,
            columns: export_columns(dictionary, node, with_id),
        }
    }

    pub fn header(&self, flavour: Delimited) -> Vec<u8> {
        let cells: Vec<String> = self.columns.iter().map(ExportColumn::header).collect();
        delimited_line(&cells, flavour)
    }

    /// Delimited lines of a page.
    pub fn rows(
        &self,
        nodes: &[NodeRow],
        links: &Neighbours,
        flavour: Delimited,
    ) -> Result<Vec<u8>, StoreError> {
        let separator = flavour.target_separator().to_string();
        let no_targets = Vec::new();
        // One writer for the page: building one per line dominated the export's cost.
        let mut writer = delimited_writer(flavour);
        let mut cells: Vec<String> = Vec::with_capacity(self.columns.len());
        for node in nodes {
            let node_links = links.get(&node.id);
            let targets = |link: &str| node_links.and_then(|l| l.get(link)).unwrap_or(&no_targets);
            cells.clear();
            cells.extend(self.columns.iter().map(|column| {
                match column {
                    ExportColumn::Type => node.node_type.clone(),
                    ExportColumn::Id => node.id.clone(),
                    ExportColumn::Property(p) if p == "project_id" => {
                        node.project_id.clone().unwrap_or_default()
                    }
                    ExportColumn::Property(p) => cell_text(node.props.get(p)),
                    ExportColumn::LinkId(link) => targets(link)
                        .iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>()
                        .join(&separator),
                    ExportColumn::LinkKey(link, _) => targets(link)
                        .iter()
                        .map(|(_, key)| cell_text(key.as_ref()))
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

    /// JSON objects of a page: non-null columns, links as `[{"node_id", key}]`.
    pub fn objects(&self, nodes: &[NodeRow], links: &Neighbours) -> Vec<Value> {
        let with_id = self.columns.contains(&ExportColumn::Id);
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut obj = Map::new();
            for column in &self.columns {
                match column {
                    ExportColumn::Type => {
                        obj.insert("type".into(), Value::String(node.node_type.clone()));
                    }
                    ExportColumn::Id => {
                        obj.insert("id".into(), Value::String(node.id.clone()));
                    }
                    ExportColumn::Property(p) if p == "project_id" => {
                        obj.insert(
                            p.clone(),
                            node.project_id.clone().map_or(Value::Null, Value::String),
                        );
                    }
                    ExportColumn::Property(p) => {
                        if let Some(v) = node.props.get(p).filter(|v| !v.is_null()) {
                            obj.insert(p.clone(), v.clone());
                        }
                    }
                    ExportColumn::LinkId(_) => {}
                    ExportColumn::LinkKey(link, key) => {
                        let targets = links.get(&node.id).and_then(|l| l.get(link));
                        let Some(targets) = targets.filter(|t| !t.is_empty()) else {
                            continue;
                        };
                        let list: Vec<Value> = targets
                            .iter()
                            .map(|(id, value)| {
                                let mut t = Map::new();
                                if with_id {
                                    t.insert("node_id".into(), Value::String(id.clone()));
                                }
                                t.insert(key.clone(), value.clone().unwrap_or(Value::Null));
                                Value::Object(t)
                            })
                            .collect();
                        obj.insert(link.clone(), Value::Array(list));
                    }
                }
            }
            out.push(Value::Object(obj));
        }
        out
    }
}
