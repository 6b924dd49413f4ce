//! Each function call of a query checked against the allow-list and put in the form
//! DataFusion plans with ClickHouse's meaning, on sqlparser's syntax tree.
//!
//! - a supported name is spelled as registered (Sluice's functions keep ClickHouse's
//!   case, quoted so DataFusion does not lowercase them);
//! - `fIf(args, cond)` is `f(args) FILTER (WHERE cond)`;
//! - `if`/`multiIf` are CASE; `arrayJoin` is `unnest`; `modulo(a, b)` is `a % b`;
//! - `uniq*(x)` is `count(DISTINCT x)`; `any`/`anyLast` are `first_value`/`last_value`
//!   IGNORE NULLS; `argMin/argMax(a, v)` are `first_value(a ORDER BY v)` over rows whose v
//!   is not NULL; `quantile(l)(x)`/`median` are `quantile(x, l)` and `topK(N)(x)` is
//!   `topK(x, N)` (Sluice's aggregates, `quantile.rs` and `top_k.rs`).
//!
//! Rewrites are built as SQL text parsed back with the generic dialect, the one DataFusion
//! reads a stored view's query with, so what is stored is what runs.

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    NullTreatment, ObjectName, ObjectNamePart,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::names::{resolve, suggestion, Kind, Supported};
use super::FunctionError;

/// The expression a call becomes, or the reason it is refused.
pub fn rewrite_call(f: &Function) -> Result<Expr, FunctionError> {
    let name = match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => i.value.clone(),
        _ => {
            return Err(FunctionError::Unsupported {
                name: f.name.to_string(),
                suggestion: None,
            })
        }
    };
    let Some((supported, with_if)) = resolve(&name) else {
        return Err(FunctionError::Unsupported {
            suggestion: suggestion(&name),
            name,
        });
    };
    let bad = |reason: &str| FunctionError::BadCall {
        name: name.clone(),
        reason: reason.to_string(),
    };
    let mut call = f.clone();
    let mut args = plain_args(f).map_err(|r| bad(&r))?;
    let condition = if with_if {
        match args.pop() {
            Some(c) => Some(c),
            None => {
                return Err(bad(
                    "the -If combinator takes the condition as the last argument",
                ))
            }
        }
    } else {
        None
    };
    if let Some(c) = &condition {
        // The condition goes to FILTER; the call keeps the other arguments.
        set_args(&mut call, &args, supported.name == "count");
        call.filter = Some(Box::new(match call.filter.take() {
            Some(existing) => parse(&format!("({existing}) AND ({c})"))?,
            None => c.clone(),
        }));
    }
    let mut out = match supported.kind {
        Kind::Builtin(df) => {
            call.name = plain_name(df);
            Expr::Function(call)
        }
        Kind::Udf => {
            call.name = quoted_name(supported.name);
            Expr::Function(call)
        }
        Kind::Rewritten => rewritten(supported, &call, &args).map_err(|r| bad(&r))?,
    };
    if let Expr::Function(g) = &mut out {
        // Parameters were consumed by the rewrite; DataFusion plans none.
        if matches!(g.parameters, FunctionArguments::List(_)) && supported.kind != Kind::Rewritten {
            return Err(bad("takes no parameters"));
        }
        g.parameters = FunctionArguments::None;
    }
    Ok(out)
}

fn plain_name(name: &str) -> ObjectName {
    ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))])
}

fn quoted_name(name: &str) -> ObjectName {
    ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote(
        '"', name,
    ))])
}

fn parse(sql: &str) -> Result<Expr, FunctionError> {
    Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| FunctionError::Internal(format!("rewriting to {sql}: {e}")))
}

/// The call's arguments as plain expressions (a `*` argument is kept only by count).
fn plain_args(f: &Function) -> Result<Vec<Expr>, String> {
    match &f.args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::Subquery(_) => Err("a subquery is not an argument here".into()),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter(|a| !matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Wildcard)))
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                other => Err(format!("argument {other} is not supported")),
            })
            .collect(),
    }
}

fn set_args(call: &mut Function, args: &[Expr], counts_rows: bool) {
    if let FunctionArguments::List(list) = &mut call.args {
        let star = list
            .args
            .iter()
            .any(|a| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Wildcard)));
        list.args = args
            .iter()
            .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e.clone())))
            .collect();
        if star || (args.is_empty() && counts_rows) {
            // `countIf(cond)` counts rows: `count(*) FILTER (WHERE cond)`.
            list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)];
        }
    }
}

/// ClickHouse's parameters: `quantile(0.9)(x)` has parameter 0.9.
fn parameters(f: &Function) -> Result<Vec<Expr>, String> {
    match &f.parameters {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                other => Err(format!("parameter {other} is not supported")),
            })
            .collect(),
        FunctionArguments::Subquery(_) => Err("a subquery is not a parameter".into()),
    }
}

fn one(args: &[Expr], what: &str) -> Result<Expr, String> {
    match args {
        [x] => Ok(x.clone()),
        _ => Err(format!("takes {what}, got {} arguments", args.len())),
    }
}

/// Keeps what the call carried (FILTER, OVER) on the function it became.
fn carry(from: &Function, mut to: Expr) -> Expr {
    if let Expr::Function(g) = &mut to {
        if g.filter.is_none() {
            g.filter = from.filter.clone();
        }
        if g.over.is_none() {
            g.over = from.over.clone();
        }
    }
    to
}

fn rewritten(s: &Supported, call: &Function, args: &[Expr]) -> Result<Expr, String> {
    let p = |e: Result<Expr, FunctionError>| e.map_err(|e| e.to_string());
    let no_parameters = || -> Result<(), String> {
        if parameters(call)?.is_empty() {
            Ok(())
        } else {
            Err("takes no parameters".into())
        }
    };
    Ok(match s.name {
        "if" => {
            no_parameters()?;
            let [c, a, b] = args else {
                return Err(format!(
                    "takes 3 arguments (cond, then, else), got {}",
                    args.len()
                ));
            };
            p(parse(&format!(
                "CASE WHEN CAST(({c}) AS BOOLEAN) THEN ({a}) ELSE ({b}) END"
            )))?
        }
        "multiIf" => {
            no_parameters()?;
            if args.len() < 3 || args.len() % 2 == 0 {
                return Err(format!(
                    "takes an odd number of arguments, at least 3 (cond1, then1, ..., else), got {}",
                    args.len()
                ));
            }
            let mut sql = String::from("CASE");
            for pair in args[..args.len() - 1].chunks(2) {
                sql.push_str(&format!(
                    " WHEN CAST(({}) AS BOOLEAN) THEN ({})",
                    pair[0], pair[1]
                ));
            }
            sql.push_str(&format!(" ELSE ({}) END", args[args.len() - 1]));
            p(parse(&sql))?
        }
        "modulo" => {
            no_parameters()?;
            let [a, b] = args else {
                return Err(format!("takes 2 arguments, got {}", args.len()));
            };
            p(parse(&format!("(({a}) % ({b}))")))?
        }
        "arrayJoin" => {
            no_parameters()?;
            let x = one(args, "one array")?;
            p(parse(&format!("unnest({x})")))?
        }
        "uniq" | "uniqExact" | "uniqCombined" => {
            // uniqCombined(17)(x) names its precision: the answer does not depend on it here.
            if s.name != "uniqCombined" {
                no_parameters()?;
            }
            let x = one(args, "one argument (several are not supported)")?;
            let mut g = call.clone();
            g.name = plain_name("count");
            g.parameters = FunctionArguments::None;
            set_args(&mut g, &[x], false);
            if let FunctionArguments::List(list) = &mut g.args {
                list.duplicate_treatment = Some(DuplicateTreatment::Distinct);
            }
            Expr::Function(g)
        }
        "any" | "anyLast" => {
            no_parameters()?;
            let x = one(args, "one argument")?;
            let target = if s.name == "any" {
                "first_value"
            } else {
                "last_value"
            };
            let mut g = call.clone();
            g.name = plain_name(target);
            set_args(&mut g, &[x], false);
            g.null_treatment = Some(NullTreatment::IgnoreNulls);
            Expr::Function(g)
        }
        "argMin" | "argMax" => {
            no_parameters()?;
            let [a, v] = args else {
                return Err(format!("takes 2 arguments (arg, val), got {}", args.len()));
            };
            let dir = if s.name == "argMin" { "ASC" } else { "DESC" };
            let filter = match &call.filter {
                Some(f) => format!("({f}) AND ({v}) IS NOT NULL"),
                None => format!("({v}) IS NOT NULL"),
            };
            let e = p(parse(&format!(
                "first_value({a} ORDER BY {v} {dir}) FILTER (WHERE {filter})"
            )))?;
            let mut call = call.clone();
            call.filter = None;
            carry(&call, e)
        }
        "quantile" | "median" => {
            let level = match (s.name, parameters(call)?.as_slice()) {
                ("median", []) | ("quantile", []) => "0.5".to_string(),
                ("quantile", [l]) => l.to_string(),
                _ => return Err("takes one parameter, the level: quantile(0.9)(x)".into()),
            };
            let x = one(args, "one argument")?;
            carry(call, p(parse(&format!("\"quantile\"({x}, {level})")))?)
        }
        "quantiles" => {
            let levels = parameters(call)?;
            if levels.is_empty() {
                return Err("takes the levels as parameters: quantiles(0.5, 0.9)(x)".into());
            }
            let x = one(args, "one argument")?;
            let filter = call
                .filter
                .as_ref()
                .map(|f| format!(" FILTER (WHERE {f})"))
                .unwrap_or_default();
            let each: Vec<String> = levels
                .iter()
                .map(|l| format!("\"quantile\"({x}, {l}){filter}"))
                .collect();
            p(parse(&format!("make_array({})", each.join(", "))))?
        }
        "topK" => {
            let n = match parameters(call)?.as_slice() {
                [] => super::top_k::DEFAULT_N.to_string(),
                [n] => n.to_string(),
                _ => return Err("takes one parameter, N: topK(10)(x)".into()),
            };
            let x = one(args, "one argument")?;
            carry(call, p(parse(&format!("\"topK\"({x}, {n})")))?)
        }
        other => return Err(format!("{other} has no rewrite")),
    })
}
