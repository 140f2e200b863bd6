//! `commons migrate-data`: copy a whole commons from one database to another
//! (SQLite <-> PostgreSQL), every table and every id preserved, read from one
//! consistent snapshot and written in one transaction: all of it or nothing.

use sqlx::Row;

use super::{Dialect, Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Bool,
    Bytes,
    /// JSON stored as TEXT on SQLite and JSONB on PostgreSQL.
    Json,
}

/// Tables in dependency order, with their columns; identity columns first.
/// `index_terms` is not among them: the target's triggers derive it from
/// `index_records`.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    ("settings", &[("key", Kind::Text), ("value", Kind::Text)]),
    (
        "signing_keys",
        &[
            ("kid", Kind::Text),
            ("private_der", Kind::Bytes),
            ("created", Kind::Int),
            ("retired", Kind::Bool),
        ],
    ),
    (
        "users",
        &[
            ("id", Kind::Int),
            ("username", Kind::Text),
            ("password_hash", Kind::Text),
            ("is_admin", Kind::Bool),
            ("active", Kind::Bool),
            ("created", Kind::Int),
            ("sessions_after", Kind::Int),
        ],
    ),
    (
        "api_keys",
        &[
            ("jti", Kind::Text),
            ("user_id", Kind::Int),
            ("exp", Kind::Int),
            ("revoked", Kind::Bool),
            ("created", Kind::Int),
        ],
    ),
    (
        "revoked_sessions",
        &[("jti", Kind::Text), ("exp", Kind::Int)],
    ),
    (
        "login_links",
        &[
            ("token_hash", Kind::Text),
            ("user_id", Kind::Int),
            ("exp", Kind::Int),
        ],
    ),
    ("authz_resources", &[("path", Kind::Text)]),
    (
        "authz_roles",
        &[("id", Kind::Text), ("permissions", Kind::Text)],
    ),
    (
        "authz_policies",
        &[
            ("id", Kind::Text),
            ("role_ids", Kind::Text),
            ("resource_paths", Kind::Text),
        ],
    ),
    (
        "authz_user_policies",
        &[("username", Kind::Text), ("policy_id", Kind::Text)],
    ),
    (
        "authz_group_policies",
        &[("group_name", Kind::Text), ("policy_id", Kind::Text)],
    ),
    (
        "authz_group_users",
        &[("group_name", Kind::Text), ("username", Kind::Text)],
    ),
    (
        "nodes",
        &[
            ("seq", Kind::Int),
            ("node_id", Kind::Text),
            ("node_type", Kind::Text),
            ("project_id", Kind::Text),
            ("natural_key", Kind::Text),
            ("props", Kind::Json),
        ],
    ),
    (
        "node_counts",
        &[
            ("project_id", Kind::Text),
            ("node_type", Kind::Text),
            ("delta", Kind::Int),
        ],
    ),
    (
        "edges",
        &[
            ("src_id", Kind::Text),
            ("link", Kind::Text),
            ("dst_id", Kind::Text),
            ("project_id", Kind::Text),
            ("src_seq", Kind::Int),
        ],
    ),
    (
        "transactions",
        &[
            ("id", Kind::Int),
            ("project_id", Kind::Text),
            ("role", Kind::Text),
            ("is_dry_run", Kind::Bool),
            ("state", Kind::Text),
            ("submitter", Kind::Text),
            ("created_datetime", Kind::Text),
            ("entity_count", Kind::Int),
            ("entity_ids", Kind::Text),
            ("program", Kind::Text),
            ("project", Kind::Text),
            ("doc_format", Kind::Text),
            ("doc", Kind::Text),
            ("doc_size", Kind::Int),
            ("response_json", Kind::Text),
        ],
    ),
    (
        "index_records",
        &[
            ("did", Kind::Text),
            ("baseid", Kind::Text),
            ("rev", Kind::Text),
            ("form", Kind::Text),
            ("size", Kind::Int),
            ("file_name", Kind::Text),
            ("version", Kind::Text),
            ("uploader", Kind::Text),
            ("description", Kind::Text),
            ("hashes", Kind::Text),
            ("urls", Kind::Text),
            ("acl", Kind::Text),
            ("authz", Kind::Text),
            ("metadata", Kind::Text),
            ("urls_metadata", Kind::Text),
            ("created_date", Kind::Text),
            ("updated_date", Kind::Text),
            ("content_created_date", Kind::Text),
            ("content_updated_date", Kind::Text),
        ],
    ),
    (
        "index_aliases",
        &[("alias", Kind::Text), ("did", Kind::Text)],
    ),
];

/// Identity columns whose PostgreSQL sequences must continue after the copied ids.
const IDENTITIES: &[(&str, &str)] = &[("users", "id"), ("nodes", "seq"), ("transactions", "id")];

#[derive(Debug, Clone)]
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

/// Rows copied per table, in [`TABLES`] order.
pub type CopySummary = Vec<(&'static str, usize)>;

fn select_sql(dialect: Dialect, table: &str, columns: &[(&str, Kind)]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|(name, kind)| match kind {
            Kind::Json => dialect.json_column_as_text(name),
            _ => name.to_string(),
        })
        .collect();
    format!(
        "SELECT {} FROM {table} ORDER BY {}",
        list.join(", "),
        columns[0].0
    )
}

fn insert_sql(dialect: Dialect, table: &str, columns: &[(&str, Kind)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let params: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| match kind {
            Kind::Json => dialect.json_param(i + 1),
            _ => format!("${}", i + 1),
        })
        .collect();
    let overriding = if IDENTITIES.iter().any(|(t, _)| *t == table) {
        dialect.overriding_identity()
    } else {
        ""
    };
    format!(
        "INSERT INTO {table} ({}){overriding} VALUES ({})",
        names.join(", "),
        params.join(", ")
    )
}

impl Store {
    /// Every row of every table, read in one transaction (a consistent snapshot).
    async fn read_all(&self) -> Result<Vec<Vec<Vec<Cell>>>> {
        let dialect = self.dialect();
        super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if dialect == Dialect::Postgres {
                // One snapshot for every table, even while servers keep writing.
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
            }
            let mut tables = Vec::new();
            for (table, columns) in TABLES {
                let rows = sqlx::query(&select_sql(dialect, table, columns)).fetch_all(&mut *tx).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    let mut cells = Vec::with_capacity(columns.len());
                    for (i, (_, kind)) in columns.iter().enumerate() {
                        cells.push(match kind {
                            Kind::Text | Kind::Json => Cell::Text(row.try_get(i)?),
                            Kind::Int => Cell::Int(row.try_get(i)?),
                            Kind::Bool => Cell::Bool(row.try_get(i)?),
                            Kind::Bytes => Cell::Bytes(row.try_get(i)?),
                        });
                    }
                    out.push(cells);
                }
                tables.push(out);
            }
            tx.commit().await?;
            Ok(tables)
        })
    }

    /// True when the database holds no users and no nodes.
    async fn is_empty(&self) -> Result<bool> {
        super::on_pool!(self, pool => {
            let n: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM nodes)")
                .fetch_one(pool)
                .await?;
            Ok(n == 0)
        })
    }

    /// Copy everything in `source` into this (empty) store.
    pub async fn copy_from(&self, source: &Store) -> Result<CopySummary> {
        if !self.is_empty().await? {
            return Err(StoreError::Other(
                "the target database already holds users or records; migrate into an empty database".into(),
            ));
        }
        let tables = source.read_all().await?;
        let dialect = self.dialect();
        let _graph = self.write_lock.lock().await;
        let _identity = self
            .identity_write(super::identity::IdentityChange::Restricts)
            .await;
        super::on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Migrations and start-up may have written defaults (settings); the source wins.
            for (table, _) in TABLES {
                sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
            }
            let mut summary = Vec::new();
            for ((table, columns), rows) in TABLES.iter().zip(&tables) {
                let sql = insert_sql(dialect, table, columns);
                for row in rows {
                    let mut query = sqlx::query(&sql);
                    for cell in row {
                        query = match cell {
                            Cell::Text(v) => query.bind(v.clone()),
                            Cell::Int(v) => query.bind(*v),
                            Cell::Bool(v) => query.bind(*v),
                            Cell::Bytes(v) => query.bind(v.clone()),
                        };
                    }
                    query.execute(&mut *tx).await?;
                }
                summary.push((*table, rows.len()));
            }
            if dialect == Dialect::Postgres {
                for (table, column) in IDENTITIES {
                    sqlx::query(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
                    ))
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(summary)
        })
    }
}
