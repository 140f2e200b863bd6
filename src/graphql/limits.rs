//! What one request may cost: its time, its estimated rows, the bytes of
//! answer it builds, the sizes of its argument lists; and the errors a
//! client sees when it goes past them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::stream::{Shape, Shapes, Slot};
use crate::dictionary::Dictionary;
use crate::plan::args::{self};
use crate::plan::{self, ReadScope, Selection};
use crate::store::Store;

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
    pub(super) fn spend_rows(&self, rows: f64) -> async_graphql::Result<()> {
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
    pub(super) fn spend_bytes(&self, bytes: usize) -> async_graphql::Result<()> {
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
pub(super) fn spend(spent: &std::sync::atomic::AtomicU64, amount: u64, max: u64) -> bool {
    let before = spent.fetch_add(amount, std::sync::atomic::Ordering::Relaxed);
    before.saturating_add(amount) <= max
}

/// Rows the lists of a root selection may return, estimated before anything
/// runs: at each level, a page of `first` rows (or, for `first: 0`, all of
/// them), where a nested list has as many rows per parent row as its type
/// has per row of the parent's type on average (`totals`: rows per type);
/// `first: 0` of a type of unknown size counts as [`UNBOUNDED_ROWS`].
pub(super) fn estimated_rows(
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
pub(super) fn has_nested_lists(selection: &Selection) -> bool {
    selection.children.iter().any(|c| !c.children.is_empty())
}

impl RequestContext {
    /// Run one statement within the request's time limit (GRAPHQL.md §6).
    pub(super) async fn within_limit<T>(
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
pub(super) fn check_argument_sizes(name: &str, value: &Value) -> async_graphql::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ReadScope;
    use crate::store::Store;
    use std::sync::Arc;

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
