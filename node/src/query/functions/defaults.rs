//! Aggregates over no rows answer as ClickHouse does: the result type's default (0, '',
//! nan for averages and quantiles) when no argument is Nullable, NULL when one is.
//!
//! DataFusion answers NULL in both cases. A projection over each aggregation puts the
//! default in, only for aggregates whose arguments cannot be NULL: for those, NULL can
//! only mean "no rows" (or none that passed an -If condition).

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::{lit, Expr, ExprSchemable, LogicalPlan, Projection};

/// The plan with ClickHouse's answers for aggregates over no rows.
pub fn clickhouse_defaults(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let LogicalPlan::Aggregate(agg) = &node else {
            return Ok(Transformed::no(node));
        };
        let input = agg.input.schema().clone();
        let output = node.schema().clone();
        let first_aggregate = output.fields().len().saturating_sub(agg.aggr_expr.len());
        let mut changed = false;
        let mut exprs = Vec::with_capacity(output.fields().len());
        for (i, (qualifier, field)) in output.iter().enumerate() {
            let column = Expr::Column(Column::from((qualifier, field)));
            let default = match i
                .checked_sub(first_aggregate)
                .and_then(|a| agg.aggr_expr.get(a))
            {
                Some(e) => default_of(e, &input, field.data_type())?,
                None => None,
            };
            match default {
                Some(value) => {
                    changed = true;
                    exprs.push(
                        datafusion::functions::expr_fn::coalesce(vec![column, lit(value)])
                            .alias_qualified(qualifier.cloned(), field.name()),
                    );
                }
                None => exprs.push(column),
            }
        }
        if !changed {
            return Ok(Transformed::no(node));
        }
        let projection = Projection::try_new(exprs, Arc::new(node))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    })
    .data()
}

/// ClickHouse's answer over no rows for this aggregate, when it is not NULL.
fn default_of(expr: &Expr, input: &DFSchema, ty: &DataType) -> Result<Option<ScalarValue>> {
    let expr = match expr {
        Expr::Alias(a) => a.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(f) = expr else {
        return Ok(None);
    };
    let params = &f.params;
    for e in params
        .args
        .iter()
        .chain(params.order_by.iter().map(|s| &s.expr))
    {
        if e.nullable(input)? {
            return Ok(None);
        }
    }
    Ok(match f.func.name() {
        "sum" | "min" | "max" | "first_value" | "last_value" => zero(ty),
        "avg" | "quantile" => Some(ScalarValue::Float64(Some(f64::NAN))),
        _ => None,
    })
}

fn zero(ty: &DataType) -> Option<ScalarValue> {
    match ty {
        DataType::Utf8 => Some(ScalarValue::Utf8(Some(String::new()))),
        DataType::Date32 => Some(ScalarValue::Date32(Some(0))),
        t => ScalarValue::new_zero(t).ok(),
    }
}
