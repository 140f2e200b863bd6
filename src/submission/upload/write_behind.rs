//! The request's database transaction, one chunk behind validation.

use super::*;
use crate::store::{ChangeSet, StoreError};

/// The request's database transaction, written one chunk behind validation
/// so that the database writes one chunk while the service checks the next.
#[derive(Default)]
pub(super) struct WriteBehind {
    /// Opened with the first chunk to write; dropped (rolled back) on failure.
    pub(super) writer: Option<Writer>,
    /// Another writer committed one of these entities first.
    pub(super) lost_race: bool,
}

/// A chunk being written on a task of its own; it hands the writer back.
type Writing = JoinHandle<(Writer, Result<(), StoreError>)>;

impl WriteBehind {
    /// Start writing `change` on a task of its own. Polled within the
    /// request's task, the write could send its next statement to the
    /// database only when checking the next chunk paused, and on SQLite the
    /// database waited a third of the time.
    pub(super) async fn start(
        &mut self,
        store: &crate::store::Store,
        guard: &WriteGuard<'_>,
        change: Option<ChangeSet>,
    ) -> Result<Option<Writing>, StoreError> {
        let Some(change) = change else {
            return Ok(None);
        };
        if self.lost_race {
            return Ok(None);
        }
        let mut writer = match self.writer.take() {
            Some(writer) => writer,
            None => store.begin_write(guard).await?,
        };
        let writing = tokio::spawn(async move {
            let result = writer.apply(&change).await;
            (writer, result)
        });
        // A task spawned here first waits for this one to pause; let it send
        // its first statement before checking goes on.
        tokio::task::yield_now().await;
        Ok(Some(writing))
    }

    /// Wait for a chunk started by [`WriteBehind::start`].
    pub(super) async fn finish(&mut self, writing: Option<Writing>) -> Result<(), StoreError> {
        let Some(writing) = writing else {
            return Ok(());
        };
        let (writer, result) = match writing.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(StoreError::Other(format!("writing was cancelled: {e}"))),
        };
        self.writer = Some(writer);
        match result {
            Err(StoreError::Conflict(detail)) => {
                self.lose_race(&detail);
                Ok(())
            }
            other => other,
        }
    }

    pub(super) async fn write(
        &mut self,
        store: &crate::store::Store,
        guard: &WriteGuard<'_>,
        change: Option<ChangeSet>,
    ) -> Result<(), StoreError> {
        let writing = self.start(store, guard, change).await?;
        self.finish(writing).await
    }

    /// A concurrent request wrote one of these natural keys first.
    pub(super) fn lose_race(&mut self, detail: &str) {
        tracing::info!(%detail, "submission lost a race with another writer");
        self.lost_race = true;
        self.writer = None;
    }
}
