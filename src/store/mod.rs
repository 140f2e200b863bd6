//! Persistence: the metadata graph (nodes and edges), transaction logs, the
//! file index, and identity/authorization state. All SQL of Commons lives under this module.
//!
//! The layout is generic (one `nodes` table, one `edges` table; dictionary
//! changes never need DDL). Two backends share every statement: SQLite
//! (embedded, default) and PostgreSQL; [`Dialect`] covers the few differences.
//! Writes of one process go through one lock, so validation and commit see
//! the same graph and an SQLite write transaction never fails on a lock upgrade.

mod audit;
mod copy;
mod file_index;
mod graph;
mod identity;
mod postgres;
mod sqlite;

mod error;
mod open;
mod point_reads;
mod reads;
mod upkeep;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::sql::{BindValue, Dialect};

pub use audit::{ORDER_COLUMNS as TRANSACTION_ORDER_COLUMNS, TransactionQuery, TransactionRow};
pub use copy::CopySummary;
pub use error::{Result, StoreError};
pub use file_index::{
    IndexNegation, IndexQuery, IndexRecord, IndexWrite, IndexWriter, UrlMetadataFilter,
};
pub use graph::{
    ChangeSet, Edge, EntityIds, KEPT_DOCUMENT_BYTES, LinkTarget, NodeRef, NodeRow, NodeWrite,
    TransactionDocument, TransactionRecord, WriteGuard, Writer,
};
pub use identity::{
    ApiKeyRow, IDENTITY_POLL, IDENTITY_SETTLE, MAX_USERNAME_BYTES, PolicyRow, RoleRow,
    SigningKeyRow, UserRow, canonical_username, restrictions_settled,
};
pub(crate) use upkeep::Upkeep;

/// The connection pool of the configured backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Run the same statement-building code against whichever pool is configured:
/// `$pool` is bound to the concrete pool in each arm (SQL placeholders are
/// `$N` in both dialects).
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
    /// See [`Store::identity_generation`].
    identity_generation: AtomicU64,
    /// Read statements run for GraphQL, so tests can prove one per root field.
    graphql_statements: AtomicU64,
    /// What the database needs after many writes (see [`Upkeep`]).
    upkeep: Upkeep,
    /// Rows per node type, read at most every [`TOTALS_MAX_AGE`] (see
    /// [`Store::node_totals`]).
    totals: std::sync::Mutex<Option<(std::time::Instant, NodeTotals)>>,
}

/// How much of one connection pool is in use (`/metrics`).
pub struct PoolUse {
    pub name: &'static str,
    pub idle: usize,
    pub in_use: usize,
    pub max: u32,
}

impl Store {
    /// The use of each connection pool, now.
    pub fn pool_use(&self) -> Vec<PoolUse> {
        fn of<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> PoolUse {
            let idle = pool.num_idle();
            PoolUse {
                name,
                idle,
                in_use: (pool.size() as usize).saturating_sub(idle),
                max: pool.options().get_max_connections(),
            }
        }
        let mut pools = vec![match &self.pool {
            Pool::Sqlite(pool) => of("main", pool),
            Pool::Postgres(pool) => of("main", pool),
        }];
        if let Some(dedicated) = &self.sqlite_dedicated {
            pools.push(of("writes", &dedicated.writes));
            pools.push(of("exports", &dedicated.exports));
        }
        pools
    }
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
    /// Reads of one row by key, on the caller's thread (a database file
    /// only, not an in-memory one).
    point_reads: Option<point_reads::PointReads>,
}

impl Store {
    /// Whether the database takes one write at a time (SQLite).
    pub fn writes_one_at_a_time(&self) -> bool {
        matches!(self.pool, Pool::Sqlite(_))
    }

    /// The point reads of SQLite, made on the caller's thread.
    fn point_reads(&self) -> Option<&point_reads::PointReads> {
        self.sqlite_dedicated.as_ref()?.point_reads.as_ref()
    }

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// Current time as UNIX seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
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
