//! Where data files' bytes live, and the presigned URLs that move them.
//!
//! A commons has one or more buckets (`--storage`, repeated; the first is
//! the default, `bucket` in an upload request picks another):
//! - a folder on local disk ([`LocalStore`], the default
//!   `<data-dir>/objects`), whose signed URLs Commons serves itself;
//! - an S3-compatible bucket ([`S3Bucket`], `s3://bucket/prefix`), whose
//!   SigV4-presigned URLs go straight to the bucket: Commons never carries
//!   those bytes.
//!
//! Either way a client PUTs a whole object or its parts (multipart) to the
//! URLs it was given, and an object becomes visible only when complete. Size
//! and MD5 (SHA-256 where the bytes pass through Commons) are known when
//! the last byte has arrived: while streaming for the local store, from the
//! bucket's ETag or a verifying read for S3.

mod local;
mod s3;
mod writer;

pub use local::LocalStore;
pub use s3::{S3Bucket, S3Settings};

/// What an upload stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub size: u64,
    pub md5: String,
    /// Known when Commons read the bytes (every local object; S3 objects
    /// assembled from parts, which are read back to verify them).
    pub sha256: Option<String>,
}

/// One uploaded part, as named at `complete`.
#[derive(Debug, Clone)]
pub struct Part {
    pub number: u16,
    pub etag: String,
}

/// S3's multipart limits: parts of 5 MiB (except the last) to 5 GiB, at
/// most 10,000 of them; a single PUT stores at most 5 GiB.
pub const MIN_PART_BYTES: u64 = 5 << 20;
pub const MAX_PART_BYTES: u64 = 5 << 30;
pub const MAX_PARTS: u16 = 10_000;
pub const MAX_OBJECT_BYTES: u64 = 5 << 30;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the object is larger than the {0} bytes allowed")]
    TooLarge(u64),
    #[error("the upload was cut off: {0}")]
    Incomplete(String),
    #[error("no bucket named {0:?} is configured for uploads")]
    UnknownBucket(String),
    #[error("no multipart upload {0:?} is in progress for this key")]
    NoSuchUpload(String),
    /// A part list that cannot complete an upload (numbering, sizes).
    #[error("{0}")]
    InvalidParts(String),
    /// A part named at `complete` whose ETag is not the stored part's.
    #[error("{0}")]
    PartMismatch(String),
    /// The bucket answered with an error.
    #[error("the object store answered: {0}")]
    Remote(String),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// A place objects are kept.
pub enum Bucket {
    Local(LocalStore),
    /// Boxed: a bucket's client and signing state are several times a folder's.
    S3(Box<S3Bucket>),
}

/// Where a commons keeps objects, as configured: folders and
/// `s3://bucket/prefix` URLs, the first the default.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub locations: Vec<String>,
    pub s3: S3Settings,
}

impl StorageConfig {
    /// One folder on local disk.
    pub fn local(root: &std::path::Path) -> Self {
        Self {
            locations: vec![root.display().to_string()],
            s3: S3Settings {
                endpoint: None,
                region: "us-east-1".into(),
                path_style: false,
            },
        }
    }

    /// Open every location; a local store signs with `secret` and points
    /// its URLs at `public_url`.
    pub fn open(&self, secret: &[u8], public_url: &str) -> anyhow::Result<Storage> {
        let mut buckets = Vec::new();
        for location in &self.locations {
            let bucket =
                if location.starts_with("s3://") {
                    Bucket::S3(Box::new(S3Bucket::open(location, &self.s3)?))
                } else {
                    anyhow::ensure!(
                        !buckets.iter().any(|b| matches!(b, Bucket::Local(_))),
                        "only one folder may hold objects; {location} is a second"
                    );
                    let root = std::path::Path::new(location);
                    Bucket::Local(LocalStore::open(root, secret.to_vec(), public_url).map_err(
                        |e| anyhow::anyhow!("cannot open the object store {location}: {e}"),
                    )?)
                };
            anyhow::ensure!(
                !buckets.iter().any(|b: &Bucket| b.name() == bucket.name()),
                "the bucket {} is configured twice",
                bucket.name()
            );
            buckets.push(bucket);
        }
        anyhow::ensure!(!buckets.is_empty(), "no object storage is configured");
        Ok(Storage::new(buckets))
    }
}

/// Every configured bucket; the first is the default.
pub struct Storage {
    buckets: Vec<Bucket>,
}

impl Storage {
    pub fn new(buckets: Vec<Bucket>) -> Self {
        assert!(!buckets.is_empty(), "a commons stores objects somewhere");
        Self { buckets }
    }

    /// The bucket named `name`, or the default one.
    pub fn bucket(&self, name: Option<&str>) -> Result<&Bucket> {
        match name.filter(|n| !n.is_empty()) {
            None => Ok(&self.buckets[0]),
            Some(name) => self
                .buckets
                .iter()
                .find(|b| b.name() == name)
                .ok_or_else(|| StorageError::UnknownBucket(name.to_string())),
        }
    }

    /// The bucket holding the object an index record's `url` names, and
    /// the object's key there.
    pub fn holding<'u>(&self, url: &'u str) -> Option<(&Bucket, &'u str)> {
        self.buckets
            .iter()
            .find_map(|b| b.key_of(url).map(|key| (b, key)))
    }

    /// The local store, whose signed URLs Commons serves.
    pub fn local(&self) -> Option<&LocalStore> {
        self.buckets.iter().find_map(|b| match b {
            Bucket::Local(store) => Some(store),
            Bucket::S3(_) => None,
        })
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }
}

impl Bucket {
    /// The name a request's `bucket` picks it by (`local` for the folder).
    pub fn name(&self) -> &str {
        match self {
            Bucket::Local(_) => "local",
            Bucket::S3(bucket) => bucket.name(),
        }
    }

    /// The origin browsers send this bucket's bytes to, when it is not
    /// Commons itself.
    pub fn origin(&self) -> Option<String> {
        match self {
            Bucket::Local(_) => None,
            Bucket::S3(bucket) => Some(bucket.origin()),
        }
    }

    /// The key a new object `<guid>/<file_name>` gets (under the bucket's prefix).
    pub fn object_key(&self, relative: &str) -> String {
        match self {
            Bucket::Local(_) => relative.to_string(),
            Bucket::S3(bucket) => bucket.object_key(relative),
        }
    }

    /// The url an index record keeps for `key`.
    pub fn url_of(&self, key: &str) -> String {
        match self {
            Bucket::Local(store) => store.url_of(key),
            Bucket::S3(bucket) => bucket.url_of(key),
        }
    }

    /// The key of `url`, when it names an object of this bucket.
    pub fn key_of<'u>(&self, url: &'u str) -> Option<&'u str> {
        match self {
            Bucket::Local(store) => store.key_of(url),
            Bucket::S3(bucket) => bucket.key_of(url),
        }
    }

    /// A URL to GET (or HEAD) `key` for `expires_in` seconds.
    pub fn download_url(&self, key: &str, expires_in: i64) -> String {
        match self {
            Bucket::Local(store) => store.signed_url("GET", key, expires_in),
            Bucket::S3(bucket) => bucket.download_url(key, expires_in),
        }
    }

    /// A URL to PUT the whole of `key` for `expires_in` seconds.
    pub fn upload_url(&self, key: &str, expires_in: i64) -> String {
        match self {
            Bucket::Local(store) => store.signed_url("PUT", key, expires_in),
            Bucket::S3(bucket) => bucket.upload_url(key, expires_in),
        }
    }

    /// A URL to PUT part `number` of multipart upload `upload_id`.
    pub fn part_url(&self, key: &str, upload_id: &str, number: u16, expires_in: i64) -> String {
        match self {
            Bucket::Local(store) => store.part_url(key, upload_id, number, expires_in),
            Bucket::S3(bucket) => bucket.part_url(key, upload_id, number, expires_in),
        }
    }

    /// Start a multipart upload of `key`: its upload id.
    pub async fn start_multipart(&self, key: &str) -> Result<String> {
        match self {
            Bucket::Local(store) => store.start_multipart(key).await,
            Bucket::S3(bucket) => bucket.start_multipart(key).await,
        }
    }

    /// Assemble `parts` into `key`: visible only once whole, with its hashes.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<StoredObject> {
        check_part_numbers(parts)?;
        match self {
            Bucket::Local(store) => store.complete_multipart(key, upload_id, parts).await,
            Bucket::S3(bucket) => bucket.complete_multipart(key, upload_id, parts).await,
        }
    }

    /// What a client PUT straight to the bucket under `prefix` (a record's
    /// `<guid>/`), once it is there: its key and what it holds. The local
    /// store fills records itself when the PUT arrives, so it never has
    /// anything to report here.
    pub async fn landed(&self, prefix: &str) -> Result<Option<(String, StoredObject)>> {
        match self {
            Bucket::Local(_) => Ok(None),
            Bucket::S3(bucket) => bucket.landed(prefix).await,
        }
    }

    /// Remove `key`; a missing object is no error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self {
            Bucket::Local(store) => store.delete(key).await,
            Bucket::S3(bucket) => bucket.delete(key).await,
        }
    }
}

/// Parts named at `complete` must be numbered 1, 2, … without gaps (the
/// order S3 assembles them in), at most [`MAX_PARTS`].
fn check_part_numbers(parts: &[Part]) -> Result<()> {
    if parts.is_empty() {
        return Err(StorageError::InvalidParts(
            "a multipart upload needs at least one part".into(),
        ));
    }
    if parts.len() > usize::from(MAX_PARTS) {
        return Err(StorageError::InvalidParts(format!(
            "a multipart upload has at most {MAX_PARTS} parts"
        )));
    }
    for (index, part) in parts.iter().enumerate() {
        if usize::from(part.number) != index + 1 {
            return Err(StorageError::InvalidParts(format!(
                "parts must be listed in order and numbered 1 to {} without gaps; part {} is numbered {}",
                parts.len(),
                index + 1,
                part.number
            )));
        }
    }
    Ok(())
}

/// An ETag as clients echo it: quotes removed, lower case.
fn bare_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(numbers: &[u16]) -> Vec<Part> {
        numbers
            .iter()
            .map(|&number| Part {
                number,
                etag: "x".into(),
            })
            .collect()
    }

    #[test]
    fn parts_are_numbered_from_one_without_gaps() {
        assert!(check_part_numbers(&parts(&[1, 2, 3])).is_ok());
        for bad in [&[][..], &[2], &[1, 3], &[2, 1], &[1, 1]] {
            assert!(
                matches!(
                    check_part_numbers(&parts(bad)),
                    Err(StorageError::InvalidParts(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(bare_etag(" \"ABC\" "), "abc");
    }
}
