//! The order and the page of a list.

use super::args::ListArgs;
use super::{BindValue, Builder, DEFAULT_FIRST, PlanError, ReadScope};
use crate::dictionary::NodeType;
use crate::sql::is_identifier;

impl Builder<'_> {
    /// `ORDER BY` (the arguments' order, then storage order: `edge_seq` if
    /// the rows come through edges that carry it, else their own `seq`) and
    /// the page.
    pub(super) fn order_limit(
        &mut self,
        alias: &str,
        edge_seq: Option<&str>,
        node: Option<&NodeType>,
        args: &ListArgs,
        paged: bool,
        root: bool,
    ) -> Result<String, PlanError> {
        let mut order = Vec::new();
        for (key, direction) in [(&args.order_by_asc, "ASC"), (&args.order_by_desc, "DESC")] {
            let Some(key) = key else { continue };
            let nulls = if direction == "ASC" {
                "NULLS FIRST"
            } else {
                "NULLS LAST"
            };
            match key.as_str() {
                "id" => order.push(format!("{alias}.node_id {direction}")),
                "type" => {}
                "project_id" => order.push(format!("{alias}.project_id {direction} {nulls}")),
                other => {
                    let known =
                        is_identifier(other) && node.is_none_or(|n| n.property(other).is_some());
                    if !known {
                        let type_name = node.map_or("node", |n| n.id.as_str());
                        return Err(PlanError(format!("Cannot order by {other} on {type_name}")));
                    }
                    order.push(format!(
                        "{} {direction} {nulls}",
                        self.dialect.prop_value(alias, other)
                    ));
                }
            }
        }
        let by_project = args
            .filters
            .iter()
            .any(|f| matches!(f, super::args::Filter::ProjectIds(_)));
        let whole_type = root && !matches!(self.scope, ReadScope::Projects(_)) && !by_project;
        let seq = match edge_seq {
            Some(column) => column.to_string(),
            None => self.dialect.seq_order(alias, whole_type),
        };
        order.push(format!("{seq} ASC"));
        let mut sql = format!(" ORDER BY {}", order.join(", "));
        if paged {
            let first = args.first.unwrap_or(DEFAULT_FIRST);
            let offset = args.offset.unwrap_or(0).max(0);
            let limit = (first > 0).then_some(first);
            let offset = self.bind(BindValue::Int(offset));
            let limit = limit.map(|l| self.bind(BindValue::Int(l)));
            sql.push_str(&self.dialect.limit_offset(limit.as_deref(), &offset));
        }
        Ok(sql)
    }
}
