//! A DataFusion scan of a replica's Parquet parts: only the projected columns are read,
//! row groups and whole parts that the filters rule out by their min/max statistics are
//! skipped, and a LIMIT stops the reading early.
//!
//! Invariant: every part stays pinned while the scan may still read it. Each file of the
//! scan carries its `PartRef`, and each Parquet reader holds the one of the file it reads,
//! so a merge that retires a part mid-query cannot delete the file under the query.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::Statistics;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::ObjectMeta;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::expressions::{CaseExpr, Column, IsNotNullExpr, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::catalog::alter::{FILL_KEY, STORED_NAME_KEY};

use crate::table::{Part, PartRef};

#[derive(Debug, thiserror::Error)]
pub enum PartsScanError {
    #[error("table {table}: part {part} at {path}: not a path the scan can read: {reason}")]
    Path {
        table: String,
        part: String,
        path: String,
        reason: String,
    },
    #[error("table {table}: planning a scan of its parts: {source}")]
    Plan {
        table: String,
        #[source]
        source: DataFusionError,
    },
}

impl From<PartsScanError> for DataFusionError {
    fn from(e: PartsScanError) -> DataFusionError {
        DataFusionError::External(Box::new(e))
    }
}

/// What to read of a replica's parts.
pub struct PartsScan<'a> {
    pub table: &'a str,
    /// The table's Arrow schema, which every part is written with.
    pub schema: SchemaRef,
    /// The replica's parts, pinned.
    pub parts: Vec<PartRef>,
    pub projection: Option<&'a [usize]>,
    pub limit: Option<usize>,
    /// How many partitions (streams read side by side) at most.
    pub partitions: usize,
}

/// The scan as a plan: a `DataSourceExec` over the parts, or an empty plan with no parts.
/// A table changed by ALTER (its schema's fields carry stored names or fills, see
/// `catalog::alter`) is read under its stored names and shown under its current ones,
/// with the rows of parts written before a column was added reading its fill.
pub fn parts_exec(
    runtime: &RuntimeEnv,
    scan: PartsScan<'_>,
) -> Result<Arc<dyn ExecutionPlan>, PartsScanError> {
    let altered =
        scan.schema.fields().iter().any(|f| {
            f.metadata().contains_key(STORED_NAME_KEY) || f.metadata().contains_key(FILL_KEY)
        });
    if !altered {
        return stored_parts_exec(runtime, scan);
    }
    let table = scan.table;
    let plan_err = |source| PartsScanError::Plan {
        table: table.to_string(),
        source,
    };
    let projection: Vec<usize> = scan.projection.map_or_else(
        || (0..scan.schema.fields().len()).collect(),
        <[usize]>::to_vec,
    );
    // A column older parts lack is read as NULL by the Parquet source (so it must be
    // nullable there) and then coalesced with its fill above the source: a filter pushed
    // down through the projection keeps the coalesce, so pruning sees the fill too.
    let stored = Arc::new(Schema::new(
        scan.schema
            .fields()
            .iter()
            .map(|f| {
                let name = f
                    .metadata()
                    .get(STORED_NAME_KEY)
                    .cloned()
                    .unwrap_or_else(|| f.name().clone());
                let nullable = f.is_nullable() || f.metadata().contains_key(FILL_KEY);
                Field::new(name, f.data_type().clone(), nullable)
            })
            .collect::<Vec<_>>(),
    ));
    let fields: Vec<Field> = projection
        .iter()
        .map(|&i| scan.schema.field(i).clone())
        .collect();
    let inner = stored_parts_exec(
        runtime,
        PartsScan {
            table,
            schema: stored,
            parts: scan.parts,
            projection: Some(&projection),
            limit: scan.limit,
            partitions: scan.partitions,
        },
    )?;
    let inner_schema = inner.schema();
    let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(fields.len());
    for (k, field) in fields.iter().enumerate() {
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(inner_schema.field(k).name(), k));
        let expr = match crate::table::part::fill_array(field, 1).map_err(|e| plan_err(e.into()))? {
            None => column,
            // `CASE WHEN c IS NOT NULL THEN c ELSE fill END`, a coalesce (which DataFusion
            // only runs once rewritten so), written so that DataFusion sees it is never
            // NULL, as the column it shows is not.
            Some(fill) => {
                let value = ScalarValue::try_from_array(&fill, 0).map_err(plan_err)?;
                let present: Arc<dyn PhysicalExpr> = Arc::new(IsNotNullExpr::new(column.clone()));
                Arc::new(
                    CaseExpr::try_new(
                        None,
                        vec![(present, column)],
                        Some(Arc::new(Literal::new(value))),
                    )
                    .map_err(plan_err)?,
                )
            }
        };
        exprs.push((expr, field.name().clone()));
    }
    Ok(Arc::new(
        ProjectionExec::try_new(exprs, inner).map_err(plan_err)?,
    ))
}

/// The scan of parts whose columns are named as `scan.schema` names them.
fn stored_parts_exec(
    runtime: &RuntimeEnv,
    scan: PartsScan<'_>,
) -> Result<Arc<dyn ExecutionPlan>, PartsScanError> {
    let table = scan.table;
    let plan_err = |source| PartsScanError::Plan {
        table: table.to_string(),
        source,
    };
    if scan.parts.is_empty() {
        let schema = match scan.projection {
            Some(p) => Arc::new(scan.schema.project(p).map_err(|e| plan_err(e.into()))?),
            None => scan.schema.clone(),
        };
        return Ok(Arc::new(EmptyExec::new(schema)));
    }
    let url = ObjectStoreUrl::local_filesystem();
    let store = runtime.object_store(&url).map_err(plan_err)?;
    let source = ParquetSource::new(scan.schema.clone()).with_parquet_file_reader_factory(
        Arc::new(PinnedReaders {
            inner: DefaultParquetFileReaderFactory::new(store),
        }),
    );
    let total_rows: u64 = scan.parts.iter().map(|p| p.rows()).sum();
    let mut files = Vec::with_capacity(scan.parts.len());
    for part in &scan.parts {
        files.push(partitioned_file(table, &scan.schema, part)?);
    }
    let groups = spread(files, scan.partitions);
    let mut statistics = Statistics::new_unknown(&scan.schema);
    statistics.num_rows = precise(total_rows);
    let config = FileScanConfigBuilder::new(url, Arc::new(source))
        .with_file_groups(groups)
        .with_statistics(statistics)
        .with_projection_indices(scan.projection.map(<[usize]>::to_vec))
        .map_err(plan_err)?
        .with_limit(scan.limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

fn precise(rows: u64) -> Precision<usize> {
    usize::try_from(rows).map_or(Precision::Absent, Precision::Exact)
}

/// One part as a file of the scan, carrying its pin and its row count.
fn partitioned_file(
    table: &str,
    schema: &SchemaRef,
    part: &PartRef,
) -> Result<PartitionedFile, PartsScanError> {
    let path_err = |reason: String| PartsScanError::Path {
        table: table.to_string(),
        part: part.name().to_string(),
        path: part.path().display().to_string(),
        reason,
    };
    // The path as DataFusion's local object store names it: relative to `/`, with the
    // `%` of a table's directory name escaped as the store expects.
    let absolute = std::path::absolute(part.path()).map_err(|e| path_err(e.to_string()))?;
    let location = StorePath::from_absolute_path(absolute).map_err(|e| path_err(e.to_string()))?;
    let meta = ObjectMeta {
        location,
        // Only a cache of Parquet footers would compare it; this scan keeps none.
        last_modified: chrono::DateTime::default(),
        size: part.bytes(),
        e_tag: None,
        version: None,
    };
    let mut statistics = Statistics::new_unknown(schema);
    statistics.num_rows = precise(part.rows());
    let mut file = PartitionedFile::new_from_meta(meta).with_statistics(Arc::new(statistics));
    file.extensions.insert_arc::<Part>(part.clone());
    Ok(file)
}

/// The files in at most `partitions` groups of about equal bytes, each group keeping the
/// parts' order (a group's files are read one after another).
fn spread(files: Vec<PartitionedFile>, partitions: usize) -> Vec<FileGroup> {
    let n = partitions.clamp(1, files.len().max(1));
    let mut by_size: Vec<(usize, u64)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (i, f.object_meta.size))
        .collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut loads = vec![(0u64, 0usize); n];
    let mut group_of = vec![0usize; files.len()];
    for (i, size) in by_size {
        let lightest = (0..n).min_by_key(|g| (loads[*g], *g)).unwrap_or(0);
        loads[lightest].0 += size;
        loads[lightest].1 += 1;
        group_of[i] = lightest;
    }
    let mut groups: Vec<Vec<PartitionedFile>> = (0..n).map(|_| Vec::new()).collect();
    for (file, g) in files.into_iter().zip(group_of) {
        groups[g].push(file);
    }
    groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(FileGroup::new)
        .collect()
}

/// A query's scan of a replica's parts, read by as many partitions side by side as its
/// session asks for.
///
/// The query's filters reach the scan as DataFusion plans it: its filter pushdown moves
/// the predicate of the `FilterExec` above the scan into the Parquet source (and so do a
/// TopK's and a join's dynamic filters), where it prunes parts, row groups and pages by
/// their statistics; the `FilterExec` still filters the rows read. Setting the predicate
/// here as well only made the source evaluate it twice.
pub fn scan_parts(
    state: &dyn Session,
    table: &str,
    schema: &SchemaRef,
    parts: Vec<PartRef>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>, PartsScanError> {
    parts_exec(
        state.runtime_env(),
        PartsScan {
            table,
            schema: schema.clone(),
            parts,
            projection: projection.map(Vec::as_slice),
            limit,
            partitions: state.config().target_partitions(),
        },
    )
}

/// Makes the Parquet readers of a scan, each holding the pin of the part it reads.
#[derive(Debug)]
struct PinnedReaders {
    inner: DefaultParquetFileReaderFactory,
}

impl ParquetFileReaderFactory for PinnedReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let part = file.extensions.get_arc::<Part>();
        let inner = self
            .inner
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(PinnedReader { inner, _part: part }))
    }
}

struct PinnedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    _part: Option<PartRef>,
}

impl AsyncFileReader for PinnedReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        self.inner.get_metadata(options)
    }
}

/// A replica's parts as a table, scanned as a stored table scans them, for tests:
/// `schema` is what queries see, `read_schema` how the parts are read (the two differ
/// once an ALTER has renamed, added or dropped columns).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct PartsTable {
    pub schema: SchemaRef,
    pub read_schema: SchemaRef,
    pub parts: Vec<PartRef>,
}

#[cfg(test)]
#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for PartsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(scan_parts(
            state,
            "t",
            &self.read_schema,
            self.parts.clone(),
            projection,
            limit,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::table::part::PartMeta;
    use crate::table::Part;

    /// Small row groups, so that statistics prune inside a part as well as whole parts.
    const GROUP_ROWS: usize = 64;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
        ]))
    }

    /// Random rows in parts sorted by `k`, their ranges overlapping as fresh parts' do.
    struct Fixture {
        _dir: tempfile::TempDir,
        parts: Vec<PartRef>,
        rows: Vec<RecordBatch>,
    }

    fn fixture(rng: &mut ChaCha8Rng) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        // A table's directory name escapes bytes as `%xx`: the scan must find it.
        let table_dir = dir.path().join("t-my%2etable");
        std::fs::create_dir(&table_dir).expect("table dir");
        let mut parts = Vec::new();
        let mut rows = Vec::new();
        for p in 0..rng.random_range(3..7u64) {
            let n = rng.random_range(1..600usize);
            let base = rng.random_range(0..800i64);
            let spread = rng.random_range(1..400i64);
            let mut k: Vec<i64> = (0..n).map(|_| base + rng.random_range(0..spread)).collect();
            k.sort_unstable();
            let v: Vec<String> = (0..n)
                .map(|_| format!("w{:02}", rng.random_range(0..40)))
                .collect();
            let nulls: Vec<Option<i32>> = (0..n)
                .map(|_| rng.random_bool(0.9).then(|| rng.random_range(-50..50)))
                .collect();
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(k)),
                    Arc::new(StringArray::from(v)),
                    Arc::new(Int32Array::from(nulls)),
                ],
            )
            .expect("batch");
            let meta = PartMeta {
                first: p,
                last: p,
                level: 0,
                rows: n as u64,
                bytes: 0,
            };
            let path = table_dir.join(meta.file_name());
            let file = std::fs::File::create(&path).expect("part file");
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(Some(GROUP_ROWS))
                .build();
            let mut writer = ArrowWriter::try_new(file, schema(), Some(props)).expect("writer");
            writer.write(&batch).expect("write");
            writer.close().expect("close");
            let bytes = std::fs::metadata(&path).expect("size").len();
            parts.push(Part::new(PartMeta { bytes, ..meta }, &table_dir));
            rows.push(batch);
        }
        Fixture {
            _dir: dir,
            parts,
            rows,
        }
    }

    /// `pruned` scans the parts; `all` holds the same rows in memory.
    fn contexts(f: &Fixture, partitions: usize) -> (SessionContext, SessionContext) {
        let config = crate::query::session_config(partitions);
        let pruned = SessionContext::new_with_config(config.clone());
        pruned
            .register_table(
                "t",
                Arc::new(PartsTable {
                    schema: schema(),
                    read_schema: schema(),
                    parts: f.parts.clone(),
                }),
            )
            .expect("register");
        let all = SessionContext::new_with_config(config);
        let mem = MemTable::try_new(schema(), vec![f.rows.clone()]).expect("memtable");
        all.register_table("t", Arc::new(mem)).expect("register");
        (pruned, all)
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pretty_format_batches(&batches).expect("format").to_string()
    }

    /// A value to compare a column with: often one the data holds (a part's edge), at
    /// times one beyond every part.
    fn value(rng: &mut ChaCha8Rng, f: &Fixture, column: &str) -> String {
        let batch = &f.rows[rng.random_range(0..f.rows.len())];
        let row = match rng.random_range(0..4) {
            0 => 0,
            1 => batch.num_rows() - 1,
            _ => rng.random_range(0..batch.num_rows()),
        };
        let beyond = rng.random_bool(0.15);
        match column {
            "k" => {
                let k = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("k");
                let x = if beyond { 5000 } else { k.value(row) };
                (x + rng.random_range(-1..=1)).to_string()
            }
            "v" => {
                let v = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("v");
                if beyond {
                    "'zz'".into()
                } else {
                    format!("'{}'", v.value(row))
                }
            }
            _ => rng.random_range(-60..60).to_string(),
        }
    }

    fn filter(rng: &mut ChaCha8Rng, f: &Fixture) -> String {
        let column = ["k", "k", "v", "n"][rng.random_range(0..4)];
        let op = rng.random_range(0..7);
        let mut x = || value(rng, f, column);
        match op {
            0 => format!("{column} = {}", x()),
            1 => format!("{column} < {}", x()),
            2 => format!("{column} > {}", x()),
            3 => format!("{column} <= {}", x()),
            4 => format!("{column} >= {}", x()),
            5 => {
                let (a, b) = (x(), x());
                format!("{column} BETWEEN {a} AND {b}")
            }
            _ => {
                let values: Vec<String> = (0..3).map(|_| x()).collect();
                format!("{column} IN ({})", values.join(", "))
            }
        }
    }

    fn where_clause(rng: &mut ChaCha8Rng, f: &Fixture) -> String {
        match rng.random_range(0..4) {
            0 => format!("{} AND {}", filter(rng, f), filter(rng, f)),
            1 => format!("{} OR {}", filter(rng, f), filter(rng, f)),
            _ => filter(rng, f),
        }
    }

    async fn pruning_keeps_every_matching_row(seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let f = fixture(&mut rng);
        let (pruned, all) = contexts(&f, rng.random_range(1..4));
        for _ in 0..40 {
            let sql = format!(
                "SELECT k, v, n FROM t WHERE {} ORDER BY k, v, n",
                where_clause(&mut rng, &f)
            );
            assert_eq!(
                answer(&pruned, &sql).await,
                answer(&all, &sql).await,
                "seed {seed}: {sql}"
            );
        }
    }

    #[tokio::test]
    async fn pruning_never_drops_a_matching_row() {
        for seed in 0..25 {
            pruning_keeps_every_matching_row(seed).await;
        }
    }

    #[tokio::test]
    async fn pruning_never_drops_a_matching_row_seed_7() {
        pruning_keeps_every_matching_row(7).await;
    }

    /// The plan's `DataSourceExec`.
    fn source(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        if plan.name() == "DataSourceExec" {
            return Some(plan.clone());
        }
        plan.children().into_iter().find_map(source)
    }

    /// Runs `sql` on the parts; its rows and how many rows its scan read.
    async fn run(ctx: &SessionContext, sql: &str) -> (Vec<RecordBatch>, usize, SchemaRef) {
        let plan = ctx
            .sql(sql)
            .await
            .expect("plans")
            .create_physical_plan()
            .await
            .expect("physical plan");
        let rows = collect(plan.clone(), ctx.task_ctx()).await.expect("runs");
        let scan = source(&plan).expect("a parts scan");
        let read = scan
            .metrics()
            .and_then(|m| m.output_rows())
            .expect("the scan counts its rows");
        (rows, read, scan.schema())
    }

    fn total_rows(f: &Fixture) -> usize {
        f.rows.iter().map(RecordBatch::num_rows).sum()
    }

    #[tokio::test]
    async fn a_selective_filter_reads_fewer_rows() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let f = fixture(&mut rng);
        let (pruned, all) = contexts(&f, 2);
        let k = f.rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("k")
            .value(0);
        let sql = format!("SELECT k, v, n FROM t WHERE k = {k} ORDER BY k, v, n");
        let (rows, read, _) = run(&pruned, &sql).await;
        assert!(
            read < total_rows(&f) / 2,
            "read {read} of {} rows",
            total_rows(&f)
        );
        assert_eq!(
            pretty_format_batches(&rows).expect("format").to_string(),
            answer(&all, &sql).await
        );
    }

    #[tokio::test]
    async fn only_projected_columns_are_read() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let f = fixture(&mut rng);
        let (pruned, all) = contexts(&f, 2);
        let sql = "SELECT v FROM t WHERE k > 300 ORDER BY v";
        let (rows, _, read) = run(&pruned, sql).await;
        let columns: Vec<&str> = read.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(columns, ["k", "v"]);
        assert_eq!(
            pretty_format_batches(&rows).expect("format").to_string(),
            answer(&all, sql).await
        );
        let (_, _, read) = run(&pruned, "SELECT n FROM t").await;
        assert_eq!(read.fields().len(), 1);
        assert_eq!(read.field(0).name(), "n");
    }

    #[tokio::test]
    async fn a_limit_stops_the_scan_early() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let f = loop {
            let f = fixture(&mut rng);
            if total_rows(&f) > 100 {
                break f;
            }
        };
        let (pruned, all) = contexts(&f, 1);
        let (rows, read, _) = run(&pruned, "SELECT k, v FROM t LIMIT 7").await;
        assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 7);
        assert!(read < total_rows(&f), "read all {read} rows");
        // The rows come from the table.
        let every = answer(&all, "SELECT k, v FROM t").await;
        for row in pretty_format_batches(&rows)
            .expect("format")
            .to_string()
            .lines()
            .skip(3)
            .filter(|l| !l.starts_with('+'))
        {
            assert!(every.contains(row), "{row} is not in the table");
        }
        let sql = "SELECT k FROM t WHERE k > 400 LIMIT 5";
        let (rows, _, _) = run(&pruned, sql).await;
        let limited: Vec<i64> = rows
            .iter()
            .flat_map(|b| {
                let k = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("k");
                k.values().to_vec()
            })
            .collect();
        let matching = answer(&all, "SELECT count(*) AS c FROM t WHERE k > 400").await;
        assert!(
            limited.len() <= 5 && limited.iter().all(|k| *k > 400),
            "{limited:?}"
        );
        if !matching.contains("| 0 ") {
            assert!(!limited.is_empty(), "{matching}");
        }
    }

    #[tokio::test]
    async fn no_parts_is_an_empty_table() {
        let f = Fixture {
            _dir: tempfile::tempdir().expect("tempdir"),
            parts: Vec::new(),
            rows: vec![RecordBatch::new_empty(schema())],
        };
        let (pruned, _) = contexts(&f, 2);
        let got = answer(
            &pruned,
            "SELECT count(*) AS c, max(k) AS k FROM t WHERE v = 'a'",
        )
        .await;
        assert!(got.contains("| 0 "), "{got}");
    }

    #[tokio::test]
    async fn a_part_retired_mid_scan_stays_until_the_scan_ends() {
        use futures::StreamExt;

        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let Fixture { _dir, parts, rows } = loop {
            let f = fixture(&mut rng);
            if f.parts.len() > 2 && total_rows(&f) > 200 {
                break f;
            }
        };
        let total: usize = rows.iter().map(RecordBatch::num_rows).sum();
        let paths: Vec<std::path::PathBuf> = parts.iter().map(|p| p.path().to_path_buf()).collect();
        let ctx =
            SessionContext::new_with_config(crate::query::session_config(1).with_batch_size(16));
        let plan =
            scan_parts(&ctx.state(), "t", &schema(), parts.clone(), None, None).expect("plan");
        let mut stream = plan.execute(0, ctx.task_ctx()).expect("stream");
        let mut read = stream
            .next()
            .await
            .expect("a batch")
            .expect("reads")
            .num_rows();
        // A merge retires every part and lets go of them while the query streams.
        for part in &parts {
            part.retire();
        }
        drop(parts);
        drop(plan);
        assert!(paths.iter().all(|p| p.exists()), "a part went mid-scan");
        while let Some(batch) = stream.next().await {
            read += batch.expect("reads").num_rows();
        }
        assert_eq!(read, total);
        drop(stream);
        assert!(
            paths.iter().all(|p| !p.exists()),
            "a retired part outlived its readers"
        );
    }
}
