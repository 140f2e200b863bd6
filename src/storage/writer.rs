//! Writing an object to local disk while its hashes are computed. The
//! bytes travel in batches of about 1 MiB to two blocking threads beside
//! the receiving: one computes the MD5, the other writes the file (and the
//! SHA-256). One after the other on the receiving thread, they halved an
//! upload's rate on two cores; batched, the threads wake once per MiB, not
//! once per network read.
//!
//! The file is synced as it grows (a third thread asks the disk for each
//! 64 MiB written), so the sync that makes an object durable before it is
//! renamed into place waits for the last few MiB, not for all of them: the
//! kernel would otherwise hold a whole 2 GiB upload in the page cache until
//! that final sync.

use std::io::{IoSlice, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256};

use super::{Result, StoredObject};

/// Bytes gathered before the threads get them.
const BATCH_BYTES: usize = 1 << 20;
/// Pieces gathered at most before the threads get them (one `writev`).
const BATCH_PIECES: usize = 1024;
/// Batches waiting for each thread at most: what an upload holds in memory.
const QUEUED_BATCHES: usize = 8;
/// Bytes written between two requests to the disk to catch up.
const SYNC_EVERY: u64 = 64 << 20;

type Batch = Arc<[Bytes]>;

/// An object being written to a file; [`ObjectWriter::finish`] syncs it and
/// tells its size and hashes.
pub(super) struct ObjectWriter {
    md5: Stage<String>,
    file: Stage<Option<String>>,
    batch: Vec<Bytes>,
    batched: usize,
    size: u64,
}

impl ObjectWriter {
    /// Create `path` and write into it; with `with_sha256`, the SHA-256 too.
    pub(super) async fn create(path: &Path, with_sha256: bool) -> Result<Self> {
        let file = tokio::fs::File::create(path).await?.into_std().await;
        Ok(Self {
            md5: Stage::start(hash_md5),
            file: Stage::start(move |batches| write_file(file, batches, with_sha256)),
            batch: Vec::new(),
            batched: 0,
            size: 0,
        })
    }

    /// Bytes written so far.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    pub(super) async fn write(&mut self, piece: Bytes) -> Result<()> {
        self.size += piece.len() as u64;
        self.batched += piece.len();
        self.batch.push(piece);
        if self.batched >= BATCH_BYTES || self.batch.len() >= BATCH_PIECES {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<()> {
        let batch: Batch = std::mem::take(&mut self.batch).into();
        self.batched = 0;
        let md5_took = self.md5.feed(batch.clone()).await;
        let file_took = self.file.feed(batch).await;
        if md5_took && file_took {
            return Ok(());
        }
        // A thread stopped: its error says why.
        self.md5.close();
        self.file.close();
        if let Ok(Err(e)) = (&mut self.file.worker).await {
            return Err(e);
        }
        if let Ok(Err(e)) = (&mut self.md5.worker).await {
            return Err(e);
        }
        Err(std::io::Error::other("a writing thread stopped").into())
    }

    /// Every byte on disk and synced: the object's size and hashes.
    pub(super) async fn finish(mut self) -> Result<StoredObject> {
        if !self.batch.is_empty() {
            self.send().await?;
        }
        let md5 = self.md5.finish().await?;
        let sha256 = self.file.finish().await?;
        Ok(StoredObject {
            size: self.size,
            md5,
            sha256,
        })
    }
}

/// A blocking thread and the queue of batches that feeds it.
struct Stage<T> {
    feed: Option<tokio::sync::mpsc::Sender<Batch>>,
    worker: tokio::task::JoinHandle<Result<T>>,
}

impl<T: Send + 'static> Stage<T> {
    fn start(
        work: impl FnOnce(tokio::sync::mpsc::Receiver<Batch>) -> Result<T> + Send + 'static,
    ) -> Self {
        let (feed, batches) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
        Self {
            feed: Some(feed),
            worker: tokio::task::spawn_blocking(move || work(batches)),
        }
    }

    /// False when the thread has stopped.
    async fn feed(&self, batch: Batch) -> bool {
        match &self.feed {
            Some(feed) => feed.send(batch).await.is_ok(),
            None => false,
        }
    }

    /// No more batches: the thread finishes what it has.
    fn close(&mut self) {
        self.feed = None;
    }

    async fn finish(mut self) -> Result<T> {
        self.close();
        self.worker.await.map_err(std::io::Error::other)?
    }
}

fn hash_md5(mut batches: tokio::sync::mpsc::Receiver<Batch>) -> Result<String> {
    let mut md5 = Md5::new();
    while let Some(batch) = batches.blocking_recv() {
        batch.iter().for_each(|piece| md5.update(piece));
    }
    Ok(hex::encode(md5.finalize()))
}

/// Write every batch into `file` (hashing with SHA-256 when asked), the
/// disk catching up as it goes; then sync what is left.
fn write_file(
    mut file: std::fs::File,
    mut batches: tokio::sync::mpsc::Receiver<Batch>,
    with_sha256: bool,
) -> Result<Option<String>> {
    let mut sha256 = with_sha256.then(Sha256::new);
    let syncer = Syncer::start(file.try_clone()?);
    let mut unsynced = 0u64;
    while let Some(batch) = batches.blocking_recv() {
        if let Some(sha256) = &mut sha256 {
            batch.iter().for_each(|piece| sha256.update(piece));
        }
        write_all(&mut file, &batch)?;
        unsynced += batch.iter().map(|p| p.len() as u64).sum::<u64>();
        if unsynced >= SYNC_EVERY {
            syncer.catch_up();
            unsynced = 0;
        }
    }
    syncer.finish()?;
    file.sync_all()?;
    Ok(sha256.map(|sha256| hex::encode(sha256.finalize())))
}

fn write_all(file: &mut std::fs::File, batch: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice> = batch.iter().map(|piece| IoSlice::new(piece)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        let written = file.write_vectored(remaining)?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut remaining, written);
    }
    Ok(())
}

/// A thread that syncs a file's data while it is still being written.
struct Syncer {
    /// One request waits at most; more while it waits add nothing.
    requests: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Syncer {
    fn start(file: std::fs::File) -> Self {
        let (requests, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::spawn(move || {
            for () in asked {
                file.sync_data()?;
            }
            Ok(())
        });
        Self { requests, thread }
    }

    fn catch_up(&self) {
        // Full: a sync is already asked for. Gone: finish reports why.
        let _ = self.requests.try_send(());
    }

    fn finish(self) -> std::io::Result<()> {
        drop(self.requests);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the syncing thread panicked")))
    }
}
