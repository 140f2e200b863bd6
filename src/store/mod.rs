//! Persistence: the metadata graph (nodes and edges), transaction logs, and
//! identity/authorization state. All SQL of Commons lives under this module.
//!
//! The layout is generic (one `nodes` table, one `edges` table; DICTIONARY
//! changes never need DDL). Writes go through one in-process lock so that an
//! SQLite write transaction never fails half-way on a lock upgrade.

mod graph;
mod identity;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::SqlitePool;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Mutex;

pub use graph::{ChangeSet, Edge, NodeRow, NodeWrite, TransactionRecord, WriteGuard};
pub use identity::{ApiKeyRow, PolicyRow, RoleRow, SigningKeyRow, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. a concurrent insert).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Other(format!("stored JSON: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    pool: SqlitePool,
    write_lock: Mutex<()>,
    /// Read statements run for GraphQL, so tests can prove one per root field.
    graphql_statements: AtomicU64,
}

/// Schema migrations compiled into the binary.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../migrations/sqlite/0001_init.sql"),
)];

#[derive(Debug)]
struct EmbeddedMigrations;

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> BoxFuture<'static, std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
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

impl Store {
    /// The default database URL: an SQLite file inside the data directory.
    pub fn default_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("commons.db").display())
    }

    /// Connect and apply pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Other(format!(
                "unsupported database URL '{url}': this build stores data in SQLite (sqlite://PATH)"
            )));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL + NORMAL: a crash never corrupts the database; a committed
            // transaction survives process crashes (fsync at checkpoints).
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let migrator = Migrator::new(EmbeddedMigrations)
            .await
            .map_err(|e| StoreError::Other(format!("migrations: {e}")))?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Other(format!("migrations: {e}")))?;
        Ok(Self {
            pool,
            write_lock: Mutex::new(()),
            graphql_statements: AtomicU64::new(0),
        })
    }

    /// How many GraphQL statements this store has run.
    pub fn graphql_statement_count(&self) -> u64 {
        self.graphql_statements.load(Ordering::Relaxed)
    }

    /// Run a read-only query that returns one JSON text value (GraphQL).
    pub async fn query_json(&self, sql: &str, binds: &[BindValue]) -> Result<String> {
        self.graphql_statements.fetch_add(1, Ordering::Relaxed);
        let mut query = sqlx::query_scalar::<_, String>(sql);
        for bind in binds {
            query = match bind {
                BindValue::Text(s) => query.bind(s.clone()),
                BindValue::Int(i) => query.bind(*i),
                BindValue::Float(f) => query.bind(*f),
            };
        }
        Ok(query.fetch_one(&self.pool).await?)
    }

    /// Run a read-only query that returns one integer (GraphQL counts).
    pub async fn query_count(&self, sql: &str, binds: &[BindValue]) -> Result<i64> {
        self.graphql_statements.fetch_add(1, Ordering::Relaxed);
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for bind in binds {
            query = match bind {
                BindValue::Text(s) => query.bind(s.clone()),
                BindValue::Int(i) => query.bind(*i),
                BindValue::Float(f) => query.bind(*f),
            };
        }
        Ok(query.fetch_one(&self.pool).await?)
    }
}

/// A bind parameter of a generated query.
#[derive(Debug, Clone, PartialEq)]
pub enum BindValue {
    Text(String),
    Int(i64),
    Float(f64),
}

/// Current time as UNIX seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}
