//! Background upkeep after many writes: checkpoints on SQLite, statistics
//! on PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

/// Pages of write-ahead log (about 4 KiB each) past which writes wait for
/// the log to be copied and started over: 64 MiB.
const MAX_LOG_FRAMES: i64 = 16_384;

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
///   A passive checkpoint copies only what was logged when it began, and the
///   log starts over only when a write finds all of it copied: under writes
///   that never pause, the log never started over (7.7 GB of log for a
///   149 MB database after 180,000 index creates, every new page of it
///   zeroed by the kernel: a third of the server's time). So when the log
///   has outgrown [`MAX_LOG_FRAMES`], a restarting checkpoint runs on the
///   writes connection: the writes wait for it, once, and the log starts over.
/// - PostgreSQL, after 10,000: `VACUUM (ANALYZE)` of the graph tables. Until
///   then the planner takes a million new rows for a few dozen (counts could
///   not use index-only scans: 400 ms instead of 150 ms for a million samples),
///   or a type written since as absent: a nested GraphQL list over 1,000
///   samples then walked every aliquot for each (30 s). The file index's
///   tables are analyzed too (imports and data-file submissions report there).
#[derive(Clone)]
pub(crate) struct Upkeep {
    /// The shared pool (on SQLite the readers': a checkpoint needs no write lock).
    pool: Pool,
    /// SQLite: the writes connection, for the checkpoint that restarts the log.
    writes: Option<sqlx::SqlitePool>,
    statements: &'static [&'static str],
    after_entities: usize,
    /// Entities committed since the last run began.
    pending: Arc<AtomicUsize>,
    running: Arc<AtomicBool>,
}

impl Upkeep {
    pub(super) fn new(pool: &Pool, writes: Option<&sqlx::SqlitePool>) -> Self {
        let (statements, after_entities): (&'static [&'static str], usize) = match pool {
            Pool::Sqlite(_) => (&["PRAGMA wal_checkpoint(PASSIVE)"], 2_000),
            Pool::Postgres(_) => (
                &[
                    "VACUUM (ANALYZE) nodes",
                    "VACUUM (ANALYZE) edges",
                    "ANALYZE index_records, index_terms, index_aliases",
                ],
                10_000,
            ),
        };
        Self {
            pool: pool.clone(),
            writes: writes.cloned(),
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
                        Pool::Sqlite(pool) => this.checkpoint(pool, statement).await,
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

    /// A passive checkpoint, then a restarting one on the writes connection
    /// if the log has outgrown [`MAX_LOG_FRAMES`].
    async fn checkpoint(&self, readers: &sqlx::SqlitePool, passive: &str) -> sqlx::Result<()> {
        let (_busy, logged, _copied): (i64, i64, i64) =
            sqlx::query_as(passive).fetch_one(readers).await?;
        if let Some(writes) = &self.writes
            && logged > MAX_LOG_FRAMES
        {
            sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(writes)
                .await?;
        }
        Ok(())
    }
}
