//! Writing an object to local disk while its hashes are computed. The
//! bytes travel in batches of about 1 MiB to two blocking threads beside
//! the receiving: one computes the MD5, the other writes the file (and the
//! SHA-256). One after the other on the receiving thread, they halved an
//! upload's rate on two cores; batched, the threads wake once per MiB, not
//! once per network read.
//!
//! The file is written with direct I/O where the filesystem allows it:
//! blocks go from an aligned buffer to the disk, not through the page
//! cache. Copying an upload into the page cache took twice MD5's time on a
//! loaded machine (`perf`, BENCHMARKS.md), and a 2 GiB upload waited for
//! all of its pages at the final sync. Filesystems without direct I/O
//! (tmpfs) get ordinary writes and one sync at the end.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
const QUEUED_BATCHES: usize = 4;
/// Bytes written to the disk at once with direct I/O.
const DIRECT_BYTES: usize = 1 << 20;
/// What direct I/O aligns buffers, offsets and lengths to.
const DIRECT_ALIGN: usize = 4096;

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
        let path = path.to_path_buf();
        let file = tokio::task::spawn_blocking(move || open_direct(&path))
            .await
            .map_err(std::io::Error::other)??;
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

/// `path` created for writing, with direct I/O when its filesystem has it.
fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    let direct = rustix::fs::OFlags::DIRECT.bits() as i32;
    match options.clone().custom_flags(direct).open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => options.open(path),
        opened => opened,
    }
}

/// Write every batch into `file` (hashing with SHA-256 when asked), then
/// sync it.
fn write_file(
    file: std::fs::File,
    mut batches: tokio::sync::mpsc::Receiver<Batch>,
    with_sha256: bool,
) -> Result<Option<String>> {
    let mut sha256 = with_sha256.then(Sha256::new);
    let mut out = BlockWriter::new(file)?;
    while let Some(batch) = batches.blocking_recv() {
        for piece in batch.iter() {
            if let Some(sha256) = &mut sha256 {
                sha256.update(piece);
            }
            out.write(piece)?;
        }
    }
    out.finish()?;
    Ok(sha256.map(|sha256| hex::encode(sha256.finalize())))
}

/// Writes a file in whole aligned blocks when it was opened for direct
/// I/O, the last partial block through the page cache.
struct BlockWriter {
    file: std::fs::File,
    /// Without direct I/O, bytes go straight to `file`.
    direct: bool,
    buffer: Vec<u8>,
    /// Where the aligned part of `buffer` starts.
    start: usize,
    filled: usize,
}

impl BlockWriter {
    fn new(file: std::fs::File) -> std::io::Result<Self> {
        let direct = rustix::fs::fcntl_getfl(&file)?.contains(rustix::fs::OFlags::DIRECT);
        let buffer = if direct {
            vec![0u8; DIRECT_BYTES + DIRECT_ALIGN]
        } else {
            Vec::new()
        };
        let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
        Ok(Self {
            file,
            direct,
            buffer,
            start,
            filled: 0,
        })
    }

    fn write(&mut self, mut piece: &[u8]) -> std::io::Result<()> {
        if !self.direct {
            return self.file.write_all(piece);
        }
        while !piece.is_empty() {
            let room = DIRECT_BYTES - self.filled;
            let taken = room.min(piece.len());
            let at = self.start + self.filled;
            self.buffer[at..at + taken].copy_from_slice(&piece[..taken]);
            self.filled += taken;
            piece = &piece[taken..];
            if self.filled == DIRECT_BYTES {
                self.file
                    .write_all(&self.buffer[self.start..self.start + DIRECT_BYTES])?;
                self.filled = 0;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        if self.direct && self.filled > 0 {
            let whole = self.filled - self.filled % DIRECT_ALIGN;
            let blocks = self.start..self.start + whole;
            self.file.write_all(&self.buffer[blocks])?;
            // The tail is not a whole block: an ordinary write.
            let flags = rustix::fs::fcntl_getfl(&self.file)?;
            rustix::fs::fcntl_setfl(&self.file, flags - rustix::fs::OFlags::DIRECT)?;
            let tail = self.start + whole..self.start + self.filled;
            self.file.write_all(&self.buffer[tail])?;
        }
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varied(length: u32) -> Vec<u8> {
        (0..length)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Whole blocks, a partial last block and odd piece sizes come out
    /// byte-equal, with their hashes.
    #[tokio::test(flavor = "multi_thread")]
    async fn written_objects_are_byte_equal_with_their_hashes() {
        let bytes = varied((9 << 20) + 4099);
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("object");
        let probe = open_direct(&folder.path().join("probe")).unwrap();
        assert!(
            rustix::fs::fcntl_getfl(&probe)
                .unwrap()
                .contains(rustix::fs::OFlags::DIRECT),
            "the test folder takes direct I/O"
        );
        let mut writer = ObjectWriter::create(&path, true).await.unwrap();
        for piece in bytes.chunks(65_537) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        let stored = writer.finish().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(stored.size, bytes.len() as u64);
        assert_eq!(stored.md5, hex::encode(Md5::digest(&bytes)));
        assert_eq!(
            stored.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&bytes)).as_str())
        );
    }

    /// A file opened without direct I/O (a filesystem without it) is
    /// written as it comes.
    #[test]
    fn files_without_direct_io_are_written_as_they_come() {
        let bytes = varied((4 << 20) + 77);
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("object");
        let mut out = BlockWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        assert!(!out.direct);
        for piece in bytes.chunks(10_000) {
            out.write(piece).unwrap();
        }
        out.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
