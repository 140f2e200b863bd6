//! The arguments of node lists, defined once. [`ArgName`] is the vocabulary:
//! each argument's name, and in the sets below its GraphQL type, which the
//! schema declares from here. [`ListArgs::decode`] turns a selection's
//! arguments into typed values, all the planner reads. A new argument is a
//! new variant: the compiler then asks for its name and its decoding.

use serde_json::Value;

use super::{DEFAULT_FIRST, PlanError};

/// Every argument a node list may take, other than a property's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgName {
    First,
    Offset,
    OrderByAsc,
    OrderByDesc,
    Ids,
    Id,
    QuickSearch,
    CreatedAfter,
    CreatedBefore,
    UpdatedAfter,
    UpdatedBefore,
    WithLinks,
    WithLinksAny,
    WithoutLinks,
    WithPathTo,
    WithPathToAny,
    WithoutPathTo,
    Not,
    ProjectId,
    SubmitterId,
    OfType,
    Category,
}

impl ArgName {
    const ALL: [ArgName; 22] = [
        ArgName::First,
        ArgName::Offset,
        ArgName::OrderByAsc,
        ArgName::OrderByDesc,
        ArgName::Ids,
        ArgName::Id,
        ArgName::QuickSearch,
        ArgName::CreatedAfter,
        ArgName::CreatedBefore,
        ArgName::UpdatedAfter,
        ArgName::UpdatedBefore,
        ArgName::WithLinks,
        ArgName::WithLinksAny,
        ArgName::WithoutLinks,
        ArgName::WithPathTo,
        ArgName::WithPathToAny,
        ArgName::WithoutPathTo,
        ArgName::Not,
        ArgName::ProjectId,
        ArgName::SubmitterId,
        ArgName::OfType,
        ArgName::Category,
    ];

    /// The argument's name in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgName::First => "first",
            ArgName::Offset => "offset",
            ArgName::OrderByAsc => "order_by_asc",
            ArgName::OrderByDesc => "order_by_desc",
            ArgName::Ids => "ids",
            ArgName::Id => "id",
            ArgName::QuickSearch => "quick_search",
            ArgName::CreatedAfter => "created_after",
            ArgName::CreatedBefore => "created_before",
            ArgName::UpdatedAfter => "updated_after",
            ArgName::UpdatedBefore => "updated_before",
            ArgName::WithLinks => "with_links",
            ArgName::WithLinksAny => "with_links_any",
            ArgName::WithoutLinks => "without_links",
            ArgName::WithPathTo => "with_path_to",
            ArgName::WithPathToAny => "with_path_to_any",
            ArgName::WithoutPathTo => "without_path_to",
            ArgName::Not => "not",
            ArgName::ProjectId => "project_id",
            ArgName::SubmitterId => "submitter_id",
            ArgName::OfType => "of_type",
            ArgName::Category => "category",
        }
    }

    pub fn from_name(name: &str) -> Option<ArgName> {
        ArgName::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// The GraphQL type an argument is declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// `Int` with a default value.
    Int {
        default: i64,
    },
    String,
    StringList,
    /// `[WithPathToInput]`.
    PathToList,
    /// `[NotPropertiesInput_<type>]` of the listed type.
    NotList,
}

/// An argument as a set declares it.
pub type ArgSpec = (ArgName, ArgType);

/// The page: every list has it.
pub const PAGING: &[ArgSpec] = &[
    (
        ArgName::First,
        ArgType::Int {
            default: DEFAULT_FIRST,
        },
    ),
    (ArgName::Offset, ArgType::Int { default: 0 }),
];

/// The order, each naming the field to sort by: every list has it.
pub const ORDERING: &[ArgSpec] = &[
    (ArgName::OrderByAsc, ArgType::String),
    (ArgName::OrderByDesc, ArgType::String),
];

/// Identity, search and time ranges: every node list has them.
pub const BASE: &[ArgSpec] = &[
    (ArgName::Ids, ArgType::StringList),
    (ArgName::Id, ArgType::String),
    (ArgName::QuickSearch, ArgType::String),
    (ArgName::CreatedAfter, ArgType::String),
    (ArgName::CreatedBefore, ArgType::String),
    (ArgName::UpdatedAfter, ArgType::String),
    (ArgName::UpdatedBefore, ArgType::String),
];

/// A list of one node type: links, paths, `not` and projects (its
/// properties are arguments too, see [`shadows_property`]).
pub const TYPE_LIST: &[ArgSpec] = &[
    (ArgName::WithLinks, ArgType::StringList),
    (ArgName::WithLinksAny, ArgType::StringList),
    (ArgName::WithoutLinks, ArgType::StringList),
    (ArgName::WithPathTo, ArgType::PathToList),
    (ArgName::WithPathToAny, ArgType::PathToList),
    (ArgName::WithoutPathTo, ArgType::PathToList),
    (ArgName::Not, ArgType::NotList),
    (ArgName::ProjectId, ArgType::StringList),
];

/// A list of any type (`node`, `datanode`, `_links`).
pub const GENERIC: &[ArgSpec] = &[
    (ArgName::SubmitterId, ArgType::String),
    (ArgName::ProjectId, ArgType::String),
];

/// `node` and `datanode` only.
pub const OF_TYPE: &[ArgSpec] = &[(ArgName::OfType, ArgType::StringList)];

/// `node` only.
pub const CATEGORY: &[ArgSpec] = &[(ArgName::Category, ArgType::String)];

/// Whether a property named `name` is left out of a type list's arguments:
/// the list's own arguments win, and so does every `with...` name.
pub fn shadows_property(name: &str) -> bool {
    [PAGING, ORDERING, BASE, TYPE_LIST]
        .iter()
        .any(|set| set.iter().any(|(arg, _)| arg.as_str() == name))
        || name.starts_with("with")
}

/// How the conditions of one list argument combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// `with_...`: all of them.
    All,
    /// `with_..._any`: any of them.
    Any,
    /// `without_...`: none of them.
    None,
}

/// One condition on a list's rows, in the order the arguments came.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Id(String),
    Ids(Vec<String>),
    ProjectIds(Vec<String>),
    /// Lowercased; an empty needle selects everything.
    QuickSearch(String),
    /// A stored timestamp `column` compared by `op` with `at`.
    Time {
        column: &'static str,
        op: &'static str,
        at: String,
    },
    OfType(Vec<String>),
    Category(String),
    Links {
        combine: Combine,
        names: Vec<String>,
    },
    /// Each entry `{type, id?, <property>?...}`.
    PathTo {
        combine: Combine,
        entries: Vec<Value>,
    },
    /// Each item an object of one property and the value it must not have.
    Not(Vec<Value>),
    /// A property (of the listed type) with one of `values`.
    Property {
        name: String,
        values: Vec<Value>,
    },
}

impl Filter {
    /// Whether the per-project counts that writers maintain can answer a
    /// count with this condition.
    pub fn maintained_counts_answer(&self) -> bool {
        matches!(self, Filter::ProjectIds(_))
    }
}

/// A list's arguments, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListArgs {
    pub first: Option<i64>,
    pub offset: Option<i64>,
    pub order_by_asc: Option<String>,
    pub order_by_desc: Option<String>,
    pub filters: Vec<Filter>,
}

impl ListArgs {
    /// Decode a selection's arguments; a null argument is no argument.
    pub fn decode(args: &[(String, Value)]) -> Result<ListArgs, PlanError> {
        let mut out = ListArgs::default();
        for (name, value) in args {
            if value.is_null() {
                continue;
            }
            let Some(arg) = ArgName::from_name(name) else {
                out.filters.push(Filter::Property {
                    name: name.clone(),
                    values: list(value),
                });
                continue;
            };
            let filter = match arg {
                ArgName::First => {
                    out.first = out.first.or(value.as_i64());
                    continue;
                }
                ArgName::Offset => {
                    out.offset = out.offset.or(value.as_i64());
                    continue;
                }
                ArgName::OrderByAsc => {
                    out.order_by_asc.get_or_insert_with(|| text(value));
                    continue;
                }
                ArgName::OrderByDesc => {
                    out.order_by_desc.get_or_insert_with(|| text(value));
                    continue;
                }
                ArgName::Id => Filter::Id(text(value)),
                ArgName::Ids => Filter::Ids(strings(value)),
                ArgName::ProjectId => Filter::ProjectIds(strings(value)),
                ArgName::QuickSearch => Filter::QuickSearch(text(value).to_lowercase()),
                ArgName::CreatedAfter
                | ArgName::CreatedBefore
                | ArgName::UpdatedAfter
                | ArgName::UpdatedBefore => {
                    let (column, op) = match arg {
                        ArgName::CreatedAfter => ("created_datetime", ">"),
                        ArgName::CreatedBefore => ("created_datetime", "<"),
                        ArgName::UpdatedAfter => ("updated_datetime", ">"),
                        _ => ("updated_datetime", "<"),
                    };
                    let at = normalize_datetime(&text(value)).ok_or_else(|| {
                        PlanError(format!("Invalid datetime for {name}: '{}'", text(value)))
                    })?;
                    Filter::Time { column, op, at }
                }
                ArgName::OfType => Filter::OfType(strings(value)),
                ArgName::Category => Filter::Category(text(value)),
                ArgName::WithLinks | ArgName::WithLinksAny | ArgName::WithoutLinks => {
                    Filter::Links {
                        combine: match arg {
                            ArgName::WithLinks => Combine::All,
                            ArgName::WithLinksAny => Combine::Any,
                            _ => Combine::None,
                        },
                        names: strings(value),
                    }
                }
                ArgName::WithPathTo | ArgName::WithPathToAny | ArgName::WithoutPathTo => {
                    Filter::PathTo {
                        combine: match arg {
                            ArgName::WithPathTo => Combine::All,
                            ArgName::WithPathToAny => Combine::Any,
                            _ => Combine::None,
                        },
                        entries: list(value),
                    }
                }
                ArgName::Not => Filter::Not(list(value)),
                ArgName::SubmitterId => Filter::Property {
                    name: name.clone(),
                    values: list(value),
                },
            };
            out.filters.push(filter);
        }
        Ok(out)
    }
}

/// The page size a selection asks for (`first`), if it names one.
pub fn first(args: &[(String, Value)]) -> Option<i64> {
    args.iter()
        .find(|(name, _)| name == ArgName::First.as_str())
        .and_then(|(_, v)| v.as_i64())
}

/// A single value is accepted where a list is expected.
fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// A value as the text it compares as: strings as they are, others as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    list(value).iter().map(text).collect()
}

/// Parse a user-supplied datetime into the stored timestamp format (UTC).
fn normalize_datetime(input: &str) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(input)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(input, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|n| n.and_utc())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(input, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        })
        .ok()?;
    Some(crate::time::format_timestamp(parsed))
}
