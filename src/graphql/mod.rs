//! Peregrine-compatible GraphQL: a schema generated from the dictionary at
//! start-up, root resolvers that run one SQL statement each (see [`plan`]),
//! and nested fields that only read the JSON that statement returned.

mod node_types;
mod stream;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, Interface, InterfaceField, Object,
    ResolverContext, Schema, TypeRef,
};
use async_graphql::{SelectionField, Value as GqlValue};
use serde_json::{Value, json};

use crate::dictionary::{Dictionary, NodeType, PropKind};
use crate::plan::args::{self, ArgSpec, ArgType};
use crate::plan::{self, ReadScope, Selection, TYPE_KEY};
use crate::store::Store;
pub use stream::Deferred;
use stream::{Shape, Shapes, Slot};

/// Per-request data the resolvers need.
pub struct RequestContext {
    pub store: Arc<Store>,
    pub dictionary: Arc<Dictionary>,
    pub scope: ReadScope,
    /// Longest a root field's statement may run.
    pub timeout: std::time::Duration,
    /// Set when the request may stream its one root list (see [`answer`]).
    pub stream: Option<Slot>,
    /// What the request's answer may cost in all.
    pub budget: Budget,
}

/// Rows a list with `first: 0` counts as in estimates when its type is not
/// known (`node`, `datanode`, `_links`).
pub const UNBOUNDED_ROWS: u64 = 10_000;

/// The cost limits of one request: estimated rows before anything runs, and
/// bytes of answer built in memory (a streamed list is exempt: it never sits
/// in memory whole). Depth and complexity limits count fields of the query,
/// not rows of the answer: `subjects { studies { subjects ... } } }` with
/// `first: 0` at every hop is a short query with a huge answer.
pub struct Budget {
    max_rows: u64,
    max_bytes: u64,
    rows: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl Budget {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_rows: limits.max_estimated_rows,
            max_bytes: limits.max_answer_bytes,
            rows: Default::default(),
            bytes: Default::default(),
        }
    }

    /// Take `rows` (estimated) out of the budget, or refuse the field.
    fn spend_rows(&self, rows: f64) -> async_graphql::Result<()> {
        if spend(&self.rows, rows.min(u64::MAX as f64) as u64, self.max_rows) {
            return Ok(());
        }
        Err(async_graphql::Error::new(format!(
            "The query could return more rows by estimate than this server answers at once \
             ({} rows, --graphql-max-rows). Set a smaller `first` on nested lists, page with \
             `offset`, ask for fewer nested levels, or ask for one flat list at a time \
             (it is streamed).",
            self.max_rows
        )))
    }

    /// Take an answer's `bytes` out of the budget, or refuse the field.
    fn spend_bytes(&self, bytes: usize) -> async_graphql::Result<()> {
        if spend(&self.bytes, bytes as u64, self.max_bytes) {
            return Ok(());
        }
        Err(async_graphql::Error::new(format!(
            "The answer is larger than this server builds in memory ({} bytes, \
             --graphql-max-answer-bytes). Ask for fewer fields or rows, page with `offset`, \
             or ask for one list at a time (a single root list is streamed and not limited).",
            self.max_bytes
        )))
    }
}

/// Add `amount` to `spent`; whether the total stays within `max`.
fn spend(spent: &std::sync::atomic::AtomicU64, amount: u64, max: u64) -> bool {
    let before = spent.fetch_add(amount, std::sync::atomic::Ordering::Relaxed);
    before.saturating_add(amount) <= max
}

/// Rows the lists of a root selection may return, estimated before anything
/// runs: at each level, a page of `first` rows (or, for `first: 0`, all of
/// them), where a nested list has as many rows per parent row as its type
/// has per row of the parent's type on average (`totals`: rows per type);
/// `first: 0` of a type of unknown size counts as [`UNBOUNDED_ROWS`].
fn estimated_rows(
    shapes: &Shapes,
    totals: &HashMap<String, i64>,
    node_type: Option<&str>,
    per_parent: f64,
    selection: &Selection,
) -> f64 {
    let first = args::first(&selection.args).unwrap_or(plan::DEFAULT_FIRST);
    let page = if first > 0 {
        (first as f64).min(per_parent)
    } else {
        per_parent
    };
    let total = |t: &str| totals.get(t).copied().unwrap_or(0).max(1) as f64;
    let nested: f64 = selection
        .children
        .iter()
        .map(|child| {
            let shape = node_type.and_then(|t| shapes.get(t, &child.name));
            match (shape, node_type) {
                (Some(Shape::List(target)), Some(parent)) => {
                    let fan_out = (total(target) / total(parent)).max(1.0);
                    estimated_rows(shapes, totals, Some(target), fan_out, child)
                }
                (Some(Shape::Links), _) => {
                    estimated_rows(shapes, totals, None, UNBOUNDED_ROWS as f64, child)
                }
                // Inline fragments (`... on case`) of `node`/`datanode`
                // rows: their lists count too.
                (None, _) if !child.children.is_empty() => {
                    estimated_rows(shapes, totals, None, UNBOUNDED_ROWS as f64, child)
                }
                _ => 0.0,
            }
        })
        .sum();
    page * (1.0 + nested)
}

/// Whether a list selection nests other lists.
fn has_nested_lists(selection: &Selection) -> bool {
    selection.children.iter().any(|c| !c.children.is_empty())
}

impl RequestContext {
    /// Run one statement within the request's time limit (GRAPHQL.md §6).
    async fn within_limit<T>(
        &self,
        query: impl std::future::Future<Output = crate::store::Result<T>>,
    ) -> async_graphql::Result<T> {
        // The database stops a statement at the limit itself (a clearer end
        // than dropping it); this wait covers the rest, such as a busy pool.
        match tokio::time::timeout(self.timeout + STATEMENT_SLACK, query).await {
            Ok(result) => result.map_err(|e| answerable(e, self.timeout)),
            Err(_) => Err(async_graphql::Error::new(timeout_message(self.timeout))),
        }
    }
}

/// A store error as a GraphQL client may see it: what to do, never the
/// database's own text (that goes to the log).
pub fn answerable(
    error: crate::store::StoreError,
    limit: std::time::Duration,
) -> async_graphql::Error {
    use crate::store::StoreError;
    match error {
        StoreError::Unavailable(_) => {
            async_graphql::Error::new("The database is unavailable; try again shortly.")
        }
        StoreError::Invalid(message) => async_graphql::Error::new(message),
        StoreError::TimedOut => async_graphql::Error::new(timeout_message(limit)),
        other => {
            tracing::error!(error = %other, "GraphQL statement failed");
            async_graphql::Error::new("The query could not be run; the server logged why.")
        }
    }
}

/// Most conditions one filter argument may list (`with_path_to`, `not`,
/// `with_links`...): each becomes its own test in the statement.
pub const MAX_CONDITIONS: usize = 100;
/// Most values one list argument may hold (`ids`, `submitter_id`...).
pub const MAX_LIST_VALUES: usize = 10_000;

/// Refuses argument lists past the limits above, naming the argument.
fn check_argument_sizes(name: &str, value: &Value) -> async_graphql::Result<()> {
    let items = match value {
        Value::Array(items) => items,
        // The fields of a condition (`with_path_to: {type: ..., id: [...]}`).
        Value::Object(fields) => {
            for (field, inner) in fields {
                check_argument_sizes(field, inner)?;
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    for item in items.iter().filter(|i| i.is_object()) {
        check_argument_sizes(name, item)?;
    }
    let conditions = items.iter().any(|i| i.is_object())
        || matches!(name, "with_links" | "with_links_any" | "without_links");
    let limit = if conditions {
        MAX_CONDITIONS
    } else {
        MAX_LIST_VALUES
    };
    if items.len() > limit {
        return Err(async_graphql::Error::new(format!(
            "Argument '{name}' lists {} values; at most {limit} are accepted",
            items.len()
        )));
    }
    Ok(())
}

/// How much longer a request waits than its statements may run.
pub const STATEMENT_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// Gen3's message for a statement over the time limit, with what to do.
pub fn timeout_message(limit: std::time::Duration) -> String {
    format!(
        "Query exceeded {} second timeout.  Please reduce query complexity and try again.  \
         Lower `first`, select fewer nested links, or page with `offset`.",
        limit.as_secs()
    )
}

/// Limits that protect the server from runaway queries.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_complexity: usize,
    /// Statement time limit per root field (Gen3's GRAPHQL_TIMEOUT, 600 s).
    pub timeout: std::time::Duration,
    /// Most rows a request's lists may return by estimate (see [`Budget`]).
    pub max_estimated_rows: u64,
    /// Most bytes of answer a request may build in memory.
    pub max_answer_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 24,
            max_complexity: 10_000,
            timeout: std::time::Duration::from_secs(600),
            // About half a gigabyte of answer at a hundred bytes a row.
            max_estimated_rows: 5_000_000,
            max_answer_bytes: 256 << 20,
        }
    }
}

/// The GraphQL type of a property (GRAPHQL.md §2.2).
fn scalar(kind: PropKind) -> &'static str {
    match kind {
        PropKind::Integer | PropKind::Number => TypeRef::FLOAT,
        PropKind::Boolean => TypeRef::BOOLEAN,
        PropKind::String | PropKind::Array(_) => TypeRef::STRING,
    }
}

fn field_type(kind: PropKind) -> TypeRef {
    match kind {
        PropKind::Array(_) => TypeRef::named_list(TypeRef::STRING),
        other => TypeRef::named(scalar(other)),
    }
}

/// Properties exposed as GraphQL fields: valid names other than `id`/`type`.
fn exposed(node: &NodeType) -> impl Iterator<Item = &crate::dictionary::Property> {
    node.properties.iter().filter(|p| {
        crate::sql::is_identifier(&p.name) && !p.name.starts_with("__") && p.name != "project_id"
    })
}

/// Declares the arguments of `set` (see [`plan::args`]) on `field`; `node`
/// names the `not` input of a type's list.
fn declare(mut field: Field, set: &[ArgSpec], node: Option<&NodeType>) -> Field {
    for (name, ty) in set {
        let name = name.as_str();
        let input = match ty {
            ArgType::Int { default } => {
                InputValue::new(name, TypeRef::named(TypeRef::INT)).default_value(*default)
            }
            ArgType::String => InputValue::new(name, TypeRef::named(TypeRef::STRING)),
            ArgType::StringList => InputValue::new(name, TypeRef::named_list(TypeRef::STRING)),
            ArgType::PathToList => InputValue::new(name, TypeRef::named_list("WithPathToInput")),
            ArgType::NotList => {
                let node = node.expect("only a type's list declares `not`");
                InputValue::new(
                    name,
                    TypeRef::named_list(format!("NotPropertiesInput_{}", node.id)),
                )
            }
        };
        field = field.argument(input);
    }
    field
}

/// Arguments every node list takes: paging, ordering, identity, search, time ranges.
fn base_arguments(field: Field) -> Field {
    declare(paging_arguments(field), args::BASE, None)
}

/// `first` (default 10), `offset` and the two orderings: every list has them.
fn paging_arguments(field: Field) -> Field {
    ordering_arguments(declare(field, args::PAGING, None))
}

/// `order_by_asc` / `order_by_desc`, each naming the field to sort by.
fn ordering_arguments(field: Field) -> Field {
    declare(field, args::ORDERING, None)
}

/// Node-list arguments of `node` (GRAPHQL.md §3).
fn list_arguments(field: Field, node: &NodeType) -> Field {
    let mut field = declare(base_arguments(field), args::TYPE_LIST, Some(node));
    for property in exposed(node) {
        if args::shadows_property(&property.name) {
            continue;
        }
        field = field.argument(InputValue::new(
            property.name.clone(),
            TypeRef::named_list(scalar(property.kind)),
        ));
    }
    field
}

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

/// Arguments shared by `node`, `datanode` and `_links`.
fn generic_arguments(field: Field) -> Field {
    declare(base_arguments(field), args::GENERIC, None)
}

/// `of_type`, for `node` and `datanode` (not `_links`).
fn of_type(field: Field) -> Field {
    declare(field, args::OF_TYPE, None)
}

/// Non-link properties of every data-file type, system properties included,
/// first type wins (the `DataNode` fields).
fn data_node_properties(dictionary: &Dictionary) -> Vec<(String, PropKind)> {
    let mut out: Vec<(String, PropKind)> = Vec::new();
    if dictionary
        .nodes()
        .iter()
        .any(|n| n.is_data_file() && n.is_project_scoped())
    {
        out.push(("project_id".into(), PropKind::String));
    }
    for node in dictionary.nodes().iter().filter(|n| n.is_data_file()) {
        for property in exposed(node) {
            if !out.iter().any(|(n, _)| n == &property.name) {
                out.push((property.name.clone(), property.kind));
            }
        }
    }
    out
}

/// `WithPathToInput`: `type`, `id`, and every property of every node type.
fn with_path_to_input(dictionary: &Dictionary) -> InputObject {
    let mut input = InputObject::new("WithPathToInput")
        .field(InputValue::new("type", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("id", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new(
            "project_id",
            TypeRef::named(TypeRef::STRING),
        ));
    let mut seen: Vec<String> = vec!["type".into(), "id".into(), "project_id".into()];
    for node in dictionary.nodes() {
        for property in exposed(node) {
            if seen.contains(&property.name) {
                continue;
            }
            seen.push(property.name.clone());
            input = input.field(InputValue::new(
                property.name.clone(),
                field_type(property.kind),
            ));
        }
    }
    input
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

fn not_input(node: &NodeType) -> InputObject {
    let mut input = InputObject::new(format!("NotPropertiesInput_{}", node.id));
    let mut any = false;
    for property in exposed(node) {
        input = input.field(InputValue::new(
            property.name.clone(),
            TypeRef::named(scalar(property.kind)),
        ));
        any = true;
    }
    if !any {
        input = input.field(InputValue::new("id", TypeRef::named(TypeRef::STRING)));
    }
    input
}

/// Arguments of `transaction_log` and `_transaction_log_count` (GRAPHQL.md §7).
fn transaction_arguments(field: Field) -> Field {
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
fn transaction_query(
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
fn transaction_json(row: crate::store::TransactionRow) -> Value {
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
fn transaction_response(mut response: Value) -> Value {
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
fn json_field(name: &'static str, type_ref: TypeRef) -> Field {
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
fn json_field_value(value: Value) -> async_graphql::Result<FieldValue<'static>> {
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

fn transaction_types() -> (Object, Object) {
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
fn transaction_document_types() -> Vec<Object> {
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

fn transaction_root_fields() -> (Field, Field) {
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

/// The answer to a request: a JSON body with its status, or a list to stream.
pub enum Answer {
    Json(u16, Value),
    /// `{"data": {<key>: [<rows>]}}`, the rows still to come from the database.
    Stream(Deferred),
}

/// Run one request, streaming its root list when it has only one (see
/// [`stream`]); otherwise as [`execute`].
pub async fn answer(
    schema: &Schema,
    mut context: RequestContext,
    query: String,
    variables: Value,
    operation_name: Option<String>,
) -> Answer {
    let dictionary = context.dictionary.clone();
    if !stream::eligible(&query, operation_name.as_deref(), |name| {
        dictionary.node(name).is_some()
    }) {
        let (status, body) = execute(schema, context, query, variables, operation_name).await;
        return Answer::Json(status, body);
    }
    let slot = Slot::default();
    context.stream = Some(slot.clone());
    let (status, body) = execute(schema, context, query, variables, operation_name).await;
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
    let order = root_order(&query, operation_name.as_deref());
    let mut request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(variables))
        .data(context);
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    let response = schema.execute(request).await;
    let data = in_query_order(response.data.into_json().unwrap_or(Value::Null), &order);
    if response.errors.is_empty() {
        return (200, json!({"data": data}));
    }
    let errors: Vec<String> = response.errors.into_iter().map(|e| e.message).collect();
    (400, json!({"data": data, "errors": errors}))
}

/// Response keys of the root fields, in the order the query names them.
fn root_order(query: &str, operation: Option<&str>) -> Vec<String> {
    use async_graphql::parser::types::{DocumentOperations, Selection as AstSelection};
    let Ok(document) = async_graphql::parser::parse_query(query) else {
        return Vec::new();
    };
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
fn in_query_order(data: Value, order: &[String]) -> Value {
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

const INTROSPECTION_QUERY: &str = r#"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_over_the_time_limit_gets_the_gen3_timeout_error() {
        let dir = tempfile::tempdir().unwrap();
        let context = RequestContext {
            store: Arc::new(Store::open(&Store::default_url(dir.path())).await.unwrap()),
            dictionary: Arc::new(crate::dictionary::load(None).unwrap()),
            scope: ReadScope::All,
            timeout: std::time::Duration::from_millis(20),
            stream: None,
            budget: Budget::new(&Limits::default()),
        };
        let slow = std::future::pending::<crate::store::Result<()>>();
        let error = context.within_limit(slow).await.unwrap_err();
        assert!(
            error
                .message
                .starts_with("Query exceeded 0 second timeout."),
            "{}",
            error.message
        );
        let fast = async { Ok::<_, crate::store::StoreError>(7) };
        assert_eq!(context.within_limit(fast).await.unwrap(), 7);
    }
}
