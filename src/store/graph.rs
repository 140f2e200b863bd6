//! Nodes, edges and transaction logs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};
use sqlx::Row;

use super::{Pool, Result, Store, StoreError, Upkeep, on_pool, postgres, sqlite};

/// Proof that the caller holds the store's write lock.
pub struct WriteGuard<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

/// A stored node: its identity and its property document.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub seq: i64,
    pub id: String,
    pub node_type: String,
    pub project_id: Option<String>,
    pub props: Map<String, Value>,
}

/// Where a stored node is, without its properties.
#[derive(Debug, Clone)]
pub struct NodeRef {
    pub id: String,
    pub node_type: String,
    pub project_id: Option<String>,
}

/// An outgoing link of an exported node: (link, target id, the target's key value).
pub type LinkTarget = (String, String, Value);

/// A stored edge from a child (`src`) to a parent (`dst`) via link `link`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edge {
    pub src_id: String,
    pub link: String,
    pub dst_id: String,
}

/// The transaction log (audit trail) row written for every submission,
/// deletion and program/project change: who, when, what, and how it ended.
#[derive(Debug, Clone)]
pub struct TransactionRecord {
    pub program: String,
    /// The project's code; None for a program's own changes.
    pub project: Option<String>,
    pub role: String,
    pub is_dry_run: bool,
    pub state: String,
    pub submitter: Option<String>,
    /// Ids of the entities the request named (assigned ones included).
    pub entity_ids: EntityIds,
    /// The request body, as sheepdog keeps it with the transaction.
    pub document: Option<TransactionDocument>,
}

impl TransactionRecord {
    /// A succeeded, non-dry-run transaction of `role` in a program or project.
    pub fn new(program: &str, project: Option<&str>, role: &str, submitter: &str) -> Self {
        Self {
            program: program.to_string(),
            project: project.map(str::to_string),
            role: role.to_string(),
            is_dry_run: false,
            state: "SUCCEEDED".into(),
            submitter: Some(submitter.to_string()),
            entity_ids: EntityIds::default(),
            document: None,
        }
    }

    /// `<program>-<project>`, or None for a program's own changes.
    pub fn project_id(&self) -> Option<String> {
        self.project
            .as_ref()
            .map(|code| format!("{}-{code}", self.program))
    }
}

/// A request body kept with its transaction: its format (`JSON`, `TSV`,
/// `CSV`), its size, and its text when no larger than [`KEPT_DOCUMENT_BYTES`].
#[derive(Debug, Clone, Default)]
pub struct TransactionDocument {
    pub format: String,
    pub size: i64,
    pub text: Option<String>,
}

/// The largest request body or reply kept whole in the transaction log.
pub const KEPT_DOCUMENT_BYTES: usize = 1 << 20;

/// The ids a transaction names, kept as the JSON list they are stored as:
/// a request of a million entities needs one string, not a million.
#[derive(Debug, Clone, Default)]
pub struct EntityIds {
    count: usize,
    json: String,
}

impl EntityIds {
    pub fn new<T: AsRef<str>>(ids: impl IntoIterator<Item = T>) -> Self {
        let mut list = Self::default();
        for id in ids {
            list.push(id);
        }
        list
    }

    pub fn push(&mut self, id: impl AsRef<str>) {
        self.json.push(if self.count == 0 { '[' } else { ',' });
        self.json
            .push_str(&serde_json::to_string(id.as_ref()).expect("a string serializes"));
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The JSON list.
    fn to_json(&self) -> String {
        if self.count == 0 {
            "[]".into()
        } else {
            format!("{}]", self.json)
        }
    }
}

/// A node to insert or replace.
#[derive(Debug, Clone)]
pub struct NodeWrite {
    pub id: String,
    pub node_type: String,
    pub project_id: Option<String>,
    pub natural_key: Option<String>,
    pub props: Map<String, Value>,
    /// The stored node's `seq` when this replaces it; `None` for a new node.
    pub stored_seq: Option<i64>,
}

impl NodeWrite {
    pub fn is_new(&self) -> bool {
        self.stored_seq.is_none()
    }
}

/// Everything one request changes, applied in one database transaction.
#[derive(Debug, Default)]
pub struct ChangeSet {
    pub nodes: Vec<NodeWrite>,
    /// Edges from `nodes`, with their project; none twice (an upload resolves
    /// a link's targets without repeats).
    pub add_edges: Vec<(Edge, Option<String>)>,
    /// `(src, link, kept_dst)`: a to-one link now points only at `kept_dst`.
    pub replace_links: Vec<(String, String, String)>,
    /// `(src, link)`: the stored node no longer links through `link` at all.
    pub clear_links: Vec<(String, String)>,
    /// Node ids to delete together with every edge touching them.
    pub delete_nodes: Vec<String>,
    /// File index records the nodes bring (data-file nodes, FILES.md §1.6).
    pub index: Vec<super::IndexWrite>,
}

/// Decode a row selected with [`Store::node_columns`] (any backend).
macro_rules! node_from_row {
    ($row:expr) => {{
        let row = $row;
        let props: String = row.try_get("props")?;
        let props = match serde_json::from_str(&props)? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Ok::<NodeRow, StoreError>(NodeRow {
            seq: row.try_get("seq")?,
            id: row.try_get("node_id")?,
            node_type: row.try_get("node_type")?,
            project_id: row.try_get("project_id")?,
            props,
        })
    }};
}

/// Decode a row of `node_id, node_type, project_id` (any backend).
macro_rules! node_ref_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<NodeRef, StoreError>(NodeRef {
            id: row.try_get("node_id")?,
            node_type: row.try_get("node_type")?,
            project_id: row.try_get("project_id")?,
        })
    }};
}

/// Insert the transaction log row (any backend's executor); evaluates to its id.
macro_rules! insert_transaction_row {
    ($executor:expr, $record:expr) => {{
        let record = $record;
        let document = record.document.as_ref();
        let id: i64 = sqlx::query_scalar(INSERT_TRANSACTION)
            .bind(record.project_id())
            .bind(&record.role)
            .bind(record.is_dry_run)
            .bind(&record.state)
            .bind(&record.submitter)
            .bind(crate::time::timestamp())
            .bind(record.entity_ids.count as i64)
            .bind(record.entity_ids.to_json())
            .bind(&record.program)
            .bind(&record.project)
            .bind(document.map(|d| d.format.as_str()))
            .bind(document.and_then(|d| d.text.as_deref()))
            .bind(document.map(|d| d.size))
            .fetch_one($executor)
            .await?;
        id
    }};
}

macro_rules! edge_from_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<Edge, StoreError>(Edge {
            src_id: row.try_get("src_id")?,
            link: row.try_get("link")?,
            dst_id: row.try_get("dst_id")?,
        })
    }};
}

pub(super) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings serializes")
}

impl Store {
    fn node_columns(&self) -> String {
        format!(
            "seq, node_id, node_type, project_id, {} AS props",
            self.dialect().props_text()
        )
    }

    pub async fn nodes_by_ids(&self, ids: &[String]) -> Result<Vec<NodeRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM nodes WHERE {} ORDER BY seq",
            self.node_columns(),
            self.dialect().in_text_list("node_id", "$1")
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(json_list(ids)).fetch_all(pool).await?;
            rows.iter().map(|r| node_from_row!(r)).collect()
        })
    }

    /// Where nodes are, by id, without their properties: enough to link to them.
    pub async fn node_refs_by_ids(&self, ids: &[String]) -> Result<Vec<NodeRef>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT node_id, node_type, project_id FROM nodes WHERE {}",
            self.dialect().in_text_list("node_id", "$1")
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(json_list(ids)).fetch_all(pool).await?;
            rows.iter().map(|r| node_ref_from_row!(r)).collect()
        })
    }

    /// Where nodes of one type are, by lower-cased natural key, without their
    /// properties.
    pub async fn node_refs_by_natural_keys(
        &self,
        node_type: &str,
        keys: &[String],
    ) -> Result<Vec<(String, NodeRef)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self
            .dialect()
            .natural_key_lookup("node_id, node_type, project_id");
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(json_list(keys)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get("natural_key")?, node_ref_from_row!(r)?)))
                .collect::<Result<Vec<(String, NodeRef)>>>()
        })?;
        Ok(rows
            .into_iter()
            .filter(|(_, node)| node.node_type == node_type)
            .collect())
    }

    /// Nodes of one type by lower-cased natural key.
    pub async fn nodes_by_natural_keys(
        &self,
        node_type: &str,
        keys: &[String],
    ) -> Result<Vec<(String, NodeRow)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.dialect().natural_key_lookup(&self.node_columns());
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(json_list(keys)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get("natural_key")?, node_from_row!(r)?)))
                .collect::<Result<Vec<(String, NodeRow)>>>()
        })?;
        Ok(rows
            .into_iter()
            .filter(|(_, node)| node.node_type == node_type)
            .collect())
    }

    /// Where a page of at most `limit` of a project's nodes of one type that
    /// starts after `after_seq` ends: its last `seq`, or `None` past the last
    /// node. An index-only scan, so pages can be read in parallel.
    pub async fn page_end(
        &self,
        node_type: &str,
        project_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Option<i64>> {
        let sql = "SELECT max(seq) FROM (SELECT seq FROM nodes \
             WHERE node_type = $1 AND project_id = $2 AND seq > $3 ORDER BY seq LIMIT $4) AS page";
        match &self.pool {
            Pool::Sqlite(pool) => Ok(sqlx::query_scalar(sql)
                .bind(node_type)
                .bind(project_id)
                .bind(after_seq)
                .bind(limit)
                .fetch_one(self.sqlite_exports(pool))
                .await?),
            Pool::Postgres(pool) => Ok(sqlx::query_scalar(sql)
                .bind(node_type)
                .bind(project_id)
                .bind(after_seq)
                .bind(limit)
                .fetch_one(pool)
                .await?),
        }
    }

    /// The connections exports read through on SQLite.
    fn sqlite_exports<'p>(&'p self, pool: &'p sqlx::SqlitePool) -> &'p sqlx::SqlitePool {
        self.sqlite_dedicated.as_ref().map_or(pool, |d| &d.exports)
    }

    /// A project's nodes of one type with `seq` in `(after_seq, through_seq]`,
    /// in `seq` order, each with its outgoing links as `(link, target id,
    /// target's key value)` ordered by link and target, where `target_keys`
    /// maps a target type to the property that names it.
    ///
    /// Two statements in one read transaction: the page's nodes with their
    /// links, then the key values of the page's distinct targets (often a
    /// handful for thousands of links; joining a target per link was 40% of
    /// the page statement). SQLite returns the page as one JSON document (no
    /// hand-off per row between its thread and the runtime); PostgreSQL a row
    /// per (node, link), since building JSON there cost four times the join.
    pub async fn export_page(
        &self,
        node_type: &str,
        project_id: &str,
        (after_seq, through_seq): (i64, i64),
        target_keys: &Value,
    ) -> Result<Vec<(NodeRow, Vec<LinkTarget>)>> {
        let target_keys = target_keys.to_string();
        let (mut page, keys) = match &self.pool {
            Pool::Sqlite(pool) => {
                let pool = self.sqlite_exports(pool);
                sqlite::export_page_rows(
                    pool,
                    node_type,
                    project_id,
                    (after_seq, through_seq),
                    target_keys,
                )
                .await?
            }
            Pool::Postgres(pool) => {
                postgres::export_page_rows(
                    pool,
                    node_type,
                    project_id,
                    (after_seq, through_seq),
                    target_keys,
                )
                .await?
            }
        };
        let keys = keys
            .into_iter()
            .map(|(id, key)| {
                let key = key.map_or(Ok(Value::Null), |text| serde_json::from_str(&text));
                Ok((id, key?))
            })
            .collect::<Result<HashMap<String, Value>>>()?;
        page.sort_unstable_by_key(|(node, _)| node.seq);
        Ok(page
            .into_iter()
            .map(|(node, links)| {
                let mut links: Vec<LinkTarget> = links
                    .into_iter()
                    .filter_map(|(link, target)| {
                        let key = keys.get(&target)?.clone();
                        Some((link, target, key))
                    })
                    .collect();
                links.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                (node, links)
            })
            .collect())
    }

    /// All nodes of a type (programs, projects).
    pub async fn nodes_of_type(&self, node_type: &str) -> Result<Vec<NodeRow>> {
        let sql = format!(
            "SELECT {} FROM nodes WHERE node_type = $1 ORDER BY seq",
            self.node_columns()
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(node_type).fetch_all(pool).await?;
            rows.iter().map(|r| node_from_row!(r)).collect()
        })
    }

    /// Edges leaving the given nodes.
    pub async fn edges_from(&self, src_ids: &[String]) -> Result<Vec<Edge>> {
        self.edges_where("src_id", src_ids).await
    }

    /// Edges arriving at the given nodes.
    pub async fn edges_to(&self, dst_ids: &[String]) -> Result<Vec<Edge>> {
        self.edges_where("dst_id", dst_ids).await
    }

    /// Edges arriving at the given nodes, with the type of each source node.
    pub async fn incoming_edges(&self, dst_ids: &[String]) -> Result<Vec<(Edge, String)>> {
        if dst_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT e.src_id, e.link, e.dst_id, n.node_type FROM edges e JOIN nodes n ON n.node_id = e.src_id WHERE {}",
            self.dialect().in_text_list("e.dst_id", "$1")
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(json_list(dst_ids)).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((edge_from_row!(r)?, r.try_get("node_type")?)))
                .collect()
        })
    }

    async fn edges_where(&self, column: &str, ids: &[String]) -> Result<Vec<Edge>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT src_id, link, dst_id FROM edges WHERE {}",
            self.dialect().in_text_list(column, "$1")
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(json_list(ids)).fetch_all(pool).await?;
            rows.iter().map(|r| edge_from_row!(r)).collect()
        })
    }

    /// Number of nodes whose `project_id` is `project_id`, the project node itself excluded.
    pub async fn count_project_nodes(&self, project_id: &str) -> Result<i64> {
        on_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT count(*) FROM nodes WHERE project_id = $1 AND node_type <> 'project'",
            )
            .bind(project_id)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Record a transaction that changes nothing (failed or dry run); returns its id.
    pub async fn log_transaction(&self, record: &TransactionRecord) -> Result<i64> {
        on_pool!(self, pool => Ok(insert_transaction_row!(pool, record)))
    }

    /// Keep a transaction's reply (its envelope) with it.
    pub async fn record_response(&self, transaction_id: i64, response_json: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE transactions SET response_json = $1 WHERE id = $2")
                .bind(response_json)
                .bind(transaction_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Problems found by the database's own check (SQLite's `integrity_check`)
    /// and by ours: edges whose ends do not exist. Empty when all is well.
    pub async fn integrity_problems(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        if let Pool::Sqlite(pool) = &self.pool {
            let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_all(pool)
                .await?;
            problems.extend(rows.into_iter().filter(|r| r != "ok"));
        }
        let dangling: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT count(*) FROM edges e WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = e.src_id) \
             OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = e.dst_id) \
             OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = e.src_id AND n.seq = e.src_seq)",
        )
        .fetch_one(pool)
        .await?);
        if dangling > 0 {
            problems.push(format!(
                "{dangling} edges point at missing nodes or carry the wrong source seq"
            ));
        }
        let miscounted: i64 = on_pool!(self, pool => sqlx::query_scalar(MISCOUNTED_TYPES)
            .fetch_one(pool)
            .await?);
        if miscounted > 0 {
            problems.push(format!(
                "{miscounted} node counts (project and type) differ from the nodes stored"
            ));
        }
        Ok(problems)
    }

    /// Take the write lock: validate under it, then [`Store::write`], so no
    /// other request of this process changes the graph between checks and commit.
    pub async fn lock_writes(&self) -> WriteGuard<'_> {
        WriteGuard(self.write_lock.lock().await)
    }

    /// Apply a change set and its transaction log row atomically; returns the log id.
    pub async fn write(
        &self,
        guard: &WriteGuard<'_>,
        change: &ChangeSet,
        record: &TransactionRecord,
    ) -> Result<i64> {
        let mut writer = self.begin_write(guard).await?;
        writer.apply(change).await?;
        writer.commit(record).await
    }

    /// Open one database transaction that several change sets go into, for a
    /// submission that arrives chunk by chunk: nothing is visible to others
    /// until [`Writer::commit`], and dropping the writer rolls everything back.
    /// On SQLite it holds the database's write lock until then.
    pub async fn begin_write(&self, _guard: &WriteGuard<'_>) -> Result<Writer> {
        let waiting = std::time::Instant::now();
        let tx = match &self.pool {
            Pool::Sqlite(pool) => {
                let writes = self.sqlite_dedicated.as_ref().map_or(pool, |d| &d.writes);
                Transaction::Sqlite(writes.begin().await?)
            }
            Pool::Postgres(pool) => Transaction::Postgres(pool.begin().await?),
        };
        metrics::histogram!("commons_db_acquire_seconds", "pool" => "writes")
            .record(waiting.elapsed());
        Ok(Writer {
            tx,
            counted: BTreeSet::new(),
            upkeep: self.upkeep.clone(),
            entities: 0,
        })
    }
}

/// An open write transaction (see [`Store::begin_write`]).
pub struct Writer {
    tx: Transaction,
    /// Projects whose node counts this transaction changed (see [`fold_counts`]).
    counted: BTreeSet<Option<String>>,
    /// Told at commit how many entities were written or deleted.
    upkeep: Upkeep,
    /// Entities written or deleted so far.
    entities: usize,
}

enum Transaction {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Writer {
    /// Add a change set to the transaction.
    pub async fn apply(&mut self, change: &ChangeSet) -> Result<()> {
        self.entities += change.nodes.len() + change.delete_nodes.len();
        match &mut self.tx {
            Transaction::Sqlite(tx) => {
                sqlite::apply(tx, change, &mut self.counted).await?;
                super::file_index::apply_sqlite(tx, &change.index).await
            }
            Transaction::Postgres(tx) => {
                postgres::apply(tx, change, &mut self.counted).await?;
                super::file_index::apply_postgres(tx, &change.index).await
            }
        }
    }

    /// Fold the node counts, write the transaction log row and commit;
    /// returns the log id.
    pub async fn commit(self, record: &TransactionRecord) -> Result<i64> {
        let id = match self.tx {
            Transaction::Sqlite(mut tx) => {
                for project in &self.counted {
                    sqlite::fold_counts(&mut tx, project.as_deref()).await?;
                }
                let id = insert_transaction_row!(&mut *tx, record);
                tx.commit().await?;
                id
            }
            Transaction::Postgres(mut tx) => {
                // In one order, so two writers folding the same projects never deadlock.
                for project in &self.counted {
                    postgres::fold_counts(&mut tx, project.as_deref()).await?;
                }
                let id = insert_transaction_row!(&mut *tx, record);
                tx.commit().await?;
                id
            }
        };
        self.upkeep.committed(self.entities);
        metrics::counter!("commons_submission_rows_total").increment(self.entities as u64);
        Ok(id)
    }
}

impl ChangeSet {
    /// `(project, type, +n)` for the nodes this change set creates.
    pub(super) fn created_counts(&self) -> Vec<(Option<&str>, &str, i64)> {
        let mut counts: BTreeMap<(Option<&str>, &str), i64> = BTreeMap::new();
        for node in self.nodes.iter().filter(|n| n.is_new()) {
            *counts
                .entry((node.project_id.as_deref(), node.node_type.as_str()))
                .or_default() += 1;
        }
        counts.into_iter().map(|((p, t), n)| (p, t, n)).collect()
    }
}

/// Rows per multi-row statement whose rows travel as arrays (PostgreSQL) or
/// as one JSON array (SQLite's updates).
pub(super) const BULK_ROWS: usize = 5000;

/// An export page as read: nodes with their `(link, target id)` pairs, and
/// `(target id, key value as JSON text)`.
pub(super) type ExportRows = (
    Vec<(NodeRow, Vec<(String, String)>)>,
    Vec<(String, Option<String>)>,
);

/// An edge to add, its project, and its source node's `seq`.
pub(super) type EdgeWithSeq<'c> = (&'c (Edge, Option<String>), i64);

/// The `seq` of each node a change set replaces, by id.
pub(super) fn stored_seqs<'c>(updated: &[&'c NodeWrite]) -> HashMap<&'c str, i64> {
    updated
        .iter()
        .filter_map(|n| Some((n.id.as_str(), n.stored_seq?)))
        .collect()
}

/// Each edge with its source's `seq`, which the change set wrote: known for
/// the nodes it replaced, returned by the inserts for the new ones. Finding
/// it by the source's id in the database cost a seek by UUID per edge.
pub(super) fn with_source_seqs<'c>(
    edges: &'c [(Edge, Option<String>)],
    seqs: &HashMap<&str, i64>,
) -> Result<Vec<EdgeWithSeq<'c>>> {
    edges
        .iter()
        .map(|edge| match seqs.get(edge.0.src_id.as_str()) {
            Some(seq) => Ok((edge, *seq)),
            None => Err(StoreError::Other(format!(
                "an edge from {}, which this change set does not write",
                edge.0.src_id
            ))),
        })
        .collect()
}

/// Pairs of (project, type) whose maintained count is not the number of nodes.
pub(super) const MISCOUNTED_TYPES: &str = "WITH \
    stored AS (SELECT project_id, node_type, count(*) AS n FROM nodes GROUP BY project_id, node_type), \
    counted AS (SELECT project_id, node_type, CAST(sum(delta) AS BIGINT) AS n FROM node_counts \
                GROUP BY project_id, node_type HAVING sum(delta) <> 0) \
    SELECT (SELECT count(*) FROM (SELECT * FROM stored EXCEPT SELECT * FROM counted) AS missing) \
         + (SELECT count(*) FROM (SELECT * FROM counted EXCEPT SELECT * FROM stored) AS extra)";

pub(super) const REPLACE_LINK: &str =
    "DELETE FROM edges WHERE src_id = $1 AND link = $2 AND dst_id <> $3";

pub(super) const CLEAR_LINK: &str = "DELETE FROM edges WHERE src_id = $1 AND link = $2";

pub(super) const INSERT_TRANSACTION: &str = "INSERT INTO transactions \
    (project_id, role, is_dry_run, state, submitter, created_datetime, entity_count, entity_ids, \
     program, project, doc_format, doc, doc_size) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";

/// The distinct targets of a page's links.
pub(super) fn distinct_targets(page: &[(NodeRow, Vec<(String, String)>)]) -> Vec<&str> {
    let targets: HashSet<&str> = page
        .iter()
        .flat_map(|(_, links)| links.iter().map(|(_, target)| target.as_str()))
        .collect();
    targets.into_iter().collect()
}

/// Rows (tuples) as the JSON array of arrays that `json_each` reads.
pub(super) fn json_rows(rows: &impl serde::Serialize) -> String {
    serde_json::to_string(rows).expect("rows of strings serialize")
}

/// A property document as stored text.
pub(super) fn props_text(props: &Map<String, Value>) -> String {
    serde_json::to_string(props).expect("a JSON map serializes")
}
