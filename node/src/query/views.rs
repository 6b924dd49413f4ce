//! Materialized views: checked against their target when created, then run over every
//! block of their source.
//!
//! A view's output columns are matched to the target by name, as in ClickHouse; target
//! columns the view does not produce take their defaults. Execution uses one partition so
//! a block's rows keep their order, which keeps a retried block byte-identical.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{can_cast_types, cast, concat_batches, is_not_null, take};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sqlparser::ast::{
    Expr, Ident, ObjectNamePart, SelectItem, SetExpr, Statement as SqlStatement, TableFactor,
};

use super::{session_config, QueryError};
use crate::catalog::{Catalog, TableDef, ViewDef};
use crate::format::json_each_row::default_scalar;
use crate::sql::{CreateView, DEFAULT_DATABASE};

fn source_of(create: &CreateView) -> Result<String, QueryError> {
    let bad = |reason: &str| QueryError::View {
        view: create.name.clone(),
        reason: reason.to_string(),
    };
    let SetExpr::Select(select) = create.query.body.as_ref() else {
        return Err(bad("the query must be a single SELECT"));
    };
    let [from] = select.from.as_slice() else {
        return Err(bad("the query must read exactly one table"));
    };
    if !from.joins.is_empty() {
        return Err(bad("joins are not supported in materialized views"));
    }
    let TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return Err(bad("the query must read a table"));
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [db, t] if db == DEFAULT_DATABASE => Ok(t.clone()),
        _ => Err(bad(&format!("unknown table {name}"))),
    }
}

/// Checks a `CREATE MATERIALIZED VIEW` against the catalog and returns the view to store.
pub async fn plan_view(create: &CreateView, catalog: &Catalog) -> Result<ViewDef, QueryError> {
    let source_name = source_of(create)?;
    let source = catalog
        .table(&source_name)
        .ok_or_else(|| QueryError::View {
            view: create.name.clone(),
            reason: format!("source table {source_name} does not exist"),
        })?;
    let target = catalog
        .table(&create.target)
        .ok_or_else(|| QueryError::View {
            view: create.name.clone(),
            reason: format!("target table {} does not exist", create.target),
        })?;
    let mut query = create.query.clone();
    query.format_clause = None;
    query.settings = None;
    if let SetExpr::Select(select) = query.body.as_mut() {
        // `*` means the declared columns: virtual columns are only there when named.
        let mut projection = Vec::new();
        for item in select.projection.drain(..) {
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    projection.extend(source.columns.iter().map(|c| {
                        SelectItem::UnnamedExpr(Expr::Identifier(Ident::with_quote(
                            '"',
                            c.name.clone(),
                        )))
                    }));
                }
                other => projection.push(other),
            }
        }
        select.projection = projection;
    }
    let query_text = SqlStatement::Query(query.clone()).to_string();
    let ctx = view_context(source, RecordBatch::new_empty(source.source_schema()))?;
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            SqlStatement::Query(query),
        )))
        .await
        .map_err(|e| QueryError::View {
            view: create.name.clone(),
            reason: e.to_string(),
        })?;
    let mut output_columns = Vec::new();
    for field in plan.schema().fields() {
        let name = field.name();
        let Some(column) = target.column(name) else {
            return Err(QueryError::View {
                view: create.name.clone(),
                reason: format!(
                    "column {name} is not in target table {} (name the columns to match the target, e.g. `expr AS column`)",
                    target.name
                ),
            });
        };
        let to = column.ty.arrow_type();
        if !can_cast_types(field.data_type(), &to) {
            return Err(QueryError::View {
                view: create.name.clone(),
                reason: format!(
                    "column {name}: {} does not convert to {} ({})",
                    field.data_type(),
                    column.ty,
                    target.name
                ),
            });
        }
        output_columns.push(name.clone());
    }
    Ok(ViewDef {
        name: create.name.clone(),
        source: source_name,
        target: create.target.clone(),
        original_query: create.query.to_string(),
        query: query_text,
        output_columns,
    })
}

fn view_context(source: &TableDef, batch: RecordBatch) -> Result<SessionContext, QueryError> {
    let ctx = SessionContext::new_with_config(session_config(1));
    let table = MemTable::try_new(source.source_schema(), vec![vec![batch]])?;
    ctx.register_table(source.name.as_str(), Arc::new(table))?;
    Ok(ctx)
}

/// Runs a view over one decoded block and shapes the result as the target's rows.
pub async fn run_view(
    view: &ViewDef,
    source: &TableDef,
    target: &TableDef,
    batch: RecordBatch,
) -> Result<RecordBatch, QueryError> {
    let ctx = view_context(source, batch)?;
    let batches = ctx.sql(&view.query).await?.collect().await?;
    let out = match batches.first() {
        Some(first) => concat_batches(&first.schema(), &batches)?,
        None => return Ok(RecordBatch::new_empty(target.arrow_schema())),
    };
    conform(target, &out)
}

/// Casts a view's output to the target's columns, filling the ones it lacks.
pub fn conform(target: &TableDef, out: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let n = out.num_rows();
    let schema = target.arrow_schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.columns.len());
    for column in &target.columns {
        let to = column.ty.arrow_type();
        let array = match out.column_by_name(&column.name) {
            Some(a) => cast(a, &to)?,
            None => new_null_array(&to, n),
        };
        let array = if !column.ty.is_nullable() && array.null_count() > 0 {
            let default =
                default_scalar(&column.ty).map_err(|e| QueryError::Internal(e.to_string()))?;
            let defaults = take(
                default.clone().into_inner().as_ref(),
                &UInt32Array::from(vec![0; n]),
                None,
            )?;
            zip(&is_not_null(&array)?, &array, &defaults)?
        } else {
            array
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}
