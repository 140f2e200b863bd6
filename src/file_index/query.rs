//! `GET /index/index/`'s query string as indexd reads it: the filters, the
//! paging, and the echo of them that its answer carries (FILES.md §1.3).

use serde_json::{Map, Value, json};

use super::{IndexError, Result};
use crate::store::{IndexNegation, IndexQuery, UrlMetadataFilter};

/// The most records one page may hold.
pub const MAX_LIMIT: i64 = 1024;

/// A parsed listing: the query and what the answer echoes back.
pub struct ListRequest {
    pub query: IndexQuery,
    pub echo: Map<String, Value>,
}

fn one<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn integer(pairs: &[(String, String)], name: &str) -> Result<Option<i64>> {
    one(pairs, name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| IndexError::Invalid(format!("{name} must be an integer")))
        })
        .transpose()
}

/// `a,b` as a list; `null` as the empty list (records with none).
fn list_or_null(value: Option<&str>) -> Option<Vec<String>> {
    value.map(|v| match v {
        "null" => Vec::new(),
        v => v.split(',').map(str::to_string).collect(),
    })
}

/// `key:value` pairs of a repeated parameter.
fn pairs_of(values: Vec<&str>, name: &str) -> Result<Vec<(String, String)>> {
    values
        .into_iter()
        .map(|v| match v.split_once(':') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(IndexError::Invalid(format!(
                "{name} must be given as type:value, not {v:?}"
            ))),
        })
        .collect()
}

/// Read a listing's query string.
pub fn list_query(pairs: &[(String, String)]) -> Result<ListRequest> {
    let limit = integer(pairs, "limit")?;
    let page = integer(pairs, "page")?;
    let start = one(pairs, "start").map(str::to_string);
    let ids = one(pairs, "ids").map(|v| {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    if ids.is_some() && (limit.is_some() || page.is_some() || start.is_some()) {
        return Err(IndexError::Invalid(
            "pagination is not supported when ids is provided".into(),
        ));
    }
    let limit = limit.unwrap_or(100);
    if !(0..=MAX_LIMIT).contains(&limit) {
        return Err(IndexError::Invalid(format!(
            "limit must be between 0 and {MAX_LIMIT}"
        )));
    }
    if page.is_some_and(|p| p < 0) {
        return Err(IndexError::Invalid("page must be 0 or more".into()));
    }
    let size = integer(pairs, "size")?;
    if size.is_some_and(|s| s < 0) {
        return Err(IndexError::Invalid("size must be 0 or more".into()));
    }
    // Any hash type: a record may carry types beside the known ones.
    let hashes = pairs_of(all(pairs, "hash"), "hash")?;
    let metadata = pairs_of(all(pairs, "metadata"), "metadata")?;
    let urls_metadata_json = json_parameter(pairs, "urls_metadata")?;
    let urls_metadata = match &urls_metadata_json {
        Some(value) => url_metadata_filters(value, "urls_metadata")?,
        None => Vec::new(),
    };
    let negate = json_parameter(pairs, "negate_params")?
        .map(|value| negation(&value))
        .transpose()?;
    // Bundles (`form=bundle`) are not kept here: such a listing is empty.
    let bundles_only = one(pairs, "form") == Some("bundle");
    let query = IndexQuery {
        ids: ids.clone(),
        start: start.clone(),
        page,
        limit: if bundles_only { 0 } else { limit },
        size,
        file_name: one(pairs, "file_name").map(str::to_string),
        version: one(pairs, "version").map(str::to_string),
        uploader: one(pairs, "uploader").map(str::to_string),
        urls: all(pairs, "url").into_iter().map(str::to_string).collect(),
        hashes,
        acl: list_or_null(one(pairs, "acl")),
        authz: list_or_null(one(pairs, "authz")),
        metadata,
        urls_metadata,
        negate,
    };
    let hashes: Map<String, Value> = query
        .hashes
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let metadata: Map<String, Value> = query
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let echo = json!({
        "ids": ids,
        "limit": limit,
        "start": start,
        "page": page,
        "size": size,
        "file_name": query.file_name,
        "version": query.version,
        "urls": query.urls,
        "acl": query.acl,
        "authz": query.authz,
        "hashes": hashes,
        "metadata": metadata,
        "urls_metadata": urls_metadata_json,
    });
    let Value::Object(echo) = echo else {
        unreachable!("json! of an object")
    };
    Ok(ListRequest { query, echo })
}

/// A parameter holding JSON (`urls_metadata`, `negate_params`), in indexd's words when it does not parse.
fn json_parameter(pairs: &[(String, String)], name: &str) -> Result<Option<Value>> {
    one(pairs, name)
        .filter(|v| !v.is_empty())
        .map(|text| {
            serde_json::from_str::<Value>(text)
                .map_err(|_| IndexError::Invalid(format!("{name} must be a valid json string")))
        })
        .transpose()
}

/// A JSON value as the text a stored value is compared with; null and ""
/// are "no value" (`negate_params`: the key must be absent).
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `{"<part of a url>": {"<key>": "<value>", ...}, ...}`.
fn url_metadata_filters(value: &Value, name: &str) -> Result<Vec<UrlMetadataFilter>> {
    let invalid = || {
        IndexError::Invalid(format!(
            "{name} must map parts of urls to objects of metadata keys and values"
        ))
    };
    let Value::Object(urls) = value else {
        return Err(invalid());
    };
    urls.iter()
        .map(|(url_part, pairs)| {
            let Value::Object(pairs) = pairs else {
                return Err(invalid());
            };
            Ok(UrlMetadataFilter {
                url_part: url_part.clone(),
                pairs: pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), value_text(v)))
                    .collect(),
            })
        })
        .collect()
}

/// `negate_params`: records that do not match these (indexd's `_negate_filter`).
fn negation(value: &Value) -> Result<IndexNegation> {
    let Value::Object(params) = value else {
        return Err(IndexError::Invalid(
            "negate_params must be a JSON object".into(),
        ));
    };
    let mut negation = IndexNegation::default();
    let strings = |value: &Value, name: &str| -> Result<Vec<String>> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    IndexError::Invalid(format!("negate_params {name} must be a list of strings"))
                }),
            _ => Err(IndexError::Invalid(format!(
                "negate_params {name} must be a list of strings"
            ))),
        }
    };
    for (name, value) in params {
        match name.as_str() {
            "urls" => negation.urls = strings(value, name)?,
            "acl" => negation.acl = strings(value, name)?,
            "authz" => negation.authz = strings(value, name)?,
            "file_name" => negation.file_name = value_text(value),
            "version" => negation.version = value_text(value),
            "metadata" => {
                let Value::Object(pairs) = value else {
                    return Err(IndexError::Invalid(
                        "negate_params metadata must be an object".into(),
                    ));
                };
                negation.metadata = pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), value_text(v)))
                    .collect();
            }
            "urls_metadata" => {
                negation.urls_metadata = url_metadata_filters(value, "negate_params urls_metadata")?
            }
            other => {
                return Err(IndexError::Invalid(format!(
                    "negate_params cannot negate {other:?}: only urls, acl, authz, file_name, version, metadata and urls_metadata"
                )));
            }
        }
    }
    Ok(negation)
}
