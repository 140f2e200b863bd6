//! Group commit of record creations. A manifest is published one `POST`
//! per record from several connections at once (`gen3 objects manifest
//! publish` uses 8); each create alone would be a commit of its own, one at
//! a time through the database's single writer. Creates that arrive while
//! one is being written wait in a queue and go in together, in one
//! statement, each still answered with its own outcome. Only where the
//! database has one writer (SQLite): PostgreSQL's connections write side by
//! side, and the queue's extra hand-over only slowed them.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{IndexError, Result, insert_error};
use crate::store::{IndexRecord, Store, StoreError};

/// Most creates written together.
const MOST_AT_ONCE: usize = 500;

type Pending = (IndexRecord, oneshot::Sender<Result<()>>);

/// The queue of creates of one server, written by a task of its own.
#[derive(Clone)]
pub struct CreateQueue {
    store: Arc<Store>,
    /// None: creates go straight to the store.
    sender: Option<mpsc::UnboundedSender<Pending>>,
}

impl CreateQueue {
    /// Start the writing task (on the current tokio runtime).
    pub fn start(store: Arc<Store>) -> Self {
        let sender = store.writes_one_at_a_time().then(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write_queued(store.clone(), receiver));
            sender
        });
        CreateQueue { store, sender }
    }

    /// Create `record`; a did already taken is a [`IndexError::Conflict`].
    pub async fn create(&self, record: IndexRecord) -> Result<()> {
        let Some(sender) = &self.sender else {
            return self
                .store
                .index_insert(&[(record, Vec::new())])
                .await
                .map_err(insert_error);
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send((record, reply))
            .map_err(|_| IndexError::Store(StoreError::Other("the index writer stopped".into())))?;
        answer
            .await
            .map_err(|_| IndexError::Store(StoreError::Other("the index writer stopped".into())))?
    }
}

async fn write_queued(store: Arc<Store>, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MOST_AT_ONCE {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let records: Vec<(IndexRecord, Vec<String>)> =
            batch.iter().map(|(r, _)| (r.clone(), Vec::new())).collect();
        if batch.len() == 1 || store.index_insert(&records).await.is_err() {
            // Alone, or one of them failed (a did taken): each on its own,
            // so each gets its own answer.
            for (record, reply) in batch {
                let written = store
                    .index_insert(&[(record, Vec::new())])
                    .await
                    .map_err(insert_error);
                let _ = reply.send(written);
            }
        } else {
            for (_, reply) in batch {
                let _ = reply.send(Ok(()));
            }
        }
    }
}
