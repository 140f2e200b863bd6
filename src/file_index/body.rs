//! Request bodies of the index: the record a POST makes, what a PUT may
//! change, blank records and their fill-in, aliases. The field rules are
//! indexd's JSON schemas (FILES.md §1.2-§1.3), checked with a validator so
//! the messages name the field.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::{FileIndex, IndexError, Result, new_rev, now};
use crate::store::IndexRecord;

const UUID: &str = "[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}";

/// The hash types indexd knows, with the pattern of each value.
const HASHES: [(&str, &str); 6] = [
    ("md5", "^[0-9a-f]{32}$"),
    ("sha1", "^[0-9a-f]{40}$"),
    ("sha256", "^[0-9a-f]{64}$"),
    ("sha512", "^[0-9a-f]{128}$"),
    ("crc", "^[0-9a-f]{8}$"),
    ("etag", "^[0-9a-f]{32}(-\\d+)?$"),
];

fn hashes_schema() -> Value {
    let properties: Map<String, Value> = HASHES
        .iter()
        .map(|(name, pattern)| {
            (
                name.to_string(),
                json!({"type": "string", "pattern": pattern}),
            )
        })
        .collect();
    // Other hash types are kept as given, beside at least one known one (indexd's schema).
    let any_known: Vec<Value> = HASHES
        .iter()
        .map(|(name, _)| json!({"required": [name]}))
        .collect();
    json!({"type": "object", "properties": properties, "anyOf": any_known})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn nullable_strings() -> Value {
    json!({"type": ["array", "null"], "items": {"type": "string"}})
}

fn nullable_string() -> Value {
    json!({"type": ["string", "null"]})
}

/// Fields both a new record and an update may carry.
fn common_properties() -> Map<String, Value> {
    let mut p = Map::new();
    for name in ["file_name", "version", "description", "uploader"] {
        p.insert(name.into(), nullable_string());
    }
    for name in ["content_created_date", "content_updated_date"] {
        p.insert(name.into(), nullable_string());
    }
    p.insert("metadata".into(), json!({"type": ["object", "null"]}));
    p.insert("urls_metadata".into(), json!({"type": ["object", "null"]}));
    p
}

/// `POST /index/` and `POST /index/<did>` (a new version).
static POST_SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let mut p = common_properties();
    p.insert(
        "did".into(),
        json!({"type": "string", "pattern": format!("^.*{UUID}$")}),
    );
    p.insert(
        "baseid".into(),
        json!({"type": "string", "pattern": format!("^{UUID}$")}),
    );
    p.insert(
        "form".into(),
        json!({"enum": ["object", "container", "multipart"]}),
    );
    p.insert("size".into(), json!({"type": "integer", "minimum": 0}));
    p.insert("hashes".into(), hashes_schema());
    p.insert("urls".into(), strings());
    p.insert("acl".into(), strings());
    p.insert("authz".into(), strings());
    validator(json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["form", "size", "hashes", "urls"],
        "properties": p,
    }))
});

/// `PUT /index/<did>`: nulls accepted (the SDK sends every field it read).
static PUT_SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let mut p = common_properties();
    for name in ["urls", "acl", "authz"] {
        p.insert(name.into(), nullable_strings());
    }
    validator(json!({"type": "object", "additionalProperties": false, "properties": p}))
});

/// `POST /index/blank/` and `POST /index/blank/<did>`.
static BLANK_SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    validator(json!({
        "type": "object",
        "required": ["uploader"],
        "properties": {
            "did": {"type": "string", "pattern": format!("^.*{UUID}$")},
            "uploader": {"type": "string"},
            "file_name": nullable_string(),
            "authz": nullable_strings(),
        },
    }))
});

/// `PUT /index/blank/<did>`.
static FILL_SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    validator(json!({
        "type": "object",
        "required": ["size", "hashes"],
        "properties": {
            "size": {"type": "integer", "minimum": 0},
            "hashes": hashes_schema(),
            "urls": nullable_strings(),
            "authz": nullable_strings(),
        },
    }))
});

fn validator(schema: Value) -> jsonschema::Validator {
    jsonschema::draft4::new(&schema).expect("the index schemas are valid")
}

fn check(schema: &jsonschema::Validator, body: &Value) -> Result<()> {
    match schema.iter_errors(body).next() {
        None => Ok(()),
        Some(error) => {
            let at = error.instance_path().to_string();
            Err(IndexError::Invalid(if at.is_empty() {
                error.to_string()
            } else {
                format!("{error} (at {at})")
            }))
        }
    }
}

fn string(body: &Value, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).map(str::to_string)
}

fn list(body: &Value, name: &str) -> Vec<String> {
    body.get(name)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn object(body: &Value, name: &str) -> Map<String, Value> {
    body.get(name)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn hashes(body: &Value) -> BTreeMap<String, String> {
    object(body, "hashes")
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
        .collect()
}

/// A content date as indexd parses it (ISO 8601), kept as given.
fn content_date(body: &Value, name: &str) -> Result<Option<String>> {
    let Some(text) = string(body, name) else {
        return Ok(None);
    };
    let parsed = chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&text).map(|d| d.naive_utc()))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        });
    match parsed {
        Ok(date) => Ok(Some(date.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())),
        Err(_) => Err(IndexError::Invalid(format!(
            "{name} {text:?} is not an ISO 8601 date"
        ))),
    }
}

/// The content dates of a record after a write: updated never before created.
fn check_content_dates(record: &IndexRecord) -> Result<()> {
    if let (Some(created), Some(updated)) =
        (&record.content_created_date, &record.content_updated_date)
        && updated < created
    {
        return Err(IndexError::Invalid(
            "content_updated_date cannot come before content_created_date".into(),
        ));
    }
    Ok(())
}

/// Metadata values are strings (indexd keeps `{str: str}`).
fn string_map(map: Map<String, Value>, name: &str) -> Result<Map<String, Value>> {
    if name == "metadata"
        && let Some((key, _)) = map.iter().find(|(_, v)| !v.is_string())
    {
        return Err(IndexError::Invalid(format!(
            "metadata values must be strings: {key:?} is not"
        )));
    }
    Ok(map)
}

impl FileIndex<'_> {
    /// The record a `POST /index/` body makes (a new version of `base`
    /// when given: its baseid, a fresh did unless the body names one).
    pub fn new_record(&self, body: &Value, base: Option<&IndexRecord>) -> Result<IndexRecord> {
        check(&POST_SCHEMA, body)?;
        self.record_of_checked(body, base)
    }

    /// [`FileIndex::new_record`] for a body already checked against the
    /// POST schema (an import's second reading of its manifest).
    pub(super) fn record_of_checked(
        &self,
        body: &Value,
        base: Option<&IndexRecord>,
    ) -> Result<IndexRecord> {
        build_record(body, base, || self.mint())
    }

    /// A blank record (`POST /index/blank/`): an upload's placeholder, with
    /// no size or hashes until the bytes are in (new version of `base` when given).
    pub fn blank_record(&self, body: &Value, base: Option<&IndexRecord>) -> Result<IndexRecord> {
        check(&BLANK_SCHEMA, body)?;
        let now = now();
        Ok(IndexRecord {
            did: string(body, "did").unwrap_or_else(|| self.mint()),
            baseid: base.map_or_else(|| uuid::Uuid::new_v4().to_string(), |b| b.baseid.clone()),
            rev: new_rev(),
            uploader: string(body, "uploader"),
            file_name: string(body, "file_name"),
            authz: list(body, "authz"),
            created_date: now.clone(),
            updated_date: now,
            ..IndexRecord::default()
        })
    }
}

/// Whether a `POST /index/` body makes a record (the manifest check, which
/// mints no did).
pub(super) fn check_new_record(body: &Value) -> Result<()> {
    check(&POST_SCHEMA, body)?;
    build_record(body, None, String::new).map(drop)
}

/// The record of a checked `POST /index/` body; `mint` names it when the
/// body does not.
fn build_record(
    body: &Value,
    base: Option<&IndexRecord>,
    mint: impl FnOnce() -> String,
) -> Result<IndexRecord> {
    let now = now();
    let record = IndexRecord {
        did: string(body, "did").unwrap_or_else(mint),
        baseid: match base {
            Some(base) => base.baseid.clone(),
            None => string(body, "baseid").unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        },
        rev: new_rev(),
        form: string(body, "form"),
        size: body.get("size").and_then(Value::as_i64),
        file_name: string(body, "file_name"),
        version: string(body, "version"),
        uploader: string(body, "uploader"),
        description: string(body, "description"),
        hashes: hashes(body),
        urls: list(body, "urls"),
        acl: list(body, "acl"),
        authz: list(body, "authz"),
        metadata: string_map(object(body, "metadata"), "metadata")?,
        urls_metadata: object(body, "urls_metadata"),
        created_date: now.clone(),
        updated_date: now,
        content_created_date: content_date(body, "content_created_date")?,
        content_updated_date: content_date(body, "content_updated_date")?,
    };
    if record.hashes.is_empty() {
        return Err(IndexError::Invalid("at least one hash is required".into()));
    }
    check_content_dates(&record)?;
    Ok(record)
}

/// The fields an index record takes from `PUT /index/<did>`.
pub fn update_record(mut record: IndexRecord, body: &Value) -> Result<IndexRecord> {
    check(&PUT_SCHEMA, body)?;
    let fields = body.as_object().expect("the schema wants an object");
    for (name, value) in fields {
        match name.as_str() {
            "urls" => {
                record.urls = list(body, name);
                let urls = record.urls.clone();
                record.urls_metadata.retain(|url, _| urls.contains(url));
            }
            "acl" => record.acl = list(body, name),
            "authz" => record.authz = list(body, name),
            "metadata" => record.metadata = string_map(object(body, name), name)?,
            "urls_metadata" => record.urls_metadata = object(body, name),
            "file_name" => record.file_name = value.as_str().map(str::to_string),
            "version" => record.version = value.as_str().map(str::to_string),
            "uploader" => record.uploader = value.as_str().map(str::to_string),
            "description" => record.description = value.as_str().map(str::to_string),
            "content_created_date" => record.content_created_date = content_date(body, name)?,
            "content_updated_date" => record.content_updated_date = content_date(body, name)?,
            _ => {}
        }
    }
    check_content_dates(&record)?;
    Ok(record)
}

/// `PUT /index/blank/<did>`: the size, hashes and locations of an upload.
pub fn update_blank(mut record: IndexRecord, body: &Value) -> Result<IndexRecord> {
    check(&FILL_SCHEMA, body)?;
    if record.size.is_some() || !record.hashes.is_empty() {
        return Err(IndexError::Invalid(
            "update api is not supported for non-empty record!".into(),
        ));
    }
    record.size = body.get("size").and_then(Value::as_i64);
    record.hashes = hashes(body);
    if record.hashes.is_empty() {
        return Err(IndexError::Invalid("at least one hash is required".into()));
    }
    if body.get("urls").is_some_and(|u| !u.is_null()) {
        record.urls = list(body, "urls");
    }
    if body.get("authz").is_some_and(|a| !a.is_null()) {
        record.authz = list(body, "authz");
    }
    record.form = Some("object".into());
    Ok(record)
}

/// `PUT /index/<did>/versions`: `acl` and `authz` of every version.
pub fn update_version_authz(mut record: IndexRecord, body: &Value) -> Result<IndexRecord> {
    let Some(fields) = body.as_object() else {
        return Err(IndexError::Invalid("the body must be a JSON object".into()));
    };
    if let Some(name) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "acl" | "authz"))
    {
        return Err(IndexError::Invalid(format!(
            "only acl and authz can be set on every version, not {name:?}"
        )));
    }
    for name in ["acl", "authz"] {
        match fields.get(name) {
            None => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                let values = list(body, name);
                if name == "acl" {
                    record.acl = values;
                } else {
                    record.authz = values;
                }
            }
            Some(_) => {
                return Err(IndexError::Invalid(format!(
                    "{name} must be a list of strings"
                )));
            }
        }
    }
    Ok(record)
}

/// `{"aliases": [{"value": "..."}]}` as the alias values.
pub fn aliases(body: &Value) -> Result<Vec<String>> {
    let invalid = || IndexError::Invalid("expected {\"aliases\": [{\"value\": \"...\"}]}".into());
    let items = body
        .get("aliases")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?;
    items
        .iter()
        .map(|item| {
            item.get("value")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(invalid)
        })
        .collect()
}
