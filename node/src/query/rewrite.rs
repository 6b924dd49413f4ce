//! ClickHouse spellings rewritten into what DataFusion plans, on sqlparser's AST.
//!
//! - `count()` becomes `count(*)`, still titled `count()`;
//! - `clusterAllReplicas('c', system.t)` and `cluster(...)` read `system.t`, which is
//!   already cluster-wide;
//! - `assignments.partition_id` names the column of that dotted name (ClickHouse Nested);
//! - `FORMAT ...` and `SETTINGS ...` are taken off the query.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, visit_relations_mut, Expr, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, SelectItem,
    SetExpr, Setting, Statement, TableFactor, VisitMut, VisitorMut,
};

/// Rewrites a query in place; returns the SETTINGS it carried.
pub fn rewrite_query(statement: &mut Statement, dotted_columns: &BTreeSet<String>) -> Vec<Setting> {
    let mut settings = Vec::new();
    if let Statement::Query(query) = statement {
        strip_clauses(query, &mut settings);
        name_count_columns(query);
    }
    let _ = visit_expressions_mut(statement, |expr| {
        match expr {
            Expr::Function(f) if is_bare_count(f) => {
                f.args = FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)],
                    clauses: vec![],
                });
            }
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let joined = format!("{}.{}", parts[0].value, parts[1].value);
                if dotted_columns.contains(&joined) {
                    *expr = Expr::Identifier(Ident::with_quote('"', joined));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_table_functions(statement);
    settings
}

fn is_bare_count(f: &sqlparser::ast::Function) -> bool {
    f.name.to_string().eq_ignore_ascii_case("count")
        && match &f.args {
            FunctionArguments::List(list) => list.args.is_empty(),
            FunctionArguments::None => false,
            FunctionArguments::Subquery(_) => false,
        }
}

/// `SELECT count() FROM t` is titled `count()` in ClickHouse.
fn name_count_columns(query: &mut Query) {
    if let SetExpr::Select(select) = query.body.as_mut() {
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(Expr::Function(f)) = item {
                if is_bare_count(f) {
                    let expr = Expr::Function(f.clone());
                    *item = SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::with_quote('"', "count()"),
                    };
                }
            }
        }
    }
}

fn strip_clauses(query: &mut Query, settings: &mut Vec<Setting>) {
    query.format_clause = None;
    if let Some(s) = query.settings.take() {
        settings.extend(s);
    }
}

fn visit_table_functions(statement: &mut Statement) -> ControlFlow<()> {
    struct V;
    impl VisitorMut for V {
        type Break = ();
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, args, .. } = factor {
                let func = name.to_string();
                let is_cluster = func.eq_ignore_ascii_case("clusterAllReplicas")
                    || func.eq_ignore_ascii_case("cluster");
                if let (true, Some(a)) = (is_cluster, args.as_ref()) {
                    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))) = a.args.get(1)
                    {
                        let parts: Option<Vec<Ident>> = match inner {
                            Expr::CompoundIdentifier(p) => Some(p.clone()),
                            Expr::Identifier(i) => Some(vec![i.clone()]),
                            _ => None,
                        };
                        if let Some(parts) = parts {
                            *name = ObjectName(
                                parts.into_iter().map(ObjectNamePart::Identifier).collect(),
                            );
                            *args = None;
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    statement.visit(&mut V)
}

/// Table names a statement reads, as written (`db.t` or `t`).
pub fn referenced_tables(statement: &mut Statement) -> Vec<String> {
    let mut out = Vec::new();
    let _ = visit_relations_mut(statement, |name| {
        out.push(
            name.0
                .iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("."),
        );
        ControlFlow::<()>::Continue(())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::ClickHouseDialect;
    use sqlparser::parser::Parser;

    fn rewrite(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&ClickHouseDialect {}, sql).expect("parses");
        let dotted: BTreeSet<String> = ["assignments.partition_id".to_string()].into();
        rewrite_query(&mut statements[0], &dotted);
        statements[0].to_string()
    }

    #[test]
    fn clickhouse_spellings() {
        assert_eq!(
            rewrite("SELECT count() FROM github"),
            "SELECT count(*) AS \"count()\" FROM github"
        );
        assert_eq!(
            rewrite("SELECT * FROM clusterAllReplicas('default', system.kafka_consumers) ORDER BY assignments.partition_id ASC"),
            "SELECT * FROM system.kafka_consumers ORDER BY \"assignments.partition_id\" ASC"
        );
        assert_eq!(
            rewrite("SELECT a FROM t LIMIT 10 FORMAT JSONEachRow"),
            "SELECT a FROM t LIMIT 10"
        );
        assert_eq!(
            rewrite("SELECT count(), t.a FROM t GROUP BY t.a"),
            "SELECT count(*) AS \"count()\", t.a FROM t GROUP BY t.a"
        );
    }
}
