//! INSERT into tables: rows from a SELECT or VALUES, or data in an input format (inline
//! after `FORMAT <name>` or streamed by the client), cast to the table's columns with a
//! bad value named by row and column, cut into blocks and written through the table's
//! Raft group like a consumer's blocks, without Kafka positions. Each block is
//! acknowledged once a majority of the group has it, and deduplicated by its id in the
//! table's window as ReplicatedMergeTree does: the id is the hash of the block's rows, or
//! of `insert_deduplication_token` and the block's index, so a client that retries the
//! same insert stores its rows once. A Kafka table takes data in a format too: its rows
//! go to the topic. Views from the table into Kafka tables get each block before it is
//! stored (at least once, as a consumer's blocks do).
//! Invariant: the same rows and settings are always cut into the same blocks.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::array_value_to_string;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::{Catalog, Column, TableDef};
use crate::cluster::{Cluster, ClusterError};
use crate::format::stream_rows::{RowSplitter, SplitError};
use crate::format::{decode_rows, FormatError, RawMessage};
use crate::ingest::route;
use crate::ingest::sink::{KafkaSink, SinkError};
use crate::query::views::conform;
use crate::query::QueryError;
use crate::table::block::BlockHash;
use crate::table::part::PartError;
use crate::table::{ApplyOutcome, Block};

/// ClickHouse's default `max_insert_block_size`, in rows.
pub const MAX_INSERT_BLOCK_SIZE: u64 = 1_048_576;
/// A block is one Raft entry: one larger than this (its encoded part, or the data a
/// stream's block is cut from) is cut smaller, as `kafka_max_block_bytes` keeps a
/// consumer's blocks small.
const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("INSERT INTO {table}: unknown setting {name} (an INSERT takes insert_deduplicate, insert_deduplication_token, max_insert_block_size)")]
    UnknownSetting { table: String, name: String },
    #[error("INSERT INTO {table}: setting {name} = '{value}': {reason}")]
    BadSetting {
        table: String,
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("INSERT INTO {table}: no column {column} in the table")]
    NoColumn { table: String, column: String },
    #[error(
        "INSERT INTO {table}: the rows have {got} columns, the insert fills {want} ({columns})"
    )]
    ColumnCount {
        table: String,
        got: usize,
        want: usize,
        columns: String,
    },
    #[error("INSERT INTO {table}: row {row}, column {column}: cannot convert {value} to {ty}")]
    BadValue {
        table: String,
        row: u64,
        column: String,
        value: String,
        ty: String,
    },
    #[error("INSERT INTO {table}: row {row}: {error}")]
    BadRow {
        table: String,
        row: u64,
        error: String,
    },
    #[error("INSERT INTO {table} FORMAT {format}: no data: send the rows after the statement (sluice sql reads them from standard input)")]
    NoData { table: String, format: &'static str },
    #[error("INSERT INTO {table}: {source}")]
    Split { table: String, source: SplitError },
    #[error("INSERT INTO {table}: decoding rows: {source}")]
    Decode {
        table: String,
        source: Box<FormatError>,
    },
    #[error("INSERT INTO {table}: {source}")]
    Query {
        table: String,
        source: Box<QueryError>,
    },
    #[error("INSERT INTO {table}: encoding a block: {source}")]
    Encode {
        table: String,
        source: Box<PartError>,
    },
    #[error("INSERT INTO {table}: {written} rows written before the failure; writing the next block: {source}")]
    Write {
        table: String,
        written: u64,
        source: Box<ClusterError>,
    },
    #[error("INSERT INTO {table}: view {view} could not push the rows to Kafka: {reason}")]
    Push {
        table: String,
        view: String,
        reason: String,
    },
    #[error(transparent)]
    Sink(Box<SinkError>),
    #[error("INSERT INTO {table}: the client's data stream failed: {reason}")]
    Stream { table: String, reason: String },
}

impl From<SinkError> for InsertError {
    fn from(e: SinkError) -> Self {
        InsertError::Sink(Box::new(e))
    }
}

impl InsertError {
    /// The write's own error when the table's group did not take a block.
    pub fn cluster(&self) -> Option<&ClusterError> {
        match self {
            InsertError::Write { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// The settings an INSERT takes, by ClickHouse's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertSettings {
    /// `insert_deduplicate` (ClickHouse default 1): drop blocks whose id is in the window.
    pub deduplicate: bool,
    /// `insert_deduplication_token`: block ids from it and the block's index, not the rows.
    pub token: Option<String>,
    /// `max_insert_block_size` (ClickHouse default 1,048,576 rows).
    pub max_block_rows: u64,
}

impl InsertSettings {
    pub fn parse(table: &str, settings: &[(String, String)]) -> Result<Self, InsertError> {
        let mut out = InsertSettings {
            deduplicate: true,
            token: None,
            max_block_rows: MAX_INSERT_BLOCK_SIZE,
        };
        for (name, value) in settings {
            let bad = |reason| InsertError::BadSetting {
                table: table.to_string(),
                name: name.clone(),
                value: value.clone(),
                reason,
            };
            match name.as_str() {
                "insert_deduplicate" => {
                    out.deduplicate = match value.as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(bad("expected 0 or 1")),
                    }
                }
                "insert_deduplication_token" => {
                    out.token = (!value.is_empty()).then(|| value.clone())
                }
                "max_insert_block_size" => {
                    out.max_block_rows = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("expected a positive number of rows"))?
                }
                _ => {
                    return Err(InsertError::UnknownSetting {
                        table: table.to_string(),
                        name: name.clone(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The id of the insert's block number `index` whose rows hash to `rows_hash`: that
    /// hash, or the token's with the index, or (no deduplication) one never seen before.
    pub fn block_id(&self, index: u64, rows_hash: BlockHash) -> BlockHash {
        if !self.deduplicate {
            return rand::random();
        }
        match &self.token {
            Some(token) => {
                let mut hasher = blake3::Hasher::new();
                hasher.update(b"insert_deduplication_token\0");
                hasher.update(token.as_bytes());
                hasher.update(&[0]);
                hasher.update(&index.to_be_bytes());
                *hasher.finalize().as_bytes()
            }
            None => rows_hash,
        }
    }
}

/// What an insert did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InsertReport {
    pub rows: u64,
    pub blocks: u64,
    /// Blocks dropped because their id was in the table's window.
    pub duplicate_blocks: u64,
    pub duplicate_rows: u64,
}

impl InsertReport {
    /// What the client prints (`Ok.`, as clickhouse-client), with the figures.
    pub fn message(&self) -> String {
        let mut text = format!(
            "Ok. {} row{} written",
            self.rows,
            if self.rows == 1 { "" } else { "s" }
        );
        if self.duplicate_blocks > 0 {
            text.push_str(&format!(
                "; {} duplicate block{} ({} rows) dropped",
                self.duplicate_blocks,
                if self.duplicate_blocks == 1 { "" } else { "s" },
                self.duplicate_rows
            ));
        }
        text.push('.');
        text
    }
}

/// Where an insert's rows go, and what it has done so far.
pub struct InsertTarget<'a> {
    pub table: &'a TableDef,
    pub catalog: Arc<Catalog>,
    pub cluster: &'a Cluster,
    pub sink: &'a KafkaSink,
    pub settings: InsertSettings,
    /// The next block's index (for token ids).
    next_block: u64,
    pub report: InsertReport,
}

impl<'a> InsertTarget<'a> {
    pub fn new(
        table: &'a TableDef,
        catalog: Arc<Catalog>,
        cluster: &'a Cluster,
        sink: &'a KafkaSink,
        settings: InsertSettings,
    ) -> Self {
        InsertTarget {
            table,
            catalog,
            cluster,
            sink,
            settings,
            next_block: 0,
            report: InsertReport::default(),
        }
    }

    /// Rows in the table's columns (`fit`), cut by `max_insert_block_size` and written.
    pub async fn write(&mut self, rows: &RecordBatch) -> Result<(), InsertError> {
        let step = usize::try_from(self.settings.max_block_rows).unwrap_or(usize::MAX);
        let mut at = 0;
        while at < rows.num_rows() {
            let len = step.min(rows.num_rows() - at);
            self.write_cut(rows.slice(at, len)).await?;
            at += len;
        }
        Ok(())
    }

    /// One cut of rows: to the topic for a Kafka table; else as blocks, halved until
    /// each fits a Raft entry.
    async fn write_cut(&mut self, rows: RecordBatch) -> Result<(), InsertError> {
        if self.table.kafka().is_some() {
            let (sent, _) = self.sink.send(self.table, &rows, None).await?;
            self.report.rows += sent;
            self.report.blocks += 1;
            return Ok(());
        }
        let mut pending = vec![rows];
        while let Some(rows) = pending.pop() {
            let block = Block::new(&self.table.name, None, &rows, &self.table.order_by()).map_err(
                |source| InsertError::Encode {
                    table: self.table.name.clone(),
                    source: Box::new(source),
                },
            )?;
            if block.data.len() > MAX_BLOCK_BYTES && rows.num_rows() > 1 {
                let half = rows.num_rows() / 2;
                // Popped last first: the first half is written first.
                pending.push(rows.slice(half, rows.num_rows() - half));
                pending.push(rows.slice(0, half));
                continue;
            }
            self.write_block(block, &rows).await?;
        }
        Ok(())
    }

    async fn write_block(
        &mut self,
        mut block: Block,
        rows: &RecordBatch,
    ) -> Result<(), InsertError> {
        block.hash = self.settings.block_id(self.next_block, block.hash);
        self.next_block += 1;
        self.push(rows).await?;
        let outcome = self
            .cluster
            .write_block(block.clone(), None)
            .await
            .map_err(|source| InsertError::Write {
                table: self.table.name.clone(),
                written: self.report.rows,
                source: Box::new(source),
            })?;
        match outcome {
            ApplyOutcome::Stored { rows, .. } => {
                self.report.rows += rows;
                self.report.blocks += 1;
            }
            ApplyOutcome::Skipped(_) => {
                self.report.duplicate_blocks += 1;
                self.report.duplicate_rows += block.rows;
            }
        }
        Ok(())
    }

    /// Sends a block through the views from the table into Kafka tables, before it is
    /// stored: a failure fails the insert, whose retry sends it again.
    async fn push(&self, rows: &RecordBatch) -> Result<(), InsertError> {
        route::push(&self.catalog, self.sink, self.table, rows)
            .await
            .map_err(|f| InsertError::Push {
                table: self.table.name.clone(),
                view: f.view,
                reason: f.reason,
            })
    }
}

/// The table's columns an insert fills: those listed, or all of them.
pub fn insert_columns(table: &TableDef, listed: &[String]) -> Result<Vec<Column>, InsertError> {
    if listed.is_empty() {
        return Ok(table.columns.clone());
    }
    listed
        .iter()
        .map(|name| {
            table
                .column(name)
                .cloned()
                .ok_or_else(|| InsertError::NoColumn {
                    table: table.name.clone(),
                    column: name.clone(),
                })
        })
        .collect()
}

/// A query's rows under the names of the columns they fill, by position.
pub fn name_rows(
    table: &TableDef,
    rows: &RecordBatch,
    columns: &[Column],
) -> Result<RecordBatch, InsertError> {
    if rows.num_columns() != columns.len() {
        return Err(InsertError::ColumnCount {
            table: table.name.clone(),
            got: rows.num_columns(),
            want: columns.len(),
            columns: columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let fields: Vec<Field> = rows
        .schema()
        .fields()
        .iter()
        .zip(columns)
        .map(|(f, c)| Field::new(&c.name, f.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), rows.columns().to_vec()).map_err(|e| {
        InsertError::Query {
            table: table.name.clone(),
            source: Box::new(QueryError::from(e)),
        }
    })
}

/// Rows (named by column) cast to the whole table: a value that does not convert, or an
/// Enum name that is not a member, is refused naming its row (`first_row` + its index)
/// and column; a column not given gets its default (NULL if Nullable), as in ClickHouse.
pub fn fit(
    table: &TableDef,
    rows: &RecordBatch,
    first_row: u64,
) -> Result<RecordBatch, InsertError> {
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    for column in &table.columns {
        let Some(given) = rows.column_by_name(&column.name) else {
            continue;
        };
        let to = column.ty.arrow_type();
        let bad_value = |i: usize| -> InsertError {
            InsertError::BadValue {
                table: table.name.clone(),
                row: first_row + i as u64,
                column: column.name.clone(),
                value: array_value_to_string(given, i)
                    .map_or_else(|_| "a value".into(), |v| format!("'{v}'")),
                ty: column.ty.to_string(),
            }
        };
        let cast = cast_with_options(given, &to, &options).map_err(|_| bad_value(0))?;
        // A safe cast gives NULL where a value does not convert.
        if let Some(i) = (0..given.len()).find(|&i| given.is_valid(i) && cast.is_null(i)) {
            return Err(bad_value(i));
        }
        if let Some(members) = column.ty.enum_members() {
            if cast.data_type() == &DataType::Utf8 {
                let names = cast.as_string::<i32>();
                if let Some(i) = (0..names.len()).find(|&i| {
                    names.is_valid(i) && !members.iter().any(|(m, _)| m == names.value(i))
                }) {
                    return Err(bad_value(i));
                }
            }
        }
    }
    conform(table, rows).map_err(|source| InsertError::Query {
        table: table.name.clone(),
        source: Box::new(source),
    })
}

/// Data in `format` from a stream of chunks, into `target`: cut into rows, decoded by the
/// Kafka side's decoder a block at a time, fitted and written. Bounded memory: at most
/// one block of rows is held.
pub async fn insert_data<S>(
    target: &mut InsertTarget<'_>,
    columns: &[Column],
    format: Format,
    mut data: S,
) -> Result<(), InsertError>
where
    S: Stream<Item = Result<Bytes, InsertError>> + Unpin,
{
    let table = target.table.name.clone();
    let split_err = |source| InsertError::Split {
        table: table.clone(),
        source,
    };
    let mut splitter = RowSplitter::new(format).map_err(split_err)?;
    let max_rows = usize::try_from(target.settings.max_block_rows).unwrap_or(usize::MAX);
    let mut rows: Vec<Bytes> = Vec::new();
    let mut bytes = 0usize;
    let mut first_row = 1u64;
    while let Some(chunk) = data.next().await {
        let chunk = chunk?;
        let before = rows.len();
        splitter.push(&chunk, &mut rows);
        bytes += rows[before..].iter().map(Bytes::len).sum::<usize>();
        // Cut where the rows reach a block's size: the same rows always cut alike.
        while rows.len() >= max_rows || bytes >= MAX_BLOCK_BYTES {
            let take = cut_len(&rows, max_rows);
            let rest = rows.split_off(take);
            let block = std::mem::replace(&mut rows, rest);
            bytes = rows.iter().map(Bytes::len).sum();
            write_rows(target, columns, format, &block, first_row).await?;
            first_row += block.len() as u64;
        }
    }
    splitter.finish(&mut rows).map_err(split_err)?;
    while !rows.is_empty() {
        let take = cut_len(&rows, max_rows);
        let rest = rows.split_off(take);
        let block = std::mem::replace(&mut rows, rest);
        write_rows(target, columns, format, &block, first_row).await?;
        first_row += block.len() as u64;
    }
    Ok(())
}

/// How many of `rows` make the next block: at most `max_rows`, and no more than fit
/// `MAX_BLOCK_BYTES` (at least one).
fn cut_len(rows: &[Bytes], max_rows: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for row in rows.iter().take(max_rows) {
        if n > 0 && bytes + row.len() > MAX_BLOCK_BYTES {
            break;
        }
        bytes += row.len();
        n += 1;
    }
    n.max(1).min(rows.len())
}

/// Decodes one block of rows (row `first_row` first) and writes it.
async fn write_rows(
    target: &mut InsertTarget<'_>,
    columns: &[Column],
    format: Format,
    rows: &[Bytes],
    first_row: u64,
) -> Result<(), InsertError> {
    let table = target.table;
    let messages: Vec<RawMessage> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| RawMessage {
            payload: Some(row.clone()),
            key: None,
            offset: i64::try_from(first_row + i as u64).unwrap_or(i64::MAX),
            timestamp_ms: None,
            headers: Vec::new(),
        })
        .collect();
    let (batch, _, broken) =
        decode_rows(format, None, columns, &FormatSettings::default(), &messages).map_err(
            |source| InsertError::Decode {
                table: table.name.clone(),
                source: Box::new(source),
            },
        )?;
    if let Some(b) = broken.first() {
        return Err(InsertError::BadRow {
            table: table.name.clone(),
            row: u64::try_from(b.offset).unwrap_or_default(),
            error: b.error.clone(),
        });
    }
    let fitted = fit(table, &batch, first_row)?;
    target.write(&fitted).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ChType, Engine, MergeTreeSettings};
    use arrow::array::{Int64Array, StringArray};

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn settings_and_block_ids() {
        let plain = InsertSettings::parse("t", &[]).expect("defaults");
        assert_eq!(plain.max_block_rows, MAX_INSERT_BLOCK_SIZE);
        assert_eq!(plain.block_id(3, [7; 32]), [7; 32]);
        let token = InsertSettings::parse(
            "t",
            &pairs(&[
                ("insert_deduplication_token", "x"),
                ("max_insert_block_size", "10"),
            ]),
        )
        .expect("token");
        assert_eq!(token.max_block_rows, 10);
        // The token's ids ignore the rows and tell the blocks apart.
        assert_eq!(token.block_id(0, [1; 32]), token.block_id(0, [2; 32]));
        assert_ne!(token.block_id(0, [1; 32]), token.block_id(1, [1; 32]));
        let off = InsertSettings::parse("t", &pairs(&[("insert_deduplicate", "0")])).expect("off");
        assert_ne!(off.block_id(0, [1; 32]), off.block_id(0, [1; 32]));
        let e = InsertSettings::parse("t", &pairs(&[("max_insert_block_size", "0")]))
            .expect_err("zero");
        assert!(e.to_string().contains("max_insert_block_size"), "{e}");
        let e = InsertSettings::parse("t", &pairs(&[("insert_dedup", "1")])).expect_err("unknown");
        assert!(
            e.to_string().contains("unknown setting insert_dedup"),
            "{e}"
        );
    }

    fn table() -> TableDef {
        TableDef {
            layout: Default::default(),
            name: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: ChType::UInt8,
                },
                Column {
                    name: "s".into(),
                    ty: ChType::String,
                },
            ],
            engine: Engine::MergeTree {
                engine_name: "MergeTree".into(),
                order_by: vec!["id".into()],
                settings: MergeTreeSettings::default(),
            },
            detached: false,
        }
    }

    #[test]
    fn a_bad_value_is_named_by_row_and_column_and_missing_columns_default() {
        let t = table();
        let rows = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![1, 2, 300]))],
        )
        .expect("batch");
        let e = fit(&t, &rows, 1).expect_err("300 is no UInt8");
        assert_eq!(
            e.to_string(),
            "INSERT INTO t: row 3, column id: cannot convert '300' to UInt8"
        );
        let fitted = fit(&t, &rows.slice(0, 2), 1).expect("fits");
        assert_eq!(fitted.num_columns(), 2);
        let s = fitted.column(1).as_string::<i32>();
        assert_eq!(s, &StringArray::from(vec!["", ""]));
    }

    #[test]
    fn cuts_respect_rows_and_bytes() {
        let rows = vec![Bytes::from_static(b"abc"); 5];
        assert_eq!(cut_len(&rows, 2), 2);
        assert_eq!(cut_len(&rows, 10), 5);
        let big = vec![Bytes::from(vec![b'x'; MAX_BLOCK_BYTES]); 2];
        assert_eq!(cut_len(&big, 10), 1);
    }
}
