//! Reading the transaction log (audit trail), for GraphQL's `transaction_log`.

use sqlx::Row;

use super::{BindValue, Dialect, Result, Store, StoreError, on_pool};

/// One logged transaction.
#[derive(Debug, Clone)]
pub struct TransactionRow {
    pub id: i64,
    pub project_id: Option<String>,
    pub role: String,
    pub is_dry_run: bool,
    pub state: String,
    pub submitter: Option<String>,
    pub created_datetime: String,
    pub entity_ids: Vec<String>,
    pub program: Option<String>,
    pub project: Option<String>,
    /// The request body's format, size and (when kept) text.
    pub doc_format: Option<String>,
    pub doc_size: Option<i64>,
    pub doc: Option<String>,
    /// The reply, as JSON text.
    pub response_json: Option<String>,
}

/// Which log rows to read.
#[derive(Debug, Clone, Default)]
pub struct TransactionQuery {
    /// Readable projects; None: every row, including program-level ones.
    pub projects: Option<Vec<String>>,
    pub id: Option<i64>,
    pub project_ids: Option<Vec<String>>,
    /// The program's name and the project's code, as peregrine's `program` and `project`.
    pub program: Option<String>,
    pub project: Option<String>,
    /// `committable`: a dry run that succeeded (Commons commits no dry runs later,
    /// so none is closed or committed).
    pub committable: Option<bool>,
    /// Matches nothing: `closed: true` or any `committed_by`.
    pub none: bool,
    pub roles: Option<Vec<String>>,
    pub is_dry_run: Option<bool>,
    pub state: Option<String>,
    pub submitter: Option<String>,
    /// Rows that touched any of these entities.
    pub entities: Option<Vec<String>>,
    /// Column and direction; `id` ascending by default.
    pub order: Option<(String, bool)>,
    pub limit: Option<i64>,
    /// The last N by id, newest first; replaces `limit`.
    pub last: Option<i64>,
    pub offset: i64,
}

/// Columns a log may be ordered by.
pub const ORDER_COLUMNS: [&str; 6] = [
    "id",
    "submitter",
    "role",
    "created_datetime",
    "project_id",
    "state",
];

impl TransactionQuery {
    fn where_clause(&self, dialect: Dialect, binds: &mut Vec<BindValue>) -> String {
        let bind = |value: BindValue, binds: &mut Vec<BindValue>| {
            binds.push(value);
            format!("${}", binds.len())
        };
        let list = |items: &[String]| serde_json::to_string(items).expect("strings serialize");
        let mut conditions = vec!["TRUE".to_string()];
        if let Some(projects) = &self.projects {
            let p = bind(BindValue::Text(list(projects)), binds);
            conditions.push(dialect.in_text_list("project_id", &p));
        }
        if let Some(id) = self.id {
            conditions.push(format!("id = {}", bind(BindValue::Int(id), binds)));
        }
        for (column, value) in [("program", &self.program), ("project", &self.project)] {
            if let Some(value) = value {
                let p = bind(BindValue::Text(value.clone()), binds);
                conditions.push(format!("{column} = {p}"));
            }
        }
        if let Some(committable) = self.committable {
            let test = "(is_dry_run = TRUE AND state = 'SUCCEEDED')";
            conditions.push(if committable {
                test.to_string()
            } else {
                format!("NOT {test}")
            });
        }
        if self.none {
            conditions.push("FALSE".into());
        }
        if let Some(ids) = &self.project_ids {
            let p = bind(BindValue::Text(list(ids)), binds);
            conditions.push(dialect.in_text_list("project_id", &p));
        }
        if let Some(roles) = &self.roles {
            let p = bind(BindValue::Text(list(roles)), binds);
            conditions.push(dialect.in_text_list("role", &p));
        }
        if let Some(dry) = self.is_dry_run {
            conditions.push(format!(
                "is_dry_run = {}",
                if dry { "TRUE" } else { "FALSE" }
            ));
        }
        if let Some(state) = &self.state {
            conditions.push(format!(
                "state = {}",
                bind(BindValue::Text(state.clone()), binds)
            ));
        }
        if let Some(submitter) = &self.submitter {
            conditions.push(format!(
                "submitter = {}",
                bind(BindValue::Text(submitter.clone()), binds)
            ));
        }
        if let Some(entities) = &self.entities {
            let p = bind(BindValue::Text(list(entities)), binds);
            conditions.push(dialect.json_list_overlaps("entity_ids", &p));
        }
        conditions.join(" AND ")
    }
}

fn bind_all<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    binds: &'q [BindValue],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for bind in binds {
        query = match bind {
            BindValue::Text(s) => query.bind(s.clone()),
            BindValue::Int(i) => query.bind(*i),
            BindValue::Float(f) => query.bind(*f),
        };
    }
    query
}

impl Store {
    pub async fn transaction_logs(&self, query: &TransactionQuery) -> Result<Vec<TransactionRow>> {
        let mut binds = Vec::new();
        let filter = query.where_clause(self.dialect(), &mut binds);
        let (column, descending) = query.order.clone().unwrap_or(("id".into(), false));
        if !ORDER_COLUMNS.contains(&column.as_str()) {
            return Err(StoreError::Other(format!(
                "cannot order transaction logs by {column}"
            )));
        }
        let direction = if descending { "DESC" } else { "ASC" };
        let (order, limit) = match query.last {
            Some(last) => (
                if query.order.is_some() {
                    format!("{column} {direction}, id DESC")
                } else {
                    "id DESC".to_string()
                },
                Some(last),
            ),
            None => (format!("{column} {direction}, id ASC"), query.limit),
        };
        let mut sql = format!(
            "SELECT id, project_id, role, is_dry_run, state, submitter, created_datetime, entity_ids, \
             program, project, doc_format, doc_size, doc, response_json \
             FROM transactions WHERE {filter} ORDER BY {order}"
        );
        // SQLite has no OFFSET without LIMIT; -1 means none.
        let limit = limit.or(self.dialect().no_limit());
        if let Some(limit) = limit {
            binds.push(BindValue::Int(limit));
            sql.push_str(&format!(" LIMIT ${}", binds.len()));
        }
        binds.push(BindValue::Int(query.offset));
        sql.push_str(&format!(" OFFSET ${}", binds.len()));
        on_pool!(self, pool => {
            let rows = bind_all(sqlx::query(&sql), &binds).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    let ids: String = r.try_get("entity_ids")?;
                    Ok(TransactionRow {
                        id: r.try_get("id")?,
                        project_id: r.try_get("project_id")?,
                        role: r.try_get("role")?,
                        is_dry_run: r.try_get("is_dry_run")?,
                        state: r.try_get("state")?,
                        submitter: r.try_get("submitter")?,
                        created_datetime: r.try_get("created_datetime")?,
                        entity_ids: serde_json::from_str(&ids)?,
                        program: r.try_get("program")?,
                        project: r.try_get("project")?,
                        doc_format: r.try_get("doc_format")?,
                        doc_size: r.try_get("doc_size")?,
                        doc: r.try_get("doc")?,
                        response_json: r.try_get("response_json")?,
                    })
                })
                .collect()
        })
    }

    pub async fn count_transaction_logs(&self, query: &TransactionQuery) -> Result<i64> {
        let mut binds = Vec::new();
        let filter = query.where_clause(self.dialect(), &mut binds);
        let sql = format!("SELECT count(*) FROM transactions WHERE {filter}");
        on_pool!(self, pool => {
            let row = bind_all(sqlx::query(&sql), &binds).fetch_one(pool).await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }
}
