//! TSV/CSV <-> entity documents, following sheepdog's conventions
//! (API.md §2.6, §2.12, §2.13): `*` marks on headers, `<link>.<key>` columns,
//! comma-separated arrays, empty cells meaning "no value".

mod json;

pub use json::{JsonBodyError, read_json_documents};

use serde_json::{Map, Value};

use crate::dictionary::{Dictionary, ItemKind, NodeType, PropKind};

/// Which delimited flavour a document uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimited {
    Tsv,
    Csv,
}

impl Delimited {
    fn delimiter(self) -> u8 {
        match self {
            Delimited::Tsv => b'\t',
            Delimited::Csv => b',',
        }
    }

    /// Separator of several link targets inside one cell.
    pub fn target_separator(self) -> char {
        match self {
            Delimited::Tsv => ',',
            Delimited::Csv => '#',
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Delimited::Tsv => "tsv",
            Delimited::Csv => "csv",
        }
    }
}

/// Why a delimited document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DelimitedError {
    /// The bytes are not UTF-8.
    #[error("{0}")]
    Encoding(String),
    /// Reading the request body failed (e.g. it exceeded the size limit).
    #[error(transparent)]
    Read(std::io::Error),
    /// The text is not a valid document; completes `Unable to parse document: ...`.
    #[error("{0}")]
    Syntax(String),
    /// A row or one of its cells is larger than [`DocumentLimits`] allow.
    #[error("{0}")]
    TooLarge(String),
}

/// How large one submitted document (a TSV/CSV row, a JSON object) and one
/// value in it may be (`--max-document-bytes`, `--max-cell-bytes`): a
/// submission's memory then follows its chunk of documents, not its largest
/// value, and replies never echo huge values.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    pub max_document_bytes: usize,
    pub max_cell_bytes: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self {
            max_document_bytes: 16 << 20,
            max_cell_bytes: 1 << 20,
        }
    }
}

/// The message for a document past [`DocumentLimits::max_document_bytes`].
#[derive(Debug, thiserror::Error)]
#[error(
    "A document (a row or a JSON object) is larger than this server accepts ({0} bytes, --max-document-bytes)"
)]
pub struct DocumentTooLarge(pub usize);

/// A reader that refuses to read further than one document's limit past the
/// start of the current document, so a parser never buffers a huge one. Its
/// [`DocumentBound`] handle moves the start as documents are taken.
pub struct BoundedReader<R> {
    inner: R,
    bound: DocumentBound,
}

/// Shared between a [`BoundedReader`] and the code that takes documents.
#[derive(Clone)]
pub struct DocumentBound {
    state: std::rc::Rc<std::cell::Cell<(u64, u64)>>,
    max: usize,
}

impl DocumentBound {
    /// Bytes read so far.
    pub fn consumed(&self) -> u64 {
        self.state.get().0
    }

    /// A document ends here: the next may read `max` bytes (plus a read
    /// buffer's worth, which the parser may hold ahead) past what is consumed.
    pub fn next_document(&self) {
        let (consumed, _) = self.state.get();
        self.state
            .set((consumed, consumed + self.max as u64 + READ_AHEAD));
    }
}

/// What a parser may have read ahead of the document it is in.
const READ_AHEAD: u64 = 64 << 10;

impl<R> BoundedReader<R> {
    pub fn new(inner: R, max_document_bytes: usize) -> (Self, DocumentBound) {
        let bound = DocumentBound {
            state: std::rc::Rc::new(std::cell::Cell::new((0, 0))),
            max: max_document_bytes,
        };
        bound.next_document();
        (
            Self {
                inner,
                bound: bound.clone(),
            },
            bound,
        )
    }
}

impl<R: std::io::Read> std::io::Read for BoundedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (consumed, until) = self.bound.state.get();
        if consumed >= until {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                DocumentTooLarge(self.bound.max),
            ));
        }
        let room = (until - consumed).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        self.bound.state.set((consumed + n as u64, until));
        Ok(n)
    }
}

/// The first top-level value of a document larger than `max_cell_bytes`
/// (its strings counted, a list or object with all it holds), and its size.
pub fn oversized_value(doc: &Value, max_cell_bytes: usize) -> Option<(String, usize)> {
    let Value::Object(map) = doc else { return None };
    map.iter().find_map(|(key, value)| {
        let size = text_size(value);
        (size > max_cell_bytes).then(|| (key.clone(), size))
    })
}

/// The bytes of the strings and keys in `value`: a bound to check per
/// document without serializing it again.
fn text_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(text_size).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + text_size(v)).sum(),
        _ => 0,
    }
}

impl From<csv::Error> for DelimitedError {
    fn from(e: csv::Error) -> Self {
        match e.kind() {
            csv::ErrorKind::Utf8 { .. } => DelimitedError::Encoding(e.to_string()),
            csv::ErrorKind::Io(_) => match e.into_kind() {
                csv::ErrorKind::Io(io) => DelimitedError::Read(io),
                _ => unreachable!("matched as Io above"),
            },
            _ => DelimitedError::Syntax(e.to_string()),
        }
    }
}

/// Parse a whole TSV/CSV document into entity documents.
pub fn parse_delimited(
    dictionary: &Dictionary,
    input: impl std::io::Read,
    flavour: Delimited,
) -> Result<Vec<Value>, DelimitedError> {
    read_delimited(dictionary, input, flavour, DocumentLimits::default())?.collect()
}

/// Read a TSV/CSV document as entity documents, one row at a time, so a
/// large upload is never held as text and documents at once.
pub fn read_delimited<R: std::io::Read>(
    dictionary: &Dictionary,
    input: R,
    flavour: Delimited,
    limits: DocumentLimits,
) -> Result<DelimitedDocuments<'_, BoundedReader<R>>, DelimitedError> {
    let (input, bound) = BoundedReader::new(input, limits.max_document_bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(flavour.delimiter())
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim().trim_start_matches('*').to_string())
        .collect();
    let mut columns = Vec::with_capacity(headers.len());
    for header in &headers {
        columns.push(match header.split_once('.') {
            Some(("", _)) => {
                return Err(DelimitedError::Syntax(format!(
                    "Invalid link name: {header}"
                )));
            }
            Some((_, "")) => {
                return Err(DelimitedError::Syntax(format!(
                    "Invalid link property name: {header}"
                )));
            }
            Some((link, key)) => Column::Link(link.to_string(), key.to_string()),
            None => Column::Property(header.clone()),
        });
    }
    let type_index = headers.iter().position(|h| h == "type");
    Ok(DelimitedDocuments {
        dictionary,
        reader,
        columns,
        type_index,
        flavour,
        record: csv::StringRecord::new(),
        bound,
        limits,
    })
}

/// The entity documents of a TSV/CSV document, in row order (rows without a
/// type are skipped); see [`read_delimited`].
pub struct DelimitedDocuments<'d, R> {
    dictionary: &'d Dictionary,
    reader: csv::Reader<R>,
    columns: Vec<Column>,
    type_index: Option<usize>,
    flavour: Delimited,
    record: csv::StringRecord,
    bound: DocumentBound,
    limits: DocumentLimits,
}

impl<R> DelimitedDocuments<'_, R> {
    /// Bytes of input read so far (to size chunks of documents).
    pub fn consumed(&self) -> u64 {
        self.bound.consumed()
    }
}

impl<R: std::io::Read> Iterator for DelimitedDocuments<'_, R> {
    type Item = Result<Value, DelimitedError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.reader.read_record(&mut self.record) {
                Err(e) => return Some(Err(e.into())),
                Ok(false) => return None,
                Ok(true) => {
                    self.bound.next_document();
                    let max = self.limits.max_cell_bytes;
                    if let Some(column) = self.record.iter().position(|cell| cell.len() > max) {
                        let line = self.record.position().map_or(0, csv::Position::line);
                        return Some(Err(DelimitedError::TooLarge(format!(
                            "Row {line}, column {}: the value has {} bytes, more than this server \
                             accepts in one value ({max} bytes, --max-cell-bytes)",
                            column + 1,
                            self.record[column].len()
                        ))));
                    }
                    if let Some(doc) = self.document() {
                        return Some(Ok(doc));
                    }
                }
            }
        }
    }
}

impl<R> DelimitedDocuments<'_, R> {
    /// The document of the current row; `None` for a row without a type.
    fn document(&self) -> Option<Value> {
        let record = &self.record;
        let cell = |i: usize| record.get(i).map(str::trim).unwrap_or("");
        let node_type = self.type_index.map(cell).unwrap_or("");
        if node_type.is_empty() {
            return None;
        }
        let node = self.dictionary.node(node_type);
        let mut doc = Map::new();
        for (i, column) in self.columns.iter().enumerate() {
            let value = cell(i);
            match column {
                Column::Property(name) => {
                    if value.is_empty() && name == "id" {
                        continue;
                    }
                    let converted = if value.is_empty() || value == "null" {
                        Value::Null
                    } else {
                        let kind = node.and_then(|n| n.property(name)).map(|p| p.kind);
                        convert_cell(value, kind)
                    };
                    doc.insert(name.clone(), converted);
                }
                Column::Link(link, key) => {
                    let targets: Vec<Value> = value
                        .split(self.flavour.target_separator())
                        .map(str::trim)
                        .filter(|part| !part.is_empty())
                        .map(|part| {
                            let mut target = Map::new();
                            target.insert(key.clone(), Value::String(part.to_string()));
                            Value::Object(target)
                        })
                        .collect();
                    if targets.is_empty() {
                        continue;
                    }
                    let entry = doc
                        .entry(link.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = entry {
                        list.extend(targets);
                    }
                }
            }
        }
        Some(Value::Object(doc))
    }
}

enum Column {
    Property(String),
    Link(String, String),
}

fn convert_cell(value: &str, kind: Option<PropKind>) -> Value {
    match kind {
        Some(PropKind::Boolean) => match value.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(value.to_string()),
        },
        Some(PropKind::Integer) => value
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(value.to_string())),
        Some(PropKind::Number) => number(value).unwrap_or_else(|| Value::String(value.to_string())),
        Some(PropKind::Array(item)) => Value::Array(
            value
                .split(',')
                .map(str::trim)
                .map(|part| match item {
                    ItemKind::String => Value::String(part.to_string()),
                    ItemKind::Integer => part
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| Value::from(f as i64))
                        .unwrap_or_else(|| Value::String(part.to_string())),
                    ItemKind::Number => part
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(part.to_string())),
                    ItemKind::Boolean => Value::Bool(matches!(
                        part.to_ascii_lowercase().as_str(),
                        "true" | "t" | "yes" | "y"
                    )),
                })
                .collect(),
        ),
        Some(PropKind::String) | None => Value::String(value.to_string()),
    }
}

/// An integer when integral, else a float.
fn number(text: &str) -> Option<Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(Value::from(f as i64))
    } else {
        serde_json::Number::from_f64(f).map(Value::Number)
    }
}

/// The text of a stored value in a TSV cell: null is empty, arrays are comma-joined.
pub fn cell_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| cell_text(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// A column of a node type's export or template.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportColumn {
    /// `type`
    Type,
    /// `id`
    Id,
    Property(String),
    /// `<link>.id`
    LinkId(String),
    /// `<link>.<key>`, the target's first natural key other than `project_id`.
    LinkKey(String, String),
}

impl ExportColumn {
    pub fn header(&self) -> String {
        match self {
            ExportColumn::Type => "type".into(),
            ExportColumn::Id => "id".into(),
            ExportColumn::Property(p) => p.clone(),
            ExportColumn::LinkId(link) => format!("{link}.id"),
            ExportColumn::LinkKey(link, key) => format!("{link}.{key}"),
        }
    }
}

/// The natural key a link column uses for the target type (`submitter_id`, `code`, ...).
pub fn target_key(dictionary: &Dictionary, target_type: &str) -> String {
    dictionary
        .node(target_type)
        .and_then(|t| t.natural_key.iter().find(|k| *k != "project_id").cloned())
        .unwrap_or_else(|| "submitter_id".into())
}

/// Properties in template order: natural keys, then required, then optional,
/// each sorted; system properties other than `project_id` hidden.
fn template_properties(node: &NodeType) -> Vec<String> {
    let visible = |name: &str| name == "project_id" || !node.is_system_property(name);
    let mut keys: Vec<String> = node
        .natural_key
        .iter()
        .filter(|k| *k != "id" && visible(k))
        .cloned()
        .collect();
    keys.sort();
    let mut required: Vec<String> = node
        .properties
        .iter()
        .filter(|p| node.is_required(&p.name) && visible(&p.name) && !keys.contains(&p.name))
        .map(|p| p.name.clone())
        .collect();
    required.sort();
    let mut optional: Vec<String> = node
        .properties
        .iter()
        .filter(|p| !node.is_required(&p.name) && visible(&p.name) && !keys.contains(&p.name))
        .map(|p| p.name.clone())
        .collect();
    optional.sort();
    keys.into_iter().chain(required).chain(optional).collect()
}

/// Export columns (API.md §2.12): type, id, properties, then links sorted by name.
pub fn export_columns(
    dictionary: &Dictionary,
    node: &NodeType,
    with_id: bool,
) -> Vec<ExportColumn> {
    let mut columns = vec![ExportColumn::Type];
    if with_id {
        columns.push(ExportColumn::Id);
    }
    columns.extend(
        template_properties(node)
            .into_iter()
            .map(ExportColumn::Property),
    );
    let mut links: Vec<_> = node.links.iter().collect();
    links.sort_by(|a, b| a.name.cmp(&b.name));
    for link in links {
        if with_id {
            columns.push(ExportColumn::LinkId(link.name.clone()));
        }
        columns.push(ExportColumn::LinkKey(
            link.name.clone(),
            target_key(dictionary, &link.target_type),
        ));
    }
    columns
}

/// Template header cells (API.md §2.13): `*` marks required columns.
pub fn template_headers(dictionary: &Dictionary, node: &NodeType) -> Vec<String> {
    let mut headers = vec!["*type".to_string()];
    let mark = |name: &str, required: bool| {
        if required {
            format!("*{name}")
        } else {
            name.to_string()
        }
    };
    let props = template_properties(node);
    let natural: Vec<&String> = props
        .iter()
        .filter(|p| node.natural_key.contains(p))
        .collect();
    for p in &natural {
        headers.push(mark(p, node.is_required(p)));
    }
    let mut links: Vec<_> = node.links.iter().collect();
    links.sort_by(|a, b| a.name.cmp(&b.name));
    for link in links {
        let key = target_key(dictionary, &link.target_type);
        headers.push(mark(
            &format!("{}.{key}", link.name),
            node.is_required(&link.name),
        ));
    }
    for p in props.iter().filter(|p| !node.natural_key.contains(p)) {
        headers.push(mark(p, node.is_required(p)));
    }
    if node.category == "data_file" {
        headers.push("urls".into());
    }
    headers
}

/// A JSON template: template keys mapped to null, links to their key object.
pub fn template_json(dictionary: &Dictionary, node: &NodeType) -> Value {
    let mut out = Map::new();
    for header in template_headers(dictionary, node) {
        let bare = header.trim_start_matches('*');
        let required = header.starts_with('*');
        if let Some((link, key)) = bare.split_once('.') {
            let name = if required {
                format!("*{link}")
            } else {
                link.to_string()
            };
            let mut target = Map::new();
            target.insert(key.to_string(), Value::Null);
            out.insert(name, Value::Object(target));
        } else if bare == "type" {
            out.insert(header.clone(), Value::String(node.id.clone()));
        } else {
            out.insert(header.clone(), Value::Null);
        }
    }
    Value::Object(out)
}

/// A writer of delimited lines (CSV quoting where a cell needs it), into memory.
pub fn delimited_writer(flavour: Delimited) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .delimiter(flavour.delimiter())
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new())
}

/// One line of delimited output.
pub fn delimited_line(cells: &[String], flavour: Delimited) -> Vec<u8> {
    let mut writer = delimited_writer(flavour);
    writer
        .write_record(cells)
        .expect("writing to memory cannot fail");
    writer.into_inner().expect("writing to memory cannot fail")
}
