//! Running a request: streamed when it is one long list, else executed
//! and put in query order; and the introspection document `/getschema` serves.

use super::*;
use std::io::Write as _;

use async_graphql::dynamic::Schema;
use async_graphql::parser::types::ExecutableDocument;
use serde_json::{Value, json};

use super::stream::Slot;

/// The answer to a request: a JSON body with its status, or a list to stream.
pub enum Answer {
    Json(u16, Value),
    /// `{"data": {<key>: [<rows>]}}`, the rows still to come from the database.
    Stream(Deferred),
}

/// Run one request, streaming its root list when it has only one (see
/// [`stream`]); otherwise as [`execute`]. The query is parsed once: the
/// executor reuses the document that decided the streaming and the order.
pub async fn answer(
    schema: &Schema,
    mut context: RequestContext,
    query: String,
    variables: Value,
    operation_name: Option<String>,
) -> Answer {
    let dictionary = context.dictionary.clone();
    let (request, plan) = parsed_request(
        query,
        variables,
        operation_name,
        |document, op, directives| {
            !directives && stream::eligible(document, op, |name| dictionary.node(name).is_some())
        },
    );
    let Parsed { order, streamable } = plan;
    if !streamable {
        let (status, body) = run(schema, request.data(context), &order).await;
        return Answer::Json(status, body);
    }
    let slot = Slot::default();
    context.stream = Some(slot.clone());
    let (status, body) = run(schema, request.data(context), &order).await;
    let deferred = slot.lock().expect("stream slot poisoned").take();
    // The streamed list is the only root field and its children never ran,
    // so nothing else can have failed beside it.
    match deferred {
        Some(deferred) if status == 200 => Answer::Stream(deferred),
        _ => Answer::Json(status, body),
    }
}

/// Run one request and shape the response as peregrine does (GRAPHQL.md §6):
/// `{"data": ...}` with 200, or `{"data": ..., "errors": [strings]}` with 400.
pub async fn execute(
    schema: &Schema,
    context: RequestContext,
    query: String,
    variables: Value,
    operation_name: Option<String>,
) -> (u16, Value) {
    let (request, Parsed { order, .. }) =
        parsed_request(query, variables, operation_name, |_, _, _| false);
    run(schema, request.data(context), &order).await
}

/// What the parsed query says about running it.
struct Parsed {
    /// Response keys of the root fields, in query order.
    order: Vec<String>,
    /// Whether its one root list may be streamed (see [`stream::eligible`]).
    streamable: bool,
}

/// A request with its query parsed, and what the parse says; `streamable`
/// judges the document, the operation name and whether the query has
/// directives. A query that does not parse runs anyway: the executor
/// answers with the syntax error.
fn parsed_request(
    query: String,
    variables: Value,
    operation_name: Option<String>,
    streamable: impl FnOnce(&ExecutableDocument, Option<&str>, bool) -> bool,
) -> (async_graphql::Request, Parsed) {
    let directives = query.contains('@');
    let mut request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(variables));
    if let Some(name) = &operation_name {
        request = request.operation_name(name.clone());
    }
    let parsed = match request.parsed_query() {
        Ok(document) => Parsed {
            order: root_order(document, operation_name.as_deref()),
            streamable: streamable(document, operation_name.as_deref(), directives),
        },
        Err(_) => Parsed {
            order: Vec::new(),
            streamable: false,
        },
    };
    (request, parsed)
}

/// Execute `request`, answering in query order.
async fn run(schema: &Schema, request: async_graphql::Request, order: &[String]) -> (u16, Value) {
    let response = schema.execute(request).await;
    let data = in_query_order(response.data.into_json().unwrap_or(Value::Null), order);
    if response.errors.is_empty() {
        return (200, json!({"data": data}));
    }
    let errors: Vec<String> = response.errors.into_iter().map(|e| e.message).collect();
    (400, json!({"data": data, "errors": errors}))
}

/// Response keys of the root fields, in the order the query names them.
pub(super) fn root_order(document: &ExecutableDocument, operation: Option<&str>) -> Vec<String> {
    use async_graphql::parser::types::{DocumentOperations, Selection as AstSelection};
    let operation = match &document.operations {
        DocumentOperations::Single(op) => Some(op),
        DocumentOperations::Multiple(ops) => operation.and_then(|name| ops.get(name)),
    };
    operation
        .map(|op| {
            op.node
                .selection_set
                .node
                .items
                .iter()
                .filter_map(|item| match &item.node {
                    AstSelection::Field(field) => Some(field.node.response_key().node.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The executor fills `data` in completion order (root fields run
/// concurrently); answer in query order, as GraphQL requires.
pub(super) fn in_query_order(data: Value, order: &[String]) -> Value {
    let Value::Object(mut fields) = data else {
        return data;
    };
    let mut ordered = serde_json::Map::new();
    for key in order {
        if let Some(value) = fields.remove(key) {
            ordered.insert(key.clone(), value);
        }
    }
    ordered.extend(fields);
    Value::Object(ordered)
}

/// The standard introspection result served by `/getschema`, as
/// gzip-compressed JSON text.
pub async fn introspection_gzip(schema: &Schema) -> Vec<u8> {
    let response = schema
        .execute(async_graphql::Request::new(INTROSPECTION_QUERY))
        .await;
    let body = json!({"data": response.data.into_json().unwrap_or(Value::Null)});
    // Serialized first and compressed in one write: flate2 zeroes its 32 KiB
    // output buffer on every write, and serde_json writes a few bytes at a time
    // (that took a second of start-up with bdcat_gtex).
    let text = serde_json::to_vec(&body).expect("a JSON value serializes");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(&text)
        .expect("writing to memory cannot fail");
    encoder.finish().expect("writing to memory cannot fail")
}

pub(super) const INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;
