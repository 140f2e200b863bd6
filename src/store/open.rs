//! Opening a store: the backend from the URL, the pools and their
//! connection settings, the migrations compiled into the binary.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Mutex;

use super::*;

/// Schema migrations compiled into the binary, per backend.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../../migrations/sqlite/0002_audit.sql"),
    ),
    (
        3,
        "sessions",
        include_str!("../../migrations/sqlite/0003_sessions.sql"),
    ),
    (
        4,
        "node_counts",
        include_str!("../../migrations/sqlite/0004_node_counts.sql"),
    ),
    (
        5,
        "nodes_by_type",
        include_str!("../../migrations/sqlite/0005_nodes_by_type.sql"),
    ),
    (
        6,
        "edges_by_source_seq",
        include_str!("../../migrations/sqlite/0006_edges_by_source_seq.sql"),
    ),
    (
        7,
        "edges_by_dst_with_src_seq",
        include_str!("../../migrations/sqlite/0007_edges_by_dst_with_src_seq.sql"),
    ),
    (
        8,
        "natural_key_first",
        include_str!("../../migrations/sqlite/0008_natural_key_first.sql"),
    ),
    (
        9,
        "children_in_storage_order",
        include_str!("../../migrations/sqlite/0009_children_in_storage_order.sql"),
    ),
    (
        10,
        "transaction_documents",
        include_str!("../../migrations/sqlite/0010_transaction_documents.sql"),
    ),
    (
        11,
        "user_sessions",
        include_str!("../../migrations/sqlite/0011_user_sessions.sql"),
    ),
    (
        12,
        "file_index",
        include_str!("../../migrations/sqlite/0012_file_index.sql"),
    ),
    (
        13,
        "identity_epoch",
        include_str!("../../migrations/sqlite/0013_identity_epoch.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../../migrations/postgres/0002_audit.sql"),
    ),
    (
        3,
        "sessions",
        include_str!("../../migrations/postgres/0003_sessions.sql"),
    ),
    (
        4,
        "node_counts",
        include_str!("../../migrations/postgres/0004_node_counts.sql"),
    ),
    (
        5,
        "nodes_by_type",
        include_str!("../../migrations/postgres/0005_nodes_by_type.sql"),
    ),
    (
        6,
        "edges_by_source_seq",
        include_str!("../../migrations/postgres/0006_edges_by_source_seq.sql"),
    ),
    (
        7,
        "edges_by_dst_with_src_seq",
        include_str!("../../migrations/postgres/0007_edges_by_dst_with_src_seq.sql"),
    ),
    (
        8,
        "natural_key_first",
        include_str!("../../migrations/postgres/0008_natural_key_first.sql"),
    ),
    (
        9,
        "children_in_storage_order",
        include_str!("../../migrations/postgres/0009_children_in_storage_order.sql"),
    ),
    (
        10,
        "keys_compare_as_bytes",
        include_str!("../../migrations/postgres/0010_keys_compare_as_bytes.sql"),
    ),
    (
        11,
        "transaction_documents",
        include_str!("../../migrations/postgres/0011_transaction_documents.sql"),
    ),
    (
        12,
        "user_sessions",
        include_str!("../../migrations/postgres/0012_user_sessions.sql"),
    ),
    (
        13,
        "file_index",
        include_str!("../../migrations/postgres/0013_file_index.sql"),
    ),
    (
        14,
        "identity_epoch",
        include_str!("../../migrations/postgres/0014_identity_epoch.sql"),
    ),
];

#[derive(Debug)]
struct EmbeddedMigrations(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> BoxFuture<'static, std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Whether an SQLite database named `path` lives in memory, not in a file.
fn in_memory(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new(":memory:")
}

/// Create the SQLite file readable by its owner only (it holds the token
/// signing keys); SQLite gives its WAL and shared-memory files the same mode.
fn create_private(path: &Path) -> Result<()> {
    if in_memory(path) || path.exists() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    match file.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Other(format!(
            "cannot create the database file {}: {e}",
            path.display()
        ))),
    }
}

impl Store {
    /// The default database URL: an SQLite file inside the data directory.
    pub fn default_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("commons.db").display())
    }

    /// Connect and apply pending migrations (`sqlite://PATH` or `postgres://...`).
    /// Migrations take a database lock, so instances starting together are safe.
    pub async fn open(url: &str) -> Result<Self> {
        let (pool, sqlite_dedicated) = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?;
            create_private(options.get_filename())?;
            let file = options.get_filename();
            let point_reads =
                (!in_memory(file)).then(|| point_reads::PointReads::new(file.to_path_buf()));
            let options = options
                .create_if_missing(true)
                // WAL + NORMAL: a crash never corrupts the database; a committed
                // transaction survives process crashes (fsync at checkpoints).
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // 16 MiB of page cache per connection (SQLite's default is 2 MiB):
                // exports and graph reads otherwise re-read pages through read(2).
                .pragma("cache_size", "-16384");
            // No ping before a connection is handed out (sqlx's default): a
            // connection to a local file does not go stale, and the ping was
            // one more trip to the connection's thread and back for every
            // statement (an authenticated request made four).
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
                // A GraphQL statement's deadline (`arm_deadline`) ends with its use.
                .after_release(|conn, _| {
                    Box::pin(async move {
                        conn.lock_handle().await?.remove_progress_handler();
                        Ok(true)
                    })
                })
                .connect_with(options.clone())
                .await?;
            migrate(&pool, SQLITE_MIGRATIONS).await?;
            // Graph writes are one at a time (the write lock), so they share one
            // connection whose cache stays warm from one write to the next and
            // holds 64 MiB: an upload's dirty pages (random-UUID index pages
            // above all) otherwise outgrow 16 MiB, and SQLite spills them to the
            // WAL mid-transaction and writes them again at commit. A second
            // 100,000-sample upload ran a quarter faster. Only this connection
            // holds that much; readers keep 16 MiB each.
            let writes = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect_lazy_with(
                    options
                        .clone()
                        .pragma("cache_size", "-65536")
                        // A statement that may fail halfway (a multi-row
                        // insert, a trigger's inserts) keeps the pages it
                        // changes in a statement journal, a temporary file
                        // by default: a fifth of an index import's time went
                        // to writing it. In memory, it is as large as one
                        // statement's changes.
                        .pragma("temp_store", "memory")
                        .pragma("wal_autocheckpoint", "0"),
                );
            // An export reads every page of a type once. Through the shared
            // readers, which the pool hands out in turn, one export of 300,000
            // subjects filled all eight readers' caches (150 MB kept after it)
            // and pushed out the pages GraphQL reads keep hot. Exports have two
            // connections of their own: the pages they read at once.
            let exports = SqlitePoolOptions::new()
                .max_connections(EXPORT_READERS as u32)
                .test_before_acquire(false)
                .connect_lazy_with(options);
            (
                Pool::Sqlite(pool),
                Some(SqliteDedicated {
                    writes,
                    exports,
                    point_reads,
                }),
            )
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // No JIT: statements are prepared once per connection and later run
            // with generic plans, whose cost estimates for a nested GraphQL list
            // (the whole type before its LIMIT) set off JIT compilation of every
            // subplan: 200-290 ms for a query that runs in 13-15 ms without it.
            let options =
                sqlx::postgres::PgConnectOptions::from_str(url)?.options([("jit", "off")]);
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            migrate(&pool, POSTGRES_MIGRATIONS).await?;
            (Pool::Postgres(pool), None)
        } else {
            return Err(StoreError::Other(format!(
                "unsupported database URL '{url}': use sqlite://PATH or postgres://USER@HOST/DB"
            )));
        };
        Ok(Self {
            upkeep: Upkeep::new(&pool, sqlite_dedicated.as_ref().map(|d| &d.writes)),
            pool,
            sqlite_dedicated,
            write_lock: Mutex::new(()),
            identity_lock: Mutex::new(()),
            identity_generation: AtomicU64::new(0),
            totals: std::sync::Mutex::new(None),
            graphql_statements: AtomicU64::new(0),
        })
    }

    /// Flush and close: on SQLite the WAL is checkpointed into the main file,
    /// so the file alone is complete (backups).
    pub async fn close(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                if let Some(dedicated) = &self.sqlite_dedicated {
                    dedicated.writes.close().await;
                    dedicated.exports.close().await;
                    if let Some(reads) = &dedicated.point_reads {
                        reads.close();
                    }
                }
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
                pool.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
        Ok(())
    }
}

impl Store {
    /// How many of this binary's migrations the database has not applied
    /// (readiness: a database restored from an older backup has some).
    pub async fn pending_migrations(&self) -> Result<usize> {
        let known = match &self.pool {
            Pool::Sqlite(_) => SQLITE_MIGRATIONS,
            Pool::Postgres(_) => POSTGRES_MIGRATIONS,
        };
        let applied: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await?
        });
        Ok(known
            .iter()
            .filter(|(version, _, _)| !applied.contains(version))
            .count())
    }
}

async fn migrate<'a, A>(
    pool: A,
    migrations: &'static [(i64, &'static str, &'static str)],
) -> Result<()>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let migrator = Migrator::new(EmbeddedMigrations(migrations))
        .await
        .map_err(|e| StoreError::Other(format!("migrations: {e}")))?;
    migrator
        .run(pool)
        .await
        .map_err(|e| StoreError::Other(format!("migrations: {e}")))
}
