//! Functions through a whole query: parsed as ClickHouse SQL, checked and rewritten,
//! planned and run by DataFusion, answered as TabSeparated text.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sqlparser::dialect::ClickHouseDialect;
use sqlparser::parser::Parser;

use crate::catalog::Column;
use crate::format::output::{render, type_name, OutputColumn, OutputFormat, Statistics};
use crate::format::RawMessage;
use crate::query::{rewrite, session_config};

/// A session with table `t` holding `rows` (JSONEachRow lines) of `columns`, decoded as
/// Sluice decodes messages.
pub(super) fn context(columns: &[Column], rows: &[String]) -> SessionContext {
    let messages: Vec<RawMessage> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| RawMessage {
            payload: Some(bytes::Bytes::from(r.clone())),
            key: None,
            offset: i as i64,
            timestamp_ms: None,
            headers: Vec::new(),
        })
        .collect();
    let (batch, _, broken) =
        crate::format::json_each_row::decode(columns, &messages, false).expect("rows decode");
    assert!(broken.is_empty(), "broken rows: {broken:?}");
    context_of(batch)
}

pub(super) fn context_of(batch: RecordBatch) -> SessionContext {
    let ctx = SessionContext::new_with_config(session_config(2));
    super::register(&ctx);
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("table");
    ctx.register_table("t", Arc::new(table)).expect("register");
    ctx
}

/// A query's answer as TabSeparated text, or its error.
pub(super) async fn answer(ctx: &SessionContext, sql: &str) -> Result<String, String> {
    let mut statements =
        Parser::parse_sql(&ClickHouseDialect {}, sql).map_err(|e| e.to_string())?;
    let mut statement = statements.pop().ok_or("no statement")?;
    rewrite::rewrite_query(&mut statement, &BTreeSet::new());
    super::prepare(&mut statement).map_err(|e| e.to_string())?;
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            statement,
        )))
        .await
        .map_err(|e| e.to_string())?;
    let plan = super::defaults::clickhouse_defaults(plan).map_err(|e| e.to_string())?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| e.to_string())?;
    let columns: Vec<OutputColumn> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| OutputColumn {
            name: f.name().clone(),
            type_name: type_name(f.data_type()),
        })
        .collect();
    let batches = frame.collect().await.map_err(|e| e.to_string())?;
    let text = render(
        OutputFormat::TabSeparated,
        &columns,
        &batches,
        Statistics::default(),
    )
    .map_err(|e| e.to_string())?;
    String::from_utf8(text).map_err(|e| e.to_string())
}

fn columns(ddl: &[(&str, &str)]) -> Vec<Column> {
    ddl.iter()
        .map(|(n, t)| Column {
            name: n.to_string(),
            ty: crate::catalog::ChType::parse(t).expect("type"),
        })
        .collect()
}

fn small() -> SessionContext {
    let cols = columns(&[
        ("k", "String"),
        ("v", "Nullable(Int64)"),
        ("tags", "Array(String)"),
        ("ts", "DateTime"),
    ]);
    let rows: Vec<String> = [
        r#"{"k":"a","v":1,"tags":["x","y"],"ts":"2024-02-29 13:45:10"}"#,
        r#"{"k":"a","v":null,"tags":[],"ts":"2024-03-03 00:00:00"}"#,
        r#"{"k":"b","v":5,"tags":["x"],"ts":"1970-01-01 00:00:00"}"#,
        r#"{"k":"b","v":3,"tags":["é"],"ts":"2023-12-31 23:59:59"}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    context(&cols, &rows)
}

async fn ok(ctx: &SessionContext, sql: &str) -> String {
    match answer(ctx, sql).await {
        Ok(text) => text,
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[tokio::test]
async fn an_unsupported_function_is_an_error_naming_it() {
    let ctx = small();
    let err = answer(&ctx, "SELECT date_trunc('hour', ts) FROM t")
        .await
        .expect_err("refused");
    assert_eq!(err, "function date_trunc is not supported by Sluice");
    let err = answer(&ctx, "SELECT todate(ts) FROM t")
        .await
        .expect_err("refused");
    assert_eq!(
        err,
        "function todate is not supported by Sluice (did you mean toDate?)"
    );
    let err = answer(&ctx, "SELECT k FROM t WHERE reverse(k) = 'a'")
        .await
        .expect_err("refused");
    assert!(err.contains("function reverse is not supported"), "{err}");
    let err = answer(&ctx, "SELECT quantileTDigest(0.5)(v) FROM t")
        .await
        .expect_err("refused");
    assert!(err.contains("quantileTDigest"), "{err}");
    let err = answer(&ctx, "SELECT multiIf(1, 2) FROM t")
        .await
        .expect_err("refused");
    assert!(
        err.starts_with("function multiIf: takes an odd number"),
        "{err}"
    );
}

#[tokio::test]
async fn arrays_and_strings() {
    let ctx = small();
    assert_eq!(
        ok(&ctx, "SELECT length(tags), length(k), LENGTH(concat(k, tags)), empty(tags), notEmpty(tags), has(tags, 'x') FROM t ORDER BY ts").await,
        "1\t1\t6\t0\t1\t1\n1\t1\t7\t0\t1\t0\n2\t1\t10\t0\t1\t1\n0\t1\t3\t1\t0\t0\n"
    );
    assert_eq!(
        ok(
            &ctx,
            "SELECT k, arrayJoin(tags) AS tag FROM t ORDER BY k, tag"
        )
        .await,
        "a\tx\na\ty\nb\tx\nb\té\n"
    );
}

#[tokio::test]
async fn aggregates_and_combinators() {
    let ctx = small();
    assert_eq!(
        ok(&ctx, "SELECT k, count(), countIf(v IS NULL), sumIf(v, v > 2), uniq(v), any(v), anyLast(v), argMax(ts, v), argMin(k, v) FROM t GROUP BY k ORDER BY k").await,
        "a\t2\t1\t\\N\t1\t1\t1\t2024-02-29 13:45:10\ta\nb\t2\t0\t8\t2\t5\t3\t1970-01-01 00:00:00\tb\n"
    );
    assert_eq!(
        ok(&ctx, "SELECT median(v), quantile(0.25)(v), quantiles(0.5, 1)(v), topK(1)(notEmpty(tags)), topK(k), uniqExactIf(k, v > 1) FROM t").await,
        "3\t2\t[3,5]\t[1]\t['a','b']\t1\n"
    );
}

#[tokio::test]
async fn conditionals_and_dates() {
    let ctx = small();
    assert_eq!(
        ok(&ctx, "SELECT if(v > 2, 'big', 'small'), multiIf(v IS NULL, 'none', v = 1, 'one', 'many'), toStartOfHour(ts), toStartOfWeek(ts), toYYYYMM(ts), toUnixTimestamp(ts) FROM t ORDER BY ts").await,
        "big\tmany\t1970-01-01 00:00:00\t1970-01-01\t197001\t0\n\
         big\tmany\t2023-12-31 23:00:00\t2023-12-31\t202312\t1704067199\n\
         small\tone\t2024-02-29 13:00:00\t2024-02-25\t202402\t1709214310\n\
         small\tnone\t2024-03-03 00:00:00\t2024-03-03\t202403\t1709424000\n"
    );
}

#[tokio::test]
async fn rewritten_columns_keep_their_titles() {
    let ctx = small();
    let mut statements = Parser::parse_sql(
        &ClickHouseDialect {},
        "SELECT k, countIf(v > 1), if(v > 2, 1, 0) AS big, toYYYYMM(ts) FROM t GROUP BY k, big, toYYYYMM(ts) ORDER BY k",
    )
    .expect("parses");
    let mut statement = statements.pop().expect("a statement");
    super::prepare(&mut statement).expect("prepares");
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            statement,
        )))
        .await
        .expect("plans");
    let names: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["k", "countIf(v > 1)", "big", "toYYYYMM(t.ts)"]);
}
