//! The statement bodies that are SQLite's own: graph writes as multi-row
//! `VALUES` and JSON arrays, count folding, export pages as one JSON
//! document. `postgres.rs` has the same functions for PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::Result;
use super::graph::*;

/// SQLite: multi-row statements; new rows as `VALUES` lists, the others as
/// one JSON array (`json_each`), since SQLite has no array parameters.
pub(super) async fn apply(
    tx: &mut sqlx::SqliteConnection,
    change: &ChangeSet,
    counted: &mut BTreeSet<Option<String>>,
) -> Result<()> {
    if !change.delete_nodes.is_empty() {
        let ids = json_list(&change.delete_nodes);
        let projects: Vec<Option<String>> = sqlx::query_scalar(
            "INSERT INTO node_counts (project_id, node_type, delta) \
             SELECT project_id, node_type, -count(*) FROM nodes \
             WHERE node_id IN (SELECT value FROM json_each($1)) \
             GROUP BY project_id, node_type RETURNING project_id",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        counted.extend(projects);
        sqlx::query(
            "DELETE FROM edges WHERE src_id IN (SELECT value FROM json_each($1)) \
             OR dst_id IN (SELECT value FROM json_each($1))",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM nodes WHERE node_id IN (SELECT value FROM json_each($1))")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
    }
    let (new, updated): (Vec<&NodeWrite>, Vec<&NodeWrite>) =
        change.nodes.iter().partition(|n| n.is_new());
    let mut seqs = stored_seqs(&updated);
    for chunk in new.chunks(SQLITE_VALUES_ROWS) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT OR FAIL INTO nodes (node_id, node_type, project_id, natural_key, props) ",
        );
        insert.push_values(chunk, |mut row, n| {
            row.push_bind(&n.id)
                .push_bind(&n.node_type)
                .push_bind(&n.project_id)
                .push_bind(&n.natural_key)
                .push_bind(props_text(&n.props));
        });
        // One statement inserts its rows in order, each with the next `seq`
        // (AUTOINCREMENT, one writer at a time), or fails whole: the last
        // row's `seq` gives them all.
        let last = insert.build().execute(&mut *tx).await?.last_insert_rowid();
        let first = last + 1 - chunk.len() as i64;
        seqs.extend(
            chunk
                .iter()
                .zip(first..)
                .map(|(n, seq)| (n.id.as_str(), seq)),
        );
    }
    let created = change.created_counts();
    if !created.is_empty() {
        sqlx::query(INSERT_COUNTS_SQLITE)
            .bind(json_rows(&created))
            .execute(&mut *tx)
            .await?;
        counted.extend(created.iter().map(|(p, _, _)| p.map(str::to_owned)));
    }
    for chunk in updated.chunks(BULK_ROWS) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|n| (&n.id, &n.natural_key, props_text(&n.props)))
            .collect();
        sqlx::query(
            "UPDATE OR FAIL nodes SET natural_key = u.value ->> '$[1]', props = u.value ->> '$[2]' \
             FROM json_each($1) AS u WHERE nodes.node_id = u.value ->> '$[0]'",
        )
        .bind(json_rows(&rows))
        .execute(&mut *tx)
        .await?;
    }
    for (src, link, kept) in &change.replace_links {
        sqlx::query(REPLACE_LINK)
            .bind(src)
            .bind(link)
            .bind(kept)
            .execute(&mut *tx)
            .await?;
    }
    for (src, link) in &change.clear_links {
        sqlx::query(CLEAR_LINK)
            .bind(src)
            .bind(link)
            .execute(&mut *tx)
            .await?;
    }
    let edges = with_source_seqs(&change.add_edges, &seqs)?;
    for chunk in edges.chunks(SQLITE_VALUES_ROWS) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT OR IGNORE INTO edges (src_id, link, dst_id, project_id, src_seq) ",
        );
        insert.push_values(chunk, |mut row, ((e, project_id), src_seq)| {
            row.push_bind(&e.src_id)
                .push_bind(&e.link)
                .push_bind(&e.dst_id)
                .push_bind(project_id)
                .push_bind(src_seq);
        });
        insert.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Rows per multi-row `INSERT … VALUES` on SQLite. New nodes and edges are
/// bound as parameters (at most 25,000 of SQLite's 32,766 per statement) rather
/// than sent as one JSON array: reading rows back out of JSON took a tenth of
/// the writer's time in a large upload. A whole upload chunk is one statement
/// (fewer round trips to the connection's thread: 100,000 samples went from
/// 45,000 to 52,000 a second with 500 rows a statement), and full chunks share
/// one prepared statement.
///
/// The inserts are `OR FAIL` / `OR IGNORE`, not the default `ABORT`: an
/// aborting multi-row statement makes SQLite copy every page it touches into a
/// statement journal first, so that it can undo just that statement. Commons
/// never continues a transaction after a failed statement (the whole request
/// is rolled back), so that copy was pure cost. Together, the two changes took
/// a fifth off the writer's time in a large upload.
const SQLITE_VALUES_ROWS: usize = 5000;

/// Count rows `(project, type, delta)` arriving as one JSON array (SQLite).
const INSERT_COUNTS_SQLITE: &str = "INSERT INTO node_counts (project_id, node_type, delta) \
    SELECT value ->> '$[0]', value ->> '$[1]', value ->> '$[2]' FROM json_each($1)";

/// SQLite's fold: it has no DELETE inside a statement, so the deleted rows come
/// back to be summed here (the write lock keeps other writers out meanwhile).
pub(super) async fn fold_counts(
    tx: &mut sqlx::SqliteConnection,
    project: Option<&str>,
) -> Result<()> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("DELETE FROM node_counts WHERE project_id IS $1 RETURNING node_type, delta")
            .bind(project)
            .fetch_all(&mut *tx)
            .await?;
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for (node_type, delta) in &rows {
        *sums.entry(node_type).or_default() += delta;
    }
    let folded: Vec<_> = sums
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(t, n)| (project, t, n))
        .collect();
    sqlx::query(INSERT_COUNTS_SQLITE)
        .bind(json_rows(&folded))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// See [`Store::export_page`]: the page as one JSON array of
/// `[seq, id, type, project, props, [[link, target id], ...]]`, each row
/// formatted in one pass (`format`; a chain of `||` copied the growing row
/// once per operator), since the stored properties are JSON text already
/// (`json()` would parse each document again: a tenth of an export). Neither
/// aggregate has an `ORDER BY`: SQLite sorts an ordered aggregate's rows
/// through a temporary B-tree; the rows and links are put in order in Rust instead.
const EXPORT_PAGE_SQLITE: &str = "SELECT '[' || coalesce(group_concat(format('[%d,%s,%s,%s,%s,%s]', \
    p.seq, json_quote(p.node_id), json_quote(p.node_type), json_quote(p.project_id), p.props, \
    coalesce((SELECT '[' || group_concat(json_array(e.link, e.dst_id)) || ']' \
       FROM edges e WHERE e.src_seq = p.seq), '[]'))), '') || ']' \
    FROM (SELECT seq, node_id, node_type, project_id, props FROM nodes \
          WHERE node_type = $1 AND project_id = $2 AND seq > $3 AND seq <= $4) p";

/// The key value (JSON text) of each node among `$1` (a JSON array of ids),
/// `$2` mapping a node type to its key property: once per distinct target of
/// an export page, where a page's thousands of links often share a few.
const TARGET_KEYS_SQLITE: &str = "SELECT t.node_id, \
    t.props -> ('$.\"' || json_extract($2, '$.\"' || t.node_type || '\"') || '\"') \
    FROM json_each($1) j JOIN nodes t ON t.node_id = j.value";

/// A page of an export (see [`Store::export_page`]): its nodes with their
/// links, read from one JSON document, and the key values of the targets.
pub(super) async fn export_page_rows(
    pool: &sqlx::SqlitePool,
    node_type: &str,
    project_id: &str,
    (after_seq, through_seq): (i64, i64),
    target_keys: String,
) -> Result<ExportRows> {
    let mut tx = pool.begin().await?;
    let text: String = sqlx::query_scalar(EXPORT_PAGE_SQLITE)
        .bind(node_type)
        .bind(project_id)
        .bind(after_seq)
        .bind(through_seq)
        .fetch_one(&mut *tx)
        .await?;
    type PageRow = (
        i64,
        String,
        String,
        Option<String>,
        Map<String, Value>,
        Vec<(String, String)>,
    );
    let rows: Vec<PageRow> = serde_json::from_str(&text)?;
    let page: Vec<(NodeRow, Vec<(String, String)>)> = rows
        .into_iter()
        .map(|(seq, id, node_type, project_id, props, links)| {
            let node = NodeRow {
                seq,
                id,
                node_type,
                project_id,
                props,
            };
            (node, links)
        })
        .collect();
    let keys: Vec<(String, Option<String>)> = sqlx::query_as(TARGET_KEYS_SQLITE)
        .bind(json_rows(&distinct_targets(&page)))
        .bind(target_keys)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((page, keys))
}
