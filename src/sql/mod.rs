//! The SQL both databases share, and the few fragments where they differ.
//! Generated statements (the GraphQL planner's, the store's filters) are
//! built from these pieces: identifiers come from the dictionary or from
//! constants, every value is a bind parameter held by [`Params`].

mod dialect;

pub use dialect::Dialect;

/// A bind parameter of a generated statement.
#[derive(Debug, Clone, PartialEq)]
pub enum BindValue {
    Text(String),
    Int(i64),
    Float(f64),
}

/// The bind parameters of a statement being built: each value pushed gets
/// the next placeholder (`$1`, `$2`...), which both databases accept.
#[derive(Debug, Default)]
pub struct Params {
    binds: Vec<BindValue>,
}

impl Params {
    /// Bind `value`; returns its placeholder.
    pub fn push(&mut self, value: BindValue) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// Bind a text value; returns its placeholder.
    pub fn text(&mut self, s: &str) -> String {
        self.push(BindValue::Text(s.to_string()))
    }

    pub fn into_binds(self) -> Vec<BindValue> {
        self.binds
    }
}

/// ` WHERE` and the conditions joined by `AND`; nothing for none.
pub fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// A name that may appear in SQL as is: a letter or `_`, then letters,
/// digits and `_`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
