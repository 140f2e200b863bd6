//! The file index (Gen3's indexd) without HTTP: records as indexd writes and
//! answers them, who may change which record, listings, versions and
//! aliases (FILES.md §1.2-§1.3, §4 F1). The store keeps the rows; this
//! module keeps indexd's rules, so the HTTP routes, the manifest import and
//! the submission of data-file nodes all make the same records.

mod body;
mod creates;
mod manifest;
mod query;

use serde_json::{Map, Value, json};

use crate::auth::Permissions;
use crate::storage::{Storage, StoredObject};
use crate::store::{IndexRecord, Store, StoreError};

pub use body::{update_blank, update_record, update_version_authz};
pub use creates::CreateQueue;
pub use manifest::{ImportSummary, ManifestError};
pub use query::{ListRequest, MAX_LIMIT, list_query};

/// What the index refuses, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// No such record (404).
    #[error("no record found")]
    NotFound,
    /// A stale `rev`, a taken did or alias (409).
    #[error("{0}")]
    Conflict(String),
    /// Authenticated, but without the permission (403).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// The resource whose grants administer the index when a record has no `authz`.
pub const ADMIN_RESOURCE: &str = "/services/indexd/admin";

/// The resource whose `file_upload` grant lets a user create blank records.
pub const UPLOAD_RESOURCE: &str = "/data_file";

/// The index as a service: the store and the did prefix this commons mints.
#[derive(Clone, Copy)]
pub struct FileIndex<'a> {
    pub store: &'a Store,
    /// `DEFAULT_PREFIX` of indexd (`dg.XXXX/`), or empty.
    pub prefix: &'a str,
    /// The buckets clients upload to. Bytes PUT straight to an S3 bucket
    /// pass no Commons code, so a blank record is filled from its bucket
    /// when it is read: the first read after the upload shows size and MD5.
    pub landing: Option<&'a Storage>,
}

/// Whether a record still waits for its bytes (an upload's blank record).
pub fn is_blank(record: &IndexRecord) -> bool {
    record.size.is_none() && record.hashes.is_empty() && record.urls.is_empty()
}

/// `record` filled with what was stored at `url`.
pub fn filled(record: &IndexRecord, url: String, stored: &StoredObject) -> IndexRecord {
    let mut filled = record.clone();
    filled.size = Some(stored.size as i64);
    filled.hashes = std::iter::once(("md5".to_string(), stored.md5.clone()))
        .chain(stored.sha256.clone().map(|sha| ("sha256".to_string(), sha)))
        .collect();
    filled.urls = vec![url];
    filled
}

/// A new record's rev: the first eight hex digits of a fresh UUID, as indexd.
pub fn new_rev() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Now, as indexd writes dates: ISO 8601, naive UTC, microseconds.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// A record as indexd answers it (`to_document_dict`).
pub fn document(record: &IndexRecord) -> Value {
    let urls_metadata: Map<String, Value> = record
        .urls
        .iter()
        .map(|url| {
            let meta = record
                .urls_metadata
                .get(url)
                .cloned()
                .unwrap_or_else(|| json!({}));
            (url.clone(), meta)
        })
        .collect();
    json!({
        "did": record.did,
        "baseid": record.baseid,
        "rev": record.rev,
        "form": record.form,
        "size": record.size,
        "file_name": record.file_name,
        "version": record.version,
        "uploader": record.uploader,
        "description": record.description,
        "hashes": record.hashes,
        "urls": record.urls,
        "urls_metadata": urls_metadata,
        "acl": record.acl,
        "authz": record.authz,
        "metadata": record.metadata,
        "created_date": record.created_date,
        "updated_date": record.updated_date,
        "content_created_date": record.content_created_date,
        "content_updated_date": record.content_updated_date,
    })
}

/// `{did, baseid, rev}`: what a write answers.
pub fn receipt(record: &IndexRecord) -> Value {
    json!({"did": record.did, "baseid": record.baseid, "rev": record.rev})
}

/// Refuses unless the caller holds `(indexd, method)` on every resource of
/// `authz`, or on the index's admin resource (which also stands for an
/// empty `authz`, as does `/programs`, indexd's deprecated admin rule).
pub fn authorize(permissions: &Permissions, method: &str, authz: &[&String]) -> Result<()> {
    let allows = |resource: &str| permissions.allows(resource, "indexd", method);
    let denied = authz.iter().find(|r| !allows(r));
    if !authz.is_empty() && denied.is_none()
        || allows(ADMIN_RESOURCE)
        || authz.is_empty() && allows("/programs")
    {
        return Ok(());
    }
    let resource = denied.map_or(ADMIN_RESOURCE, |r| r.as_str());
    Err(IndexError::Forbidden(format!(
        "Permission denied: ({method}) on {resource} for service indexd"
    )))
}

impl FileIndex<'_> {
    /// A fresh did, with this commons' prefix.
    pub fn mint(&self) -> String {
        format!("{}{}", self.prefix, uuid::Uuid::new_v4())
    }

    /// The record of `did`, tolerating a missing or extra prefix, as indexd's
    /// `get_with_nonstrict_prefix`.
    pub async fn get(&self, did: &str) -> Result<IndexRecord> {
        if let Some(record) = self.store.index_record(did).await? {
            return Ok(self.settle(record).await);
        }
        let other = match did.strip_prefix(self.prefix) {
            Some(bare) if !self.prefix.is_empty() => bare.to_string(),
            _ if !self.prefix.is_empty() => format!("{}{did}", self.prefix),
            _ => return Err(IndexError::NotFound),
        };
        let record = self
            .store
            .index_record(&other)
            .await?
            .ok_or(IndexError::NotFound)?;
        Ok(self.settle(record).await)
    }

    /// `record`, filled and stored if it is blank and its bytes have landed
    /// in a bucket. A bucket that cannot be asked leaves the record as it is.
    pub async fn settle(&self, record: IndexRecord) -> IndexRecord {
        let Some(full) = self.landed_record(&record).await else {
            return record;
        };
        match self.replace(full, &record.rev).await {
            Ok(full) => full,
            // Filled meanwhile by another reader: theirs is the same.
            Err(_) => self
                .store
                .index_record(&record.did)
                .await
                .ok()
                .flatten()
                .unwrap_or(record),
        }
    }

    /// What a blank `record` becomes with the bytes that landed for it in
    /// a bucket, without storing it (a submission stores it with its own
    /// changes, in its own transaction).
    pub async fn landed_record(&self, record: &IndexRecord) -> Option<IndexRecord> {
        let storage = self.landing?;
        if !is_blank(record) {
            return None;
        }
        for bucket in storage.buckets() {
            let prefix = bucket.object_key(&format!("{}/", record.did));
            match bucket.landed(&prefix).await {
                Ok(Some((key, stored))) => {
                    let mut full = filled(record, bucket.url_of(&key), &stored);
                    if full.file_name.is_none() {
                        full.file_name = key.rsplit('/').next().map(str::to_string);
                    }
                    return Some(full);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(did = %record.did, bucket = bucket.name(), error = %e, "cannot ask the bucket whether an upload landed");
                }
            }
        }
        None
    }

    /// Records of a listing, blank ones settled as [`Self::settle`] does.
    pub async fn settle_all(&self, records: Vec<IndexRecord>) -> Vec<IndexRecord> {
        if self.landing.is_none() || !records.iter().any(is_blank) {
            return records;
        }
        let mut settled = Vec::with_capacity(records.len());
        for record in records {
            settled.push(self.settle(record).await);
        }
        settled
    }

    /// A did, or a baseid (its newest version).
    pub async fn get_or_latest(&self, did: &str) -> Result<IndexRecord> {
        match self.get(did).await {
            Err(IndexError::NotFound) => self
                .store
                .index_versions(did)
                .await?
                .pop()
                .ok_or(IndexError::NotFound),
            other => other,
        }
    }

    /// `GET /index/<did-or-alias>`: a did first, then an alias.
    pub async fn resolve(&self, name: &str) -> Result<IndexRecord> {
        match self.get_or_latest(name).await {
            Err(IndexError::NotFound) => match self.store.index_did_of_alias(name).await? {
                Some(did) => self.get(&did).await,
                None => Err(IndexError::NotFound),
            },
            other => other,
        }
    }

    /// Store new records; a did or alias taken is a conflict.
    pub async fn insert(&self, records: Vec<(IndexRecord, Vec<String>)>) -> Result<()> {
        self.store
            .index_insert(&records)
            .await
            .map_err(insert_error)
    }

    /// Replace a record whose stored rev is `rev`; the record goes out with a new rev.
    pub async fn replace(&self, mut record: IndexRecord, rev: &str) -> Result<IndexRecord> {
        record.rev = new_rev();
        record.updated_date = now();
        if self.store.index_replace(&record, rev).await? {
            Ok(record)
        } else {
            Err(revision_mismatch())
        }
    }

    pub async fn delete(&self, record: &IndexRecord, rev: &str) -> Result<()> {
        if record.rev != rev || !self.store.index_delete(&record.did, rev).await? {
            return Err(revision_mismatch());
        }
        Ok(())
    }

    /// Every version of the record's file, oldest first.
    pub async fn versions(&self, record: &IndexRecord) -> Result<Vec<IndexRecord>> {
        Ok(self.store.index_versions(&record.baseid).await?)
    }

    /// The newest version; with `has_version`, the newest that has a `version`.
    pub async fn latest(&self, did: &str, has_version: bool) -> Result<IndexRecord> {
        let record = self.get_or_latest(did).await?;
        self.versions(&record)
            .await?
            .into_iter()
            .rev()
            .find(|r| !has_version || r.version.is_some())
            .ok_or(IndexError::NotFound)
    }

    /// `{"aliases": [{"value"}]}` of a record.
    pub async fn aliases(&self, did: &str) -> Result<Value> {
        let aliases = self.store.index_aliases(did).await?;
        Ok(json!({"aliases": aliases.iter().map(|a| json!({"value": a})).collect::<Vec<_>>()}))
    }

    /// Add (or, with `replace`, set) a record's aliases.
    pub async fn set_aliases(&self, did: &str, body: &Value, replace: bool) -> Result<Value> {
        let aliases = body::aliases(body)?;
        self.store
            .index_set_aliases(did, &aliases, replace)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => IndexError::Conflict(format!(
                    "one or more aliases in {aliases:?} already in use"
                )),
                other => other.into(),
            })?;
        self.aliases(did).await
    }
}

/// The index's answer to a failed insert: a taken did or alias is a conflict.
fn insert_error(e: StoreError) -> IndexError {
    match e {
        StoreError::Conflict(_) => IndexError::Conflict("did or alias already exists".into()),
        other => other.into(),
    }
}

pub fn revision_mismatch() -> IndexError {
    IndexError::Conflict("revision mismatch".into())
}
