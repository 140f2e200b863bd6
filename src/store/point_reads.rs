//! Reads of one row by its key, on SQLite, made on the caller's thread.
//!
//! sqlx runs every SQLite statement on a thread of the connection's own and
//! hands the rows back through channels: for a read of one row by its key,
//! those hand-overs cost about 140 µs of latency on two cores, where the read
//! itself takes a few. The hottest such read, an index record by did (every
//! presigned URL, DRS object and `GET /index/<did>`), is made here instead,
//! through a few connections of the SQLite library opened on the same file.
//! Only key lookups come here: in WAL mode a reader never waits for a writer,
//! and a lookup takes microseconds, too short to hold up the async runtime.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{IndexRecord, Result, StoreError};

/// Idle connections kept: one per thread that reads at once is enough.
const MOST_IDLE: usize = 4;

pub(super) struct PointReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Set by [`Store::close`](super::Store::close), as its pools close.
    closed: AtomicBool,
}

impl PointReads {
    pub(super) fn new(path: PathBuf) -> Self {
        PointReads {
            path,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Close the idle connections and refuse later reads, as a closed pool.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.idle.lock().expect("point reads lock").clear();
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(10))?;
        // These connections only read.
        connection.pragma_update(None, "query_only", true)?;
        Ok(connection)
    }

    /// Run `read` on an idle connection (or a new one).
    fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the database is closed".into()));
        }
        let idle = self.idle.lock().expect("point reads lock").pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let outcome = read(&connection);
        let mut idle = self.idle.lock().expect("point reads lock");
        if idle.len() < MOST_IDLE && !self.closed.load(Ordering::SeqCst) {
            idle.push(connection);
        }
        outcome
    }

    /// The index record `did`, if there is one.
    pub(super) fn index_record(&self, did: &str) -> Result<Option<IndexRecord>> {
        self.with(|connection| {
            let mut statement =
                connection.prepare_cached(&super::file_index::RECORD_BY_DID_SQLITE)?;
            let mut rows = statement.query([did])?;
            match rows.next()? {
                Some(row) => Ok(Some(super::file_index::record_from_sqlite_row(row)?)),
                None => Ok(None),
            }
        })
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::CannotOpen) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::store::{IndexRecord, Store};

    /// A point read sees each committed change to a record at once, from
    /// whichever connection wrote it, and nothing once it is gone.
    #[tokio::test]
    async fn point_reads_see_every_committed_change_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::default_url(dir.path())).await.unwrap();
        assert!(store.point_reads().is_some(), "a database file has them");
        let record = IndexRecord {
            did: "dg.TEST/1".into(),
            baseid: "base-1".into(),
            rev: "aaaa".into(),
            size: Some(7),
            hashes: BTreeMap::from([("md5".into(), "0".repeat(32))]),
            urls: vec!["s3://bucket/1".into()],
            created_date: "2026-12-05T00:00:00".into(),
            updated_date: "2026-12-05T00:00:00".into(),
            ..IndexRecord::default()
        };
        assert_eq!(store.index_record(&record.did).await.unwrap(), None);
        store
            .index_insert(&[(record.clone(), Vec::new())])
            .await
            .unwrap();
        assert_eq!(
            store.index_record(&record.did).await.unwrap().as_ref(),
            Some(&record)
        );
        let changed = IndexRecord {
            rev: "bbbb".into(),
            urls: vec!["s3://bucket/2".into()],
            ..record.clone()
        };
        assert!(store.index_replace(&changed, "aaaa").await.unwrap());
        assert_eq!(
            store.index_record(&record.did).await.unwrap(),
            Some(changed)
        );
        assert!(store.index_delete(&record.did, "bbbb").await.unwrap());
        assert_eq!(store.index_record(&record.did).await.unwrap(), None);
    }
}
