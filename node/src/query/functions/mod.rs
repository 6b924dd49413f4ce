//! SQL functions with ClickHouse's meaning: the allow-list a query's calls are checked
//! against (`names.rs`), the syntax rewrites that map ClickHouse's forms onto DataFusion's
//! (`rewrite.rs`), and Sluice's own functions, one file per family.
//!
//! Every SessionContext that plans user SQL (queries, materialized views) calls
//! `register`, and every user statement goes through `prepare` before planning: a
//! function Sluice does not run with ClickHouse's meaning is an error naming it, never a
//! different answer. Must not import `actix` or `rdkafka`.

pub mod array;
pub mod common;
pub mod convert;
pub mod datetime;
pub mod defaults;
pub mod names;
pub mod quantile;
pub mod readable;
pub mod rewrite;
pub mod scalar;
pub mod top_k;

use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;
use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, Ident, ObjectNamePart, Query, SelectItem,
    SetExpr, Statement,
};

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("function {name} is not supported by Sluice{}", hint(.suggestion))]
    Unsupported {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("function {name}: {reason}")]
    BadCall { name: String, reason: String },
    #[error("{0}")]
    Internal(String),
}

fn hint(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// Registers Sluice's functions in a session; they replace DataFusion's of the same
/// name (`length`, `concat`), whose meanings differ from ClickHouse's.
pub fn register(ctx: &SessionContext) {
    for udf in array::udfs()
        .into_iter()
        .chain(datetime::udfs())
        .chain(convert::udfs())
        .chain(readable::udfs())
        .chain(common::udfs())
    {
        ctx.register_udf(udf);
    }
    ctx.register_udaf(top_k::udaf());
    ctx.register_udaf(quantile::udaf());
}

/// Checks every function call of a statement against the allow-list and rewrites it into
/// what DataFusion plans with ClickHouse's meaning. Calls are visited innermost first,
/// each once.
pub fn prepare(statement: &mut Statement) -> Result<(), FunctionError> {
    if let Statement::Query(query) = statement {
        keep_titles(query);
    }
    let outcome = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(f) = expr {
            match rewrite::rewrite_call(f) {
                Ok(new) => *expr = new,
                Err(e) => return ControlFlow::Break(e),
            }
        }
        ControlFlow::Continue(())
    });
    match outcome {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// A result column whose expression is rewritten into another form (`countIf(x)` into
/// `count(*) FILTER (WHERE x)`) keeps its text as written for its title, as ClickHouse
/// titles columns by their expressions; a view's target columns are matched by it.
fn keep_titles(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(expr) = item {
            if changes_form(expr) {
                let alias = Ident::with_quote('"', expr.to_string());
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias,
                };
            }
        }
    }
}

fn changes_form(expr: &Expr) -> bool {
    visit_expressions(expr, |e| {
        if let Expr::Function(f) = e {
            if let [ObjectNamePart::Identifier(i)] = f.name.0.as_slice() {
                if let Some((s, with_if)) = names::resolve(&i.value) {
                    if with_if || s.kind == names::Kind::Rewritten {
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    })
    .is_break()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod oracle;
