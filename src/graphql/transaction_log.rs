//! `transaction_log` and `_transaction_log_count`: the audit trail of
//! submissions, as peregrine answers it (GRAPHQL.md §7).

use super::*;

use async_graphql::Value as GqlValue;
use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, TypeRef,
};
use serde_json::{Value, json};

use crate::plan::{self, ReadScope};

/// Arguments of `transaction_log` and `_transaction_log_count` (GRAPHQL.md §7).
pub(super) fn transaction_arguments(field: Field) -> Field {
    paging_arguments(field)
        .argument(InputValue::new("id", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new("type", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new(
            "project_id",
            TypeRef::named_list(TypeRef::STRING),
        ))
        .argument(InputValue::new(
            "submitter",
            TypeRef::named(TypeRef::STRING),
        ))
        .argument(InputValue::new("state", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new(
            "is_dry_run",
            TypeRef::named(TypeRef::BOOLEAN),
        ))
        .argument(InputValue::new(
            "entities",
            TypeRef::named_list(TypeRef::STRING),
        ))
        .argument(InputValue::new("quick_search", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new("program", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("project", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("closed", TypeRef::named(TypeRef::BOOLEAN)))
        .argument(InputValue::new(
            "committable",
            TypeRef::named(TypeRef::BOOLEAN),
        ))
        .argument(InputValue::new("committed_by", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new(
            "related_cases",
            TypeRef::named_list(TypeRef::STRING),
        ))
}

/// The store query of a `transaction_log` field, limited to readable projects.
pub(super) fn transaction_query(
    ctx: &ResolverContext<'_>,
    scope: &ReadScope,
    paged: bool,
) -> async_graphql::Result<crate::store::TransactionQuery> {
    let args = selection(ctx.field())?.args;
    let arg = |name: &str| {
        args.iter()
            .find(|(n, v)| n == name && !v.is_null())
            .map(|(_, v)| v.clone())
    };
    let strings = |v: Value| -> Vec<String> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            Value::String(s) => vec![s],
            _ => Vec::new(),
        }
    };
    let mut order = None;
    for (name, descending) in [("order_by_asc", false), ("order_by_desc", true)] {
        if let Some(column) = arg(name).and_then(|v| v.as_str().map(str::to_string)) {
            if !crate::store::TRANSACTION_ORDER_COLUMNS.contains(&column.as_str()) {
                return Err(async_graphql::Error::new(format!(
                    "Cannot order by {column} on transaction_log"
                )));
            }
            order = Some((column, descending));
        }
    }
    let first = arg("first")
        .and_then(|v| v.as_i64())
        .unwrap_or(plan::DEFAULT_FIRST);
    let text = |name: &str| arg(name).and_then(|v| v.as_str().map(str::to_string));
    let integer_id = |v: Value| {
        v.as_str()
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| v.as_i64())
    };
    // A `quick_search` that is not an id matches nothing, as in peregrine.
    let quick_search = arg("quick_search").map(integer_id);
    // Nothing is ever closed or committed later, and no reply names cases.
    let none = matches!(quick_search, Some(None))
        || arg("closed").and_then(|v| v.as_bool()) == Some(true)
        || arg("committed_by").is_some()
        || arg("related_cases").is_some_and(|v| !strings(v).is_empty());
    Ok(crate::store::TransactionQuery {
        projects: match scope {
            ReadScope::All => None,
            ReadScope::Projects(set) => Some(set.iter().cloned().collect()),
        },
        id: arg("id").and_then(integer_id).or(quick_search.flatten()),
        program: text("program"),
        project: text("project"),
        committable: arg("committable").and_then(|v| v.as_bool()),
        none,
        project_ids: arg("project_id").map(strings),
        roles: arg("type")
            .and_then(|v| v.as_str().map(str::to_string))
            .map(|t| match t.as_str() {
                "upload" => vec!["create".to_string(), "update".to_string()],
                other => vec![other.to_string()],
            }),
        is_dry_run: arg("is_dry_run").and_then(|v| v.as_bool()),
        state: arg("state").and_then(|v| v.as_str().map(str::to_string)),
        submitter: arg("submitter").and_then(|v| v.as_str().map(str::to_string)),
        entities: arg("entities").map(strings),
        order,
        limit: (paged && first > 0).then_some(first),
        last: arg("last").and_then(|v| v.as_i64()).filter(|_| paged),
        offset: if paged {
            arg("offset").and_then(|v| v.as_i64()).unwrap_or(0).max(0)
        } else {
            0
        },
    })
}

/// `TransactionLog` as the response JSON the nested resolvers read.
pub(super) fn transaction_json(row: crate::store::TransactionRow) -> Value {
    let kind = if matches!(row.role.as_str(), "create" | "update") {
        "upload"
    } else {
        row.role.as_str()
    };
    let snapshots: Vec<Value> = row
        .entity_ids
        .iter()
        .map(|id| json!({"id": id, "transaction_id": row.id, "action": row.role}))
        .collect();
    let documents: Vec<Value> = row
        .doc_format
        .iter()
        .map(|format| {
            let response: Option<Value> = row
                .response_json
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok());
            json!({
                "id": row.id.to_string(), "transaction_id": row.id.to_string(),
                "doc_format": format, "doc": row.doc, "doc_size": row.doc_size, "name": null,
                "response_json": row.response_json, "response": response.map(transaction_response),
            })
        })
        .collect();
    json!({
        "id": row.id.to_string(), "is_dry_run": row.is_dry_run, "closed": false,
        "committed_by": null, "state": row.state, "type": kind, "quick_search": null,
        "submitter": row.submitter, "role": row.role, "program": row.program,
        "project": row.project, "project_id": row.project_id,
        "created_datetime": row.created_datetime, "snapshots": snapshots,
        "documents": documents, "related_cases": [],
    })
}

/// A stored reply shaped as peregrine's `TransactionResponse`: JSON-valued
/// fields as text, and the transactional errors as their count (peregrine
/// declares that field an `Int`).
pub(super) fn transaction_response(mut response: Value) -> Value {
    if let Some(errors) = response
        .get("transactional_errors")
        .and_then(Value::as_array)
    {
        response["transactional_errors"] = json!(errors.len());
    }
    if let Some(Value::Array(entities)) = response.get_mut("entities") {
        for entity in entities {
            for key in ["unique_keys", "warnings"] {
                if let Some(value) = entity.get(key).filter(|v| !v.is_null()) {
                    entity[key] = Value::String(value.to_string());
                }
            }
            entity["related_cases"] = json!([]);
        }
    }
    response
}

/// A field of a plain JSON object (transaction logs), by its own name.
pub(super) fn json_field(name: &'static str, type_ref: TypeRef) -> Field {
    Field::new(name, type_ref, move |ctx| {
        FieldFuture::new(async move {
            let value = parent_json(&ctx)
                .and_then(|p| p.get(name))
                .cloned()
                .unwrap_or(Value::Null);
            json_field_value(value).map(Some)
        })
    })
}

/// A JSON value as a field's answer: objects for nested resolvers to read,
/// lists item by item, scalars as they are.
pub(super) fn json_field_value(value: Value) -> async_graphql::Result<FieldValue<'static>> {
    Ok(match value {
        Value::Null => FieldValue::NULL,
        Value::Object(_) => FieldValue::owned_any(value),
        Value::Array(items) => FieldValue::list(
            items
                .into_iter()
                .map(json_field_value)
                .collect::<async_graphql::Result<Vec<_>>>()?,
        ),
        other => FieldValue::value(GqlValue::from_json(other)?),
    })
}

pub(super) fn transaction_types() -> (Object, Object) {
    let string = || TypeRef::named(TypeRef::STRING);
    let mut log = Object::new("TransactionLog")
        .field(json_field("id", TypeRef::named(TypeRef::ID)))
        .field(json_field("is_dry_run", TypeRef::named(TypeRef::BOOLEAN)))
        .field(json_field("closed", TypeRef::named(TypeRef::BOOLEAN)))
        .field(json_field("committed_by", TypeRef::named(TypeRef::ID)))
        .field(json_field("quick_search", TypeRef::named(TypeRef::ID)))
        .field(json_field(
            "snapshots",
            TypeRef::named_list("TransactionSnapshot"),
        ))
        .field(json_field(
            "documents",
            TypeRef::named_list("TransactionDocument"),
        ))
        .field(json_field(
            "related_cases",
            TypeRef::named_list("RelatedCase"),
        ));
    for name in [
        "state",
        "type",
        "submitter",
        "role",
        "program",
        "project",
        "project_id",
        "created_datetime",
    ] {
        log = log.field(json_field(name, string()));
    }
    let snapshot = Object::new("TransactionSnapshot")
        .field(json_field("id", TypeRef::named(TypeRef::ID)))
        .field(json_field("transaction_id", TypeRef::named(TypeRef::INT)))
        .field(json_field("action", string()));
    (log, snapshot)
}

/// The request body and reply kept with a transaction, as peregrine types them.
pub(super) fn transaction_document_types() -> Vec<Object> {
    let object = |name: &str, fields: &[(&'static str, TypeRef)]| {
        fields
            .iter()
            .fold(Object::new(name), |object, (field, type_ref)| {
                object.field(json_field(field, type_ref.clone()))
            })
    };
    let string = || TypeRef::named(TypeRef::STRING);
    let int = || TypeRef::named(TypeRef::INT);
    let id = || TypeRef::named(TypeRef::ID);
    let boolean = || TypeRef::named(TypeRef::BOOLEAN);
    vec![
        object(
            "TransactionDocument",
            &[
                ("id", id()),
                ("transaction_id", id()),
                ("doc_format", string()),
                ("doc", string()),
                ("doc_size", int()),
                ("name", string()),
                ("response_json", string()),
                ("response", TypeRef::named("TransactionResponse")),
            ],
        ),
        object(
            "TransactionResponse",
            &[
                ("transaction_id", id()),
                ("success", boolean()),
                ("entity_error_count", int()),
                ("transactional_error_count", int()),
                ("code", int()),
                ("message", string()),
                ("transactional_errors", int()),
                ("created_entity_count", int()),
                ("updated_entity_count", int()),
                ("released_entity_count", int()),
                ("cases_related_to_updated_entities_count", int()),
                ("cases_related_to_created_entities_count", int()),
                ("entities", TypeRef::named_list("TransactionResponseEntity")),
            ],
        ),
        object(
            "TransactionResponseEntity",
            &[
                ("valid", boolean()),
                ("action", string()),
                ("type", string()),
                ("id", string()),
                ("unique_keys", string()),
                ("related_cases", TypeRef::named_list("RelatedCase")),
                ("errors", TypeRef::named_list("TransactionResponseError")),
                ("warnings", string()),
            ],
        ),
        object(
            "TransactionResponseError",
            &[
                ("keys", TypeRef::named_list(TypeRef::STRING)),
                ("dependents", TypeRef::named_list("GenericEntity")),
                ("message", string()),
                ("type", string()),
            ],
        ),
        object("GenericEntity", &[("id", string()), ("type", string())]),
        object(
            "RelatedCase",
            &[("id", string()), ("submitter_id", string())],
        ),
    ]
}

pub(super) fn transaction_root_fields() -> (Field, Field) {
    let list = Field::new(
        "transaction_log",
        TypeRef::named_list("TransactionLog"),
        |ctx| {
            FieldFuture::new(async move {
                let request = ctx.data::<RequestContext>()?;
                let query = transaction_query(&ctx, &request.scope, true)?;
                let rows = request
                    .within_limit(request.store.transaction_logs(&query))
                    .await?;
                Ok(Some(FieldValue::list(
                    rows.into_iter()
                        .map(|r| FieldValue::owned_any(transaction_json(r))),
                )))
            })
        },
    );
    let count = Field::new(
        "_transaction_log_count",
        TypeRef::named(TypeRef::INT),
        |ctx| {
            FieldFuture::new(async move {
                let request = ctx.data::<RequestContext>()?;
                let query = transaction_query(&ctx, &request.scope, false)?;
                let n = request
                    .within_limit(request.store.count_transaction_logs(&query))
                    .await?;
                Ok(Some(FieldValue::value(GqlValue::from(n))))
            })
        },
    );
    (transaction_arguments(list), transaction_arguments(count))
}
