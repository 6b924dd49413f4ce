//! Reading a table on a node that holds no replica of it, streamed: a member reads its
//! parts a batch at a time and sends the rows as the chunks of one Arrow IPC stream; the
//! reading node decodes each chunk as it arrives. Neither end holds more than a few
//! batches, whatever the size of the table.
//!
//! The serving member applies the projection and the limit; the filters stay in the
//! reading node's plan. A stream that closes before the chunk marked last is an error,
//! never a short answer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};

use super::parts_scan::{parts_exec, PartsScan, PartsScanError};
use super::source::{ScanSpec, SourceError, TableScan, TableSource};
use crate::raft_proto::ScanChunk;
use crate::table::PartRef;

/// A chunk is sent once the batches encoded since the last one reach this size: large
/// enough that a chunk's overhead does not matter, small enough to bound both ends.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// How long the reading node waits for the next chunk it asked for before it gives up on
/// the member (a member that stopped answering without closing the connection). The
/// clock runs only while the query waits for rows, so a slow query never trips it.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RemoteScanError {
    #[error("table {table} has no column {column}")]
    NoColumn { table: String, column: String },
    #[error("table {table}: a scan must name at least one column")]
    NoColumns { table: String },
    #[error(transparent)]
    Parts(#[from] PartsScanError),
    #[error("table {table}: reading its parts: {source}")]
    Read {
        table: String,
        #[source]
        source: DataFusionError,
    },
    #[error("table {table}: encoding rows for a peer: {source}")]
    Encode {
        table: String,
        #[source]
        source: ArrowError,
    },
    #[error("table {table}: opening a scan of a replica: {source}")]
    Open {
        table: String,
        #[source]
        source: SourceError,
    },
    #[error("table {table}: the replica at {from} stopped the scan: {status}")]
    Stream {
        table: String,
        from: String,
        status: tonic::Status,
    },
    #[error("table {table}: the replica at {from} sent nothing for {after:?}")]
    Stalled {
        table: String,
        from: String,
        after: Duration,
    },
    #[error("table {table}: the replica at {from} closed the scan before its end")]
    CutShort { table: String, from: String },
    #[error("table {table}: undecodable rows from the replica at {from}: {source}")]
    Decode {
        table: String,
        from: String,
        #[source]
        source: ArrowError,
    },
}

impl From<RemoteScanError> for DataFusionError {
    fn from(e: RemoteScanError) -> DataFusionError {
        DataFusionError::External(Box::new(e))
    }
}

/// The projected rows of a replica's `parts`, as one partition, a batch at a time.
pub fn read_parts(
    runtime: Arc<RuntimeEnv>,
    table: &str,
    schema: SchemaRef,
    parts: Vec<PartRef>,
    projection: &[usize],
    limit: Option<usize>,
) -> Result<SendableRecordBatchStream, RemoteScanError> {
    let exec = parts_exec(
        &runtime,
        PartsScan {
            table,
            schema,
            parts,
            projection: Some(projection),
            limit,
            partitions: 1,
        },
    )?;
    let ctx = Arc::new(TaskContext::default().with_runtime(runtime));
    exec.execute(0, ctx)
        .map_err(|source| RemoteScanError::Read {
            table: table.to_string(),
            source,
        })
}

/// The columns' positions in the table's schema.
pub fn projection_of(
    table: &str,
    schema: &SchemaRef,
    columns: &[String],
) -> Result<Vec<usize>, RemoteScanError> {
    if columns.is_empty() {
        return Err(RemoteScanError::NoColumns {
            table: table.to_string(),
        });
    }
    columns
        .iter()
        .map(|c| {
            schema.index_of(c).map_err(|_| RemoteScanError::NoColumn {
                table: table.to_string(),
                column: c.clone(),
            })
        })
        .collect()
}

/// On the serving member: the batches as the chunks of one Arrow IPC stream, each sent
/// once it holds `chunk_bytes`, the last one with the end-of-stream marker.
pub fn encode_chunks(
    table: &str,
    schema: SchemaRef,
    batches: SendableRecordBatchStream,
    chunk_bytes: usize,
) -> Result<BoxStream<'static, Result<ScanChunk, RemoteScanError>>, RemoteScanError> {
    let encode_err = {
        let table = table.to_string();
        move |source| RemoteScanError::Encode {
            table: table.clone(),
            source,
        }
    };
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(&encode_err)?;
    let writer =
        StreamWriter::try_new_with_options(Vec::new(), &schema, options).map_err(&encode_err)?;
    let table = table.to_string();
    let state = Some((batches, writer));
    Ok(stream::unfold(state, move |state| {
        let encode_err = encode_err.clone();
        let table = table.clone();
        async move {
            let (mut batches, mut writer) = state?;
            loop {
                match batches.next().await {
                    Some(Ok(batch)) => {
                        if let Err(e) = writer.write(&batch) {
                            return Some((Err(encode_err(e)), None));
                        }
                        if writer.get_ref().len() >= chunk_bytes {
                            let chunk = ScanChunk {
                                arrow_ipc: std::mem::take(writer.get_mut()),
                                last: false,
                            };
                            return Some((Ok(chunk), Some((batches, writer))));
                        }
                    }
                    Some(Err(source)) => {
                        return Some((Err(RemoteScanError::Read { table, source }), None))
                    }
                    None => {
                        let last = writer
                            .finish()
                            .map(|()| ScanChunk {
                                arrow_ipc: std::mem::take(writer.get_mut()),
                                last: true,
                            })
                            .map_err(encode_err);
                        return Some((last, None));
                    }
                }
            }
        }
    })
    .boxed())
}

/// On the reading node: the chunks of one Arrow IPC stream, decoded as they arrive, in the
/// reader's `schema` (the table's columns as this node's catalog has them).
pub fn decode_chunks<S>(
    table: &str,
    from: &str,
    schema: SchemaRef,
    chunks: S,
) -> impl Stream<Item = Result<RecordBatch, RemoteScanError>> + Send + 'static
where
    S: Stream<Item = Result<ScanChunk, RemoteScanError>> + Send + 'static,
{
    let (table, from) = (table.to_string(), from.to_string());
    let state = Some((chunks.boxed(), StreamDecoder::new(), false));
    stream::unfold(state, move |state| {
        let (table, from, schema) = (table.clone(), from.clone(), schema.clone());
        async move {
            let (mut chunks, mut decoder, ended) = state?;
            let failed = |source| RemoteScanError::Decode {
                table: table.clone(),
                from: from.clone(),
                source,
            };
            match chunks.next().await {
                Some(Ok(chunk)) if !ended => match decode(&mut decoder, chunk.arrow_ipc, &schema) {
                    Ok(batches) => Some((
                        Ok(stream::iter(batches.into_iter().map(Ok))),
                        Some((chunks, decoder, chunk.last)),
                    )),
                    Err(e) => Some((Err(failed(e)), None)),
                },
                Some(Ok(_)) => Some((
                    Err(failed(ArrowError::IpcError(
                        "a chunk after the last one".into(),
                    ))),
                    None,
                )),
                Some(Err(e)) => Some((Err(e), None)),
                // A member that went away mid-scan fails the query rather than shorten
                // its answer, even when its stream broke off between two batches.
                None if !ended => Some((Err(RemoteScanError::CutShort { table, from }), None)),
                None => match decoder.finish() {
                    Ok(()) => None,
                    Err(e) => Some((Err(failed(e)), None)),
                },
            }
        }
    })
    .try_flatten()
}

/// Every batch a chunk completes, in `schema`.
fn decode(
    decoder: &mut StreamDecoder,
    chunk: Vec<u8>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut buffer = Buffer::from_vec(chunk);
    let mut batches = Vec::new();
    while !buffer.is_empty() {
        if let Some(batch) = decoder.decode(&mut buffer)? {
            // The member's catalog names the same columns; this checks their types and
            // gives the batch the schema the plan expects.
            batches.push(RecordBatch::try_new(
                schema.clone(),
                batch.columns().to_vec(),
            )?);
        }
    }
    Ok(batches)
}

/// A member's chunks, with a bound on how long each may take to arrive.
fn member_chunks(
    table: &str,
    from: &str,
    chunks: Box<tonic::Streaming<ScanChunk>>,
) -> impl Stream<Item = Result<ScanChunk, RemoteScanError>> + Send + 'static {
    let (table, from) = (table.to_string(), from.to_string());
    stream::unfold(Some(chunks), move |state| {
        let (table, from) = (table.clone(), from.clone());
        async move {
            let mut chunks = state?;
            match tokio::time::timeout(CHUNK_TIMEOUT, chunks.message()).await {
                Ok(Ok(Some(chunk))) => Some((Ok(chunk), Some(chunks))),
                Ok(Ok(None)) => None,
                Ok(Err(status)) => Some((
                    Err(RemoteScanError::Stream {
                        table,
                        from,
                        status,
                    }),
                    None,
                )),
                Err(_) => Some((
                    Err(RemoteScanError::Stalled {
                        table,
                        from,
                        after: CHUNK_TIMEOUT,
                    }),
                    None,
                )),
            }
        }
    })
}

/// A scan of a table this node holds no replica of, as one DataFusion partition: the
/// member to read is chosen when the query runs, as for any read of the table.
pub struct RemoteScan {
    pub source: Arc<dyn TableSource>,
    pub table: String,
    /// The table's schema, and the projected one the scan yields.
    pub table_schema: SchemaRef,
    pub schema: SchemaRef,
    pub projection: Vec<usize>,
    pub limit: Option<usize>,
    pub linearizable: bool,
}

impl fmt::Debug for RemoteScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteScan")
            .field("table", &self.table)
            .field("projection", &self.projection)
            .field("limit", &self.limit)
            .finish()
    }
}

impl RemoteScan {
    async fn open(
        &self,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<BoxStream<'static, Result<RecordBatch, RemoteScanError>>, RemoteScanError> {
        let spec = ScanSpec {
            columns: self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            limit: self.limit,
            linearizable: self.linearizable,
        };
        let opened = self
            .source
            .open_scan(&self.table, &spec)
            .await
            .map_err(|source| RemoteScanError::Open {
                table: self.table.clone(),
                source,
            })?;
        match opened {
            // This node took a replica since the query was planned.
            TableScan::Local(parts) => {
                let table = self.table.clone();
                let batches = read_parts(
                    runtime,
                    &self.table,
                    self.table_schema.clone(),
                    parts,
                    &self.projection,
                    self.limit,
                )?;
                Ok(batches
                    .map_err(move |source| RemoteScanError::Read {
                        table: table.clone(),
                        source,
                    })
                    .boxed())
            }
            TableScan::Remote { from, chunks } => {
                let chunks = member_chunks(&self.table, &from, chunks);
                Ok(decode_chunks(&self.table, &from, self.schema.clone(), chunks).boxed())
            }
        }
    }
}

impl PartitionStream for RemoteScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let scan = RemoteScan {
            source: self.source.clone(),
            table: self.table.clone(),
            table_schema: self.table_schema.clone(),
            schema: self.schema.clone(),
            projection: self.projection.clone(),
            limit: self.limit,
            linearizable: self.linearizable,
        };
        let opened = async move { scan.open(ctx.runtime_env()).await };
        let batches = stream::once(opened)
            .try_flatten()
            .map_err(DataFusionError::from);
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]))
    }

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let ids: Vec<i64> = (from..from + rows).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("row number {i:>12}")).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .expect("batch")
    }

    fn batches_stream(batches: Vec<RecordBatch>) -> SendableRecordBatchStream {
        Box::pin(RecordBatchStreamAdapter::new(
            schema(),
            stream::iter(batches.into_iter().map(Ok)),
        ))
    }

    async fn encoded(batches: Vec<RecordBatch>, chunk_bytes: usize) -> Vec<ScanChunk> {
        encode_chunks("t", schema(), batches_stream(batches), chunk_bytes)
            .expect("encoder")
            .try_collect()
            .await
            .expect("chunks")
    }

    async fn decoded(
        schema: SchemaRef,
        chunks: Vec<ScanChunk>,
    ) -> Result<Vec<RecordBatch>, RemoteScanError> {
        decode_chunks(
            "t",
            "peer",
            schema,
            stream::iter(chunks.into_iter().map(Ok)),
        )
        .try_collect()
        .await
    }

    #[tokio::test]
    async fn a_table_larger_than_a_chunk_streams_in_several_chunks() {
        let sent: Vec<RecordBatch> = (0..40).map(|i| batch(i * 8192, 8192)).collect();
        let chunk_bytes = 256 * 1024;
        let chunks = encoded(sent.clone(), chunk_bytes).await;
        assert!(chunks.len() > 4, "{} chunks", chunks.len());
        let batch_bytes = chunks.iter().map(|c| c.arrow_ipc.len()).max().unwrap_or(0);
        assert!(
            batch_bytes < 4 * chunk_bytes,
            "a chunk of {batch_bytes} bytes"
        );
        assert_eq!(
            chunks.iter().map(|c| c.last).collect::<Vec<_>>(),
            (0..chunks.len())
                .map(|i| i + 1 == chunks.len())
                .collect::<Vec<_>>()
        );

        // The first chunk's batches are out before any later chunk arrives.
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut decoder = Box::pin(decode_chunks("t", "peer", schema(), rx));
        tx.unbounded_send(Ok(chunks[0].clone())).expect("send");
        let first = decoder.next().await.expect("a batch").expect("decodes");
        assert_eq!(first, sent[0]);
        for c in &chunks[1..] {
            tx.unbounded_send(Ok(c.clone())).expect("send");
        }
        drop(tx);
        let mut received = vec![first];
        while let Some(b) = decoder.next().await {
            received.push(b.expect("decodes"));
        }
        assert_eq!(received, sent);
    }

    #[tokio::test]
    async fn an_empty_table_is_one_chunk_and_no_rows() {
        let chunks = encoded(vec![], CHUNK_BYTES).await;
        assert_eq!(chunks.len(), 1);
        assert!(decoded(schema(), chunks).await.expect("decodes").is_empty());
    }

    #[tokio::test]
    async fn a_stream_cut_short_is_an_error() {
        let sent: Vec<RecordBatch> = (0..8).map(|i| batch(i * 8192, 8192)).collect();
        let mut chunks = encoded(sent, 64 * 1024).await;
        assert!(chunks.len() > 2);
        chunks.pop();
        let got = decoded(schema(), chunks).await;
        assert!(
            matches!(got, Err(RemoteScanError::CutShort { .. })),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn rows_of_another_shape_are_refused() {
        let chunks = encoded(vec![batch(0, 10)], CHUNK_BYTES).await;
        let other = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let got = decoded(other, chunks).await;
        assert!(
            matches!(got, Err(RemoteScanError::Decode { .. })),
            "{got:?}"
        );
    }

    /// One part of `rows` rows (row groups of 4096) in a new table directory.
    fn one_part(rows: i64) -> (tempfile::TempDir, Vec<PartRef>, RecordBatch) {
        use crate::table::part::PartMeta;
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::file::properties::WriterProperties;

        let dir = tempfile::tempdir().expect("tempdir");
        let all = batch(0, rows);
        let meta = PartMeta {
            first: 1,
            last: 1,
            level: 0,
            rows: rows as u64,
            bytes: 0,
        };
        let path = dir.path().join(meta.file_name());
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(4096))
            .build();
        let file = std::fs::File::create(&path).expect("part file");
        let mut writer = ArrowWriter::try_new(file, schema(), Some(props)).expect("writer");
        writer.write(&all).expect("write");
        writer.close().expect("close");
        let bytes = std::fs::metadata(&path).expect("size").len();
        let part = crate::table::Part::new(PartMeta { bytes, ..meta }, dir.path());
        (dir, vec![part], all)
    }

    #[tokio::test]
    async fn a_peer_reads_the_projected_columns_of_a_replica_in_chunks() {
        let (_dir, parts, all) = one_part(100_000);
        let runtime = crate::query::query_runtime(64 * 1024 * 1024).expect("runtime");
        let projection = projection_of("t", &schema(), &["name".to_string()]).expect("columns");
        let projected = Arc::new(schema().project(&projection).expect("project"));
        let batches = read_parts(
            runtime.clone(),
            "t",
            schema(),
            parts.clone(),
            &projection,
            None,
        )
        .expect("scan");
        let chunks: Vec<ScanChunk> = encode_chunks("t", projected.clone(), batches, 256 * 1024)
            .expect("encoder")
            .try_collect()
            .await
            .expect("chunks");
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        let got = decoded(projected.clone(), chunks).await.expect("decodes");
        let got = arrow::compute::concat_batches(&projected, &got).expect("concat");
        assert_eq!(got, all.project(&projection).expect("project"));

        let batches = read_parts(runtime, "t", schema(), parts, &[0, 1], Some(10)).expect("scan");
        let chunks: Vec<ScanChunk> = encode_chunks("t", schema(), batches, CHUNK_BYTES)
            .expect("encoder")
            .try_collect()
            .await
            .expect("chunks");
        let got = decoded(schema(), chunks).await.expect("decodes");
        assert_eq!(got.iter().map(RecordBatch::num_rows).sum::<usize>(), 10);

        assert!(matches!(
            projection_of("t", &schema(), &["nope".to_string()]),
            Err(RemoteScanError::NoColumn { .. })
        ));
        assert!(matches!(
            projection_of("t", &schema(), &[]),
            Err(RemoteScanError::NoColumns { .. })
        ));
    }
}
