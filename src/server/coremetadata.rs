//! peregrine's core metadata of a data file
//! (`GET /api/search/coremetadata/<object_id>`), which the portal's file
//! page shows: the data-file node whose `object_id` it is, found through
//! GraphQL as the caller (so a file of a project the caller cannot read is
//! not found), flattened with its core metadata collection, with a
//! citation; as JSON, BibTeX (`Accept: x-bibtex`) or schema.org JSON-LD
//! (`Accept: application/vnd.schemaorg.ld+json`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::{ApiError, Caller, OpenId, SharedState};
use crate::graphql::{Budget, RequestContext, execute};

/// Fields of the core metadata collection peregrine copies onto the file.
const COLLECTION_FIELDS: [&str; 10] = [
    "title",
    "description",
    "creator",
    "contributor",
    "coverage",
    "language",
    "publisher",
    "rights",
    "source",
    "subject",
];

/// Fields of the file node itself.
const FILE_FIELDS: [&str; 8] = [
    "type",
    "file_name",
    "data_format",
    "file_size",
    "project_id",
    "object_id",
    "updated_datetime",
    "md5sum",
];

/// Under `/api/search`, as the portal calls it.
pub fn routes() -> Router<SharedState> {
    Router::new().route("/api/search/coremetadata/{*object_id}", get(core_metadata))
}

async fn core_metadata(
    State(state): State<SharedState>,
    Path(object_id): Path<String>,
    Caller(principal, _): Caller<OpenId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = principal.permissions.graphql_scope(&state.store).await?;
    let query = |text: String| {
        let context = RequestContext {
            store: state.store.clone(),
            dictionary: state.dictionary.clone(),
            scope: scope.clone(),
            timeout: state.graphql_limits.timeout,
            stream: None,
            budget: Budget::new(&state.graphql_limits),
        };
        execute(&state.schema, context, text, json!({}), None)
    };
    let literal = Value::String(object_id.clone()).to_string();
    let not_found = || ApiError::new(404, format!("object_id \"{object_id}\" not found"));
    if !state.dictionary.nodes().iter().any(|n| n.is_data_file()) {
        return Err(not_found());
    }
    let (_, found) = query(format!("{{ datanode(object_id: {literal}) {{ type }} }}")).await;
    let node_type = found["data"]["datanode"][0]["type"]
        .as_str()
        .ok_or_else(not_found)?
        .to_string();
    let node = state.dictionary.node(&node_type).ok_or_else(not_found)?;
    // Only the fields the type has: peregrine asks for all and, where one is
    // missing, answers nothing.
    let fields: Vec<&str> = FILE_FIELDS
        .iter()
        .copied()
        .filter(|f| *f == "type" || node.property(f).is_some())
        .collect();
    let collection = state
        .dictionary
        .node("core_metadata_collection")
        .filter(|_| node.link("core_metadata_collections").is_some())
        .map(|collection| {
            COLLECTION_FIELDS
                .iter()
                .copied()
                .filter(|f| collection.property(f).is_some())
                .collect::<Vec<_>>()
        })
        .filter(|fields| !fields.is_empty());
    let selection = match &collection {
        Some(collection) => format!(
            "core_metadata_collections {{ {} }} {}",
            collection.join(" "),
            fields.join(" ")
        ),
        None => fields.join(" "),
    };
    let (_, answer) = query(format!(
        "{{ {node_type}(object_id: {literal}) {{ {selection} }} }}"
    ))
    .await;
    let Some(Value::Object(file)) = answer["data"][&node_type].get(0).cloned() else {
        return Err(ApiError::new(
            404,
            "Core metadata not available for this file",
        ));
    };
    let metadata = flatten(file);
    Ok(render(&metadata, &object_id, &headers))
}

/// The file's fields with its first collection's merged in, then the
/// citation (which takes the year of `updated_datetime` and the title, as
/// peregrine's does, leaving neither in the answer).
fn flatten(file: Map<String, Value>) -> Map<String, Value> {
    let mut flat = Map::new();
    for (key, value) in file {
        if key == "core_metadata_collections" {
            if let Some(Value::Object(collection)) = value.get(0) {
                flat.extend(collection.clone());
            }
        } else {
            flat.insert(key, value);
        }
    }
    let citation = citation(&mut flat);
    flat.shift_remove("title");
    flat.insert("citation".into(), Value::String(citation));
    flat
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `"<creator>, <year>: <title>. <publisher>, <object_id>."`, parts missing
/// left out.
fn citation(metadata: &mut Map<String, Value>) -> String {
    let mut citation = String::new();
    if let Some(creator) = text(metadata.get("creator")) {
        citation += &format!("{creator}, ");
    }
    if let Some(updated) = text(metadata.get("updated_datetime")) {
        metadata.shift_remove("updated_datetime");
        citation += &format!("{}: ", updated.split('-').next().unwrap_or_default());
    }
    if let Some(title) = text(metadata.get("title")) {
        citation += &format!("{title}. ");
    }
    if let Some(publisher) = text(metadata.get("publisher")) {
        citation += &format!("{publisher}, ");
    }
    if let Some(object_id) = text(metadata.get("object_id")) {
        citation += &object_id;
    }
    let mut citation = citation.trim().to_string();
    if citation.ends_with(',') {
        citation.pop();
    }
    if !citation.ends_with('.') {
        citation.push('.');
    }
    citation
}

/// The answer in the format the `Accept` header names exactly, as
/// peregrine matches it; JSON otherwise.
fn render(metadata: &Map<String, Value>, object_id: &str, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match accept {
        "x-bibtex" => (
            [(header::CONTENT_TYPE, "application/x-bibtex; charset=utf-8")],
            bibtex(metadata, object_id),
        )
            .into_response(),
        "application/vnd.schemaorg.ld+json" => (
            [(header::CONTENT_TYPE, "application/ld+json")],
            axum::Json(schema_org(metadata, object_id)),
        )
            .into_response(),
        _ => axum::Json(Value::Object(metadata.clone())).into_response(),
    }
}

/// Python's `str()` of a JSON value, as peregrine writes BibTeX fields.
fn python_text(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bibtex(metadata: &Map<String, Value>, object_id: &str) -> String {
    let fields: Vec<String> = metadata
        .iter()
        .map(|(key, value)| format!("{key} = \"{}\"", python_text(value)))
        .collect();
    format!("@misc {{{object_id}, {}}}", fields.join(", "))
}

fn schema_org(metadata: &Map<String, Value>, object_id: &str) -> Value {
    let mut dataset = json!({
        "@context": "http://schema.org",
        "@type": "Dataset",
        "@id": format!("https://dataguids.org/index/{object_id}"),
        "identifier": [
            {"@type": "PropertyValue", "propertyID": "dataguid", "value": object_id},
            {"@type": "PropertyValue", "propertyID": "md5", "value": metadata.get("md5sum").cloned().unwrap_or(Value::Null)},
        ],
    });
    if let Some(publisher) = metadata.get("publisher") {
        dataset["publisher"] = json!({"@type": "Organization", "name": publisher});
    }
    if let Some(creator) = metadata.get("creator") {
        dataset["author"] = json!({"name": creator});
    }
    for (from, to) in [
        ("description", "description"),
        ("type", "additionalType"),
        ("file_name", "name"),
    ] {
        if let Some(value) = metadata.get(from) {
            dataset[to] = value.clone();
        }
    }
    dataset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_citation_takes_year_and_title_as_peregrines_does() {
        let file = json!({
            "core_metadata_collections": [{"title": "Scans", "creator": "Ada", "publisher": "Lab"}],
            "type": "imaging_file",
            "object_id": "g1",
            "updated_datetime": "2024-03-01T00:00:00",
            "file_size": 12,
        });
        let Value::Object(file) = file else {
            unreachable!()
        };
        let flat = flatten(file);
        assert_eq!(flat["citation"], "Ada, 2024: Scans. Lab, g1.");
        assert!(!flat.contains_key("title") && !flat.contains_key("updated_datetime"));
        assert_eq!(
            bibtex(&flat, "g1"),
            "@misc {g1, creator = \"Ada\", publisher = \"Lab\", type = \"imaging_file\", object_id = \"g1\", file_size = \"12\", citation = \"Ada, 2024: Scans. Lab, g1.\"}"
        );
        let ld = schema_org(&flat, "g1");
        assert_eq!(ld["author"]["name"], "Ada");
        assert_eq!(ld["additionalType"], "imaging_file");
        assert_eq!(ld["identifier"][1]["value"], Value::Null);
    }
}
