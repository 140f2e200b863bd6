//! An S3-compatible bucket (`--storage s3://bucket/prefix`): clients move
//! bytes straight to and from it through SigV4-presigned URLs (rusty-s3
//! signs every action; it does no I/O), and Commons itself only starts and
//! completes multipart uploads, asks whether an object has landed, reads an
//! assembled object back once to hash it, and deletes.
//!
//! Credentials come from the usual AWS variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); the endpoint, region and
//! URL style from [`S3Settings`].

use std::io::Read;
use std::time::Duration;

use md5::Md5;
use rusty_s3::actions::{CompleteMultipartUploadResponse, CreateMultipartUpload};
use rusty_s3::{Credentials, S3Action, UrlStyle};
use sha2::{Digest, Sha256};

use super::{Part, Result, StorageError, StoredObject, bare_etag};

/// How to reach S3-compatible buckets.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The service's URL (`http://127.0.0.1:9000`); AWS's regional one when absent.
    pub endpoint: Option<String>,
    pub region: String,
    /// Bucket in the path (`<endpoint>/<bucket>/<key>`), as most
    /// S3-compatible services need, rather than in the host name.
    pub path_style: bool,
}

/// Life of the URLs Commons signs for its own calls.
const OWN_CALL: Duration = Duration::from_secs(300);

pub struct S3Bucket {
    bucket: rusty_s3::Bucket,
    /// Keys of new objects go under this prefix (no slash at either end).
    prefix: String,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl S3Bucket {
    /// The bucket of `s3://<bucket>[/<prefix>]`.
    pub fn open(url: &str, settings: &S3Settings) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow::anyhow!("{url:?} is not an s3://bucket/prefix URL"))?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!name.is_empty(), "{url:?} names no bucket");
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", settings.region));
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = rusty_s3::Bucket::new(
            endpoint
                .parse()
                .map_err(|e| anyhow::anyhow!("S3 endpoint {endpoint:?}: {e}"))?,
            style,
            name.to_string(),
            settings.region.clone(),
        )
        .map_err(|e| anyhow::anyhow!("bucket {name:?} at {endpoint}: {e}"))?;
        let credentials = Credentials::from_env().ok_or_else(|| {
            anyhow::anyhow!(
                "{url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to sign the bucket's URLs"
            )
        })?;
        Ok(Self {
            bucket,
            prefix: prefix.trim_matches('/').to_string(),
            credentials,
            agent: crate::outbound::agent(false),
        })
    }

    pub fn name(&self) -> &str {
        self.bucket.name()
    }

    /// `scheme://host[:port]` of the bucket's URLs.
    pub fn origin(&self) -> String {
        self.bucket.base_url().origin().ascii_serialization()
    }

    pub fn object_key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name())
    }

    pub fn key_of<'u>(&self, url: &'u str) -> Option<&'u str> {
        url.strip_prefix("s3://")?
            .strip_prefix(self.name())?
            .strip_prefix('/')
            .filter(|key| !key.is_empty())
    }

    fn life(expires_in: i64) -> Duration {
        Duration::from_secs(expires_in.max(1) as u64)
    }

    pub fn download_url(&self, key: &str, expires_in: i64) -> String {
        self.bucket
            .get_object(Some(&self.credentials), key)
            .sign(Self::life(expires_in))
            .to_string()
    }

    pub fn upload_url(&self, key: &str, expires_in: i64) -> String {
        self.bucket
            .put_object(Some(&self.credentials), key)
            .sign(Self::life(expires_in))
            .to_string()
    }

    pub fn part_url(&self, key: &str, upload_id: &str, number: u16, expires_in: i64) -> String {
        self.bucket
            .upload_part(Some(&self.credentials), key, number, upload_id)
            .sign(Self::life(expires_in))
            .to_string()
    }

    /// Run a blocking call to the bucket off the async workers.
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(ureq::Agent) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || work(agent))
            .await
            .map_err(std::io::Error::other)?
    }

    pub async fn start_multipart(&self, key: &str) -> Result<String> {
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key)
            .sign(OWN_CALL);
        self.call(move |agent| {
            let (status, body) = answer(agent.post(url.as_str()).send_empty())?;
            if status != 200 {
                return Err(remote_error(status, &body, ""));
            }
            let created = CreateMultipartUpload::parse_response(&body)
                .map_err(|e| StorageError::Remote(format!("unreadable answer: {e}")))?;
            Ok(created.upload_id().to_string())
        })
        .await
    }

    /// Ask the bucket to assemble the parts, and check the object's ETag
    /// against the part ETags the client named (some S3-compatible services
    /// assemble whatever parts they hold): on a mismatch the object goes
    /// and nothing is indexed. Then read the object back once for its MD5
    /// and SHA-256 (a multipart ETag is no MD5 of the bytes).
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<StoredObject> {
        let expected = multipart_etag(parts)?;
        let etags: Vec<String> = parts.iter().map(|p| p.etag.trim().to_string()).collect();
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(OWN_CALL);
        let body = action.body();
        let read_url = self.download_url(key, OWN_CALL.as_secs() as i64);
        let owned_id = upload_id.to_string();
        let etag = self
            .call(move |agent| {
                let (status, answer_body) = answer(agent.post(url.as_str()).send(body.as_str()))?;
                // S3 may answer 200 and still fail: the body tells.
                match CompleteMultipartUploadResponse::parse(&answer_body) {
                    Ok(done) if status == 200 => Ok(bare_etag(done.etag())),
                    _ => Err(remote_error(status, &answer_body, &owned_id)),
                }
            })
            .await?;
        if etag != expected {
            self.delete(key).await?;
            return Err(StorageError::PartMismatch(format!(
                "the parts' ETags do not match the uploaded parts (the object's ETag is {etag}, the named parts make {expected})"
            )));
        }
        self.call(move |agent| read_hashed(&agent, &read_url)).await
    }

    /// The object a client PUT under `prefix` (`<guid>/`, whatever file
    /// name it chose), once it has landed: its key, its size from the
    /// bucket, its MD5 from a single PUT's ETag, else from reading it.
    pub async fn landed(&self, prefix: &str) -> Result<Option<(String, StoredObject)>> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        action.with_prefix(prefix);
        action.with_max_keys(1);
        let list_url = action.sign(OWN_CALL);
        let listed = self
            .call(move |agent| {
                let (status, body) = answer(agent.get(list_url.as_str()).call())?;
                if status != 200 {
                    return Err(remote_error(status, &body, ""));
                }
                rusty_s3::actions::ListObjectsV2::parse_response(&body)
                    .map_err(|e| StorageError::Remote(format!("unreadable answer: {e}")))
            })
            .await?;
        let Some(object) = listed.contents.into_iter().next() else {
            return Ok(None);
        };
        let md5 = object
            .etag
            .as_deref()
            .map(bare_etag)
            .filter(|e| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()));
        let stored = match (object.size, md5) {
            (Some(size), Some(md5)) => StoredObject {
                size,
                md5,
                sha256: None,
            },
            _ => {
                let read_url = self.download_url(&object.key, OWN_CALL.as_secs() as i64);
                self.call(move |agent| read_hashed(&agent, &read_url))
                    .await?
            }
        };
        Ok(Some((object.key, stored)))
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(OWN_CALL);
        self.call(move |agent| {
            let (status, body) = answer(agent.delete(url.as_str()).call())?;
            match status {
                200 | 204 | 404 => Ok(()),
                _ => Err(remote_error(status, &body, "")),
            }
        })
        .await
    }
}

/// The ETag S3 gives an object assembled from `parts`: the MD5 of their
/// MD5s, and their count.
fn multipart_etag(parts: &[Part]) -> Result<String> {
    let mut md5 = Md5::new();
    for part in parts {
        let digest = hex::decode(bare_etag(&part.etag))
            .ok()
            .filter(|d| d.len() == 16)
            .ok_or_else(|| {
                StorageError::PartMismatch(format!(
                    "part {}'s ETag {} is not the one its PUT answered",
                    part.number, part.etag
                ))
            })?;
        md5.update(digest);
    }
    Ok(format!("{}-{}", hex::encode(md5.finalize()), parts.len()))
}

/// A response's status and body text (S3's answers to Commons' own calls are small XML).
fn answer(
    response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String)> {
    let mut response = response.map_err(|e| StorageError::Remote(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| StorageError::Remote(e.to_string()))?;
    Ok((status, body))
}

/// An S3 error answer as a storage error, by its `<Code>`.
fn remote_error(status: u16, body: &str, upload_id: &str) -> StorageError {
    let field = |name: &str| {
        let open = format!("<{name}>");
        body.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
            .map(|(value, _)| value.to_string())
    };
    let code = field("Code").unwrap_or_default();
    let message = field("Message").unwrap_or_else(|| format!("HTTP {status}"));
    match code.as_str() {
        "InvalidPart" => StorageError::PartMismatch(format!(
            "a part's ETag is not the uploaded part's: {message}"
        )),
        "InvalidPartOrder" | "EntityTooSmall" | "MalformedXML" => {
            StorageError::InvalidParts(format!("{code}: {message}"))
        }
        "NoSuchUpload" => StorageError::NoSuchUpload(upload_id.to_string()),
        "" => StorageError::Remote(message),
        _ => StorageError::Remote(format!("{code}: {message}")),
    }
}

/// Read an object through, hashing it, at flat memory.
fn read_hashed(agent: &ureq::Agent, url: &str) -> Result<StoredObject> {
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| StorageError::Remote(e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        return Err(remote_error(status, &body, ""));
    }
    let mut reader = response.body_mut().as_reader();
    let (mut md5, mut sha256, mut size) = (Md5::new(), Sha256::new(), 0u64);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader
            .read(&mut buffer)
            .map_err(|e| StorageError::Remote(e.to_string()))?;
        if read == 0 {
            break;
        }
        md5.update(&buffer[..read]);
        sha256.update(&buffer[..read]);
        size += read as u64;
    }
    Ok(StoredObject {
        size,
        md5: hex::encode(md5.finalize()),
        sha256: Some(hex::encode(sha256.finalize())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_etag_is_the_md5_of_the_part_md5s() {
        // The ETag S3 answers for two parts of 5 MiB of 'a' and "tail".
        let parts = [
            Part {
                number: 1,
                etag: format!("\"{}\"", hex::encode(Md5::digest(vec![b'a'; 5 << 20]))),
            },
            Part {
                number: 2,
                etag: hex::encode(Md5::digest(b"tail")),
            },
        ];
        let mut whole = Md5::new();
        whole.update(Md5::digest(vec![b'a'; 5 << 20]));
        whole.update(Md5::digest(b"tail"));
        assert_eq!(
            multipart_etag(&parts).unwrap(),
            format!("{}-2", hex::encode(whole.finalize()))
        );
        let bad = [Part {
            number: 1,
            etag: "not-hex".into(),
        }];
        assert!(matches!(
            multipart_etag(&bad),
            Err(StorageError::PartMismatch(_))
        ));
    }

    #[test]
    fn error_codes_become_storage_errors() {
        let body = "<Error><Code>InvalidPart</Code><Message>bad etag</Message></Error>";
        assert!(matches!(
            remote_error(400, body, "u"),
            StorageError::PartMismatch(m) if m.contains("bad etag")
        ));
        assert!(matches!(
            remote_error(404, "<Error><Code>NoSuchUpload</Code></Error>", "u1"),
            StorageError::NoSuchUpload(id) if id == "u1"
        ));
        assert!(matches!(
            remote_error(503, "", ""),
            StorageError::Remote(m) if m == "HTTP 503"
        ));
    }
}
