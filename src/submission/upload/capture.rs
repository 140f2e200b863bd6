//! The request body as the transaction log keeps it.

use super::*;

/// The request body as the transaction log keeps it: its size, and its text
/// while it is no larger than [`KEPT_DOCUMENT_BYTES`]. The body reader records
/// each piece as it arrives.
#[derive(Debug, Clone)]
pub struct BodyCapture {
    format: &'static str,
    seen: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    size: usize,
    kept: Vec<u8>,
}

impl BodyCapture {
    /// A capture of a body in `format` (`JSON`, `TSV`, `CSV`).
    pub fn new(format: &'static str) -> Self {
        Self {
            format,
            seen: Arc::default(),
        }
    }

    pub fn record(&self, piece: &[u8]) {
        let mut seen = self.seen.lock().expect("capture lock poisoned");
        seen.size += piece.len();
        if seen.size <= KEPT_DOCUMENT_BYTES {
            seen.kept.extend_from_slice(piece);
        } else {
            seen.kept = Vec::new();
        }
    }

    pub(super) fn document(&self) -> TransactionDocument {
        let seen = self.seen.lock().expect("capture lock poisoned");
        TransactionDocument {
            format: self.format.to_string(),
            size: seen.size as i64,
            text: (seen.size <= KEPT_DOCUMENT_BYTES)
                .then(|| String::from_utf8_lossy(&seen.kept).into_owned()),
        }
    }
}
