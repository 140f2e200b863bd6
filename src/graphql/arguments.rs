//! The arguments and input types the schema declares, from the one
//! vocabulary of [`crate::plan::args`] and the dictionary's properties.

use async_graphql::dynamic::{Field, InputObject, InputValue, TypeRef};

use crate::dictionary::{Dictionary, NodeType, PropKind};
use crate::plan::args::{self, ArgSpec, ArgType};

/// The GraphQL type of a property (GRAPHQL.md §2.2).
pub(super) fn scalar(kind: PropKind) -> &'static str {
    match kind {
        PropKind::Integer | PropKind::Number => TypeRef::FLOAT,
        PropKind::Boolean => TypeRef::BOOLEAN,
        PropKind::String | PropKind::Array(_) => TypeRef::STRING,
    }
}

pub(super) fn field_type(kind: PropKind) -> TypeRef {
    match kind {
        PropKind::Array(_) => TypeRef::named_list(TypeRef::STRING),
        other => TypeRef::named(scalar(other)),
    }
}

/// Properties exposed as GraphQL fields: valid names other than `id`/`type`.
pub(super) fn exposed(node: &NodeType) -> impl Iterator<Item = &crate::dictionary::Property> {
    node.properties.iter().filter(|p| {
        crate::sql::is_identifier(&p.name) && !p.name.starts_with("__") && p.name != "project_id"
    })
}

/// Declares the arguments of `set` (see [`plan::args`]) on `field`; `node`
/// names the `not` input of a type's list.
pub(super) fn declare(mut field: Field, set: &[ArgSpec], node: Option<&NodeType>) -> Field {
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
pub(super) fn base_arguments(field: Field) -> Field {
    declare(paging_arguments(field), args::BASE, None)
}

/// `first` (default 10), `offset` and the two orderings: every list has them.
pub(super) fn paging_arguments(field: Field) -> Field {
    ordering_arguments(declare(field, args::PAGING, None))
}

/// `order_by_asc` / `order_by_desc`, each naming the field to sort by.
pub(super) fn ordering_arguments(field: Field) -> Field {
    declare(field, args::ORDERING, None)
}

/// Node-list arguments of `node` (GRAPHQL.md §3).
pub(super) fn list_arguments(field: Field, node: &NodeType) -> Field {
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

/// Arguments shared by `node`, `datanode` and `_links`.
pub(super) fn generic_arguments(field: Field) -> Field {
    declare(base_arguments(field), args::GENERIC, None)
}

/// `of_type`, for `node` and `datanode` (not `_links`).
pub(super) fn of_type(field: Field) -> Field {
    declare(field, args::OF_TYPE, None)
}

/// Non-link properties of every data-file type, system properties included,
/// first type wins (the `DataNode` fields).
pub(super) fn data_node_properties(dictionary: &Dictionary) -> Vec<(String, PropKind)> {
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
pub(super) fn with_path_to_input(dictionary: &Dictionary) -> InputObject {
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

pub(super) fn not_input(node: &NodeType) -> InputObject {
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
