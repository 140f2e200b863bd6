//! The documents of a request body on their way to [`super::Submission::upload`]:
//! the parser, on a blocking thread, hands them over a chunk at a time, so
//! memory follows one chunk however large the body.

use serde_json::Value;
use tokio::sync::mpsc;

use super::UPLOAD_CHUNK;

/// Hands parsed documents to the submission a chunk at a time.
pub struct ChunkSender<E> {
    sender: mpsc::Sender<Result<Vec<Value>, E>>,
    chunk: Vec<Value>,
    /// Input bytes of the documents in `chunk`.
    bytes: u64,
}

/// Input bytes after which a chunk is sent even if it holds fewer than
/// [`UPLOAD_CHUNK`] documents: memory follows bytes, not document counts.
const CHUNK_INPUT_BYTES: u64 = 32 << 20;

impl<E> ChunkSender<E> {
    pub fn new(sender: mpsc::Sender<Result<Vec<Value>, E>>) -> Self {
        Self {
            sender,
            chunk: Vec::with_capacity(UPLOAD_CHUNK),
            bytes: 0,
        }
    }

    /// Add a document read from `bytes` of input; false once the submission
    /// has stopped listening.
    pub fn push(&mut self, doc: Value, bytes: u64) -> bool {
        self.chunk.push(doc);
        self.bytes += bytes;
        if self.chunk.len() < UPLOAD_CHUNK && self.bytes < CHUNK_INPUT_BYTES {
            return true;
        }
        self.bytes = 0;
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(UPLOAD_CHUNK));
        self.sender.blocking_send(Ok(full)).is_ok()
    }

    /// Send the last chunk and the end mark (an empty chunk), or the error
    /// that ended parsing. The submission may be gone already (the client
    /// hung up), so sending may fail.
    pub fn finish(self, parsed: Result<(), E>) {
        match parsed {
            Ok(()) => {
                if !self.chunk.is_empty() && self.sender.blocking_send(Ok(self.chunk)).is_err() {
                    return;
                }
                let _ = self.sender.blocking_send(Ok(Vec::new()));
            }
            Err(e) => {
                let _ = self.sender.blocking_send(Err(e));
            }
        }
    }
}
