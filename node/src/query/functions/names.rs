//! The functions Sluice runs with ClickHouse's meaning: the allow-list every query and
//! view is checked against. A name not here is refused, never run with another meaning.
//!
//! Names match as ClickHouse matches them: exactly, or in any case for the few ClickHouse
//! registers case-insensitively. `xIf` is aggregate `x` with the -If combinator.

/// How Sluice runs a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Registered by Sluice under its ClickHouse name (`register`).
    Udf,
    /// DataFusion's function of this name, checked to mean what ClickHouse's does.
    Builtin(&'static str),
    /// Turned into other expressions on the query's syntax tree (`rewrite.rs`).
    Rewritten,
}

#[derive(Debug)]
pub struct Supported {
    pub name: &'static str,
    pub kind: Kind,
    /// An aggregate, so `nameIf` is too.
    pub aggregate: bool,
    /// ClickHouse also takes this name in any case (`COUNT`, `Length`).
    pub any_case: bool,
}

const fn f(name: &'static str, kind: Kind) -> Supported {
    Supported {
        name,
        kind,
        aggregate: false,
        any_case: false,
    }
}
const fn ci(name: &'static str, kind: Kind) -> Supported {
    Supported {
        name,
        kind,
        aggregate: false,
        any_case: true,
    }
}
const fn agg(name: &'static str, kind: Kind, any_case: bool) -> Supported {
    Supported {
        name,
        kind,
        aggregate: true,
        any_case,
    }
}

use Kind::{Builtin, Rewritten, Udf};

pub const SUPPORTED: &[Supported] = &[
    // Aggregates.
    agg("count", Builtin("count"), true),
    agg("sum", Builtin("sum"), true),
    agg("avg", Builtin("avg"), true),
    agg("min", Builtin("min"), true),
    agg("max", Builtin("max"), true),
    agg("uniq", Rewritten, false),
    agg("uniqExact", Rewritten, false),
    agg("uniqCombined", Rewritten, false),
    agg("any", Rewritten, false),
    agg("anyLast", Rewritten, false),
    agg("argMin", Rewritten, false),
    agg("argMax", Rewritten, false),
    agg("topK", Rewritten, false),
    agg("quantile", Rewritten, false),
    agg("quantiles", Rewritten, false),
    agg("median", Rewritten, false),
    // Conditionals.
    ci("if", Rewritten),
    f("multiIf", Rewritten),
    ci("coalesce", Builtin("coalesce")),
    ci("ifNull", Builtin("coalesce")),
    ci("isNull", Udf),
    f("isNotNull", Udf),
    ci("greatest", Builtin("greatest")),
    ci("least", Builtin("least")),
    // Arithmetic.
    ci("abs", Builtin("abs")),
    ci("sqrt", Udf),
    ci("floor", Udf),
    ci("ceil", Udf),
    ci("round", Udf),
    f("modulo", Rewritten),
    f("intDiv", Udf),
    f("toFloat64", Udf),
    // Arrays and strings.
    ci("length", Udf),
    f("empty", Udf),
    f("notEmpty", Udf),
    f("has", Udf),
    f("arrayJoin", Rewritten),
    ci("concat", Udf),
    f("formatReadableSize", Udf),
    ci("lower", Udf),
    ci("upper", Udf),
    f("lowerUTF8", Udf),
    f("upperUTF8", Udf),
    f("startsWith", Udf),
    f("endsWith", Udf),
    // Dates and times.
    f("toStartOfMinute", Udf),
    f("toStartOfHour", Udf),
    f("toStartOfDay", Udf),
    f("toStartOfWeek", Udf),
    f("toMonday", Udf),
    f("toStartOfMonth", Udf),
    f("toDate", Udf),
    f("toDateTime", Udf),
    f("toYYYYMM", Udf),
    f("toUnixTimestamp", Udf),
    f("toYear", Udf),
    f("toMonth", Udf),
    f("toDayOfMonth", Udf),
    f("toDayOfWeek", Udf),
    f("toHour", Udf),
    f("toMinute", Udf),
    f("toSecond", Udf),
    // Conversions.
    f("toInt8", Udf),
    f("toInt16", Udf),
    f("toInt32", Udf),
    f("toInt64", Udf),
    f("toUInt8", Udf),
    f("toUInt16", Udf),
    f("toUInt32", Udf),
    f("toUInt64", Udf),
    f("toString", Udf),
    // DataFusion's names, not ClickHouse's, kept because existing queries use them; no
    // ClickHouse function has these names with another meaning.
    f("chr", Builtin("chr")),
    f("starts_with", Builtin("starts_with")),
    f("ends_with", Builtin("ends_with")),
    f("cardinality", Builtin("cardinality")),
];

/// The supported function a name calls, and whether it carries the -If combinator.
pub fn resolve(name: &str) -> Option<(&'static Supported, bool)> {
    if let Some(s) = lookup(name) {
        return Some((s, false));
    }
    let base = name.strip_suffix("If")?;
    let s = lookup(base)?;
    s.aggregate.then_some((s, true))
}

fn lookup(name: &str) -> Option<&'static Supported> {
    SUPPORTED.iter().find(|s| s.name == name).or_else(|| {
        SUPPORTED
            .iter()
            .find(|s| s.any_case && s.name.eq_ignore_ascii_case(name))
    })
}

/// A supported name close to `name`: the same in another case, or one or two edits away.
pub fn suggestion(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if let Some(s) = SUPPORTED
        .iter()
        .find(|s| s.name.to_ascii_lowercase() == lower)
    {
        return Some(s.name);
    }
    SUPPORTED
        .iter()
        .map(|s| (edits(&lower, &s.name.to_ascii_lowercase()), s.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_as_clickhouse_matches_them() {
        assert_eq!(
            resolve("countIf").map(|(s, c)| (s.name, c)),
            Some(("count", true))
        );
        assert_eq!(
            resolve("COUNT").map(|(s, c)| (s.name, c)),
            Some(("count", false))
        );
        assert_eq!(
            resolve("argMaxIf").map(|(s, c)| (s.name, c)),
            Some(("argMax", true))
        );
        assert!(resolve("multiIf").is_some_and(|(s, c)| s.name == "multiIf" && !c));
        assert!(
            resolve("toDateIf").is_none(),
            "-If applies to aggregates only"
        );
        assert!(
            resolve("todate").is_none(),
            "toDate is case-sensitive in ClickHouse"
        );
        assert!(resolve("date_trunc").is_none());
        assert_eq!(suggestion("todate"), Some("toDate"));
        assert_eq!(suggestion("toStartOfHours"), Some("toStartOfHour"));
        assert_eq!(suggestion("quantileTDigest"), None);
    }
}
