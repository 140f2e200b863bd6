//! Peregrine-compatible GraphQL: a schema generated from the dictionary at
//! start-up, root resolvers that run one SQL statement each (see [`plan`]),
//! and nested fields that only read the JSON that statement returned.

mod node_types;
mod stream;

mod arguments;
mod execute;
mod limits;
mod transaction_log;

use arguments::*;
pub use execute::*;
pub use limits::*;
use std::sync::Arc;
use transaction_log::*;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Interface, InterfaceField, Object, ResolverContext,
    Schema, TypeRef,
};
use async_graphql::{SelectionField, Value as GqlValue};
use serde_json::Value;

use crate::dictionary::{Dictionary, NodeType, PropKind};
use crate::plan::args::{self};
use crate::plan::{self, Selection, TYPE_KEY};
pub use stream::Deferred;
use stream::{Shape, Shapes};

/// The response key of the field being resolved.
fn response_key(ctx: &ResolverContext<'_>) -> String {
    let field = ctx.field();
    field.alias().unwrap_or(field.name()).to_string()
}

/// The JSON object a nested resolver reads from.
fn parent_json<'a>(ctx: &'a ResolverContext<'_>) -> Option<&'a Value> {
    ctx.parent_value.try_downcast_ref::<Value>().ok()
}

/// A stored JSON value as the GraphQL scalar `kind` expects.
fn to_scalar(value: &Value, kind: Option<PropKind>) -> GqlValue {
    match (value, kind) {
        (Value::Null, _) => GqlValue::Null,
        (Value::Array(items), _) => GqlValue::List(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => GqlValue::String(s.clone()),
                    other => GqlValue::String(other.to_string()),
                })
                .collect(),
        ),
        (Value::Number(n), Some(PropKind::Integer | PropKind::Number)) => n
            .as_f64()
            .and_then(|f| async_graphql::Number::from_f64(f).map(GqlValue::Number))
            .unwrap_or(GqlValue::Null),
        (Value::Bool(b), Some(PropKind::Boolean)) => GqlValue::Boolean(*b),
        (Value::String(s), _) => GqlValue::String(s.clone()),
        (other, _) => GqlValue::String(other.to_string()),
    }
}

fn scalar_field(name: &str, kind: Option<PropKind>, type_ref: TypeRef) -> Field {
    Field::new(name, type_ref, move |ctx| {
        FieldFuture::new(async move {
            let key = response_key(&ctx);
            let value = parent_json(&ctx)
                .and_then(|p| p.get(&key))
                .map(|v| to_scalar(v, kind))
                .unwrap_or(GqlValue::Null);
            // A null list must be "no value", not a null scalar value.
            Ok((value != GqlValue::Null).then(|| FieldValue::value(value)))
        })
    })
}

fn nested_list_field(name: &str, target: &str) -> Field {
    Field::new(name, TypeRef::named_list(target), move |ctx| {
        FieldFuture::new(async move {
            let key = response_key(&ctx);
            let items = parent_json(&ctx)
                .and_then(|p| p.get(&key))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Ok(Some(FieldValue::list(
                items.into_iter().map(FieldValue::owned_any),
            )))
        })
    })
}

/// `_links`: neighbours of any type, resolved as the `Node` interface.
fn links_field() -> Field {
    let field = Field::new("_links", TypeRef::named_list("Node"), move |ctx| {
        FieldFuture::new(async move {
            let key = response_key(&ctx);
            let items = parent_json(&ctx)
                .and_then(|p| p.get(&key))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Ok(Some(FieldValue::list(items.into_iter().map(|row| {
                let type_name = row
                    .get(TYPE_KEY)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                FieldValue::owned_any(row).with_type(type_name)
            }))))
        })
    });
    generic_arguments(field)
}

fn nested_count_field(name: &str) -> Field {
    Field::new(name, TypeRef::named(TypeRef::INT), move |ctx| {
        FieldFuture::new(async move {
            let key = response_key(&ctx);
            let n = parent_json(&ctx)
                .and_then(|p| p.get(&key))
                .and_then(Value::as_i64);
            Ok(n.map(|n| FieldValue::value(GqlValue::from(n))))
        })
    })
}

/// Convert the library's selection into the planner's IR.
fn selection(field: SelectionField<'_>) -> async_graphql::Result<Selection> {
    let args = field
        .arguments()?
        .into_iter()
        .map(|(name, value)| {
            let value = value.into_json()?;
            check_argument_sizes(name.as_str(), &value)?;
            Ok((name.to_string(), value))
        })
        .collect::<async_graphql::Result<Vec<_>>>()?;
    Ok(Selection {
        key: field.alias().unwrap_or(field.name()).to_string(),
        name: field.name().to_string(),
        args,
        children: field
            .selection_set()
            .map(selection)
            .collect::<async_graphql::Result<_>>()?,
    })
}

/// What a root list field lists, owned by its resolver.
#[derive(Clone)]
enum ListKind {
    Type(String),
    Node,
    DataNode,
}

fn root_list_field(name: &str, output: &str, kind: ListKind) -> Field {
    let interface = !matches!(kind, ListKind::Type(_));
    Field::new(name, TypeRef::named_list(output), move |ctx| {
        let kind = kind.clone();
        FieldFuture::new(async move {
            let request = ctx.data::<RequestContext>()?;
            let sel = selection(ctx.field())?;
            let shapes = ctx.data::<Arc<Shapes>>()?;
            let node_type = match &kind {
                ListKind::Type(t) => Some(t.as_str()),
                ListKind::Node | ListKind::DataNode => None,
            };
            let streams = matches!(
                (&kind, &request.stream),
                (ListKind::Type(t), Some(_)) if shapes.streamable(t, &sel)
            );
            // A flat list that streams never sits in memory: only its rows'
            // count bounds it. Every other list is estimated before it runs.
            if !streams || has_nested_lists(&sel) {
                let totals = request.within_limit(request.store.node_totals()).await?;
                let root_rows = node_type.map_or(UNBOUNDED_ROWS as f64, |t| {
                    totals.get(t).copied().unwrap_or(0).max(1) as f64
                });
                request
                    .budget
                    .spend_rows(estimated_rows(shapes, &totals, node_type, root_rows, &sel))?;
            }
            if let (ListKind::Type(node_type), Some(slot)) = (&kind, &request.stream)
                && shapes.streamable(node_type, &sel)
            {
                let statement = plan::root_rows(
                    &request.dictionary,
                    request.store.dialect(),
                    &request.scope,
                    node_type,
                    &sel,
                )?;
                *slot.lock().expect("stream slot poisoned") = Some(Deferred {
                    key: sel.key.clone(),
                    node_type: node_type.clone(),
                    statement,
                    selection: sel,
                    shapes: shapes.clone(),
                });
                return Ok(Some(FieldValue::list(Vec::<FieldValue>::new())));
            }
            let list = match &kind {
                ListKind::Type(t) => plan::RootList::Type(t),
                ListKind::Node => plan::RootList::Node,
                ListKind::DataNode => plan::RootList::DataNode,
            };
            let statement = plan::root_list(
                &request.dictionary,
                request.store.dialect(),
                &request.scope,
                list,
                &sel,
            )?;
            let text = request
                .within_limit(request.store.query_json(
                    &statement.sql,
                    &statement.binds,
                    request.timeout,
                ))
                .await?;
            request.budget.spend_bytes(text.len())?;
            let rows: Vec<Value> = serde_json::from_str(&text)?;
            Ok(Some(FieldValue::list(rows.into_iter().map(|row| {
                if !interface {
                    return FieldValue::owned_any(row);
                }
                let type_name = row
                    .get(TYPE_KEY)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                FieldValue::owned_any(row).with_type(type_name)
            }))))
        })
    })
}

fn root_count_field(node: &NodeType) -> Field {
    let type_name = node.id.clone();
    let field = Field::new(
        format!("_{}_count", node.id),
        TypeRef::named(TypeRef::INT),
        move |ctx| {
            let type_name = type_name.clone();
            FieldFuture::new(async move {
                let request = ctx.data::<RequestContext>()?;
                let sel = selection(ctx.field())?;
                let statement = plan::root_count(
                    &request.dictionary,
                    request.store.dialect(),
                    &request.scope,
                    &type_name,
                    &sel.args,
                )?;
                let n = request
                    .within_limit(request.store.query_count(
                        &statement.sql,
                        &statement.binds,
                        request.timeout,
                    ))
                    .await?;
                Ok(Some(FieldValue::value(GqlValue::from(n))))
            })
        },
    );
    list_arguments(field, node)
}

const NODE_INTERFACE_FIELDS: [&str; 5] = [
    "submitter_id",
    "project_id",
    "created_datetime",
    "updated_datetime",
    "type",
];

/// A scalar field of a node object, recorded in `shapes` for streaming.
fn node_scalar(
    shapes: &mut Shapes,
    node: &NodeType,
    name: &str,
    kind: Option<PropKind>,
    type_ref: TypeRef,
) -> Field {
    shapes.insert(&node.id, name, Shape::Scalar(kind));
    scalar_field(name, kind, type_ref)
}

fn node_object(
    dictionary: &Dictionary,
    node: &NodeType,
    data_fields: &[(String, PropKind)],
    shapes: &mut Shapes,
) -> Object {
    let mut object = Object::new(node.id.clone())
        .implement("Node")
        .field(node_scalar(
            shapes,
            node,
            "id",
            None,
            TypeRef::named(TypeRef::ID),
        ))
        .field(node_scalar(
            shapes,
            node,
            "type",
            None,
            TypeRef::named(TypeRef::STRING),
        ))
        .field(node_scalar(
            shapes,
            node,
            "project_id",
            None,
            TypeRef::named(TypeRef::STRING),
        ));
    for property in exposed(node) {
        // Interface fields must have the interface's type on every implementing object.
        let kind = if NODE_INTERFACE_FIELDS.contains(&property.name.as_str()) {
            PropKind::String
        } else if node.is_data_file() {
            data_fields
                .iter()
                .find(|(n, _)| *n == property.name)
                .map_or(property.kind, |(_, k)| *k)
        } else {
            property.kind
        };
        object = object.field(node_scalar(
            shapes,
            node,
            &property.name,
            Some(kind),
            field_type(kind),
        ));
    }
    for name in NODE_INTERFACE_FIELDS {
        if name != "type" && name != "project_id" && node.property(name).is_none() {
            object = object.field(node_scalar(
                shapes,
                node,
                name,
                None,
                TypeRef::named(TypeRef::STRING),
            ));
        }
    }
    object = object.field(links_field());
    shapes.insert(&node.id, "_links", Shape::Links);
    if node.is_data_file() {
        object = object.implement("DataNode");
        for (name, kind) in data_fields {
            if node.property(name).is_none() {
                object = object.field(node_scalar(shapes, node, name, None, field_type(*kind)));
            }
        }
    }
    let edges = node
        .links
        .iter()
        .map(|l| (l.name.clone(), l.target_type.clone()))
        .chain(
            node.backrefs
                .iter()
                .map(|b| (b.name.clone(), b.source_type.clone())),
        );
    for (name, other) in edges {
        let Some(other_node) = dictionary.node(&other) else {
            continue;
        };
        object = object.field(list_arguments(nested_list_field(&name, &other), other_node));
        shapes.insert(&node.id, &name, Shape::List(other.clone()));
        let count = format!("_{name}_count");
        object = object.field(list_arguments(nested_count_field(&count), node));
        shapes.insert(&node.id, &count, Shape::Count);
    }
    object
}

/// Build the schema for `dictionary`.
pub fn build_schema(dictionary: &Dictionary, limits: Limits) -> Result<Schema, String> {
    let mut node_interface =
        Interface::new("Node").field(InterfaceField::new("id", TypeRef::named(TypeRef::ID)));
    for name in NODE_INTERFACE_FIELDS {
        node_interface =
            node_interface.field(InterfaceField::new(name, TypeRef::named(TypeRef::STRING)));
    }
    let data_fields = data_node_properties(dictionary);
    let mut data_interface = Interface::new("DataNode")
        .field(InterfaceField::new("id", TypeRef::named(TypeRef::ID)))
        .field(InterfaceField::new("type", TypeRef::named(TypeRef::STRING)));
    for (name, kind) in &data_fields {
        data_interface = data_interface.field(InterfaceField::new(name.clone(), field_type(*kind)));
    }
    let mut shapes = Shapes::default();
    let mut builder = Schema::build("Root", None, None)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .register(with_path_to_input(dictionary));
    for node in dictionary.nodes() {
        builder = builder
            .register(node_object(dictionary, node, &data_fields, &mut shapes))
            .register(not_input(node));
    }
    let (node_type_object, _) = node_types::node_type_field(dictionary);
    builder = builder.register(node_type_object);
    if dictionary.nodes().iter().any(NodeType::is_data_file) {
        builder = builder.register(data_interface);
    }
    // peregrine's `viewer` repeats the root fields, transaction logs aside.
    let mut viewer = Object::new("viewer");
    for field in graph_root_fields(dictionary, &data_fields) {
        viewer = viewer.field(field);
    }
    let mut root =
        Object::new("Root").field(Field::new("viewer", TypeRef::named("viewer"), |_| {
            FieldFuture::new(async { Ok(Some(FieldValue::owned_any(()))) })
        }));
    for field in graph_root_fields(dictionary, &data_fields) {
        root = root.field(field);
    }
    let (log, snapshot) = transaction_types();
    let (logs, log_count) = transaction_root_fields();
    root = root.field(logs).field(log_count);
    builder = builder.register(log).register(snapshot);
    for object in transaction_document_types() {
        builder = builder.register(object);
    }
    builder
        .data(Arc::new(shapes))
        .register(node_interface)
        .register(viewer)
        .register(root)
        .finish()
        .map_err(|e| format!("cannot build the GraphQL schema: {e}"))
}

/// The root fields over the graph: each type's list and count, `node`,
/// `datanode` (when the dictionary has data files) and `_node_type`.
fn graph_root_fields(dictionary: &Dictionary, data_fields: &[(String, PropKind)]) -> Vec<Field> {
    let mut fields = Vec::new();
    for node in dictionary.nodes() {
        fields.push(list_arguments(
            root_list_field(&node.id, &node.id, ListKind::Type(node.id.clone())),
            node,
        ));
        fields.push(root_count_field(node));
    }
    fields.push(declare(
        of_type(generic_arguments(root_list_field(
            "node",
            "Node",
            ListKind::Node,
        ))),
        args::CATEGORY,
        None,
    ));
    if dictionary.nodes().iter().any(NodeType::is_data_file) {
        let mut datanode = of_type(generic_arguments(root_list_field(
            "datanode",
            "DataNode",
            ListKind::DataNode,
        )));
        for (name, kind) in data_fields {
            if !matches!(name.as_str(), "project_id" | "id" | "submitter_id") {
                datanode = datanode.argument(InputValue::new(name.clone(), field_type(*kind)));
            }
        }
        fields.push(datanode);
    }
    fields.push(node_types::node_type_field(dictionary).1);
    fields
}
