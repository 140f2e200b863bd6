//! The statement bodies that are PostgreSQL's own: graph writes over
//! arrays (`UNNEST`), count folding in one statement, export pages a row
//! per (node, link). `sqlite.rs` has the same functions for SQLite.

use std::collections::{BTreeSet, HashSet};

use sqlx::Row;

use super::Result;
use super::graph::*;

/// PostgreSQL: multi-row statements over arrays (`UNNEST`), a few round trips
/// per request however many entities it holds.
pub(super) async fn apply(
    tx: &mut sqlx::PgConnection,
    change: &ChangeSet,
    counted: &mut BTreeSet<Option<String>>,
) -> Result<()> {
    if !change.delete_nodes.is_empty() {
        sqlx::query("DELETE FROM edges WHERE src_id = ANY($1) OR dst_id = ANY($1)")
            .bind(&change.delete_nodes)
            .execute(&mut *tx)
            .await?;
        // Counted from the rows this statement deleted: a node that another
        // instance deletes at the same moment is subtracted once, by the winner.
        let projects: Vec<Option<String>> = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM nodes WHERE node_id = ANY($1) RETURNING project_id, node_type) \
             INSERT INTO node_counts (project_id, node_type, delta) \
             SELECT project_id, node_type, -count(*) FROM gone \
             GROUP BY project_id, node_type RETURNING project_id",
        )
        .bind(&change.delete_nodes)
        .fetch_all(&mut *tx)
        .await?;
        counted.extend(projects);
    }
    let (new, updated): (Vec<&NodeWrite>, Vec<&NodeWrite>) =
        change.nodes.iter().partition(|n| n.is_new());
    let mut seqs = stored_seqs(&updated);
    let mut new_seqs: Vec<(String, i64)> = Vec::with_capacity(new.len());
    for chunk in new.chunks(BULK_ROWS) {
        let column =
            |f: fn(&NodeWrite) -> Option<String>| chunk.iter().map(|n| f(n)).collect::<Vec<_>>();
        new_seqs.extend(
            sqlx::query_as::<_, (String, i64)>(
                "INSERT INTO nodes (node_id, node_type, project_id, natural_key, props) \
                 SELECT id, t, p, k, j::jsonb FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                 WITH ORDINALITY AS u(id, t, p, k, j, ord) ORDER BY ord RETURNING node_id, seq",
            )
            .bind(column(|n| Some(n.id.clone())))
            .bind(column(|n| Some(n.node_type.clone())))
            .bind(column(|n| n.project_id.clone()))
            .bind(column(|n| n.natural_key.clone()))
            .bind(column(|n| Some(props_text(&n.props))))
            .fetch_all(&mut *tx)
            .await?,
        );
    }
    seqs.extend(new_seqs.iter().map(|(id, seq)| (id.as_str(), *seq)));
    let created = change.created_counts();
    if !created.is_empty() {
        sqlx::query(
            "INSERT INTO node_counts (project_id, node_type, delta) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])",
        )
        .bind(created.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(created.iter().map(|c| c.1).collect::<Vec<_>>())
        .bind(created.iter().map(|c| c.2).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        counted.extend(created.iter().map(|(p, _, _)| p.map(str::to_owned)));
    }
    for chunk in updated.chunks(BULK_ROWS) {
        let ids: Vec<&str> = chunk.iter().map(|n| n.id.as_str()).collect();
        let keys: Vec<Option<&str>> = chunk.iter().map(|n| n.natural_key.as_deref()).collect();
        let props: Vec<String> = chunk.iter().map(|n| props_text(&n.props)).collect();
        sqlx::query(
            "UPDATE nodes SET natural_key = u.k, props = u.j::jsonb \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(id, k, j) WHERE nodes.node_id = u.id",
        )
        .bind(ids)
        .bind(keys)
        .bind(props)
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
    // A new node's edges cannot be stored yet: they go in without the check
    // for an existing row that ON CONFLICT makes per row (a tenth of the
    // database's time in a large upload). An updated node's edges may be
    // stored already.
    let edges = with_source_seqs(&change.add_edges, &seqs)?;
    let stored: HashSet<&str> = updated.iter().map(|n| n.id.as_str()).collect();
    let (of_new, of_updated): (Vec<_>, Vec<_>) = edges
        .into_iter()
        .partition(|((edge, _), _)| !stored.contains(edge.src_id.as_str()));
    for (edges, on_conflict) in [(of_new, ""), (of_updated, " ON CONFLICT DO NOTHING")] {
        for chunk in edges.chunks(BULK_ROWS) {
            sqlx::query(&format!(
                "INSERT INTO edges (src_id, link, dst_id, project_id, src_seq) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]){on_conflict}"
            ))
            .bind(chunk.iter().map(|((e, _), _)| e.src_id.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|((e, _), _)| e.link.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|((e, _), _)| e.dst_id.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|((_, p), _)| p.as_deref()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(_, seq)| *seq).collect::<Vec<i64>>())
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Replace a project's count rows by one per type (their sums), in one
/// statement; rows other transactions have not committed yet stay as they are.
const FOLD_PROJECT_COUNTS_POSTGRES: &str = "WITH gone AS (\
    DELETE FROM node_counts WHERE project_id = $1 RETURNING node_type, delta) \
    INSERT INTO node_counts (project_id, node_type, delta) \
    SELECT $1, node_type, sum(delta) FROM gone GROUP BY node_type HAVING sum(delta) <> 0";

/// The same for programs, which belong to no project (`$1` is NULL).
const FOLD_PROGRAM_COUNTS_POSTGRES: &str = "WITH gone AS (\
    DELETE FROM node_counts WHERE project_id IS NULL RETURNING node_type, delta) \
    INSERT INTO node_counts (project_id, node_type, delta) \
    SELECT $1, node_type, sum(delta) FROM gone GROUP BY node_type HAVING sum(delta) <> 0";

/// See [`Store::export_page`]: a row per (node, link), a node without links once.
const EXPORT_PAGE_POSTGRES: &str = "SELECT p.seq, p.node_id, p.node_type, p.project_id, \
    p.props::text, e.link, e.dst_id \
    FROM nodes p LEFT JOIN edges e ON e.src_seq = p.seq \
    WHERE p.node_type = $1 AND p.project_id = $2 AND p.seq > $3 AND p.seq <= $4 \
    ORDER BY p.seq";

/// See [`TARGET_KEYS_SQLITE`]; `$1` is an array of ids.
const TARGET_KEYS_POSTGRES: &str = "SELECT t.node_id, (t.props -> ($2::jsonb ->> t.node_type))::text \
    FROM nodes t WHERE t.node_id = ANY($1)";

/// A page of an export (see [`Store::export_page`]): its nodes with their
/// links, read a row per (node, link), and the key values of the targets.
pub(super) async fn export_page_rows(
    pool: &sqlx::PgPool,
    node_type: &str,
    project_id: &str,
    (after_seq, through_seq): (i64, i64),
    target_keys: String,
) -> Result<ExportRows> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(EXPORT_PAGE_POSTGRES)
        .bind(node_type)
        .bind(project_id)
        .bind(after_seq)
        .bind(through_seq)
        .fetch_all(&mut *tx)
        .await?;
    let mut page: Vec<(NodeRow, Vec<(String, String)>)> = Vec::new();
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        if page.last().is_none_or(|(node, _)| node.seq != seq) {
            let props: String = row.try_get(4)?;
            let node = NodeRow {
                seq,
                id: row.try_get(1)?,
                node_type: row.try_get(2)?,
                project_id: row.try_get(3)?,
                props: serde_json::from_str(&props)?,
            };
            page.push((node, Vec::new()));
        }
        let link: Option<String> = row.try_get(5)?;
        if let (Some(link), Some((_, links))) = (link, page.last_mut()) {
            links.push((link, row.try_get(6)?));
        }
    }
    let keys: Vec<(String, Option<String>)> = sqlx::query_as(TARGET_KEYS_POSTGRES)
        .bind(distinct_targets(&page))
        .bind(target_keys)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((page, keys))
}

/// Fold the count rows of `project` (programs: `None`) into one per type.
pub(super) async fn fold_counts(tx: &mut sqlx::PgConnection, project: Option<&str>) -> Result<()> {
    let fold = match project {
        Some(_) => FOLD_PROJECT_COUNTS_POSTGRES,
        None => FOLD_PROGRAM_COUNTS_POSTGRES,
    };
    sqlx::query(fold).bind(project).execute(&mut *tx).await?;
    Ok(())
}
