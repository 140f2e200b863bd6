//! The generated reads (GraphQL's statements): run under a deadline the
//! database enforces itself, as one JSON text, as a count, or streamed row
//! by row with a spool for a client that lags.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::sql::BindValue;

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
pub(super) use bind_all;

/// Run `$body` (a read whose executor is `&mut *$conn`) with its statement
/// stopped by the database itself at `$limit`: a progress handler on SQLite,
/// `statement_timeout` on PostgreSQL. A caller that gives up waiting (the
/// request's own timeout) must not leave the statement running.
macro_rules! within_deadline {
    ($store:expr, $limit:expr, $conn:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                let waiting = std::time::Instant::now();
                let mut $conn = pool.acquire().await?;
                metrics::histogram!("commons_db_acquire_seconds", "pool" => "reads")
                    .record(waiting.elapsed());
                let _armed = arm_deadline(&mut $conn, $limit).await?;
                let running = std::time::Instant::now();
                let result = $body;
                metrics::histogram!("commons_graphql_statement_seconds").record(running.elapsed());
                result
            }
            $crate::store::Pool::Postgres(pool) => {
                // One round trip opens the transaction and sets its timeout.
                let waiting = std::time::Instant::now();
                let mut $conn = pool
                    .begin_with(format!(
                        "BEGIN; SET LOCAL statement_timeout = {}",
                        $limit.as_millis().clamp(1, i32::MAX as u128)
                    ))
                    .await?;
                metrics::histogram!("commons_db_acquire_seconds", "pool" => "reads")
                    .record(waiting.elapsed());
                let running = std::time::Instant::now();
                let result = $body;
                metrics::histogram!("commons_graphql_statement_seconds").record(running.elapsed());
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

impl Store {
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
