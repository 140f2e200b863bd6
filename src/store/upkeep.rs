//! Background upkeep after many writes: checkpoints on SQLite, statistics
//! on PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

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
///   samples then walked every aliquot for each (30 s). The file index's
///   tables are analyzed too (imports and data-file submissions report there).
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
    pub(super) fn new(pool: &Pool) -> Self {
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
