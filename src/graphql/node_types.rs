//! `_node_type`: the dictionary itself as queryable data (one `NodeType`
//! object per node type, a `String` field per top-level schema key). It is
//! answered from the loaded dictionary, without touching the database.

use async_graphql::Value as GqlValue;
use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, TypeRef};
use serde_json::{Map, Value};

use crate::dictionary::Dictionary;

/// Schema keys that can be GraphQL names (`$schema` and the like are dropped).
fn graphql_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A schema value as peregrine's `String` fields show it: strings as they
/// are, booleans and numbers as Python prints them, lists and objects as JSON.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// Every node type as a map of field name to text, and the field names.
fn table(dictionary: &Dictionary) -> (Vec<Map<String, Value>>, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let rows = dictionary
        .nodes()
        .iter()
        .map(|node| {
            let mut row = Map::new();
            for (key, value) in node.schema.as_object().into_iter().flatten() {
                if !graphql_name(key) {
                    continue;
                }
                if !names.contains(key) {
                    names.push(key.clone());
                }
                if let Some(text) = as_text(value) {
                    row.insert(key.clone(), Value::String(text));
                }
            }
            row
        })
        .collect();
    (rows, names)
}

/// The `NodeType` object type and the `_node_type` root field.
pub fn node_type_field(dictionary: &Dictionary) -> (Object, Field) {
    let (rows, names) = table(dictionary);
    let mut object = Object::new("NodeType");
    for name in &names {
        object = object.field(Field::new(
            name.clone(),
            TypeRef::named(TypeRef::STRING),
            |ctx| {
                FieldFuture::new(async move {
                    let row = ctx.parent_value.try_downcast_ref::<Map<String, Value>>()?;
                    Ok(row
                        .get(ctx.field().name())
                        .and_then(Value::as_str)
                        .map(|s| FieldValue::value(GqlValue::String(s.to_string()))))
                })
            },
        ));
    }
    let filters = names.clone();
    let mut field = Field::new("_node_type", TypeRef::named_list("NodeType"), move |ctx| {
        let rows = rows.clone();
        let filters = filters.clone();
        FieldFuture::new(async move {
            let mut kept: Vec<Map<String, Value>> = rows;
            for name in &filters {
                if let Some(wanted) = ctx.args.get(name) {
                    let wanted = wanted.string()?.to_string();
                    // Peregrine keeps a node when its value is contained in the argument.
                    kept.retain(|row| {
                        row.get(name)
                            .and_then(Value::as_str)
                            .is_some_and(|v| wanted.contains(v))
                    });
                }
            }
            for (argument, descending) in [("order_by_asc", false), ("order_by_desc", true)] {
                if let Some(key) = ctx.args.get(argument) {
                    let key = key.string()?.to_string();
                    kept.sort_by(|a, b| {
                        let order = a
                            .get(&key)
                            .and_then(Value::as_str)
                            .cmp(&b.get(&key).and_then(Value::as_str));
                        if descending { order.reverse() } else { order }
                    });
                }
            }
            let first = match ctx.args.get("first") {
                Some(v) => v.i64()?,
                None => 10,
            };
            if first > 0 {
                kept.truncate(usize::try_from(first).unwrap_or(usize::MAX));
            }
            Ok(Some(FieldValue::list(
                kept.into_iter().map(FieldValue::owned_any),
            )))
        })
    })
    .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)));
    field = super::ordering_arguments(field);
    for name in names {
        field = field.argument(InputValue::new(name, TypeRef::named(TypeRef::STRING)));
    }
    (object, field)
}
