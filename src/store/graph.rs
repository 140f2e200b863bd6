//! Nodes, edges and transaction logs.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store};

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

/// A stored edge from a child (`src`) to a parent (`dst`) via link `link`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edge {
    pub src_id: String,
    pub link: String,
    pub dst_id: String,
}

/// The transaction log row written for every submission or deletion.
#[derive(Debug, Clone)]
pub struct TransactionRecord {
    pub project_id: Option<String>,
    pub role: String,
    pub is_dry_run: bool,
    pub state: String,
    pub submitter: Option<String>,
    pub entity_count: i64,
}

/// A node to insert or replace.
#[derive(Debug, Clone)]
pub struct NodeWrite {
    pub id: String,
    pub node_type: String,
    pub project_id: Option<String>,
    pub natural_key: Option<String>,
    pub props: Map<String, Value>,
    pub is_new: bool,
}

/// Everything one request changes, applied in one database transaction.
#[derive(Debug, Default)]
pub struct ChangeSet {
    pub nodes: Vec<NodeWrite>,
    pub add_edges: Vec<(Edge, Option<String>)>,
    /// `(src, link, kept_dst)`: a to-one link now points only at `kept_dst`.
    pub replace_links: Vec<(String, String, String)>,
    /// Node ids to delete together with every edge touching them.
    pub delete_nodes: Vec<String>,
}

fn node_from_row(row: &SqliteRow) -> Result<NodeRow> {
    let props: String = row.try_get("props")?;
    let props = match serde_json::from_str(&props)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Ok(NodeRow {
        seq: row.try_get("seq")?,
        id: row.try_get("node_id")?,
        node_type: row.try_get("node_type")?,
        project_id: row.try_get("project_id")?,
        props,
    })
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings serializes")
}

const NODE_COLUMNS: &str = "seq, node_id, node_type, project_id, props";

impl Store {
    pub async fn nodes_by_ids(&self, ids: &[String]) -> Result<Vec<NodeRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE node_id IN (SELECT value FROM json_each(?1)) ORDER BY seq"
        );
        let rows = sqlx::query(&sql)
            .bind(json_list(ids))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node_from_row).collect()
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
        let sql = format!(
            "SELECT natural_key, {NODE_COLUMNS} FROM nodes \
             WHERE node_type = ?1 AND natural_key IN (SELECT value FROM json_each(?2))"
        );
        let rows = sqlx::query(&sql)
            .bind(node_type)
            .bind(json_list(keys))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("natural_key")?, node_from_row(r)?)))
            .collect()
    }

    /// Nodes of one type in one project, in insertion order, after `after_seq`.
    pub async fn nodes_page(
        &self,
        node_type: &str,
        project_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<NodeRow>> {
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE node_type = ?1 AND project_id = ?2 AND seq > ?3 \
             ORDER BY seq LIMIT ?4"
        );
        let rows = sqlx::query(&sql)
            .bind(node_type)
            .bind(project_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    /// All nodes of a type (programs, projects).
    pub async fn nodes_of_type(&self, node_type: &str) -> Result<Vec<NodeRow>> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE node_type = ?1 ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(node_type)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node_from_row).collect()
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
        let rows = sqlx::query(
            "SELECT e.src_id, e.link, e.dst_id, n.node_type FROM edges e JOIN nodes n ON n.node_id = e.src_id \
             WHERE e.dst_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(dst_ids))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let edge = Edge {
                    src_id: r.try_get("src_id")?,
                    link: r.try_get("link")?,
                    dst_id: r.try_get("dst_id")?,
                };
                Ok((edge, r.try_get("node_type")?))
            })
            .collect()
    }

    async fn edges_where(&self, column: &str, ids: &[String]) -> Result<Vec<Edge>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT src_id, link, dst_id FROM edges WHERE {column} IN (SELECT value FROM json_each(?1))"
        );
        let rows = sqlx::query(&sql)
            .bind(json_list(ids))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Edge {
                    src_id: r.try_get("src_id")?,
                    link: r.try_get("link")?,
                    dst_id: r.try_get("dst_id")?,
                })
            })
            .collect()
    }

    /// Number of nodes whose `project_id` is `project_id`, the project node itself excluded.
    pub async fn count_project_nodes(&self, project_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM nodes WHERE project_id = ?1 AND node_type <> 'project'",
        )
        .bind(project_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Record a transaction that changes nothing (failed or dry run); returns its id.
    pub async fn log_transaction(&self, record: &TransactionRecord) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        insert_transaction(&mut conn, record).await
    }

    /// Take the write lock: validate under it, then [`Store::write`], so no
    /// other request changes the graph between the checks and the commit.
    pub async fn lock_writes(&self) -> WriteGuard<'_> {
        WriteGuard(self.write_lock.lock().await)
    }

    /// Apply a change set and its transaction log row atomically; returns the log id.
    pub async fn write(
        &self,
        _guard: &WriteGuard<'_>,
        change: &ChangeSet,
        record: &TransactionRecord,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        if !change.delete_nodes.is_empty() {
            let ids = json_list(&change.delete_nodes);
            sqlx::query(
                "DELETE FROM edges WHERE src_id IN (SELECT value FROM json_each(?1)) \
                 OR dst_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM nodes WHERE node_id IN (SELECT value FROM json_each(?1))")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        for node in &change.nodes {
            let props = Value::Object(node.props.clone()).to_string();
            if node.is_new {
                sqlx::query(
                    "INSERT INTO nodes (node_id, node_type, project_id, natural_key, props) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(&node.id)
                .bind(&node.node_type)
                .bind(&node.project_id)
                .bind(&node.natural_key)
                .bind(props)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("UPDATE nodes SET natural_key = ?2, props = ?3 WHERE node_id = ?1")
                    .bind(&node.id)
                    .bind(&node.natural_key)
                    .bind(props)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (src, link, kept) in &change.replace_links {
            sqlx::query("DELETE FROM edges WHERE src_id = ?1 AND link = ?2 AND dst_id <> ?3")
                .bind(src)
                .bind(link)
                .bind(kept)
                .execute(&mut *tx)
                .await?;
        }
        for (edge, project_id) in &change.add_edges {
            sqlx::query(
                "INSERT OR IGNORE INTO edges (src_id, link, dst_id, project_id) VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(&edge.src_id)
            .bind(&edge.link)
            .bind(&edge.dst_id)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        }
        let id = insert_transaction(&mut tx, record).await?;
        tx.commit().await?;
        Ok(id)
    }
}

async fn insert_transaction(
    conn: &mut sqlx::SqliteConnection,
    record: &TransactionRecord,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO transactions (project_id, role, is_dry_run, state, submitter, created_datetime, entity_count) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
    )
    .bind(&record.project_id)
    .bind(&record.role)
    .bind(record.is_dry_run)
    .bind(&record.state)
    .bind(&record.submitter)
    .bind(crate::timestamp())
    .bind(record.entity_count)
    .fetch_one(conn)
    .await?;
    Ok(id)
}
