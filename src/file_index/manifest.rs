//! Object manifests: the TSV of `gen3 objects manifest publish` read into
//! the index (`commons index import`) and the index written back out as one
//! (`commons index export`). An operator's import of millions of rows goes
//! straight to the store in large batches instead of one HTTP call per row,
//! with the same records the HTTP API would make ([`FileIndex::new_record`]).
//!
//! Column names and cell formats are the SDK's: `guid`, `md5`, `size`,
//! `acl`, `authz`, `urls`, `file_name`, `prev_guid` (and their aliases);
//! list cells hold values separated by spaces or commas, optionally in
//! Python list brackets and quotes, with `%20` for a space inside a value;
//! an acl of `['Open']` means public (`*`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use super::body::check_new_record;
use super::{FileIndex, IndexError, new_rev, now};
use crate::store::{IndexQuery, IndexRecord, IndexWrite, IndexWriter, StoreError};

/// Rows written per transaction.
const BATCH: usize = 10_000;

/// The manifest columns, each with the header names the SDK accepts for it.
const COLUMNS: [(Column, &[&str]); 8] = [
    (Column::Guid, &["guid"]),
    (
        Column::Md5,
        &[
            "md5",
            "md5_hash",
            "md5hash",
            "hash",
            "md5sum",
            "file_md5sum",
        ],
    ),
    (
        Column::Size,
        &[
            "size",
            "filesize",
            "file_size",
            "s3_file_size",
            "gs_file_size",
        ],
    ),
    (Column::Acl, &["acl", "acls"]),
    (Column::Authz, &["authz"]),
    (
        Column::Urls,
        &["url", "urls", "s3_path", "gs_path", "aws_uri", "gcp_uri"],
    ),
    (Column::FileName, &["filename", "file_name"]),
    (Column::PrevGuid, &["previous_guid", "prev_guid", "prev_id"]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    Guid,
    Md5,
    Size,
    Acl,
    Authz,
    Urls,
    FileName,
    PrevGuid,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Why an import stopped: the manifest's line and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("{0}")]
    Format(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Index writes of a batch of manifest rows.
#[derive(Default)]
struct Batch {
    inserts: Vec<(IndexRecord, Vec<String>)>,
    /// Updated records with the rev they replace.
    replaces: Vec<(IndexRecord, String)>,
    /// Rows that make a new version of their `prev_guid`.
    versions: Vec<Row>,
}

/// The error of one manifest row.
fn row_error(row: &Row, message: impl ToString) -> ManifestError {
    ManifestError::Row {
        line: row.line,
        message: message.to_string(),
    }
}

/// One manifest row, as the body of the `POST /index/` it stands for.
struct Row {
    line: u64,
    prev_guid: Option<String>,
    body: Value,
}

impl Row {
    /// The row's guid, when it names one (the body's `did`).
    fn guid(&self) -> Option<&str> {
        self.body["did"].as_str()
    }
}

/// Reads manifest rows: tab-separated, or comma-separated when `comma`.
struct Reader<R: Read> {
    csv: csv::Reader<R>,
    columns: HashMap<Column, usize>,
    record: csv::StringRecord,
}

impl<R: Read> Reader<R> {
    fn new(input: R, comma: bool) -> Result<Self, ManifestError> {
        let mut csv = csv::ReaderBuilder::new()
            .delimiter(if comma { b',' } else { b'\t' })
            .flexible(true)
            .from_reader(input);
        let headers = csv.headers().map_err(format_error)?.clone();
        let mut columns = HashMap::new();
        for (i, name) in headers.iter().enumerate() {
            let name = name.trim().to_lowercase();
            if let Some((column, _)) = COLUMNS
                .iter()
                .find(|(_, names)| names.contains(&name.as_str()))
            {
                columns.entry(*column).or_insert(i);
            }
        }
        for required in [Column::Md5, Column::Size] {
            if !columns.contains_key(&required) {
                let names = COLUMNS.iter().find(|(c, _)| *c == required).unwrap().1;
                return Err(ManifestError::Format(format!(
                    "the manifest has no {} column (one of: {})",
                    names[0],
                    names.join(", ")
                )));
            }
        }
        Ok(Reader {
            csv,
            columns,
            record: csv::StringRecord::new(),
        })
    }

    fn cell(&self, column: Column) -> Option<&str> {
        let value = self.record.get(*self.columns.get(&column)?)?.trim();
        (!value.is_empty()).then_some(value)
    }

    /// The next row, or None at the end.
    fn next(&mut self) -> Result<Option<Row>, ManifestError> {
        if !self
            .csv
            .read_record(&mut self.record)
            .map_err(format_error)?
        {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let row_error = |message: String| ManifestError::Row { line, message };
        let md5 = self
            .cell(Column::Md5)
            .map(|v| v.trim_matches('"').to_string())
            .ok_or_else(|| row_error("no md5".into()))?;
        let size: i64 = self
            .cell(Column::Size)
            .ok_or_else(|| row_error("no size".into()))?
            .parse()
            .map_err(|_| row_error("size is not a whole number".into()))?;
        let acl = match self.cell(Column::Acl) {
            Some(v) if matches!(v.to_lowercase().as_str(), "['open']" | "[u'open']") => {
                vec!["*".to_string()]
            }
            v => values(v),
        };
        let mut body = json!({
            "form": "object",
            "hashes": {"md5": md5},
            "size": size,
            "acl": acl,
            "authz": values(self.cell(Column::Authz)),
            "urls": values(self.cell(Column::Urls)),
        });
        if let Some(name) = self.cell(Column::FileName) {
            body["file_name"] = json!(name);
        }
        if let Some(guid) = self.cell(Column::Guid) {
            body["did"] = json!(guid);
        }
        Ok(Some(Row {
            line,
            prev_guid: self.cell(Column::PrevGuid).map(str::to_string),
            body,
        }))
    }
}

fn format_error(e: csv::Error) -> ManifestError {
    let line = e.position().map_or(0, |p| p.line());
    ManifestError::Row {
        line,
        message: e.to_string(),
    }
}

/// Every row of a manifest parses and makes a valid record; no guid
/// appears twice.
fn check_manifest(input: Box<dyn Read + Send>, comma: bool) -> Result<(), ManifestError> {
    let mut reader = Reader::new(input, comma)?;
    let mut seen: HashMap<String, u64> = HashMap::new();
    while let Some(row) = reader.next()? {
        check_new_record(&row.body).map_err(|e| row_error(&row, e))?;
        if let Some(guid) = row.guid()
            && let Some(first) = seen.insert(guid.to_string(), row.line)
        {
            return Err(row_error(
                &row,
                format!("guid {guid} is on line {first} too"),
            ));
        }
    }
    Ok(())
}

/// The values of a list cell: `a b`, `a,b`, `[a, b]` or `['a', 'b']`.
fn values(cell: Option<&str>) -> Vec<String> {
    cell.unwrap_or_default()
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '\'' | '"'))
        .filter(|v| !v.is_empty())
        .map(|v| v.replace("%20", " "))
        .collect()
}

/// A list cell as `gen3 objects manifest read` writes one.
fn cell(values: &[String]) -> String {
    values
        .iter()
        .map(|v| v.replace(' ', "%20"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl FileIndex<'_> {
    /// Read a whole manifest into the index, all of it or nothing: one
    /// transaction, committed only when every row was checked and written.
    /// Rows are checked on a thread of their own while they are written,
    /// by batches of [`BATCH`], each read and compared with the index while
    /// the one before is written. A row whose guid is indexed already must
    /// have the same md5 and size; its urls, acl, authz and file name are
    /// updated. A row with `prev_guid` becomes a new version of that record.
    pub async fn import_manifest(
        &self,
        open: impl Fn() -> std::io::Result<Box<dyn Read + Send>>,
        comma: bool,
    ) -> Result<ImportSummary, ManifestError> {
        let failed = Arc::new(AtomicBool::new(false));
        let check = {
            let (input, failed) = (open()?, failed.clone());
            tokio::task::spawn_blocking(move || {
                let checked = check_manifest(input, comma);
                failed.store(checked.is_err(), Ordering::Release);
                checked
            })
        };
        let written = self.write_manifest(open, comma, &failed).await;
        // A bad row is the error to report, even when the writes stopped on it.
        check
            .await
            .map_err(|e| ManifestError::Format(format!("the manifest check stopped: {e}")))??;
        let (summary, writer) = written?;
        writer.commit().await?;
        Ok(summary)
    }

    /// Write every row into one open transaction (stopping early once the
    /// check has `failed`).
    async fn write_manifest(
        &self,
        open: impl Fn() -> std::io::Result<Box<dyn Read + Send>>,
        comma: bool,
        failed: &AtomicBool,
    ) -> Result<(ImportSummary, IndexWriter), ManifestError> {
        let mut reader = Reader::new(open()?, comma)?;
        let mut writer = self.store.begin_index_writes().await?;
        let mut summary = ImportSummary::default();
        let mut pending = self.prepare_batch(&mut reader, &mut summary).await?;
        while let Some(batch) = pending {
            if failed.load(Ordering::Acquire) {
                break;
            }
            let (written, next) = tokio::join!(
                self.write_batch(&mut writer, batch),
                self.prepare_batch(&mut reader, &mut summary)
            );
            let (created, updated) = written?;
            summary.created += created;
            summary.updated += updated;
            pending = next?;
        }
        Ok((summary, writer))
    }

    /// The next [`BATCH`] rows as index writes (None at the end). A row
    /// with `prev_guid` is left for [`Self::write_batch`]: its base may be
    /// in the batch being written meanwhile.
    async fn prepare_batch<R: Read>(
        &self,
        reader: &mut Reader<R>,
        summary: &mut ImportSummary,
    ) -> Result<Option<Batch>, ManifestError> {
        let mut rows = Vec::with_capacity(BATCH);
        while rows.len() < BATCH {
            match reader.next()? {
                Some(row) => rows.push(row),
                None => break,
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let guids: Vec<String> = rows
            .iter()
            .filter_map(|r| r.guid().map(str::to_string))
            .collect();
        let existing: HashMap<String, IndexRecord> = self
            .store
            .index_records(&guids)
            .await?
            .into_iter()
            .map(|r| (r.did.clone(), r))
            .collect();
        let mut batch = Batch::default();
        for row in rows {
            let stored = row.guid().and_then(|g| existing.get(g));
            if stored.is_none() && row.prev_guid.is_some() {
                batch.versions.push(row);
                continue;
            }
            // Every row passed `check_manifest`: build without checking again.
            let wanted = self
                .record_of_checked(&row.body, None)
                .map_err(|e| row_error(&row, e))?;
            let Some(stored) = stored else {
                batch.inserts.push((wanted, Vec::new()));
                continue;
            };
            if stored.size != wanted.size || stored.hashes.get("md5") != wanted.hashes.get("md5") {
                return Err(row_error(
                    &row,
                    format!(
                        "guid {} is indexed with a different size or md5; a changed file needs a new guid",
                        stored.did
                    ),
                ));
            }
            let mut updated = stored.clone();
            updated
                .urls_metadata
                .retain(|url, _| wanted.urls.contains(url));
            updated.urls = wanted.urls;
            updated.acl = wanted.acl;
            updated.authz = wanted.authz;
            updated.file_name = wanted.file_name;
            if updated == *stored {
                summary.unchanged += 1;
            } else {
                updated.rev = new_rev();
                updated.updated_date = now();
                batch.replaces.push((updated, stored.rev.clone()));
            }
        }
        Ok(Some(batch))
    }

    /// Write a prepared batch: its new records in one transaction, then its
    /// updates; returns (created, updated).
    async fn write_batch(
        &self,
        writer: &mut IndexWriter,
        mut batch: Batch,
    ) -> Result<(usize, usize), ManifestError> {
        for row in &batch.versions {
            let prev = row.prev_guid.as_deref().unwrap_or_default();
            // An earlier row of this import, or a record stored before it.
            let base = match writer.record(prev).await? {
                Some(record) => record,
                None => self
                    .get_or_latest(prev)
                    .await
                    .map_err(|e| row_error(row, format!("prev_guid {prev}: {e}")))?,
            };
            let record = self
                .record_of_checked(&row.body, Some(&base))
                .map_err(|e| row_error(row, e))?;
            batch.inserts.push((record, Vec::new()));
        }
        let (created, updated) = (batch.inserts.len(), batch.replaces.len());
        let writes: Vec<IndexWrite> = batch
            .inserts
            .into_iter()
            .map(|(record, aliases)| IndexWrite::Insert(record, aliases))
            .chain(
                batch
                    .replaces
                    .into_iter()
                    .map(|(record, _)| IndexWrite::Replace(record)),
            )
            .collect();
        writer.apply(&writes).await?;
        Ok((created, updated))
    }

    /// Write every record with a size and an md5 (not blank upload
    /// placeholders) as a manifest that `import_manifest` and
    /// `gen3 objects manifest publish` read back; returns (written, skipped).
    pub async fn export_manifest(&self, out: &mut impl Write) -> Result<(u64, u64), ManifestError> {
        let mut writer = csv::WriterBuilder::new().delimiter(b'\t').from_writer(out);
        let header = ["guid", "md5", "size", "acl", "authz", "urls", "file_name"];
        writer.write_record(header).map_err(csv_write_error)?;
        let (mut written, mut skipped) = (0, 0);
        let mut start = None;
        loop {
            let page = self
                .store
                .index_list(&IndexQuery {
                    start: start.clone(),
                    limit: 10_000,
                    ..IndexQuery::default()
                })
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            start = Some(last.did.clone());
            for record in &page {
                let (Some(size), Some(md5)) = (record.size, record.hashes.get("md5")) else {
                    skipped += 1;
                    continue;
                };
                writer
                    .write_record([
                        record.did.as_str(),
                        md5,
                        &size.to_string(),
                        &cell(&record.acl),
                        &cell(&record.authz),
                        &cell(&record.urls),
                        record.file_name.as_deref().unwrap_or_default(),
                    ])
                    .map_err(csv_write_error)?;
                written += 1;
            }
        }
        writer.flush()?;
        Ok((written, skipped))
    }
}

fn csv_write_error(e: csv::Error) -> ManifestError {
    ManifestError::Io(std::io::Error::other(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cells_are_read_as_the_sdk_reads_them() {
        assert_eq!(values(Some("a b")), ["a", "b"]);
        assert_eq!(values(Some("a,b")), ["a", "b"]);
        assert_eq!(values(Some("['a', 'b']")), ["a", "b"]);
        assert_eq!(values(Some("[s3://x/y%20z]")), ["s3://x/y z"]);
        assert!(values(None).is_empty());
        assert!(values(Some("[]")).is_empty());
        assert_eq!(
            cell(&["s3://x/y z".into(), "gs://b".into()]),
            "s3://x/y%20z gs://b"
        );
    }

    #[test]
    fn a_row_becomes_the_body_the_sdk_would_post() {
        let tsv = "guid\tmd5\tsize\tacl\tauthz\turls\tfile_name\n\
                   g1\t0cc175b9c0f1b6a831c399e269772661\t5\t['Open']\t/programs/p\ts3://b/k\tk.txt\n";
        let mut reader = Reader::new(tsv.as_bytes(), false).unwrap();
        let row = reader.next().unwrap().unwrap();
        assert_eq!(row.line, 2);
        assert_eq!(row.guid(), Some("g1"));
        assert_eq!(row.body["acl"], json!(["*"]));
        assert_eq!(row.body["authz"], json!(["/programs/p"]));
        assert_eq!(row.body["size"], json!(5));
        assert_eq!(row.body["file_name"], json!("k.txt"));
        assert!(reader.next().unwrap().is_none());
    }

    #[test]
    fn a_manifest_without_md5_or_size_columns_is_refused() {
        let err = Reader::new("guid\tsize\n".as_bytes(), false).err().unwrap();
        assert!(err.to_string().contains("no md5 column"), "{err}");
    }
}
