//! What can go wrong in the store, sorted by what a caller can do about it:
//! a conflict to retry, a database to wait for, a deadline passed, or a bug.

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
