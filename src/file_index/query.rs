//! `GET /index/index/`'s query string as indexd reads it: the filters, the
//! paging, and the echo of them that its answer carries (FILES.md §1.3).

use serde_json::{Map, Value, json};

use super::{IndexError, Result};
use crate::store::IndexQuery;

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
    for unsupported in ["urls_metadata", "negate_params"] {
        if one(pairs, unsupported).is_some() {
            return Err(IndexError::Invalid(format!(
                "the {unsupported} filter is not supported by this index; filter by hash, size, url, file_name, version, uploader, acl, authz or metadata"
            )));
        }
    }
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
        "urls_metadata": Value::Null,
    });
    let Value::Object(echo) = echo else {
        unreachable!("json! of an object")
    };
    Ok(ListRequest { query, echo })
}
