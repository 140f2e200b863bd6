//! Objects on local disk, served by Commons itself at signed, expiring
//! URLs, as a bucket serves presigned ones. A URL names a method, an object
//! key (`<guid>/<file_name>`), an expiry and, for a part, its upload and
//! number, with an HMAC-SHA256 over them under a secret kept in the
//! database, so every instance sharing the database accepts the others'
//! URLs and a changed or expired URL is refused.
//!
//! An object is written to a temporary file while its size, MD5 and SHA-256
//! are computed, synced, then renamed into place: it is visible only whole,
//! and its hashes are known when its last byte arrives. Multipart uploads
//! keep their parts in a folder of their own until `complete` joins them,
//! checking each part's MD5 against the ETag the client names.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::writer::ObjectWriter;
use super::{MIN_PART_BYTES, Part, Result, StorageError, StoredObject, bare_etag};
use crate::store::now_unix;

/// The storage of objects on local disk.
pub struct LocalStore {
    root: PathBuf,
    secret: Vec<u8>,
    /// `<public-url>/_objects`: where signed URLs point.
    base_url: String,
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
/// Where multipart uploads keep their parts, inside [`INCOMING`]: a folder
/// per upload, holding the key it is for and one file per part.
const MULTIPART: &str = "multipart";

impl LocalStore {
    /// The store at `root` (created if missing), signing with `secret`.
    pub fn open(root: &Path, secret: Vec<u8>, public_url: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join(INCOMING).join(MULTIPART))?;
        sweep(&root.join(INCOMING), std::time::SystemTime::now());
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

    /// The MAC of one signed permission: method, key, expiry and, for a
    /// part of a multipart upload, the upload and the part's number.
    fn mac(
        &self,
        method: &str,
        key: &str,
        expires: i64,
        part: Option<(&str, u16)>,
    ) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(format!("{method}\n{key}\n{expires}").as_bytes());
        if let Some((upload_id, number)) = part {
            mac.update(format!("\n{upload_id}\n{number}").as_bytes());
        }
        mac
    }

    fn url_path(&self, key: &str) -> String {
        let path: Vec<String> = key
            .split('/')
            .map(|segment| percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string())
            .collect();
        format!("{}/{}", self.base_url, path.join("/"))
    }

    /// A URL that lets its holder `method` (GET or PUT) `key` for
    /// `expires_in` seconds.
    pub fn signed_url(&self, method: &str, key: &str, expires_in: i64) -> String {
        self.signed_url_until(method, key, now_unix() + expires_in)
    }

    fn signed_url_until(&self, method: &str, key: &str, expires: i64) -> String {
        format!(
            "{}?expires={expires}&sig={}",
            self.url_path(key),
            hex::encode(self.mac(method, key, expires, None).finalize().into_bytes())
        )
    }

    /// A URL that lets its holder PUT part `number` of `upload_id`.
    pub fn part_url(&self, key: &str, upload_id: &str, number: u16, expires_in: i64) -> String {
        let expires = now_unix() + expires_in;
        let mac = self.mac("PUT", key, expires, Some((upload_id, number)));
        format!(
            "{}?uploadId={upload_id}&partNumber={number}&expires={expires}&sig={}",
            self.url_path(key),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Whether `signature` lets `method` act on `key` (or on one part of it)
    /// at `now`.
    pub fn verify(
        &self,
        method: &str,
        key: &str,
        part: Option<(&str, u16)>,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        // Constant-time comparison first, so timing tells nothing of the signature.
        self.mac(method, key, expires, part)
            .verify_slice(&given)
            .is_ok()
            && now < expires
    }

    /// The file of `key`.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        valid_key(key).then(|| self.root.join(key))
    }

    /// Store `body` as `key`, at most `max_bytes`: visible only once whole.
    pub async fn put<E: std::fmt::Display>(
        &self,
        key: &str,
        body: impl Stream<Item = std::result::Result<bytes::Bytes, E>>,
        max_bytes: u64,
    ) -> Result<StoredObject> {
        self.write_into_place(key, |temporary| async move {
            write_hashed(&temporary, body, max_bytes, true).await
        })
        .await
    }

    /// Make the object `key` from what `write` puts into a temporary file:
    /// renamed into place once whole, removed if anything failed.
    async fn write_into_place<F, Fut>(&self, key: &str, write: F) -> Result<StoredObject>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<StoredObject>>,
    {
        let target = self
            .path(key)
            .ok_or_else(|| std::io::Error::other(format!("invalid object key {key:?}")))?;
        let temporary = self
            .root
            .join(INCOMING)
            .join(uuid::Uuid::new_v4().simple().to_string());
        let stored = match write(temporary.clone()).await {
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

    /// The folder of multipart upload `upload_id`, when it is one of ours
    /// and is uploading `key`.
    async fn upload_folder(&self, key: &str, upload_id: &str) -> Result<PathBuf> {
        let no_such_upload = || StorageError::NoSuchUpload(upload_id.to_string());
        if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(no_such_upload());
        }
        let folder = self.root.join(INCOMING).join(MULTIPART).join(upload_id);
        match tokio::fs::read_to_string(folder.join("key")).await {
            Ok(stored_key) if stored_key == key => Ok(folder),
            Ok(_) => Err(no_such_upload()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_such_upload()),
            Err(e) => Err(e.into()),
        }
    }

    /// Start a multipart upload of `key`: its upload id.
    pub async fn start_multipart(&self, key: &str) -> Result<String> {
        if self.path(key).is_none() {
            return Err(std::io::Error::other(format!("invalid object key {key:?}")).into());
        }
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let folder = self.root.join(INCOMING).join(MULTIPART).join(&upload_id);
        tokio::fs::create_dir(&folder).await?;
        tokio::fs::write(folder.join("key"), key).await?;
        Ok(upload_id)
    }

    /// Store part `number` of `upload_id` (replacing an earlier try): its MD5,
    /// the part's ETag.
    pub async fn put_part<E: std::fmt::Display>(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: impl Stream<Item = std::result::Result<bytes::Bytes, E>>,
    ) -> Result<String> {
        let folder = self.upload_folder(key, upload_id).await?;
        let temporary = folder.join(format!(".{}", uuid::Uuid::new_v4().simple()));
        match write_hashed(&temporary, body, super::MAX_PART_BYTES, false).await {
            Ok(stored) => {
                // The MD5 first: a part whose file is in place always has it
                // (a crash in between leaves an MD5 that `complete` refuses).
                tokio::fs::write(folder.join(format!("{number}.md5")), &stored.md5).await?;
                tokio::fs::rename(&temporary, folder.join(number.to_string())).await?;
                Ok(stored.md5)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                Err(e)
            }
        }
    }

    /// Join `parts` into `key`, each checked against its ETag (the MD5 kept
    /// when it was stored), hashing the whole as it is written; the parts go
    /// once the object is in place.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<StoredObject> {
        let folder = self.upload_folder(key, upload_id).await?;
        let stored = self
            .write_into_place(key, |temporary| {
                let folder = folder.clone();
                async move { join_parts(&folder, parts, &temporary).await }
            })
            .await?;
        tokio::fs::remove_dir_all(&folder).await?;
        Ok(stored)
    }

    /// Remove `key`; a missing object is no error.
    pub async fn delete(&self, key: &str) -> Result<()> {
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

/// How long a temporary file of a cut-off upload (a killed process) and a
/// multipart upload never completed are kept, as S3 lifecycle rules would.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
const STALE_MULTIPART: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Remove what uploads that never finished left in `incoming`; best effort.
fn sweep(incoming: &Path, now: std::time::SystemTime) {
    let older_than = |path: &Path, age| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > age)
    };
    let entries = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    for path in entries(incoming) {
        if path.is_file() && older_than(&path, STALE_UPLOAD) {
            let _ = std::fs::remove_file(&path);
        }
    }
    for upload in entries(&incoming.join(MULTIPART)) {
        if older_than(&upload.join("key"), STALE_MULTIPART) {
            let _ = std::fs::remove_dir_all(&upload);
        }
    }
}

/// Copy the parts in order into `target`, after checking each one's ETag
/// and size, hashing the whole.
async fn join_parts(folder: &Path, parts: &[Part], target: &Path) -> Result<StoredObject> {
    use tokio::io::AsyncReadExt;
    let never_uploaded = |part: &Part| {
        StorageError::InvalidParts(format!("part {} was never uploaded", part.number))
    };
    for (index, part) in parts.iter().enumerate() {
        let stored_md5 =
            match tokio::fs::read_to_string(folder.join(format!("{}.md5", part.number))).await {
                Ok(md5) => md5,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(never_uploaded(part));
                }
                Err(e) => return Err(e.into()),
            };
        if stored_md5 != bare_etag(&part.etag) {
            return Err(StorageError::PartMismatch(format!(
                "part {}'s ETag {} is not the uploaded part's ({stored_md5})",
                part.number, part.etag
            )));
        }
        let part_size = match tokio::fs::metadata(folder.join(part.number.to_string())).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(never_uploaded(part)),
            Err(e) => return Err(e.into()),
        };
        if part_size < MIN_PART_BYTES && index + 1 < parts.len() {
            return Err(StorageError::InvalidParts(format!(
                "part {} has {part_size} bytes; every part but the last needs at least {MIN_PART_BYTES} (EntityTooSmall)",
                part.number
            )));
        }
    }
    let mut out = ObjectWriter::create(target, true).await?;
    for part in parts {
        let mut file = tokio::fs::File::open(folder.join(part.number.to_string())).await?;
        loop {
            let mut buffer = bytes::BytesMut::with_capacity(1 << 20);
            if file.read_buf(&mut buffer).await? == 0 {
                break;
            }
            out.write(buffer.freeze()).await?;
        }
    }
    out.finish().await
}

/// Write `body` to `path` (at most `max_bytes`), hashing it on the way.
async fn write_hashed<E: std::fmt::Display>(
    path: &Path,
    body: impl Stream<Item = std::result::Result<bytes::Bytes, E>>,
    max_bytes: u64,
    with_sha256: bool,
) -> Result<StoredObject> {
    let mut out = ObjectWriter::create(path, with_sha256).await?;
    futures::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StorageError::Incomplete(e.to_string()))?;
        if out.size() + chunk.len() as u64 > max_bytes {
            return Err(StorageError::TooLarge(max_bytes));
        }
        out.write(chunk).await?;
    }
    out.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Md5;
    use sha2::Digest;

    fn store(dir: &Path) -> LocalStore {
        LocalStore::open(dir, b"secret".to_vec(), "http://commons.test").unwrap()
    }

    #[test]
    fn signatures_bind_method_key_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let url = store.signed_url_until("GET", "g-1/a b.txt", 2000);
        assert!(
            url.starts_with("http://commons.test/_objects/g-1/a%20b.txt?expires=2000&sig="),
            "{url}"
        );
        let sig = url.rsplit_once("sig=").unwrap().1;
        assert!(store.verify("GET", "g-1/a b.txt", None, 2000, sig, 1999));
        assert!(
            !store.verify("GET", "g-1/a b.txt", None, 2000, sig, 2000),
            "expired"
        );
        assert!(
            !store.verify("PUT", "g-1/a b.txt", None, 2000, sig, 1999),
            "another method"
        );
        assert!(
            !store.verify("GET", "g-1/other", None, 2000, sig, 1999),
            "another key"
        );
        assert!(
            !store.verify("GET", "g-1/a b.txt", None, 2001, sig, 1999),
            "another expiry"
        );
        assert!(
            !store.verify("PUT", "g-1/a b.txt", Some(("u", 1)), 2000, sig, 1999),
            "a whole-object signature is no part's"
        );
        let other = LocalStore::open(dir.path(), b"other".to_vec(), "http://x").unwrap();
        assert!(
            !other.verify("GET", "g-1/a b.txt", None, 2000, sig, 1999),
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
            stored.sha256.as_deref(),
            Some("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
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
                .filter(|e| e.as_ref().unwrap().file_name() != MULTIPART)
                .count(),
            0
        );

        store.delete("g/hello.txt").await.unwrap();
        assert!(!dir.path().join("g").exists());
        store.delete("g/hello.txt").await.unwrap();
    }

    #[tokio::test]
    async fn parts_join_in_order_only_when_every_etag_matches() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let one = |data: Vec<u8>| {
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))])
        };
        let first = vec![b'a'; MIN_PART_BYTES as usize];
        let upload = store.start_multipart("g/big.bin").await.unwrap();
        let etag1 = store
            .put_part("g/big.bin", &upload, 1, one(first.clone()))
            .await
            .unwrap();
        let etag2 = store
            .put_part("g/big.bin", &upload, 2, one(b"tail".to_vec()))
            .await
            .unwrap();
        assert_eq!(etag2, hex::encode(Md5::digest(b"tail")));
        assert!(
            matches!(
                store
                    .put_part("g/other.bin", &upload, 1, one(vec![1]))
                    .await,
                Err(StorageError::NoSuchUpload(_))
            ),
            "an upload id is bound to its key"
        );

        let wrong = [
            Part {
                number: 1,
                etag: etag1.clone(),
            },
            Part {
                number: 2,
                etag: format!("\"{etag1}\""),
            },
        ];
        assert!(matches!(
            store.complete_multipart("g/big.bin", &upload, &wrong).await,
            Err(StorageError::PartMismatch(_))
        ));
        assert!(!dir.path().join("g/big.bin").exists());

        let small_first = [Part {
            number: 1,
            etag: etag2.clone(),
        }];
        let upload_small = store.start_multipart("g/s.bin").await.unwrap();
        store
            .put_part("g/s.bin", &upload_small, 1, one(b"tail".to_vec()))
            .await
            .unwrap();
        store
            .put_part("g/s.bin", &upload_small, 2, one(b"tail".to_vec()))
            .await
            .unwrap();
        let two_small = [
            small_first[0].clone(),
            Part {
                number: 2,
                etag: etag2.clone(),
            },
        ];
        assert!(
            matches!(
                store
                    .complete_multipart("g/s.bin", &upload_small, &two_small)
                    .await,
                Err(StorageError::InvalidParts(_))
            ),
            "parts but the last need 5 MiB"
        );

        let right = [
            Part {
                number: 1,
                etag: format!("\"{etag1}\""),
            },
            Part {
                number: 2,
                etag: etag2,
            },
        ];
        let stored = store
            .complete_multipart("g/big.bin", &upload, &right)
            .await
            .unwrap();
        let mut whole = first;
        whole.extend_from_slice(b"tail");
        assert_eq!(stored.size, whole.len() as u64);
        assert_eq!(stored.md5, hex::encode(Md5::digest(&whole)));
        assert_eq!(std::fs::read(dir.path().join("g/big.bin")).unwrap(), whole);
        assert!(
            matches!(
                store.complete_multipart("g/big.bin", &upload, &right).await,
                Err(StorageError::NoSuchUpload(_))
            ),
            "a completed upload is gone"
        );
    }

    #[tokio::test]
    async fn uploads_left_unfinished_are_swept_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let incoming = dir.path().join(INCOMING);
        let cut_off = incoming.join("0123");
        std::fs::write(&cut_off, b"half").unwrap();
        let upload = store.start_multipart("g/big.bin").await.unwrap();
        let now = std::time::SystemTime::now();
        sweep(&incoming, now);
        assert!(cut_off.exists(), "a fresh upload may still be under way");
        sweep(
            &incoming,
            now + STALE_UPLOAD + std::time::Duration::from_secs(1),
        );
        assert!(!cut_off.exists(), "a day-old temporary file goes");
        let folder = incoming.join(MULTIPART).join(&upload);
        assert!(folder.exists(), "a multipart upload gets a week");
        sweep(
            &incoming,
            now + STALE_MULTIPART + std::time::Duration::from_secs(1),
        );
        assert!(!folder.exists());
    }
}
