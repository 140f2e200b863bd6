//! The file index (indexd's tables): records, the terms they are found by
//! (hashes, urls, acl, authz, metadata) and aliases. Lists are JSON text on
//! the record, so every statement here is the same on both backends.
//!
//! Writes come from two places: the index API, one short transaction each,
//! and a submission, whose [`IndexWrite`]s go into its own transaction (see
//! [`super::Writer::apply`]) so a data-file node and its record commit together.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sqlx::Row;

use super::reads::bind_all;
use super::{Result, Store, StoreError, on_pool};
use crate::sql::{BindValue, Dialect, Params, where_clause};

/// One indexd record (FILES.md §1.2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndexRecord {
    pub did: String,
    pub baseid: String,
    pub rev: String,
    pub form: Option<String>,
    pub size: Option<i64>,
    pub file_name: Option<String>,
    pub version: Option<String>,
    pub uploader: Option<String>,
    pub description: Option<String>,
    /// Hash type (`md5`, `sha256`...) -> lower-case hex.
    pub hashes: BTreeMap<String, String>,
    pub urls: Vec<String>,
    pub acl: Vec<String>,
    pub authz: Vec<String>,
    pub metadata: Map<String, Value>,
    pub urls_metadata: Map<String, Value>,
    pub created_date: String,
    pub updated_date: String,
    pub content_created_date: Option<String>,
    pub content_updated_date: Option<String>,
}

/// How a metadata pair is kept as a term (the migrations' triggers write
/// them): key, U+001F, value.
fn metadata_term(key: &str, value: &str) -> String {
    format!("{key}\u{1f}{value}")
}

/// Which records a listing returns and how it pages (FILES.md §1.3).
#[derive(Debug, Clone, Default)]
pub struct IndexQuery {
    /// Exactly these dids (no paging).
    pub ids: Option<Vec<String>>,
    /// Keyset paging: dids after this one, in did order.
    pub start: Option<String>,
    /// Offset paging (`limit * page`), in order of last update.
    pub page: Option<i64>,
    pub limit: i64,
    pub size: Option<i64>,
    pub file_name: Option<String>,
    pub version: Option<String>,
    pub uploader: Option<String>,
    /// Every one of these urls.
    pub urls: Vec<String>,
    /// Every one of these `(type, value)` hashes.
    pub hashes: Vec<(String, String)>,
    /// `Some([])`: records without any; else records holding every value.
    pub acl: Option<Vec<String>>,
    pub authz: Option<Vec<String>>,
    pub metadata: Vec<(String, String)>,
    /// Records with a url containing `url_part` whose metadata holds these pairs.
    pub urls_metadata: Vec<UrlMetadataFilter>,
    /// Records that do not match these (indexd's `negate_params`).
    pub negate: Option<IndexNegation>,
}

/// A url-metadata filter: a part of the url, and metadata pairs (a pair
/// without a value, in a negation, asks for the key's absence).
#[derive(Debug, Clone, Default)]
pub struct UrlMetadataFilter {
    pub url_part: String,
    pub pairs: Vec<(String, Option<String>)>,
}

/// indexd's `negate_params`: lists the record must hold none of, values it
/// must not have, metadata keys it must lack or not have with that value.
#[derive(Debug, Clone, Default)]
pub struct IndexNegation {
    pub urls: Vec<String>,
    pub acl: Vec<String>,
    pub authz: Vec<String>,
    pub file_name: Option<String>,
    pub version: Option<String>,
    pub metadata: Vec<(String, Option<String>)>,
    pub urls_metadata: Vec<UrlMetadataFilter>,
}

/// A record change made inside a submission's transaction.
#[derive(Debug, Clone)]
pub enum IndexWrite {
    /// A new record and its aliases.
    Insert(IndexRecord, Vec<String>),
    /// A stored record replaced (its `rev` already the new one).
    Replace(IndexRecord),
}

const COLUMNS: &str = "did, baseid, rev, form, size, file_name, version, uploader, description, \
    hashes, urls, acl, authz, metadata, urls_metadata, created_date, updated_date, \
    content_created_date, content_updated_date";
const COLUMN_COUNT: usize = 19;

/// Records per multi-row insert: under SQLite's 32,766 bind parameters.
const INSERT_ROWS: usize = 500;

macro_rules! record_from_row {
    ($row:expr) => {
        record_from_row!($row, try_get)
    };
    ($row:expr, $get:ident) => {{
        let row = $row;
        let text = |name: &str| -> Result<String> {
            let text: String = row.$get(name)?;
            Ok(text)
        };
        Ok::<IndexRecord, StoreError>(IndexRecord {
            did: row.$get("did")?,
            baseid: row.$get("baseid")?,
            rev: row.$get("rev")?,
            form: row.$get("form")?,
            size: row.$get("size")?,
            file_name: row.$get("file_name")?,
            version: row.$get("version")?,
            uploader: row.$get("uploader")?,
            description: row.$get("description")?,
            hashes: serde_json::from_str(&text("hashes")?)?,
            urls: serde_json::from_str(&text("urls")?)?,
            acl: serde_json::from_str(&text("acl")?)?,
            authz: serde_json::from_str(&text("authz")?)?,
            metadata: serde_json::from_str(&text("metadata")?)?,
            urls_metadata: serde_json::from_str(&text("urls_metadata")?)?,
            created_date: row.$get("created_date")?,
            updated_date: row.$get("updated_date")?,
            content_created_date: row.$get("content_created_date")?,
            content_updated_date: row.$get("content_updated_date")?,
        })
    }};
}

/// The read of one record by did, in SQLite's words (see `point_reads`).
pub(super) static RECORD_BY_DID_SQLITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM index_records WHERE did = ?1"));

/// A record from a row of the SQLite library's own (see `point_reads`).
pub(super) fn record_from_sqlite_row(row: &rusqlite::Row) -> Result<IndexRecord> {
    record_from_row!(row, get)
}

/// A column value: text or integer, either of which may be null (a
/// null is bound with its column's type, as PostgreSQL requires).
#[derive(Debug, Clone)]
enum Column {
    Text(Option<String>),
    Int(Option<i64>),
}

/// Bind column values, in order, to a query.
macro_rules! bind_columns {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                Column::Text(s) => query.bind(s.clone()),
                Column::Int(i) => query.bind(*i),
            };
        }
        query
    }};
}

fn json_text(value: &impl serde::Serialize) -> Column {
    Column::Text(Some(
        serde_json::to_string(value).expect("index values serialize"),
    ))
}

fn text(value: &str) -> Column {
    Column::Text(Some(value.to_string()))
}

/// A record's column values, in [`COLUMNS`] order.
fn record_columns(record: &IndexRecord, out: &mut Vec<Column>) {
    out.extend([
        text(&record.did),
        text(&record.baseid),
        text(&record.rev),
        Column::Text(record.form.clone()),
        Column::Int(record.size),
        Column::Text(record.file_name.clone()),
        Column::Text(record.version.clone()),
        Column::Text(record.uploader.clone()),
        Column::Text(record.description.clone()),
        json_text(&record.hashes),
        json_text(&record.urls),
        json_text(&record.acl),
        json_text(&record.authz),
        json_text(&record.metadata),
        json_text(&record.urls_metadata),
        text(&record.created_date),
        text(&record.updated_date),
        Column::Text(record.content_created_date.clone()),
        Column::Text(record.content_updated_date.clone()),
    ]);
}

/// Statements of the index, run on one connection (`$conn`, of either backend).
macro_rules! insert_records {
    ($conn:expr, $records:expr, $insert:expr) => {{
        let mut records: Vec<&IndexRecord> = $records.iter().collect();
        let verb: &str = $insert;
        // In key order, each statement's rows land on neighbouring pages.
        records.sort_unstable_by(|a, b| a.did.cmp(&b.did));
        for chunk in records.chunks(INSERT_ROWS) {
            let mut insert =
                sqlx::QueryBuilder::new(format!("{verb} INTO index_records ({COLUMNS}) "));
            insert.push_values(chunk, |mut row, record| {
                let mut columns = Vec::with_capacity(COLUMN_COUNT);
                record_columns(record, &mut columns);
                for column in columns {
                    match column {
                        Column::Text(s) => row.push_bind(s),
                        Column::Int(i) => row.push_bind(i),
                    };
                }
            });
            insert.build().execute(&mut *$conn).await?;
        }
    }};
}

macro_rules! insert_aliases {
    ($conn:expr, $aliases:expr, $insert:expr) => {{
        let aliases: &[(&str, &str)] = $aliases;
        let verb: &str = $insert;
        for chunk in aliases.chunks(INSERT_ROWS * 4) {
            let mut insert =
                sqlx::QueryBuilder::new(format!("{verb} INTO index_aliases (alias, did) "));
            insert.push_values(chunk, |mut row, (alias, did)| {
                row.push_bind(*alias).push_bind(*did);
            });
            insert.build().execute(&mut *$conn).await?;
        }
    }};
}

/// The stored record `$did`, read on the transaction's connection.
macro_rules! stored_record {
    ($conn:expr, $did:expr) => {{
        let did: &str = $did;
        match sqlx::query(&format!(
            "SELECT {COLUMNS} FROM index_records WHERE did = $1"
        ))
        .bind(did)
        .fetch_optional(&mut *$conn)
        .await?
        {
            Some(row) => Some(record_from_row!(row)?),
            None => None,
        }
    }};
}

/// Replace the stored record `$record.did` whose rev is `$rev` (its terms
/// follow by trigger); evaluates to whether it was there with that rev.
macro_rules! replace_record {
    ($conn:expr, $record:expr, $rev:expr) => {{
        let record: &IndexRecord = $record;
        let mut columns = Vec::with_capacity(COLUMN_COUNT + 1);
        record_columns(record, &mut columns);
        columns.push(text($rev));
        let set: Vec<String> = COLUMNS
            .split(", ")
            .enumerate()
            .skip(1)
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        let sql = format!(
            "UPDATE index_records SET {} WHERE did = $1 AND rev = ${}",
            set.join(", "),
            COLUMN_COUNT + 1
        );
        bind_columns!(sqlx::query(&sql), &columns)
            .execute($conn)
            .await?
            .rows_affected()
            == 1
    }};
}

/// Apply a submission's index writes on its transaction's connection: new
/// records in multi-row statements, replacements one by one.
macro_rules! apply_index_writes {
    ($conn:expr, $writes:expr, $insert:expr) => {{
        let writes: &[IndexWrite] = $writes;
        let mut records = Vec::new();
        let mut aliases = Vec::new();
        for write in writes {
            if let IndexWrite::Insert(record, names) = write {
                records.push(record.clone());
                aliases.extend(names.iter().map(|a| (a.as_str(), record.did.as_str())));
            }
        }
        insert_records!($conn, &records, $insert);
        insert_aliases!($conn, &aliases, $insert);
        for write in writes {
            let IndexWrite::Replace(record) = write else {
                continue;
            };
            let stored: Option<String> =
                sqlx::query_scalar("SELECT rev FROM index_records WHERE did = $1")
                    .bind(&record.did)
                    .fetch_optional(&mut *$conn)
                    .await?;
            let Some(stored) = stored else {
                return Err(StoreError::Conflict(format!(
                    "index record {} was deleted meanwhile",
                    record.did
                )));
            };
            if !replace_record!(&mut *$conn, record, &stored) {
                return Err(StoreError::Conflict(format!(
                    "index record {} changed meanwhile",
                    record.did
                )));
            }
        }
        Ok(())
    }};
}

pub(super) async fn apply_sqlite(
    conn: &mut sqlx::SqliteConnection,
    writes: &[IndexWrite],
) -> Result<()> {
    apply_index_writes!(conn, writes, Dialect::Sqlite.insert_or_fail())
}

pub(super) async fn apply_postgres(
    conn: &mut sqlx::PgConnection,
    writes: &[IndexWrite],
) -> Result<()> {
    apply_index_writes!(conn, writes, Dialect::Postgres.insert_or_fail())
}

/// One open transaction of index writes (an import): nothing is visible
/// until [`IndexWriter::commit`], and dropping it rolls everything back.
/// On SQLite it holds the graph's write connection until then.
pub struct IndexWriter {
    tx: IndexTransaction,
    upkeep: super::Upkeep,
    /// Records written so far, for upkeep.
    written: usize,
}

enum IndexTransaction {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl IndexWriter {
    /// Add writes to the transaction.
    pub async fn apply(&mut self, writes: &[IndexWrite]) -> Result<()> {
        self.written += writes.len();
        match &mut self.tx {
            IndexTransaction::Sqlite(tx) => apply_sqlite(tx, writes).await,
            IndexTransaction::Postgres(tx) => apply_postgres(tx, writes).await,
        }
    }

    /// A record as this transaction sees it (its own writes included).
    pub async fn record(&mut self, did: &str) -> Result<Option<IndexRecord>> {
        Ok(match &mut self.tx {
            IndexTransaction::Sqlite(tx) => stored_record!(&mut **tx, did),
            IndexTransaction::Postgres(tx) => stored_record!(&mut **tx, did),
        })
    }

    pub async fn commit(self) -> Result<()> {
        match self.tx {
            IndexTransaction::Sqlite(tx) => tx.commit().await?,
            IndexTransaction::Postgres(tx) => tx.commit().await?,
        }
        self.upkeep.committed(self.written);
        Ok(())
    }
}

/// Run `$body` in a transaction of its own (`$conn`: its connection) on
/// the pool of index writes ([`on_writes!`]), committed if `Ok`.
macro_rules! in_transaction {
    ($store:expr, $conn:ident => $body:expr) => {
        on_writes!($store, pool => {
            let mut tx = pool.begin().await?;
            let $conn = &mut *tx;
            let result: Result<_> = async { $body }.await;
            if result.is_ok() {
                tx.commit().await?;
            }
            result
        })
    };
}

/// Run `$body` with `$pool` bound to the pool index writes go through: on
/// SQLite the graph's write connection (one writer at a time in this
/// process instead of waiting on the database's lock, and its large page
/// cache), on PostgreSQL the shared pool.
macro_rules! on_writes {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.index_write_pool() {
            super::Pool::Sqlite(ref $pool) => $body,
            super::Pool::Postgres(ref $pool) => $body,
        }
    };
}

/// The SQL of a listing and its binds.
/// The urls of a record that have metadata, as rows `(u.key, u.value)`:
/// the url and its metadata object.
fn urls_with_metadata(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "json_each(r.urls_metadata) u WHERE EXISTS (SELECT 1 FROM json_each(u.value))"
        }
        Dialect::Postgres => "jsonb_each(r.urls_metadata::jsonb) u WHERE u.value <> '{}'::jsonb",
    }
}

/// The metadata object `u.value` has `key` (with `value`, when given).
fn url_metadata_has(
    params: &mut Params,
    dialect: Dialect,
    key: &str,
    value: Option<&str>,
) -> String {
    let key = params.text(key);
    let value = value.map(|v| params.text(v));
    match (dialect, value) {
        (Dialect::Sqlite, None) => {
            format!("EXISTS (SELECT 1 FROM json_each(u.value) m WHERE m.key = {key})")
        }
        (Dialect::Sqlite, Some(value)) => format!(
            "EXISTS (SELECT 1 FROM json_each(u.value) m WHERE m.key = {key} AND CAST(m.value AS TEXT) = {value})"
        ),
        (Dialect::Postgres, None) => format!("u.value ? {key}"),
        (Dialect::Postgres, Some(value)) => format!("(u.value ->> {key}) = {value}"),
    }
}

/// A url of the record contains `url_part` and has every pair in its metadata.
fn url_metadata_match(params: &mut Params, dialect: Dialect, filter: &UrlMetadataFilter) -> String {
    let part = params.text(&filter.url_part);
    let mut inner = vec![dialect.contains("u.key", &part)];
    for (key, value) in &filter.pairs {
        inner.push(url_metadata_has(params, dialect, key, value.as_deref()));
    }
    format!(
        "EXISTS (SELECT 1 FROM {} AND {})",
        urls_with_metadata(dialect),
        inner.join(" AND ")
    )
}

/// indexd's `_negate_filter`, condition by condition. Like indexd's joins,
/// a negated list or url-metadata filter keeps only records that have such
/// a list or url metadata at all.
fn negation_conditions(
    params: &mut Params,
    dialect: Dialect,
    negation: &IndexNegation,
    conditions: &mut Vec<String>,
) {
    for (column, value) in [
        ("file_name", &negation.file_name),
        ("version", &negation.version),
    ] {
        if let Some(value) = value {
            conditions.push(format!("r.{column} <> {}", params.text(value)));
        }
    }
    for (kind, values) in [
        ("url", &negation.urls),
        ("acl", &negation.acl),
        ("authz", &negation.authz),
    ] {
        if values.is_empty() {
            continue;
        }
        let column = if kind == "url" { "urls" } else { kind };
        conditions.push(format!("r.{column} <> '[]'"));
        for value in values {
            conditions.push(format!(
                "r.did NOT IN (SELECT did FROM index_terms WHERE kind = {} AND value = {})",
                params.text(kind),
                params.text(value)
            ));
        }
    }
    for (key, value) in &negation.metadata {
        conditions.push(match value {
            None => {
                let key = params.text(key);
                match dialect {
                    Dialect::Sqlite => format!(
                        "NOT EXISTS (SELECT 1 FROM json_each(r.metadata) WHERE key = {key})"
                    ),
                    Dialect::Postgres => format!("NOT (r.metadata::jsonb ? {key})"),
                }
            }
            Some(value) => format!(
                "r.did NOT IN (SELECT did FROM index_terms WHERE kind = 'metadata' AND value = {})",
                params.text(&metadata_term(key, value))
            ),
        });
    }
    if !negation.urls_metadata.is_empty() {
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM {})",
            urls_with_metadata(dialect)
        ));
    }
    for filter in &negation.urls_metadata {
        let part = params.text(&filter.url_part);
        if filter.pairs.is_empty() {
            // A url with metadata that does not contain the part.
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM {} AND NOT {})",
                urls_with_metadata(dialect),
                dialect.contains("u.key", &part)
            ));
            continue;
        }
        for (key, value) in &filter.pairs {
            let contains = dialect.contains("u.key", &part);
            let has = url_metadata_has(params, dialect, key, value.as_deref());
            conditions.push(match value {
                // A url with metadata that is not (containing the part and holding the key).
                None => format!(
                    "EXISTS (SELECT 1 FROM {} AND NOT ({contains} AND {has}))",
                    urls_with_metadata(dialect)
                ),
                // No url containing the part holds the pair.
                Some(_) => format!(
                    "NOT EXISTS (SELECT 1 FROM {} AND {contains} AND {has})",
                    urls_with_metadata(dialect)
                ),
            });
        }
    }
}

fn list_statement(query: &IndexQuery, dialect: Dialect) -> (String, Vec<BindValue>) {
    let mut params = Params::default();
    let mut conditions = Vec::new();
    let term = |params: &mut Params, kind: &str, value: &str| {
        format!(
            "r.did IN (SELECT did FROM index_terms WHERE kind = {} AND value = {})",
            params.text(kind),
            params.text(value)
        )
    };
    if let Some(ids) = &query.ids {
        // One bind for the whole list: a bulk lookup names thousands.
        let list = params.text(&serde_json::to_string(ids).expect("strings serialize"));
        conditions.push(dialect.in_text_list("r.did", &list));
    }
    if query.page.is_none()
        && let Some(start) = &query.start
    {
        conditions.push(format!("r.did > {}", params.text(start)));
    }
    if let Some(size) = query.size {
        conditions.push(format!("r.size = {}", params.push(BindValue::Int(size))));
    }
    for (column, value) in [
        ("file_name", &query.file_name),
        ("version", &query.version),
        ("uploader", &query.uploader),
    ] {
        if let Some(value) = value {
            conditions.push(format!("r.{column} = {}", params.text(value)));
        }
    }
    for url in &query.urls {
        conditions.push(term(&mut params, "url", url));
    }
    for (kind, value) in &query.hashes {
        conditions.push(term(&mut params, &format!("hash:{kind}"), value));
    }
    for (kind, values) in [("acl", &query.acl), ("authz", &query.authz)] {
        match values.as_deref() {
            None => {}
            // The list column itself: `[]` is how an empty list is stored.
            Some([]) => conditions.push(format!("r.{kind} = '[]'")),
            Some(values) => {
                for value in values {
                    conditions.push(term(&mut params, kind, value));
                }
            }
        }
    }
    for (key, value) in &query.metadata {
        conditions.push(term(&mut params, "metadata", &metadata_term(key, value)));
    }
    for filter in &query.urls_metadata {
        conditions.push(url_metadata_match(&mut params, dialect, filter));
    }
    if let Some(negation) = &query.negate {
        negation_conditions(&mut params, dialect, negation, &mut conditions);
    }
    let mut sql = format!(
        "SELECT {} FROM index_records r{}",
        COLUMNS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        where_clause(&conditions)
    );
    match (query.ids.is_some(), query.page) {
        (true, _) => sql.push_str(" ORDER BY r.did"),
        (false, Some(page)) => {
            let limit = params.push(BindValue::Int(query.limit));
            let offset = params.push(BindValue::Int(query.limit.saturating_mul(page)));
            sql.push_str(&format!(
                " ORDER BY r.updated_date, r.did LIMIT {limit} OFFSET {offset}"
            ));
        }
        (false, None) => {
            let limit = params.push(BindValue::Int(query.limit));
            sql.push_str(&format!(" ORDER BY r.did LIMIT {limit}"));
        }
    }
    (sql, params.into_binds())
}

impl Store {
    fn index_write_pool(&self) -> super::Pool {
        match (&self.pool, &self.sqlite_dedicated) {
            (super::Pool::Sqlite(_), Some(dedicated)) => {
                super::Pool::Sqlite(dedicated.writes.clone())
            }
            (pool, _) => pool.clone(),
        }
    }

    /// Open a transaction for many index writes ([`IndexWriter`]).
    pub async fn begin_index_writes(&self) -> Result<IndexWriter> {
        let tx = match self.index_write_pool() {
            super::Pool::Sqlite(pool) => IndexTransaction::Sqlite(pool.begin().await?),
            super::Pool::Postgres(pool) => IndexTransaction::Postgres(pool.begin().await?),
        };
        Ok(IndexWriter {
            tx,
            upkeep: self.upkeep.clone(),
            written: 0,
        })
    }

    /// Insert new records (and their aliases) in one transaction; a did or an
    /// alias already taken is a [`StoreError::Conflict`] and nothing is written.
    pub async fn index_insert(&self, records: &[(IndexRecord, Vec<String>)]) -> Result<()> {
        let insert = self.dialect().insert_or_fail();
        let plain: Vec<IndexRecord> = records.iter().map(|(r, _)| r.clone()).collect();
        let aliases: Vec<(&str, &str)> = records
            .iter()
            .flat_map(|(r, names)| names.iter().map(|a| (a.as_str(), r.did.as_str())))
            .collect();
        if plain.len() <= INSERT_ROWS && aliases.is_empty() {
            // One statement (the terms follow by trigger): no transaction
            // needed. Plain `INSERT`, whose failure undoes the whole
            // statement; `OR FAIL` would keep the rows before a taken did.
            on_writes!(self, pool => {
                let conn = &mut *pool.acquire().await?;
                insert_records!(conn, &plain, "INSERT");
                Ok::<(), StoreError>(())
            })?;
        } else {
            in_transaction!(self, conn => {
                insert_records!(conn, &plain, insert);
                insert_aliases!(conn, &aliases, insert);
                Ok(())
            })?;
        }
        self.upkeep.committed(records.len());
        Ok(())
    }

    /// Replace a record if its stored rev is `rev`; false if it is not (or
    /// the record is gone).
    pub async fn index_replace(&self, record: &IndexRecord, rev: &str) -> Result<bool> {
        on_writes!(self, pool => Ok(replace_record!(pool, record, rev)))
    }

    /// Delete a record with its terms and aliases if its rev is `rev`.
    pub async fn index_delete(&self, did: &str, rev: &str) -> Result<bool> {
        in_transaction!(self, conn => {
            let done = sqlx::query("DELETE FROM index_records WHERE did = $1 AND rev = $2")
                .bind(did)
                .bind(rev)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM index_aliases WHERE did = $1")
                .bind(did)
                .execute(&mut *conn)
                .await?;
            Ok(true)
        })
    }

    pub async fn index_record(&self, did: &str) -> Result<Option<IndexRecord>> {
        if let Some(reads) = self.point_reads() {
            return reads.index_record(did);
        }
        Ok(self.index_records(&[did.to_string()]).await?.pop())
    }

    /// The records of these dids that exist, in did order.
    pub async fn index_records(&self, dids: &[String]) -> Result<Vec<IndexRecord>> {
        if dids.is_empty() {
            return Ok(Vec::new());
        }
        self.index_list(&IndexQuery {
            ids: Some(dids.to_vec()),
            ..IndexQuery::default()
        })
        .await
    }

    pub async fn index_list(&self, query: &IndexQuery) -> Result<Vec<IndexRecord>> {
        let (sql, binds) = list_statement(query, self.dialect());
        on_pool!(self, pool => {
            let rows = bind_all!(sqlx::query(&sql), &binds).fetch_all(pool).await?;
            rows.iter().map(|row| record_from_row!(row)).collect()
        })
    }

    /// Every version of a file (records sharing `baseid`), oldest first.
    pub async fn index_versions(&self, baseid: &str) -> Result<Vec<IndexRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM index_records WHERE baseid = $1 ORDER BY created_date, did"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(baseid).fetch_all(pool).await?;
            rows.iter().map(|row| record_from_row!(row)).collect()
        })
    }

    /// `(number of records, their total size)`.
    pub async fn index_stats(&self) -> Result<(i64, i64)> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT count(*) AS n, CAST(coalesce(sum(size), 0) AS BIGINT) AS total FROM index_records",
            )
            .fetch_one(pool)
            .await?;
            Ok((row.try_get("n")?, row.try_get("total")?))
        })
    }

    /// The record an alias names.
    /// The records holding any of these md5s, in did order (a submission's
    /// data files looked up at once).
    pub async fn index_records_by_md5(&self, md5s: &[String]) -> Result<Vec<IndexRecord>> {
        if md5s.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM index_records WHERE did IN \
             (SELECT did FROM index_terms WHERE kind = 'hash:md5' AND {}) ORDER BY did",
            self.dialect().in_text_list("value", "$1")
        );
        let list = serde_json::to_string(md5s).expect("strings serialize");
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(&list).fetch_all(pool).await?;
            rows.iter().map(|row| record_from_row!(row)).collect()
        })
    }

    /// Which of these aliases are taken.
    pub async fn index_taken_aliases(&self, aliases: &[String]) -> Result<Vec<String>> {
        if aliases.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT alias FROM index_aliases WHERE {}",
            self.dialect().in_text_list("alias", "$1")
        );
        let list = serde_json::to_string(aliases).expect("strings serialize");
        on_pool!(self, pool => Ok(sqlx::query_scalar(&sql).bind(&list).fetch_all(pool).await?))
    }

    pub async fn index_did_of_alias(&self, alias: &str) -> Result<Option<String>> {
        on_pool!(self, pool => Ok(sqlx::query_scalar("SELECT did FROM index_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(pool)
            .await?))
    }

    /// A record's aliases, in order.
    pub async fn index_aliases(&self, did: &str) -> Result<Vec<String>> {
        on_pool!(self, pool => Ok(sqlx::query_scalar(
            "SELECT alias FROM index_aliases WHERE did = $1 ORDER BY alias",
        )
        .bind(did)
        .fetch_all(pool)
        .await?))
    }

    /// The aliases of each of `dids` (those with none are absent), in order:
    /// one statement for a page of records.
    pub async fn index_aliases_of(
        &self,
        dids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let mut out = std::collections::HashMap::<String, Vec<String>>::new();
        if dids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT did, alias FROM index_aliases WHERE {} ORDER BY did, alias",
            self.dialect().in_text_list("did", "$1")
        );
        let list = serde_json::to_string(dids).expect("strings serialize");
        let rows: Vec<(String, String)> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(&list).fetch_all(pool).await?);
        for (did, alias) in rows {
            out.entry(did).or_default().push(alias);
        }
        Ok(out)
    }

    /// Add aliases to a record (`replace`: instead of its current ones); an
    /// alias another record holds is a [`StoreError::Conflict`].
    pub async fn index_set_aliases(
        &self,
        did: &str,
        aliases: &[String],
        replace: bool,
    ) -> Result<()> {
        let insert = self.dialect().insert_or_fail();
        in_transaction!(self, conn => {
            if replace {
                sqlx::query("DELETE FROM index_aliases WHERE did = $1")
                    .bind(did)
                    .execute(&mut *conn)
                    .await?;
            }
            let held: Vec<String> =
                sqlx::query_scalar("SELECT alias FROM index_aliases WHERE did = $1")
                    .bind(did)
                    .fetch_all(&mut *conn)
                    .await?;
            let new: Vec<(&str, &str)> = aliases
                .iter()
                .filter(|a| !held.contains(a))
                .map(|a| (a.as_str(), did))
                .collect();
            insert_aliases!(conn, &new, insert);
            Ok(())
        })
    }

    /// Remove one alias of a record (or all of them); false if there was none.
    pub async fn index_delete_aliases(&self, did: &str, alias: Option<&str>) -> Result<bool> {
        let done = on_pool!(self, pool => match alias {
            Some(alias) => sqlx::query("DELETE FROM index_aliases WHERE did = $1 AND alias = $2")
                .bind(did)
                .bind(alias)
                .execute(pool)
                .await?
                .rows_affected(),
            None => sqlx::query("DELETE FROM index_aliases WHERE did = $1")
                .bind(did)
                .execute(pool)
                .await?
                .rows_affected(),
        });
        Ok(done > 0)
    }

    /// Records with a url containing every `include` and no `exclude`
    /// (`/_query/urls/q`), in did order.
    pub async fn index_query_urls(
        &self,
        include: Option<&str>,
        exclude: Option<&str>,
        version: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<IndexRecord>> {
        let mut params = Params::default();
        let mut conditions = Vec::new();
        let dialect = self.dialect();
        let kind = params.text("url");
        for (operator, part) in [("IN", include), ("NOT IN", exclude)] {
            if let Some(part) = part {
                conditions.push(format!(
                    "r.did {operator} (SELECT did FROM index_terms WHERE kind = {kind} AND {})",
                    dialect.contains("value", &params.text(part))
                ));
            }
        }
        if let Some(version) = version {
            conditions.push(format!("r.version = {}", params.text(version)));
        }
        let sql = format!(
            "SELECT {} FROM index_records r{} ORDER BY r.did LIMIT {} OFFSET {}",
            COLUMNS
                .split(", ")
                .map(|c| format!("r.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            where_clause(&conditions),
            params.push(BindValue::Int(limit)),
            params.push(BindValue::Int(offset)),
        );
        let binds = params.into_binds();
        on_pool!(self, pool => {
            let rows = bind_all!(sqlx::query(&sql), &binds).fetch_all(pool).await?;
            rows.iter().map(|row| record_from_row!(row)).collect()
        })
    }
}
