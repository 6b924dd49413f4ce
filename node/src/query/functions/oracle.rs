//! The same queries over the same rows through Sluice and through ClickHouse itself (chDB,
//! ClickHouse's engine in-process, reading the rows with `file(..., JSONEachRow, ...)`);
//! the answers, as TabSeparated text, must be the same.
//!
//! Differences allowed, each deliberate and listed in README's SQL reference:
//! - numbers in a cell may differ by 1e-9 relatively (float sums and interpolations in
//!   another order);
//! - `KNOWN_DIFFERENCES` pins what still differs (an array index past the end): the test
//!   fails if either side changes.
//!
//! chDB must be installed (`scripts/env.sh`'s `ensure_tools` does it): without it this
//! test fails, it does not skip.

use std::io::Write;
use std::process::{Command, Stdio};

use super::tests::{answer, context};
use crate::catalog::{ChType, Column};

/// The table's columns as DDL types: ClickHouse reads the file with these, Sluice derives
/// its schema from them.
const COLUMNS: &[(&str, &str)] = &[
    ("id", "UInt32"),
    ("name", "String"),
    ("n", "Nullable(Int64)"),
    ("f", "Float64"),
    ("size", "UInt64"),
    ("tags", "Array(String)"),
    ("nums", "Array(Int32)"),
    ("level", "Enum8('debug' = 1, 'info' = 2, 'error' = 3)"),
    ("host", "LowCardinality(String)"),
    ("ts", "DateTime"),
    ("d", "Date"),
];

/// DateTime edges: the epoch, the end of a month and a year, week boundaries (Saturday
/// night, Sunday, Monday), a leap day, the last second of 32-bit unsigned time.
const EDGE_TIMES: &[&str] = &[
    "1970-01-01 00:00:00",
    "2024-01-31 23:59:59",
    "2023-12-31 23:59:59",
    "2024-03-02 23:59:59",
    "2024-03-03 00:00:00",
    "2024-03-04 00:00:00",
    "2024-02-29 12:34:56",
    "2106-02-07 06:28:15",
];

const EDGE_DATES: &[&str] = &[
    "1970-01-01",
    "1970-01-04",
    "2024-02-29",
    "2023-12-31",
    "2000-02-29",
    "2149-06-06",
];

const ROWS: u32 = 40;

fn rows() -> Vec<String> {
    let levels = ["debug", "info", "error"];
    let hosts = ["alpha", "beta", "gamma", "delta"];
    (0..ROWS)
        .map(|i| {
            let n = if i % 5 == 0 {
                "null".to_string()
            } else {
                // 7 is prime to 41: distinct values, so argMin/argMax have no ties.
                (i64::from(i * 7 % 41) - 20).to_string()
            };
            // Quarters are exact in binary: sums do not depend on their order.
            let f = f64::from(i) * 0.25 - 3.0;
            let size = 3u64.pow(i % 23) + u64::from(i);
            let tags: Vec<String> = (0..i % 4).map(|k| format!("\"t{}\"", (i + k) % 5)).collect();
            let nums: Vec<String> = (0..i % 3).map(|k| (i64::from(i) - i64::from(k) * 3).to_string()).collect();
            // Skewed so topK's counts differ (19 info, 12 error, 9 debug).
            let level = if i % 4 == 0 {
                "info"
            } else if i % 7 == 0 {
                "error"
            } else {
                levels[(i % 3) as usize]
            };
            let host = hosts[(i * i % 7 % 4) as usize];
            let ts = match EDGE_TIMES.get(i as usize) {
                Some(t) => t.to_string(),
                None => {
                    let s = 1_700_000_000i64 + i64::from(i) * 123_457;
                    chrono::DateTime::from_timestamp(s, 0)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default()
                }
            };
            let d = match EDGE_DATES.get(i as usize) {
                Some(d) => d.to_string(),
                None => (chrono::NaiveDate::default()
                    + chrono::TimeDelta::days(19_000 + i64::from(i) * 17))
                .format("%Y-%m-%d")
                .to_string(),
            };
            let name = if i % 9 == 0 { String::new() } else { format!("név-{i}") };
            format!(
                r#"{{"id":{i},"name":"{name}","n":{n},"f":{f},"size":{size},"tags":[{}],"nums":[{}],"level":"{level}","host":"{host}","ts":"{ts}","d":"{d}"}}"#,
                tags.join(","),
                nums.join(",")
            )
        })
        .collect()
}

const QUERIES: &[&str] = &[
    // Arrays and strings.
    "SELECT id, length(name), length(tags), length(nums), empty(tags), notEmpty(nums), empty(name), notEmpty(name), has(tags, 't1'), has(nums, 7) FROM {t} ORDER BY id",
    "SELECT id, arrayJoin(tags) AS tag FROM {t} ORDER BY id, tag",
    "SELECT id, concat(name, '/', host, '/', toString(level)), toString(tags), toString(nums), formatReadableSize(size) FROM {t} ORDER BY id",
    // Text: byte/ASCII case vs Unicode case, non-ASCII and empty text, NULL.
    "SELECT id, name, lower(name), upper(name), lowerUTF8(name), upperUTF8(name), UPPER(host), startsWith(name, 'név'), endsWith(name, '1'), startsWith(name, ''), endsWith(host, 'ta'), isNull(n), isNotNull(n), isNull(name), ifNull(n, -1), IFNULL(n, id) FROM {t} ORDER BY id",
    "SELECT lower('ÁRVÍZTŰRŐ Tükör'), upper('straße ñ'), lowerUTF8('ÁRVÍZTŰRŐ İ Σ'), upperUTF8('straße ǆ ﬁ'), lower(''), upperUTF8(''), startsWith('', ''), endsWith('é', 'é'), startsWith(NULL, 'a'), lower(NULL), isNull(NULL), isNotNull(NULL)",
    // Arithmetic: negatives, NULL, halves (banker's rounding for floats), integer rounding.
    "SELECT id, n, f, abs(n), abs(f), ABS(id), sqrt(f), sqrt(size), floor(f), ceil(f), floor(id), ceil(n), FLOOR(size), ceil(size * toUInt64(1000000) + toUInt64(1)), round(f), round(f, 1), round(f * 1.1, 2), round(n, -1), round(id, -1), round(size, -2), round(toInt32(n)), round(f, -1), modulo(n, 7), modulo(f, 2), modulo(id, 3), intDiv(n, 3), intDiv(f, 0.5), intDiv(id, 4), intDiv(size, id + 1), intDiv(-100, n + 21), intDiv(n, -2.5), greatest(n, -5), least(n, 3, -7), greatest(id, size), least(f, -1), greatest(name, host), toFloat64(n), toFloat64(id), toFloat64(f) FROM {t} ORDER BY id",
    "SELECT round(2.5), round(-2.5), round(0.5), round(-0.25, 1), round(1.25, 1), round(1234.5678, -2), round(15, -1), round(-15, -1), round(25, -1), round(toInt64(-25), -1), round(toUInt8(250), -1), ceil(-0.5), floor(-0.5), sqrt(-1), sqrt(0), abs(-0.0), modulo(-7, 2), modulo(7, -2), modulo(-7.5, 2), intDiv(-7, 2), intDiv(7, -2), intDiv(-7.9, 2), intDiv(7.9, 0.5), intDiv(toUInt64(18446744073709551615), 1), greatest(1, NULL, 3), least(NULL, 2)",
    // Dates and times.
    "SELECT id, ts, d, toYear(ts), toMonth(ts), toDayOfMonth(ts), toDayOfWeek(ts), toHour(ts), toMinute(ts), toSecond(ts), toYear(d), toMonth(d), toDayOfMonth(d), toDayOfWeek(d) FROM {t} ORDER BY id",
    "SELECT id, ts, toStartOfMinute(ts), toStartOfHour(ts), toStartOfDay(ts), toStartOfWeek(ts), toStartOfWeek(ts, 1), toMonday(ts), toStartOfMonth(ts), toDate(ts), toYYYYMM(ts), toUnixTimestamp(ts) FROM {t} ORDER BY id",
    "SELECT id, d, toStartOfDay(d), toStartOfWeek(d), toStartOfWeek(d, 1), toMonday(d), toStartOfMonth(d), toYYYYMM(d), toDateTime(d), toDate(toString(d)), toDateTime(toString(ts)) FROM {t} ORDER BY id",
    "SELECT toDate('2024-02-29'), toDateTime('2024-12-31 23:59:59'), toUnixTimestamp('1970-01-02 00:00:00'), toDate(19000), toDate(1700000000), toDateTime(86400)",
    // Conversions.
    "SELECT id, toUInt8(id * 37), toInt8(id * 37), toUInt16(n), toUInt32(n), toUInt64(n), toInt16(f), toInt32(f), toInt64(size), toString(f), toString(n), toString(ts), toString(d), toInt32(toString(id)), toUInt8(toString(id * 13)) FROM {t} ORDER BY id",
    // Conditionals.
    "SELECT id, if(n > 0, 'pos', 'not pos'), if(empty(tags), 0, length(tags)), multiIf(n IS NULL, 'null', n < 0, 'neg', n = 0, 'zero', 'pos'), multiIf(id < 10, toString(level), id < 20, host, name) FROM {t} ORDER BY id",
    // Aggregates by Enum and LowCardinality keys.
    "SELECT toString(level), count(), countIf(n IS NULL), countIf(f > 0), sum(size), sumIf(f, f > -10), avg(f), avgIf(size, id > 0), min(ts), max(d), min(n), max(n), uniq(host), uniqExact(name), uniqCombined(n), uniqIf(host, id > 3) FROM {t} GROUP BY level ORDER BY toString(level)",
    "SELECT host, count(), any(n), anyLast(n), argMin(id, n), argMax(name, n), argMin(ts, f), argMax(d, f), argMaxIf(id, f, id < 30), median(f), quantile(0.9)(size), quantiles(0.1, 0.5, 0.99)(id), quantileIf(0.5)(f, n > 0) FROM {t} GROUP BY host ORDER BY host",
    "SELECT topK(3)(host), topK(2)(level), count(), sum(n), avg(n), uniq(n), median(n) FROM {t}",
    // No rows: the type's default for non-Nullable arguments, as ClickHouse answers.
    "SELECT count(), countIf(id > 0), uniq(n), uniqExact(host), sum(size), avg(f), any(id), anyLast(name), min(ts), max(d), argMax(name, f), median(f), quantile(0.9)(size), topK(2)(host) FROM {t} WHERE id > 1000",
    "SELECT host, countIf(id > 1000), sumIf(size, id > 1000), avgIf(f, id > 1000), anyIf(name, id > 1000), argMinIf(id, f, id > 1000), sumIf(n, id > 1000), maxIf(n, id > 1000) FROM {t} GROUP BY host ORDER BY host",
    // All-NULL groups of a Nullable column: NULL on both sides.
    "SELECT sum(n), avg(n), min(n), any(n), argMax(id, n), median(n) FROM {t} WHERE n IS NULL",
];

/// An array index past the end reads NULL in Sluice (DataFusion's), the element type's
/// default in ClickHouse. A column of the NULL literal's type (ClickHouse's
/// Nullable(Nothing)) prints as empty text in Sluice, `\N` in ClickHouse.
/// (query, ClickHouse's answer, Sluice's answer)
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "SELECT tags[1], nums[5] FROM {t} WHERE id IN (0, 4)",
        "\t0\n\t0\n",
        "\\N\t\\N\n\\N\t\\N\n",
    ),
    (
        "SELECT round(NULL), greatest(NULL, NULL)",
        "\\N\t\\N\n",
        "\t\n",
    ),
];

/// The Python that has chdb: `SLUICE_CHDB_PYTHON`, python3, or the venv `ensure_tools`
/// installs into.
fn chdb_python() -> String {
    let has_chdb = |python: &str| {
        Command::new(python)
            .args(["-c", "import chdb"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let cache = std::env::var("SLUICE_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/sluice",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let candidates = [
        std::env::var("SLUICE_CHDB_PYTHON").unwrap_or_default(),
        "python3".to_string(),
        format!("{cache}/chdb-venv/bin/python"),
    ];
    match candidates.iter().find(|p| !p.is_empty() && has_chdb(p)) {
        Some(p) => p.clone(),
        None => panic!(
            "chdb (ClickHouse in-process) is not installed: run `source scripts/env.sh && ensure_tools`, or `pip install chdb==4.4.0`"
        ),
    }
}

const CHDB_SCRIPT: &str = r#"
import sys, chdb
path, structure = sys.argv[1], sys.argv[2]
source = "file('%s', JSONEachRow, '%s')" % (path, structure.replace("\\", "\\\\").replace("'", "\\'"))
for q in sys.stdin.read().split("\n;;\n"):
    try:
        out = str(chdb.query(q.replace("{t}", source), "TabSeparated"))
    except Exception as e:
        out = "ERROR " + str(e)
    sys.stdout.write(out + "\0")
"#;

/// Each query's answer from ClickHouse, in order.
fn clickhouse(path: &std::path::Path, queries: &[&str]) -> Vec<String> {
    let structure: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
    let mut child = Command::new(chdb_python())
        .args(["-c", CHDB_SCRIPT])
        .arg(path)
        .arg(structure.join(", "))
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(queries.join("\n;;\n").as_bytes())
        .expect("queries written");
    let out = child.wait_with_output().expect("chdb answers");
    assert!(out.status.success(), "chdb failed");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let answers: Vec<String> = text.split('\0').map(str::to_string).collect();
    assert_eq!(
        answers.len(),
        queries.len() + 1,
        "one answer a query: {text}"
    );
    answers[..queries.len()].to_vec()
}

/// Equal, or numbers within 1e-9 relatively, cell by cell and inside arrays.
fn same(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let tokens = |s: &str| -> Vec<String> {
        s.split(['\t', '\n', ',', '[', ']'])
            .map(str::to_string)
            .collect()
    };
    let (ta, tb) = (tokens(a), tokens(b));
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| {
            x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                    _ => false,
                }
        })
}

#[tokio::test]
async fn functions_answer_as_clickhouse_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rows.jsonl");
    let rows = rows();
    std::fs::write(&path, rows.join("\n") + "\n").expect("rows written");
    let columns: Vec<Column> = COLUMNS
        .iter()
        .map(|(n, t)| Column {
            name: n.to_string(),
            ty: ChType::parse(t).expect("a DDL type"),
        })
        .collect();
    let ctx = context(&columns, &rows);

    let mut all: Vec<&str> = QUERIES.to_vec();
    all.extend(KNOWN_DIFFERENCES.iter().map(|(q, _, _)| *q));
    let expected = clickhouse(&path, &all);
    let mut failures = Vec::new();
    for (query, theirs) in QUERIES.iter().zip(&expected) {
        let ours = answer(&ctx, &query.replace("{t}", "t"))
            .await
            .unwrap_or_else(|e| format!("ERROR {e}"));
        if !same(&ours, theirs) {
            failures.push(format!(
                "{query}\n--- ClickHouse:\n{theirs}--- Sluice:\n{ours}"
            ));
        }
        assert!(
            !theirs.starts_with("ERROR"),
            "ClickHouse refused {query}: {theirs}"
        );
    }
    for ((query, ch, sluice), theirs) in KNOWN_DIFFERENCES.iter().zip(&expected[QUERIES.len()..]) {
        let ours = answer(&ctx, &query.replace("{t}", "t"))
            .await
            .expect("runs");
        assert_eq!((theirs.as_str(), ours.as_str()), (*ch, *sluice), "{query}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n\n{}",
        failures.len(),
        QUERIES.len(),
        failures.join("\n\n")
    );
}
