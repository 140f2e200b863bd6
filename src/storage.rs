//! Where data files' bytes live: a folder (`--storage`, by default
//! `<data-dir>/objects`), served by Commons itself at signed, expiring URLs,
//! as a bucket serves presigned ones. A URL names a method, an object key
//! (`<guid>/<file_name>`) and an expiry, with an HMAC-SHA256 over the three
//! under a secret kept in the database, so every instance sharing the
//! database accepts the others' URLs and a changed or expired URL is refused.
//!
//! An object is written to a temporary file while its size, MD5 and SHA-256
//! are computed, synced, then renamed into place: it is visible only whole,
//! and its hashes are known when its last byte arrives.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The storage of objects on local disk.
pub struct LocalStore {
    root: PathBuf,
    secret: Vec<u8>,
    /// `<public-url>/_objects`: where signed URLs point.
    base_url: String,
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the object is larger than the {0} bytes allowed")]
    TooLarge(u64),
    #[error("the upload was cut off: {0}")]
    Incomplete(String),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

/// What a key's segment escapes in a URL path (RFC 3986's reserved and
/// unsafe characters; letters, digits, `-._~` stay as they are).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where temporary files of uploads in progress go, inside the root.
const INCOMING: &str = ".incoming";

impl LocalStore {
    /// The store at `root` (created if missing), signing with `secret`.
    pub fn open(root: &Path, secret: Vec<u8>, public_url: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join(INCOMING))?;
        Ok(Self {
            root: std::fs::canonicalize(root)?,
            secret,
            base_url: format!("{}/_objects", public_url.trim_end_matches('/')),
        })
    }

    /// The url an index record keeps for `key`.
    pub fn url_of(&self, key: &str) -> String {
        format!("file://{}/{key}", self.root.display())
    }

    /// The key of `url`, when it names an object of this store.
    pub fn key_of<'u>(&self, url: &'u str) -> Option<&'u str> {
        let path = url.strip_prefix("file://")?;
        let key = path.strip_prefix(self.root.to_str()?)?.strip_prefix('/')?;
        valid_key(key).then_some(key)
    }

    /// The MAC of one signed permission: method, key and expiry.
    fn mac(&self, method: &str, key: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(format!("{method}\n{key}\n{expires}").as_bytes());
        mac
    }

    /// A URL that lets its holder `method` (GET or PUT) `key` until
    /// `expires` (Unix seconds).
    pub fn signed_url(&self, method: &str, key: &str, expires: i64) -> String {
        let path: Vec<String> = key
            .split('/')
            .map(|segment| percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string())
            .collect();
        format!(
            "{}/{}?expires={expires}&sig={}",
            self.base_url,
            path.join("/"),
            hex::encode(self.mac(method, key, expires).finalize().into_bytes())
        )
    }

    /// Whether `signature` lets `method` act on `key` at `now`.
    pub fn verify(&self, method: &str, key: &str, expires: i64, signature: &str, now: i64) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        // Constant-time comparison first, so timing tells nothing of the signature.
        self.mac(method, key, expires).verify_slice(&given).is_ok() && now < expires
    }

    /// The file of `key`.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        valid_key(key).then(|| self.root.join(key))
    }

    /// Store `body` as `key`, at most `max_bytes`: visible only once whole.
    pub async fn put<E: std::fmt::Display>(
        &self,
        key: &str,
        body: impl Stream<Item = Result<bytes::Bytes, E>>,
        max_bytes: u64,
    ) -> Result<StoredObject, StorageError> {
        let target = self
            .path(key)
            .ok_or_else(|| std::io::Error::other(format!("invalid object key {key:?}")))?;
        let temporary = self
            .root
            .join(INCOMING)
            .join(uuid::Uuid::new_v4().simple().to_string());
        let written = write_hashed(&temporary, body, max_bytes).await;
        let stored = match written {
            Ok(stored) => stored,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(e);
            }
        };
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&temporary, &target).await?;
        Ok(stored)
    }

    /// Remove `key`; a missing object is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        if let Some(parent) = path.parent()
            && parent != self.root
        {
            // The guid's folder, once empty.
            let _ = tokio::fs::remove_dir(parent).await;
        }
        Ok(())
    }
}

/// A key is `<guid>/<file_name>`: relative, without `.`/`..` segments or
/// empty ones, and not in the folder of uploads in progress.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(INCOMING)
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\0'))
}

async fn write_hashed<E: std::fmt::Display>(
    path: &Path,
    body: impl Stream<Item = Result<bytes::Bytes, E>>,
    max_bytes: u64,
) -> Result<StoredObject, StorageError> {
    let file = tokio::fs::File::create(path).await?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let (mut md5, mut sha256, mut size) = (Md5::new(), Sha256::new(), 0u64);
    futures::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StorageError::Incomplete(e.to_string()))?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(StorageError::TooLarge(max_bytes));
        }
        md5.update(&chunk);
        sha256.update(&chunk);
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    out.get_ref().sync_all().await?;
    Ok(StoredObject {
        size,
        md5: hex::encode(md5.finalize()),
        sha256: hex::encode(sha256.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> LocalStore {
        LocalStore::open(dir, b"secret".to_vec(), "http://commons.test").unwrap()
    }

    #[test]
    fn signatures_bind_method_key_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let url = store.signed_url("GET", "g-1/a b.txt", 2000);
        assert!(
            url.starts_with("http://commons.test/_objects/g-1/a%20b.txt?expires=2000&sig="),
            "{url}"
        );
        let sig = url.rsplit_once("sig=").unwrap().1;
        assert!(store.verify("GET", "g-1/a b.txt", 2000, sig, 1999));
        assert!(
            !store.verify("GET", "g-1/a b.txt", 2000, sig, 2000),
            "expired"
        );
        assert!(
            !store.verify("PUT", "g-1/a b.txt", 2000, sig, 1999),
            "another method"
        );
        assert!(
            !store.verify("GET", "g-1/other", 2000, sig, 1999),
            "another key"
        );
        assert!(
            !store.verify("GET", "g-1/a b.txt", 2001, sig, 1999),
            "another expiry"
        );
        let other = LocalStore::open(dir.path(), b"other".to_vec(), "http://x").unwrap();
        assert!(
            !other.verify("GET", "g-1/a b.txt", 2000, sig, 1999),
            "another secret"
        );
    }

    #[test]
    fn keys_stay_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        for bad in ["", "../x", "a/../../x", "a//b", ".incoming/x", "/abs"] {
            assert!(store.path(bad).is_none(), "{bad:?}");
        }
        let url = store.url_of("g/f.txt");
        assert_eq!(store.key_of(&url), Some("g/f.txt"));
        assert_eq!(store.key_of("s3://bucket/g/f.txt"), None);
    }

    #[tokio::test]
    async fn an_object_appears_whole_with_its_hashes_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let chunks = |parts: Vec<&'static [u8]>| {
            futures::stream::iter(
                parts
                    .into_iter()
                    .map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from_static(p))),
            )
        };
        let stored = store
            .put("g/hello.txt", chunks(vec![b"hello ", b"world"]), 100)
            .await
            .unwrap();
        assert_eq!(stored.size, 11);
        assert_eq!(stored.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            stored.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            std::fs::read(dir.path().join("g/hello.txt")).unwrap(),
            b"hello world"
        );

        let too_large = store.put("g/big", chunks(vec![b"0123456789"]), 5).await;
        assert!(matches!(too_large, Err(StorageError::TooLarge(5))));
        let cut = futures::stream::iter([
            Ok(bytes::Bytes::from_static(b"part")),
            Err(std::io::Error::other("connection reset")),
        ]);
        assert!(matches!(
            store.put("g/cut", cut, 100).await,
            Err(StorageError::Incomplete(_))
        ));
        assert!(!dir.path().join("g/big").exists() && !dir.path().join("g/cut").exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join(INCOMING))
                .unwrap()
                .count(),
            0
        );

        store.delete("g/hello.txt").await.unwrap();
        assert!(!dir.path().join("g").exists());
        store.delete("g/hello.txt").await.unwrap();
    }
}
