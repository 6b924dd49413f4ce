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
use arrow::datatypes::Schema;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sqlparser::ast::{
    Expr, Ident, ObjectNamePart, SelectItem, SetExpr, Statement as SqlStatement, TableFactor,
};
use sqlparser::dialect::GenericDialect;

use super::{session_config, QueryError};
use crate::catalog::{
    is_kafka_envelope_column, kafka_envelope_columns, Catalog, TableDef, ViewDef,
};
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
    // `_headers.name` is one column (ClickHouse's Nested), not column `name` of `_headers`.
    let dotted = crate::catalog::dotted_virtual_columns()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut statement = SqlStatement::Query(create.query.clone());
    super::rewrite::rewrite_query(&mut statement, &dotted);
    super::functions::prepare(&mut statement).map_err(|e| QueryError::View {
        view: create.name.clone(),
        reason: e.to_string(),
    })?;
    let SqlStatement::Query(mut query) = statement else {
        return Err(QueryError::Internal(
            "a rewritten query is still a query".into(),
        ));
    };
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
        if target.kafka().is_some() && is_kafka_envelope_column(name) {
            let to = kafka_envelope_columns()
                .into_iter()
                .find(|f| f.name() == name)
                .map(|f| f.data_type().clone())
                .unwrap_or(arrow::datatypes::DataType::Utf8);
            if !can_cast_types(field.data_type(), &to) {
                return Err(QueryError::View {
                    view: create.name.clone(),
                    reason: format!(
                        "column {name}: {} does not convert to the message's {name} ({to})",
                        field.data_type()
                    ),
                });
            }
            output_columns.push(name.clone());
            continue;
        }
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
    super::functions::register(&ctx);
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
    let out = view_output(view, source, batch).await?;
    conform(target, &out)
}

/// Runs a view into a Kafka table: the target's rows, and the envelope columns (message
/// key, timestamp, headers) the view produced, if any.
pub async fn run_view_to_kafka(
    view: &ViewDef,
    source: &TableDef,
    target: &TableDef,
    batch: RecordBatch,
) -> Result<(RecordBatch, Option<RecordBatch>), QueryError> {
    let out = view_output(view, source, batch).await?;
    Ok((conform(target, &out)?, envelope(&out)?))
}

/// A view's query over one block, as the query names its columns.
async fn view_output(
    view: &ViewDef,
    source: &TableDef,
    batch: RecordBatch,
) -> Result<RecordBatch, QueryError> {
    if let Some(out) =
        plain_projection(&view.query, &source.name).and_then(|columns| project(&batch, &columns))
    {
        return Ok(out);
    }
    run_with_engine(view, source, batch).await
}

/// Runs a view's query through DataFusion.
async fn run_with_engine(
    view: &ViewDef,
    source: &TableDef,
    batch: RecordBatch,
) -> Result<RecordBatch, QueryError> {
    let ctx = view_context(source, batch)?;
    let plan = ctx.state().create_logical_plan(&view.query).await?;
    let plan = super::functions::defaults::clickhouse_defaults(plan)?;
    let frame = ctx.execute_logical_plan(plan).await?;
    let schema: arrow::datatypes::SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    match batches.first() {
        Some(first) => Ok(concat_batches(&first.schema(), &batches)?),
        None => Ok(RecordBatch::new_empty(schema)),
    }
}

/// The columns a view reads and the names it gives them, when the view does nothing else
/// (the guide's `SELECT *`, or a list of plain columns, aliased or not). Such a view is a
/// projection of the block: running it through a fresh DataFusion session cost a few per
/// cent of a node's CPU per block for nothing. `None` for any other query.
fn plain_projection(query: &str, source: &str) -> Option<Vec<(String, String)>> {
    let statements = sqlparser::parser::Parser::parse_sql(&GenericDialect {}, query).ok()?;
    let [SqlStatement::Query(parsed)] = statements.as_slice() else {
        return None;
    };
    let SetExpr::Select(select) = parsed.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return None;
    };
    let reads_source =
        matches!(name.0.last(), Some(ObjectNamePart::Identifier(t)) if t.value == source);
    if !from.joins.is_empty() || !reads_source {
        return None;
    }
    // Anything besides the column list (WHERE, GROUP BY, DISTINCT, LIMIT, ...) shows up
    // when the same query with a constant for its columns is printed.
    let mut bare = (**parsed).clone();
    if let SetExpr::Select(probe) = bare.body.as_mut() {
        probe.projection = vec![SelectItem::UnnamedExpr(Expr::value(
            sqlparser::ast::Value::Number("1".into(), false),
        ))];
    }
    if bare.to_string() != format!("SELECT 1 FROM {}", from.relation) {
        return None;
    }
    let mut columns = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        // Identifiers are not normalized (see `session_config`): each names its column as written.
        let (column, name) = match item {
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => (&ident.value, &ident.value),
            SelectItem::ExprWithAlias {
                expr: Expr::Identifier(ident),
                alias,
            } => (&ident.value, &alias.value),
            _ => return None,
        };
        if columns.iter().any(|(_, n)| n == name) {
            return None;
        }
        columns.push((column.clone(), name.clone()));
    }
    Some(columns)
}

/// `batch`'s columns under their new names; `None` when one is missing, so that the query
/// engine reports it.
fn project(batch: &RecordBatch, columns: &[(String, String)]) -> Option<RecordBatch> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for (column, name) in columns {
        let index = batch.schema().index_of(column).ok()?;
        let field = batch.schema().field(index).clone().with_name(name);
        fields.push(field);
        arrays.push(batch.column(index).clone());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).ok()
}

/// The envelope columns (`catalog::kafka_envelope_columns`) among rows bound for a Kafka
/// table, cast to their types; `None` when the rows carry none.
pub fn envelope(out: &RecordBatch) -> Result<Option<RecordBatch>, QueryError> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for field in kafka_envelope_columns() {
        if let Some(array) = out.column_by_name(field.name()) {
            columns.push(cast(array, field.data_type())?);
            fields.push(field);
        }
    }
    if columns.is_empty() {
        return Ok(None);
    }
    Ok(Some(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?))
}

/// Casts a view's output to the target's columns, filling the ones it lacks.
/// The rows carry the columns' stored names (`catalog::alter`), as the target's parts do.
pub fn conform(target: &TableDef, out: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let n = out.num_rows();
    let schema = target.stored_schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.columns.len());
    for (column, field) in target.columns.iter().zip(schema.fields()) {
        let to = column.ty.arrow_type();
        let array = match out.column_by_name(&column.name) {
            Some(a) => cast(a, &to)?,
            // A column added by ALTER with a DEFAULT reads it here too, as in older rows.
            None => {
                crate::table::part::fill_array(field, n)?.unwrap_or_else(|| new_null_array(&to, n))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ChType, Column, Engine, KafkaSettings, MergeTreeSettings};
    use arrow::array::{StringArray, TimestampSecondArray, UInt32Array, UInt64Array};
    use arrow::datatypes::DataType;

    fn table(name: &str, columns: &[(&str, ChType)], engine: Engine) -> TableDef {
        TableDef {
            name: name.into(),
            columns: columns
                .iter()
                .map(|(name, ty)| Column {
                    name: (*name).into(),
                    ty: ty.clone(),
                })
                .collect(),
            engine,
            detached: false,
            layout: Default::default(),
        }
    }

    fn source() -> TableDef {
        let settings = KafkaSettings::for_tests();
        table(
            "src",
            &[("a", ChType::UInt32), ("Bee", ChType::String)],
            Engine::Kafka(Box::new(settings)),
        )
    }

    fn target() -> TableDef {
        table(
            "dst",
            &[
                ("a", ChType::UInt64),
                ("Bee", ChType::String),
                ("renamed", ChType::UInt32),
                ("_offset", ChType::UInt64),
                ("missing", ChType::String),
            ],
            Engine::MergeTree {
                engine_name: "MergeTree".into(),
                order_by: vec!["a".into()],
                settings: MergeTreeSettings::default(),
            },
        )
    }

    /// Three rows of the source, virtual columns included.
    fn block(source: &TableDef) -> RecordBatch {
        let schema = source.source_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.data_type() {
                    DataType::UInt32 => Arc::new(UInt32Array::from(vec![1, 2, 3])),
                    DataType::UInt64 => Arc::new(UInt64Array::from(vec![70, 80, 90])),
                    DataType::Utf8 => Arc::new(StringArray::from(vec!["x", "é", ""])),
                    DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, _) => {
                        Arc::new(arrow::array::TimestampMillisecondArray::from(vec![
                            Some(1),
                            None,
                            Some(3),
                        ]))
                    }
                    DataType::List(item) => {
                        let mut lists =
                            arrow::array::ListBuilder::new(arrow::array::StringBuilder::new())
                                .with_field(item.clone());
                        for n in 0..3 {
                            for i in 0..n {
                                lists.values().append_value(format!("h{i}"));
                            }
                            lists.append(true);
                        }
                        Arc::new(lists.finish())
                    }
                    _ => Arc::new(TimestampSecondArray::from(vec![Some(1), None, Some(3)])),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("a valid block")
    }

    fn view(query: &str) -> ViewDef {
        ViewDef {
            name: "mv".into(),
            source: "src".into(),
            target: "dst".into(),
            original_query: query.into(),
            query: query.into(),
            output_columns: Vec::new(),
        }
    }

    #[tokio::test]
    async fn plain_column_views_skip_the_engine_and_give_its_rows() {
        let (source, target) = (source(), target());
        for query in [
            r#"SELECT "a", "Bee" FROM src"#,
            r#"SELECT a, Bee, a AS renamed, _offset FROM src"#,
            r#"SELECT "Bee" AS "Bee", "a" FROM "src""#,
        ] {
            assert!(plain_projection(query, "src").is_some(), "{query}");
            let view = view(query);
            let fast = run_view(&view, &source, &target, block(&source))
                .await
                .expect("runs");
            let engine = conform(
                &target,
                &run_with_engine(&view, &source, block(&source))
                    .await
                    .expect("runs"),
            )
            .expect("conforms");
            assert_eq!(fast, engine, "{query}");
            assert_eq!(fast.num_rows(), 3);
        }
    }

    #[test]
    fn any_other_view_goes_through_the_engine() {
        for query in [
            "SELECT a FROM src WHERE a > 1",
            "SELECT DISTINCT a FROM src",
            "SELECT a + 1 AS a FROM src",
            "SELECT a FROM src LIMIT 1",
            "SELECT a FROM src ORDER BY a",
            "SELECT a FROM src GROUP BY a",
            "SELECT a, a FROM src",
            "SELECT a AS x, Bee AS x FROM src",
            "SELECT a FROM src, other",
            "SELECT a FROM other",
            "SELECT a FROM src JOIN other ON src.a = other.a",
            "SELECT a FROM (SELECT a + 1 AS a FROM src) AS s",
            "WITH w AS (SELECT a FROM src) SELECT a FROM w",
            "SELECT a FROM src UNION ALL SELECT a FROM src",
            "SELECT * FROM src",
            "SELECT src.a FROM src",
            "not sql",
        ] {
            assert_eq!(plain_projection(query, "src"), None, "{query}");
        }
    }

    #[tokio::test]
    async fn a_missing_column_is_reported_by_the_engine() {
        let (source, target) = (source(), target());
        let err = run_view(
            &view("SELECT nope FROM src"),
            &source,
            &target,
            block(&source),
        )
        .await
        .expect_err("no such column");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[tokio::test]
    async fn a_view_runs_clickhouse_functions_and_refuses_others() {
        let source = source();
        let target = table(
            "hourly",
            &[
                ("hour", ChType::DateTime),
                ("day", ChType::Date),
                ("kind", ChType::String),
                ("n", ChType::UInt64),
            ],
            Engine::MergeTree {
                engine_name: "MergeTree".into(),
                order_by: vec!["hour".into()],
                settings: MergeTreeSettings::default(),
            },
        );
        let mut catalog = Catalog::default();
        catalog.tables.insert("src".into(), source.clone());
        catalog.tables.insert("hourly".into(), target.clone());
        let create = |sql: &str| {
            let mut parsed = sqlparser::parser::Parser::parse_sql(
                &sqlparser::dialect::ClickHouseDialect {},
                sql,
            )
            .expect("parses");
            let Some(SqlStatement::Query(query)) = parsed.pop() else {
                panic!("a query: {sql}");
            };
            CreateView {
                name: "mv".into(),
                if_not_exists: false,
                target: "hourly".into(),
                query,
            }
        };
        let planned = plan_view(
            &create(
                "SELECT toStartOfHour(toDateTime(a * 3600 + 59)) AS hour, toDate(toDateTime(a * 86400)) AS day, \
                 if(a > 1, 'big', 'small') AS kind, length(Bee) AS n FROM src",
            ),
            &catalog,
        )
        .await
        .expect("plans");
        let rows = run_view(&planned, &source, &target, block(&source))
            .await
            .expect("runs");
        let text = |i: usize| {
            let c = cast(rows.column(i), &arrow::datatypes::DataType::Utf8).expect("text");
            c.as_any()
                .downcast_ref::<StringArray>()
                .expect("strings")
                .iter()
                .map(|s| s.unwrap_or("NULL").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(0),
            [
                "1970-01-01T01:00:00",
                "1970-01-01T02:00:00",
                "1970-01-01T03:00:00"
            ]
        );
        assert_eq!(text(1), ["1970-01-02", "1970-01-03", "1970-01-04"]);
        assert_eq!(text(2), ["small", "big", "big"]);
        // `length` of a String counts bytes, as in ClickHouse: "é" is two.
        assert_eq!(text(3), ["1", "2", "0"]);
        let err = plan_view(
            &create("SELECT date_trunc('hour', toDateTime(a)) AS hour FROM src"),
            &catalog,
        )
        .await
        .expect_err("refused");
        assert!(
            err.to_string()
                .contains("function date_trunc is not supported by Sluice"),
            "{err}"
        );
    }
}
