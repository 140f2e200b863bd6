//! Every SQL shape that differs between SQLite and PostgreSQL, side by side:
//! the planner and the store name the shape, this file spells it per
//! database. A `match self` outside this file is a statement body of one
//! backend (see `store::sqlite` and `store::postgres`), not a fragment.

use super::is_identifier;

/// The SQL dialect of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Key-value pairs per JSON object call: both databases cap a function's
/// arguments (PostgreSQL at 100).
const PAIRS_PER_CALL: usize = 50;

impl Dialect {
    /// The verb of a multi-row insert inside a transaction that is rolled
    /// back whole on any error. SQLite's default (`ABORT`) first copies every
    /// page a statement touches into a statement journal so it can undo that
    /// statement alone; `OR FAIL` skips the copy (PostgreSQL has no such cost).
    pub fn insert_or_fail(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INSERT OR FAIL",
            Dialect::Postgres => "INSERT",
        }
    }

    /// `expr IN <list>` where parameter `param` holds a JSON array of strings.
    pub fn in_text_list(self, expr: &str, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{expr} IN (SELECT value FROM json_each({param}))"),
            Dialect::Postgres => {
                format!("{expr} IN (SELECT jsonb_array_elements_text({param}::jsonb))")
            }
        }
    }

    /// `SELECT natural_key, <columns>` of the nodes whose natural key is in
    /// the JSON list `$1`, of whatever type: the caller keeps its own type's.
    /// Naming the type as well let PostgreSQL, when its statistics had not
    /// yet seen a type written since they were last refreshed, walk every
    /// node of that type once per key; the keys alone fit only
    /// `nodes_natural_key`, which leads with the key.
    pub fn natural_key_lookup(self, columns: &str) -> String {
        format!(
            "SELECT natural_key, {columns} FROM nodes WHERE {}",
            self.in_text_list("natural_key", "$1")
        )
    }

    /// The `props` column as JSON text.
    pub fn props_text(self) -> &'static str {
        match self {
            Dialect::Sqlite => "props",
            Dialect::Postgres => "props::text",
        }
    }

    /// A property as a comparable, orderable value (numbers stay numbers).
    pub fn prop_value(self, alias: &str, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("({alias}.props ->> '{}')", json_path(name)),
            Dialect::Postgres => format!("({alias}.props -> '{}')", pg_key(name)),
        }
    }

    /// `value IN` the JSON array of typed values bound to `param`.
    pub fn in_values(self, value: &str, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{value} IN (SELECT value FROM json_each({param}))"),
            Dialect::Postgres => {
                format!("{value} IN (SELECT jsonb_array_elements({param}::jsonb))")
            }
        }
    }

    /// A property as text (NULL when absent).
    pub fn prop_text(self, alias: &str, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST(({alias}.props ->> '{}') AS TEXT)", json_path(name)),
            Dialect::Postgres => format!("({alias}.props ->> '{}')", pg_key(name)),
        }
    }

    /// A property as JSON, for the response document.
    pub fn prop_json(self, alias: &str, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json({alias}.props -> '{}')", json_path(name)),
            Dialect::Postgres => format!("({alias}.props -> '{}')", pg_key(name)),
        }
    }

    /// The array property `name` has an element whose text is bound to `param`.
    pub fn array_contains(self, alias: &str, name: &str, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "EXISTS (SELECT 1 FROM json_each({alias}.props, '{}') WHERE CAST(value AS TEXT) = {param})",
                json_path(name)
            ),
            Dialect::Postgres => {
                format!(
                    "({alias}.props -> '{}') @> jsonb_build_array({param}::text)",
                    pg_key(name)
                )
            }
        }
    }

    /// `haystack` contains the text bound to `param`.
    pub fn contains(self, haystack: &str, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({haystack}, {param}) > 0"),
            Dialect::Postgres => format!("strpos({haystack}, {param}) > 0"),
        }
    }

    /// The JSON text column `column` holds one of the strings of the JSON
    /// array bound to `param`.
    pub fn json_list_overlaps(self, column: &str, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "EXISTS (SELECT 1 FROM json_each({column}) WHERE value IN (SELECT value FROM json_each({param})))"
            ),
            Dialect::Postgres => format!(
                "{column}::jsonb ?| ARRAY(SELECT jsonb_array_elements_text({param}::jsonb))"
            ),
        }
    }

    /// A JSON array of the `obj` column of `rows`, in their order: text at
    /// the `root`, else a value to embed in the parent's object.
    pub fn aggregate(self, rows: &str, root: bool) -> String {
        match (self, root) {
            (Dialect::Sqlite, true) => {
                format!("SELECT coalesce(json_group_array(obj), '[]') FROM ({rows})")
            }
            (Dialect::Sqlite, false) => {
                format!("SELECT coalesce(jsonb_group_array(obj), jsonb('[]')) FROM ({rows})")
            }
            (Dialect::Postgres, _) => {
                format!("SELECT coalesce(json_agg(t.obj), '[]'::json) FROM ({rows}) t")
            }
        }
    }

    /// A JSON object of `(key param, value)` pairs. On SQLite it is JSONB
    /// unless `text` (a streamed root row, which leaves the database as is).
    /// On PostgreSQL it is `json`, cheaper to build than `jsonb`, unless too
    /// wide for one call, since only `jsonb` objects merge.
    pub fn json_object(self, pairs: &[String], text: bool) -> String {
        // Both databases cap function arguments; merge several objects for wide selections.
        let wide = pairs.len() > PAIRS_PER_CALL;
        let (build, merge): (&str, fn(String, String) -> String) = match (self, text) {
            (Dialect::Sqlite, true) => ("json_object", |a, b| format!("json_patch({a}, {b})")),
            (Dialect::Sqlite, false) => ("jsonb_object", |a, b| format!("jsonb_patch({a}, {b})")),
            (Dialect::Postgres, _) if wide => {
                ("jsonb_build_object", |a, b| format!("({a} || {b})"))
            }
            (Dialect::Postgres, _) => ("json_build_object", |a, b| format!("({a} || {b})")),
        };
        pairs
            .chunks(PAIRS_PER_CALL)
            .map(|c| format!("{build}({})", c.join(", ")))
            .reduce(merge)
            .unwrap_or_else(|| format!("{build}()"))
    }

    /// A bound key of a JSON object built by [`Dialect::json_object`].
    pub fn object_key(self, param: String) -> String {
        match self {
            Dialect::Sqlite => param,
            Dialect::Postgres => format!("{param}::text"),
        }
    }

    /// ` LIMIT`/` OFFSET` with bound parameters; no limit when `limit` is None.
    pub fn limit_offset(self, limit: Option<&str>, offset: &str) -> String {
        match (limit, self) {
            (Some(l), _) => format!(" LIMIT {l} OFFSET {offset}"),
            (None, Dialect::Sqlite) => format!(" LIMIT -1 OFFSET {offset}"),
            (None, Dialect::Postgres) => format!(" OFFSET {offset}"),
        }
    }

    /// The limit that stands for none where a statement must name one
    /// (SQLite has no `OFFSET` without `LIMIT`).
    pub fn no_limit(self) -> Option<i64> {
        (self == Dialect::Sqlite).then_some(-1)
    }

    /// One row per listed node, its object `object` in column `obj`: the
    /// rows of `from`, filtered, ordered and paged by `tail`.
    pub fn shaped_rows(
        self,
        object: &str,
        alias: &str,
        from: &str,
        filtered: &str,
        tail: &str,
        paged: bool,
    ) -> String {
        match self {
            // PostgreSQL evaluates a query's select list for the rows an
            // `OFFSET` skips, nested lists included: the page is chosen
            // first, then only its rows are shaped. SQLite skips before it
            // evaluates.
            Dialect::Postgres if paged => format!(
                "SELECT {object} AS obj FROM (SELECT {alias}.* FROM {from}{filtered}{tail}) {alias}"
            ),
            _ => format!("SELECT {object} AS obj FROM {from}{filtered}{tail}"),
        }
    }

    /// The storage order of a list's rows by the node's own `seq`.
    /// SQLite has no statistics to choose by, and left to itself it would
    /// walk a whole type in `seq` order through `nodes_by_type` whenever a
    /// list is ordered by `seq`: right for a root list of every project
    /// (`whole_type`), ruinous for a node's neighbours (found through
    /// `edges`) and for rows of a few projects (found through
    /// `nodes_by_type_project`). A unary `+` takes `seq` out of its choice
    /// there. PostgreSQL chooses by its statistics.
    pub fn seq_order(self, alias: &str, whole_type: bool) -> String {
        if whole_type || self == Dialect::Postgres {
            format!("{alias}.seq")
        } else {
            format!("+{alias}.seq")
        }
    }

    /// Rows of an `obj` JSON column as JSON text.
    pub fn rows_as_text(self, rows: String) -> String {
        match self {
            Dialect::Sqlite => rows,
            Dialect::Postgres => format!("SELECT t.obj::text FROM ({rows}) t"),
        }
    }

    /// A statement returning one JSON value, as one JSON text.
    pub fn json_as_text(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql.to_string(),
            Dialect::Postgres => format!("SELECT ({sql})::text"),
        }
    }

    /// A JSON column as text in a select list.
    pub fn json_column_as_text(self, name: &str) -> String {
        match self {
            Dialect::Sqlite => name.to_string(),
            Dialect::Postgres => format!("{name}::text AS {name}"),
        }
    }

    /// The placeholder of a JSON value bound as text.
    pub fn json_param(self, index: usize) -> String {
        match self {
            Dialect::Sqlite => format!("${index}"),
            Dialect::Postgres => format!("${index}::jsonb"),
        }
    }

    /// What an `INSERT` of explicit values into a table with a generated
    /// identity column must say.
    pub fn overriding_identity(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " OVERRIDING SYSTEM VALUE",
        }
    }
}

/// PostgreSQL object key of a property; callers pass checked identifiers only.
fn pg_key(name: &str) -> &str {
    debug_assert!(
        is_identifier(name),
        "property names are checked identifiers"
    );
    name
}

/// SQLite JSON path of a property; callers pass checked identifiers only.
fn json_path(name: &str) -> String {
    debug_assert!(
        is_identifier(name),
        "property names are checked identifiers"
    );
    format!("$.{name}")
}
