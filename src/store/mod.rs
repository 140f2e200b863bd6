//! Persistence: the metadata graph (nodes and edges), transaction logs, and
//! identity/authorization state. All SQL of Commons lives under this module.
//!
//! The layout is generic (one `nodes` table, one `edges` table; dictionary
//! changes never need DDL). Two backends share every statement: SQLite
//! (embedded, default) and PostgreSQL; [`Dialect`] covers the few differences.
//! Writes of one process go through one lock, so validation and commit see
//! the same graph and an SQLite write transaction never fails on a lock upgrade.

mod audit;
mod copy;
mod graph;
mod identity;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Mutex;

use crate::sql::{BindValue, Dialect};

pub use audit::{ORDER_COLUMNS as TRANSACTION_ORDER_COLUMNS, TransactionQuery, TransactionRow};
pub use copy::CopySummary;
pub use graph::{
    ChangeSet, Edge, EntityIds, KEPT_DOCUMENT_BYTES, LinkTarget, NodeRef, NodeRow, NodeWrite,
    TransactionDocument, TransactionRecord, WriteGuard, Writer,
};
pub use identity::{
    ApiKeyRow, MAX_USERNAME_BYTES, PolicyRow, RoleRow, SigningKeyRow, UserRow, canonical_username,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. a concurrent insert).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The value cannot be stored (a name too long, ...): the caller's mistake.
    #[error("{0}")]
    Invalid(String),
    /// A read statement ran past its time limit and was stopped.
    #[error("the statement ran past its time limit")]
    TimedOut,
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            // PostgreSQL deadlock / serialization failure: a concurrent writer won.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                StoreError::Conflict(db.message().to_string())
            }
            // The database is away: connection failures, a server shutting
            // down or restarting (SQLSTATE classes 08 and 57).
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57")) =>
            {
                StoreError::Unavailable(db.message().to_string())
            }
            // SQLite's busy timeout ran out: another writer (a long upload)
            // held the database's write lock; trying again later works.
            sqlx::Error::Database(db)
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && db
                        .code()
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(|c| c & 0xff == SQLITE_BUSY) =>
            {
                StoreError::Unavailable(db.message().to_string())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// SQLite's primary result code for "database is locked".
const SQLITE_BUSY: i32 = 5;

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Other(format!("stored JSON: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The connection pool of the configured backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Run the same statement-building code against whichever pool is configured:
/// `$pool` is bound to the concrete pool in each arm (SQL placeholders are
/// `$N` in both dialects).
/// Bind generated parameters, in order, to a query.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                BindValue::Text(s) => query.bind(s.clone()),
                BindValue::Int(i) => query.bind(*i),
                BindValue::Float(f) => query.bind(*f),
            };
        }
        query
    }};
}

/// Run `$body` (a read whose executor is `&mut *$conn`) with its statement
/// stopped by the database itself at `$limit`: a progress handler on SQLite,
/// `statement_timeout` on PostgreSQL. A caller that gives up waiting (the
/// request's own timeout) must not leave the statement running.
macro_rules! within_deadline {
    ($store:expr, $limit:expr, $conn:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                let mut $conn = pool.acquire().await?;
                let _armed = arm_deadline(&mut $conn, $limit).await?;
                $body
            }
            $crate::store::Pool::Postgres(pool) => {
                // One round trip opens the transaction and sets its timeout.
                let mut $conn = pool
                    .begin_with(format!(
                        "BEGIN; SET LOCAL statement_timeout = {}",
                        $limit.as_millis().clamp(1, i32::MAX as u128)
                    ))
                    .await?;
                let result = $body;
                if result.is_ok() {
                    $conn.commit().await?;
                }
                result
            }
        }
    };
}

/// Stops a SQLite connection's statement once `limit` has passed, or as soon
/// as the returned guard is dropped: a request that gives up (its own timeout,
/// a client gone) must not leave the statement running on the connection's
/// worker. The handler goes when the connection returns to the pool
/// (`after_release` in [`Store::open`]), so later users run unlimited.
async fn arm_deadline(conn: &mut sqlx::SqliteConnection, limit: Duration) -> Result<DeadlineGuard> {
    let running = std::sync::Arc::new(AtomicBool::new(true));
    let deadline = std::time::Instant::now() + limit;
    let flag = running.clone();
    conn.lock_handle()
        .await?
        .set_progress_handler(1000, move || {
            flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline
        });
    Ok(DeadlineGuard(running))
}

struct DeadlineGuard(std::sync::Arc<AtomicBool>);

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A read's error: a statement stopped at its deadline is [`StoreError::TimedOut`].
fn read_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && (db.code().as_deref() == Some("57014") || db.message().contains("interrupted"))
    {
        return StoreError::TimedOut;
    }
    StoreError::from(e)
}

macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Statements an export may run at once: on SQLite, the connections set
/// apart for exports (export reads this; the store knows nothing of export).
pub const EXPORT_READERS: usize = 2;

pub struct Store {
    pub(crate) pool: Pool,
    /// SQLite: the connections set apart from the shared readers.
    sqlite_dedicated: Option<SqliteDedicated>,
    /// Graph writes, one at a time (see [`Store::lock_writes`]).
    write_lock: Mutex<()>,
    /// Users, keys, sessions and grants: apart from graph writes, so a long
    /// submission does not hold up a logout, a key revocation or a grant.
    identity_lock: Mutex<()>,
    /// Read statements run for GraphQL, so tests can prove one per root field.
    graphql_statements: AtomicU64,
    /// What the database needs after many writes (see [`Upkeep`]).
    upkeep: Upkeep,
    /// Rows per node type, read at most every [`TOTALS_MAX_AGE`] (see
    /// [`Store::node_totals`]).
    totals: std::sync::Mutex<Option<(std::time::Instant, NodeTotals)>>,
}

/// Rows per node type.
pub type NodeTotals = Arc<HashMap<String, i64>>;

/// How old the cached rows per node type may be: they only size estimates.
const TOTALS_MAX_AGE: Duration = Duration::from_secs(10);

/// SQLite connections set apart from the shared readers, each pool for one
/// kind of work, so that its pages fill only its own connections' caches
/// (see [`Store::open`]).
struct SqliteDedicated {
    /// The one connection graph writes go through.
    writes: sqlx::SqlitePool,
    /// Whole-type exports ([`Store::page_end`], [`Store::export_page`]).
    exports: sqlx::SqlitePool,
}

/// What the database needs after many writes, done in the background once
/// enough entities have been committed (in any number of transactions; every
/// graph write reports at its commit), at most one run at a time: a run that
/// ends with as many committed meanwhile runs again.
///
/// - SQLite, after 2,000: a passive checkpoint, copying the write-ahead log
///   into the database file. The writes connection does not checkpoint as it
///   commits (`wal_autocheckpoint=0`): a large upload's reply waited for a copy
///   of all it wrote and an fsync (a 100,000-sample upload: a fifth of its
///   time). A passive checkpoint neither waits for nor blocks readers and
///   writers. After every commit it cost a one-entity request 3 ms of its 5;
///   2,000 entities are a few MB of log, about SQLite's own threshold.
/// - PostgreSQL, after 10,000: `VACUUM (ANALYZE)` of the graph tables. Until
///   then the planner takes a million new rows for a few dozen (counts could
///   not use index-only scans: 400 ms instead of 150 ms for a million samples),
///   or a type written since as absent: a nested GraphQL list over 1,000
///   samples then walked every aliquot for each (30 s).
#[derive(Clone)]
pub(crate) struct Upkeep {
    /// The shared pool (on SQLite the readers': a checkpoint needs no write lock).
    pool: Pool,
    statements: &'static [&'static str],
    after_entities: usize,
    /// Entities committed since the last run began.
    pending: Arc<AtomicUsize>,
    running: Arc<AtomicBool>,
}

impl Upkeep {
    fn new(pool: &Pool) -> Self {
        let (statements, after_entities): (&'static [&'static str], usize) = match pool {
            Pool::Sqlite(_) => (&["PRAGMA wal_checkpoint(PASSIVE)"], 2_000),
            Pool::Postgres(_) => (
                &["VACUUM (ANALYZE) nodes", "VACUUM (ANALYZE) edges"],
                10_000,
            ),
        };
        Self {
            pool: pool.clone(),
            statements,
            after_entities,
            pending: Arc::default(),
            running: Arc::default(),
        }
    }

    /// Count the `entities` a commit wrote or deleted; start a run once they
    /// add up.
    pub(crate) fn committed(&self, entities: usize) {
        let pending = self.pending.fetch_add(entities, Ordering::AcqRel) + entities;
        if pending < self.after_entities || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                this.pending.store(0, Ordering::Release);
                for statement in this.statements {
                    let done = match &this.pool {
                        Pool::Sqlite(pool) => sqlx::query(statement).execute(pool).await.map(drop),
                        Pool::Postgres(pool) => {
                            sqlx::query(statement).execute(pool).await.map(drop)
                        }
                    };
                    if let Err(e) = done {
                        tracing::warn!(error = %e, statement, "database upkeep failed");
                    }
                }
                this.running.store(false, Ordering::Release);
                let behind = this.pending.load(Ordering::Acquire) >= this.after_entities;
                if !behind || this.running.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }
}

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

/// Create the SQLite file readable by its owner only (it holds the token
/// signing keys); SQLite gives its WAL and shared-memory files the same mode.
fn create_private(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() || path == Path::new(":memory:") || path.exists() {
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
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
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
                .connect_lazy_with(
                    options
                        .clone()
                        .pragma("cache_size", "-65536")
                        .pragma("wal_autocheckpoint", "0"),
                );
            // An export reads every page of a type once. Through the shared
            // readers, which the pool hands out in turn, one export of 300,000
            // subjects filled all eight readers' caches (150 MB kept after it)
            // and pushed out the pages GraphQL reads keep hot. Exports have two
            // connections of their own: the pages they read at once.
            let exports = SqlitePoolOptions::new()
                .max_connections(EXPORT_READERS as u32)
                .connect_lazy_with(options);
            (
                Pool::Sqlite(pool),
                Some(SqliteDedicated { writes, exports }),
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
            upkeep: Upkeep::new(&pool),
            pool,
            sqlite_dedicated,
            write_lock: Mutex::new(()),
            identity_lock: Mutex::new(()),
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

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// How many GraphQL statements this store has run.
    pub fn graphql_statement_count(&self) -> u64 {
        self.graphql_statements.load(Ordering::Relaxed)
    }

    /// Run a read-only query that returns one JSON text value (GraphQL),
    /// stopped at `limit`.
    pub async fn query_json(
        &self,
        sql: &str,
        binds: &[BindValue],
        limit: Duration,
    ) -> Result<String> {
        self.graphql_statements.fetch_add(1, Ordering::Relaxed);
        let sql = self.dialect().json_as_text(sql);
        within_deadline!(self, limit, conn => {
            bind_all!(sqlx::query_scalar::<_, String>(&sql), binds)
                .fetch_one(&mut *conn)
                .await
                .map_err(read_error)
        })
    }

    /// Run a read-only query that returns one JSON text per row, sending the
    /// rows to `sink` as the database produces them (GraphQL streaming). It
    /// stops at the first error, which it sends, or when the receiver is gone.
    ///
    /// The statement never waits on the receiver: rows the receiver has no
    /// room for go to a temporary file, and are sent from there once the
    /// statement is done and its connection is back in the pool. A client
    /// that reads slowly, or not at all, holds a file, not the database.
    pub async fn stream_json_rows(
        &self,
        sql: &str,
        binds: &[BindValue],
        limit: Duration,
        sink: tokio::sync::mpsc::Sender<Result<String>>,
    ) {
        use futures::StreamExt;
        use tokio::sync::mpsc::error::TrySendError;
        self.graphql_statements.fetch_add(1, Ordering::Relaxed);
        let mut spool: Option<RowSpool> = None;
        let statement: Result<()> = async {
            within_deadline!(self, limit, conn => {
                let query = bind_all!(sqlx::query_scalar::<_, String>(sql), binds);
                let mut rows = query.fetch(&mut *conn);
                while let Some(row) = rows.next().await {
                    let row = row.map_err(read_error);
                    let failed = row.is_err();
                    match spool.as_mut() {
                        // A client gone, or one so far behind that its rows fill
                        // the spool: the statement stops (the latter in an error).
                        Some(spool) => {
                            if !spool.push(row) || sink.is_closed() {
                                break;
                            }
                        }
                        None => match sink.try_send(row) {
                            Ok(()) => {}
                            Err(TrySendError::Full(row)) => {
                                let mut rest = RowSpool::default();
                                let more = rest.push(row);
                                spool = Some(rest);
                                if !more {
                                    break;
                                }
                            }
                            Err(TrySendError::Closed(_)) => break,
                        },
                    }
                    if failed {
                        break;
                    }
                }
                Ok(())
            })
        }
        .await;
        if let Err(e) = statement {
            match spool.as_mut() {
                Some(spool) => {
                    spool.push(Err(e));
                }
                None => {
                    let _ = sink.send(Err(e)).await;
                    return;
                }
            }
        }
        if let Some(spool) = spool {
            for row in spool.rows() {
                if sink.send(row).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Rows per node type in the whole store (every project), at most
    /// [`TOTALS_MAX_AGE`] old: for estimates of how large an answer can be.
    pub async fn node_totals(&self) -> Result<NodeTotals> {
        if let Some((at, totals)) = &*self.totals.lock().expect("totals lock poisoned")
            && at.elapsed() < TOTALS_MAX_AGE
        {
            return Ok(totals.clone());
        }
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT node_type, CAST(sum(delta) AS BIGINT) FROM node_counts GROUP BY node_type",
            )
            .fetch_all(pool)
            .await?
        });
        let totals = Arc::new(rows.into_iter().collect::<HashMap<_, _>>());
        *self.totals.lock().expect("totals lock poisoned") =
            Some((std::time::Instant::now(), totals.clone()));
        Ok(totals)
    }

    /// Run a read-only query that returns one integer (GraphQL counts).
    pub async fn query_count(
        &self,
        sql: &str,
        binds: &[BindValue],
        limit: Duration,
    ) -> Result<i64> {
        self.graphql_statements.fetch_add(1, Ordering::Relaxed);
        within_deadline!(self, limit, conn => {
            bind_all!(sqlx::query_scalar::<_, i64>(sql), binds)
                .fetch_one(&mut *conn)
                .await
                .map_err(read_error)
        })
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

/// Current time as UNIX seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Rows of a streamed statement kept on disk while their receiver lags
/// (see [`Store::stream_json_rows`]): length-prefixed texts in an unnamed
/// temporary file (in `TMPDIR`), at most [`MAX_SPOOL_BYTES`], and the error
/// that ended the statement, if one did.
#[derive(Default)]
struct RowSpool {
    file: Option<std::io::BufWriter<std::fs::File>>,
    bytes: u64,
    failure: Option<StoreError>,
}

/// Most bytes one streamed answer may keep on disk for a client that lags.
const MAX_SPOOL_BYTES: u64 = 256 << 20;

impl RowSpool {
    /// Keep a row; false once nothing more is kept (a failure, or full).
    fn push(&mut self, row: Result<String>) -> bool {
        use std::io::Write;
        if self.failure.is_some() {
            return false;
        }
        let text = match row {
            Ok(text) => text,
            Err(e) => {
                self.failure = Some(e);
                return false;
            }
        };
        self.bytes += text.len() as u64 + 8;
        if self.bytes > MAX_SPOOL_BYTES {
            self.failure = Some(StoreError::Other(
                "the client read the answer too slowly: more than 256 MiB waited for it".into(),
            ));
            return false;
        }
        let written = (|| {
            let file = match &mut self.file {
                Some(file) => file,
                None => self
                    .file
                    .insert(std::io::BufWriter::new(tempfile::tempfile()?)),
            };
            file.write_all(&(text.len() as u64).to_le_bytes())?;
            file.write_all(text.as_bytes())
        })();
        match written {
            Ok(()) => true,
            Err(e) => {
                self.failure = Some(StoreError::Other(format!(
                    "cannot spool streamed rows: {e}"
                )));
                false
            }
        }
    }

    /// The spooled rows in order, then the failure, if any.
    fn rows(self) -> impl Iterator<Item = Result<String>> {
        use std::io::{Read, Seek};
        let mut failure = self.failure;
        let mut reader = self.file.and_then(|file| {
            let mut file = match file.into_inner() {
                Ok(file) => file,
                Err(e) => {
                    failure = Some(StoreError::Other(format!(
                        "cannot spool streamed rows: {e}"
                    )));
                    return None;
                }
            };
            file.rewind().ok()?;
            Some(std::io::BufReader::new(file))
        });
        let rows = std::iter::from_fn(move || {
            let reader = reader.as_mut()?;
            let mut length = [0u8; 8];
            reader.read_exact(&mut length).ok()?;
            let length = u64::from_le_bytes(length).min(MAX_SPOOL_BYTES);
            let mut text = vec![0u8; length as usize];
            Some(
                reader
                    .read_exact(&mut text)
                    .map_err(|e| StoreError::Other(format!("cannot read spooled rows: {e}")))
                    .and_then(|()| {
                        String::from_utf8(text)
                            .map_err(|e| StoreError::Other(format!("a spooled row: {e}")))
                    }),
            )
        });
        rows.chain(failure.map(Err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// A write that waited out SQLite's busy timeout behind another writer is
    /// "unavailable" (a 503: try again), not an internal error.
    #[tokio::test]
    async fn a_write_locked_out_on_sqlite_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::default_url(dir.path());
        let store = Store::open(&url).await.unwrap();
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let outcome = store.set_setting("probe", "1").await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        store.set_setting("probe", "1").await.unwrap();
    }
}
