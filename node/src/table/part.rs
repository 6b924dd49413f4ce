//! Parts: the immutable files a table replica keeps its rows in, as ClickHouse's MergeTree
//! does. A part is a Parquet file, zstd-compressed, sorted by the table's ORDER BY, with
//! min/max statistics per column and row group, so a query reads only the columns it
//! projects and skips row groups and whole parts its filters rule out.
//!
//! A fresh block arrives already encoded as a part (the consumer sorts and encodes it
//! once; every replica writes the same bytes), and a merge streams its sorted inputs into
//! one larger part. Must not import `raft`, `actix` or `rdkafka`.
//!
//! Invariant: a part's file never changes once named in sled; it is removed only after
//! no record names it and no reader holds it (a `PartRef`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

/// Rows per Parquet row group: the unit of pruning by statistics. DuckDB's row group
/// size; a block of the default 4 MiB holds fewer rows, so a fresh part is one group.
pub const ROW_GROUP_ROWS: usize = 122_880;

/// Rows per batch when a part is read for a merge.
const READ_BATCH_ROWS: usize = 8192;

/// The magic bytes a Parquet file starts with; a block's bytes that do not are the Arrow
/// IPC stream blocks were encoded as before parts (in Raft logs written then).
const PARQUET_MAGIC: &[u8] = b"PAR1";

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("ORDER BY column {0} is not in the block")]
    NoSortColumn(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("merge: {0}")]
    Merge(String),
}

/// A part as sled records it: the part list is the set of these, keyed by `first`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// The first and last block sequence numbers the part holds: a fresh part holds one
    /// block, a merged one the run of parts it replaced.
    pub first: u64,
    pub last: u64,
    /// 0 for a fresh part; one more than its highest input for a merged one.
    pub level: u32,
    pub rows: u64,
    pub bytes: u64,
}

impl PartMeta {
    /// ClickHouse's part naming (`all_1_5_1` there): unique, since a merge covers a run of
    /// parts and raises the level.
    pub fn name(&self) -> String {
        format!("{:010}_{:010}_{}", self.first, self.last, self.level)
    }

    pub fn file_name(&self) -> String {
        format!("{}.parquet", self.name())
    }
}

/// One part of a replica, pinned: its file stays while any handle to it lives, even after
/// a merge or a snapshot install retired it, so a query streaming it is never cut short.
#[derive(Debug)]
pub struct Part {
    meta: PartMeta,
    name: String,
    path: PathBuf,
    retired: AtomicBool,
}

pub type PartRef = Arc<Part>;

impl Part {
    pub fn new(meta: PartMeta, dir: &Path) -> PartRef {
        Arc::new(Part {
            name: meta.name(),
            path: dir.join(meta.file_name()),
            meta,
            retired: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rows(&self) -> u64 {
        self.meta.rows
    }

    pub fn bytes(&self) -> u64 {
        self.meta.bytes
    }

    pub fn level(&self) -> u32 {
        self.meta.level
    }

    pub fn meta(&self) -> &PartMeta {
        &self.meta
    }

    /// No record names the part any more: its file goes with the last handle.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            if let Err(e) = crate::files::remove_file(&self.path) {
                // Only space: the next open removes files no record names.
                tracing::warn!(part = %self.name, error = %e, "removing a retired part");
            }
        }
    }
}

/// Whether a block's bytes are a part (Parquet) rather than a legacy Arrow IPC stream.
pub fn is_parquet(data: &[u8]) -> bool {
    data.starts_with(PARQUET_MAGIC)
}

/// How a part is written. Min/max statistics are kept for the ORDER BY columns and for
/// columns of fixed width, not for the other text columns (nor text in arrays): finding
/// a text column's minimum and maximum compares every value twice, and those
/// comparisons were the largest single cost of writing parts, in the ingest path and in
/// merges, while a text column outside the sort key spans nearly its whole range in every
/// row group and prunes nothing. ClickHouse keeps no such ranges either, only the primary
/// key's index (and skip indexes a user declares).
fn writer_properties(
    level: i32,
    schema: &SchemaRef,
    order_by: &[String],
) -> Result<WriterProperties, PartError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(level)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // The same bytes on every replica and every version of the writer: a block's
        // hash is its identity.
        .set_created_by("sluice".to_string());
    let parquet_schema = ArrowSchemaConverter::new().convert(schema)?;
    for column in parquet_schema.columns() {
        let path = column.path();
        let sorts_by = path
            .parts()
            .first()
            .is_some_and(|top| order_by.iter().any(|o| o == top) && path.parts().len() == 1);
        if column.physical_type() == PhysicalType::BYTE_ARRAY && !sorts_by {
            builder = builder.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
    }
    Ok(builder.build())
}

/// zstd level of a fresh part: it is written on the ingest path, and merged soon.
const FRESH_LEVEL: i32 = 1;
/// zstd level of a merged part: written in the background, kept long.
const MERGED_LEVEL: i32 = 3;

/// The batch's rows in ORDER BY order (stable, so equal keys keep their arrival order).
pub fn sort_batch(batch: &RecordBatch, order_by: &[String]) -> Result<RecordBatch, PartError> {
    if order_by.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let columns = order_by
        .iter()
        .map(|name| {
            let values = batch
                .column_by_name(name)
                .ok_or_else(|| PartError::NoSortColumn(name.clone()))?
                .clone();
            Ok(SortColumn {
                values,
                options: None,
            })
        })
        .collect::<Result<Vec<_>, PartError>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// A block's rows as a fresh part: sorted by `order_by`, Parquet, zstd.
pub fn encode(batch: &RecordBatch, order_by: &[String]) -> Result<Vec<u8>, PartError> {
    let sorted = sort_batch(batch, order_by)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut out,
        sorted.schema(),
        Some(writer_properties(FRESH_LEVEL, &sorted.schema(), order_by)?),
    )?;
    writer.write(&sorted)?;
    writer.close()?;
    Ok(out)
}

/// Every row of a part's bytes (a block's), for tests and for reading a block in memory.
pub fn decode(data: &[u8]) -> Result<Vec<RecordBatch>, PartError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(data))?
        .with_batch_size(READ_BATCH_ROWS)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Every row of a part file, in batches; reads one batch at a time.
pub fn read_file(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, ArrowError>>, PartError> {
    let file = File::open(path).map_err(|e| crate::files::with_path("opening part", path, e))?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(READ_BATCH_ROWS)
        .build()?)
}

/// Merges sorted parts into one sorted part written to `out`, streaming: memory holds a
/// batch per input and the output's open row group, whatever the parts' sizes. DataFusion's
/// streaming merge compares rows; parts that share a key keep the inputs' order.
pub fn merge(
    inputs: &[PartRef],
    schema: &SchemaRef,
    order_by: &[String],
    out: &mut File,
) -> Result<u64, PartError> {
    use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, UnboundedMemoryPool};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
    use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet};
    use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::StreamExt as _;

    let mut writer = ArrowWriter::try_new(
        &mut *out,
        schema.clone(),
        Some(writer_properties(MERGED_LEVEL, schema, order_by)?),
    )?;
    let mut rows = 0u64;
    let ordering = order_by
        .iter()
        .map(|name| {
            let index = schema
                .index_of(name)
                .map_err(|_| PartError::NoSortColumn(name.clone()))?;
            Ok(PhysicalSortExpr::new_default(Arc::new(Column::new(
                name, index,
            ))))
        })
        .collect::<Result<Vec<_>, PartError>>()?;
    match LexOrdering::new(ordering) {
        // No ORDER BY: the parts one after another.
        None => {
            for part in inputs {
                for batch in read_file(part.path())? {
                    let batch = adapt(&batch?, schema)?;
                    rows += batch.num_rows() as u64;
                    writer.write(&batch)?;
                }
            }
        }
        Some(ordering) => {
            let streams = inputs
                .iter()
                .map(|part| {
                    // Parts written before an ALTER get the current columns.
                    let current = schema.clone();
                    let batches = read_file(part.path())?
                        .map(move |b| b.and_then(|b| adapt(&b, &current)).map_err(Into::into));
                    Ok(Box::pin(RecordBatchStreamAdapter::new(
                        schema.clone(),
                        futures::stream::iter(batches),
                    )) as _)
                })
                .collect::<Result<Vec<_>, PartError>>()?;
            let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
            let mut merged = StreamingMergeBuilder::new()
                .with_streams(streams)
                .with_schema(schema.clone())
                .with_expressions(&ordering)
                .with_metrics(BaselineMetrics::new(&ExecutionPlanMetricsSet::new(), 0))
                .with_batch_size(READ_BATCH_ROWS)
                .with_reservation(MemoryConsumer::new("part merge").register(&pool))
                .build()
                .map_err(|e| PartError::Merge(e.to_string()))?;
            // The inputs are read synchronously inside the stream: this runs on a thread
            // of its own (the merger's), never on an async worker.
            futures::executor::block_on(async {
                while let Some(batch) = merged.next().await {
                    let batch = batch.map_err(|e| PartError::Merge(e.to_string()))?;
                    rows += batch.num_rows() as u64;
                    writer.write(&batch)?;
                }
                Ok::<(), PartError>(())
            })?;
        }
    }
    writer.close()?;
    Ok(rows)
}

/// A part's rows in `schema`: columns found by name and cast to the schema's types, and
/// a column the part lacks (added by ALTER after it was written) filled by `fill_array`.
/// Columns the schema does not name (dropped ones) are left out.
pub fn adapt(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(a) if a.data_type() == field.data_type() => Ok(a.clone()),
            Some(a) => arrow::compute::cast(a, field.data_type()),
            None => Ok(fill_array(field, rows)?
                .unwrap_or_else(|| arrow::array::new_null_array(field.data_type(), rows))),
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

/// `rows` copies of the value a column added by ALTER reads as in parts written before
/// it (the field's `catalog::alter::FILL_KEY`, text cast to its type); none if it has
/// none (the column reads NULL).
pub fn fill_array(
    field: &arrow::datatypes::Field,
    rows: usize,
) -> Result<Option<arrow::array::ArrayRef>, ArrowError> {
    let Some(text) = field.metadata().get(crate::catalog::alter::FILL_KEY) else {
        return Ok(None);
    };
    let one = arrow::compute::cast(
        &arrow::array::StringArray::from(vec![text.as_str()]),
        field.data_type(),
    )?;
    let indices = arrow::array::UInt32Array::from(vec![0u32; rows]);
    Ok(Some(arrow::compute::take(&one, &indices, None)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(keys: Vec<&str>, values: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .expect("batch")
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let k = b
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("k");
            let v = b
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("v");
            for i in 0..b.num_rows() {
                out.push((k.value(i).to_string(), v.value(i)));
            }
        }
        out
    }

    #[test]
    fn ranges_are_kept_for_the_sort_key_and_fixed_width_columns_only() {
        use arrow::array::ListArray;
        use arrow::datatypes::Int32Type;
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("title", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                false,
            ),
            Field::new(
                "labels",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                false,
            ),
        ]));
        let labels = {
            let mut b = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
            for v in [["x", "y"], ["z", "w"]] {
                for item in v {
                    b.values().append_value(item);
                }
                b.append(true);
            }
            b.finish()
        };
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["b", "a"])),
                Arc::new(StringArray::from(vec!["t1", "t2"])),
                Arc::new(Int64Array::from(vec![5, 7])),
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                    Some(vec![Some(1)]),
                    Some(vec![Some(2)]),
                ])),
                Arc::new(labels),
            ],
        )
        .expect("batch");
        let data = encode(&batch, &["k".to_string()]).expect("encode");
        let reader = SerializedFileReader::new(bytes::Bytes::from(data)).expect("reader");
        let group = reader.metadata().row_group(0);
        let with_range: Vec<String> = group
            .columns()
            .iter()
            .filter(|c| c.statistics().is_some_and(|s| s.min_bytes_opt().is_some()))
            .map(|c| c.column_path().parts()[0].clone())
            .collect();
        assert_eq!(with_range, vec!["k", "n", "tags"]);
    }

    #[test]
    fn a_block_is_encoded_sorted_and_reads_back() {
        let b = batch(vec!["b", "a", "c", "a"], vec![1, 2, 3, 4]);
        let data = encode(&b, &["k".to_string()]).expect("encode");
        assert!(is_parquet(&data));
        assert_eq!(
            rows(&decode(&data).expect("decode")),
            vec![
                ("a".into(), 2),
                ("a".into(), 4),
                ("b".into(), 1),
                ("c".into(), 3)
            ]
        );
        // The same rows encode to the same bytes: a block's hash is its identity.
        assert_eq!(encode(&b, &["k".to_string()]).expect("encode"), data);
        assert!(matches!(
            encode(&b, &["nope".to_string()]),
            Err(PartError::NoSortColumn(_))
        ));
    }

    /// A merge's output is the sorted union of its inputs, for random inputs.
    #[test]
    fn merge_output_is_the_sorted_union_of_its_inputs() {
        use rand::{Rng as _, SeedableRng as _};
        let dir = tempfile::tempdir().expect("tempdir");
        let order = ["k".to_string(), "v".to_string()];
        for seed in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut all = Vec::new();
            let mut parts = Vec::new();
            let n_parts = rng.random_range(1..6);
            for p in 0..n_parts {
                let n = rng.random_range(0..20_000usize);
                let keys: Vec<String> = (0..n)
                    .map(|_| format!("key{}", rng.random_range(0..50)))
                    .collect();
                let values: Vec<i64> = (0..n).map(|_| rng.random_range(-1000..1000)).collect();
                let b = batch(keys.iter().map(String::as_str).collect(), values);
                all.extend(rows(std::slice::from_ref(&b)));
                let meta = PartMeta {
                    first: p,
                    last: p,
                    level: 0,
                    rows: n as u64,
                    bytes: 0,
                };
                let part = Part::new(meta, dir.path());
                std::fs::write(part.path(), encode(&b, &order).expect("encode")).expect("write");
                parts.push(part);
            }
            let out_path = dir.path().join(format!("merged-{seed}"));
            let mut out = File::create(&out_path).expect("create");
            let schema = batch(vec![], vec![]).schema();
            let n = merge(&parts, &schema, &order, &mut out).expect("merge");
            let merged = rows(
                &read_file(&out_path)
                    .expect("read")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("batches"),
            );
            all.sort();
            assert_eq!(n as usize, all.len(), "seed {seed}");
            assert_eq!(merged, all, "seed {seed}");
        }
    }

    #[test]
    fn a_retired_part_is_removed_with_its_last_handle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = PartMeta {
            first: 3,
            last: 7,
            level: 1,
            rows: 0,
            bytes: 0,
        };
        assert_eq!(meta.name(), "0000000003_0000000007_1");
        let part = Part::new(meta, dir.path());
        std::fs::write(part.path(), b"x").expect("write");
        let reader = part.clone();
        part.retire();
        drop(part);
        assert!(reader.path().exists(), "a reader still holds it");
        let path = reader.path().to_path_buf();
        drop(reader);
        assert!(!path.exists());
    }
}
