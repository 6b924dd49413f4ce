//! Message formats to Arrow batches and back, and the accounting of broken messages.
//!
//! Input is the raw Kafka message (payload, key, offset, timestamp); output is one Arrow
//! batch per block with the Kafka table's declared columns followed by the virtual
//! columns (`catalog::kafka_virtual_columns`: `_topic`, `_partition`, `_offset`, `_key`,
//! `_timestamp`, `_timestamp_ms`, `_headers.name`, `_headers.value`, and in stream mode
//! `_raw_message` and `_error`). One module per format
//! family decodes (and, in `encode`, writes) its formats; `cells` and `rows` are the
//! shared core (text formats push text, binary ones typed values). `prepare_table`
//! compiles a table's schema at CREATE. Must not import `rdkafka`, `actix` or storage: the consumer hands
//! plain messages in, and the producer takes plain bytes out.

mod array_text;
mod avro;
mod cells;
mod csv;
pub(crate) mod datetime_text;
pub mod encode;
mod json_columns;
mod json_compact;
pub mod json_each_row;
pub mod output;
mod proto_schema;
mod protobuf;
mod raw;
mod rows;
pub mod stream_rows;
#[cfg(test)]
mod test_support;
mod text_out;
mod tsv;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondArray, TimestampSecondArray, UInt64Array,
};
use arrow::compute::interleave;
use arrow::error::ArrowError;
use bytes::Bytes;

use crate::catalog::kafka_settings::{Format, FormatSettings, HandleErrorMode};
use crate::catalog::{Column, TableDef};

/// A Kafka message as the consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub payload: Option<Bytes>,
    pub key: Option<Bytes>,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// The message's headers in order: name, and value as sent.
    pub headers: Vec<(String, Bytes)>,
}

impl RawMessage {
    pub fn len_bytes(&self) -> usize {
        self.payload.as_ref().map_or(0, Bytes::len)
            + self.key.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }
}

/// A message that could not be decoded, kept for status and error reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenMessage {
    pub offset: i64,
    pub error: String,
}

pub use avro::AvroWriteError;
pub use proto_schema::SchemaError;

/// Why a table's format cannot work with its columns, found at CREATE.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrepareError {
    #[error("table {table}: {source}")]
    Protobuf {
        table: String,
        #[source]
        source: Box<SchemaError>,
    },
    #[error("table {table}: format Avro: {source}")]
    Avro {
        table: String,
        #[source]
        source: AvroWriteError,
    },
}

/// Readies a new table's format at CREATE: a Protobuf schema is compiled from
/// `schema_dir` into the table's settings, with each column matched to its field; Avro
/// columns are checked to make a valid Avro schema. Other tables pass unchanged.
pub fn prepare_table(table: &mut TableDef, schema_dir: &Path) -> Result<(), PrepareError> {
    let name = table.name.clone();
    let columns = table.columns.clone();
    let crate::catalog::Engine::Kafka(kafka) = &mut table.engine else {
        return Ok(());
    };
    match kafka.format {
        Format::Protobuf | Format::ProtobufSingle => {
            // `KafkaSettings` refuses these formats without a schema.
            let Some(schema) = &kafka.schema else {
                return Ok(());
            };
            let compiled =
                proto_schema::compile(schema, schema_dir, &columns).map_err(|source| {
                    PrepareError::Protobuf {
                        table: name,
                        source: Box::new(source),
                    }
                })?;
            kafka.compiled_schema = Some(compiled);
        }
        Format::Avro => {
            avro::schema(&columns).map_err(|source| PrepareError::Avro {
                table: name,
                source,
            })?;
        }
        _ => {}
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("{0}")]
    Internal(String),
}

/// A decoded block: rows of the good messages with virtual columns, and the broken ones
/// in offset order. With `kafka_handle_error_mode = 'stream'` the broken messages past
/// the block's `kafka_skip_broken_messages` allowance are rows too (see [`allowance`]).
#[derive(Debug)]
pub struct DecodedBlock {
    pub batch: RecordBatch,
    pub broken: Vec<BrokenMessage>,
}

/// Splits a block's broken messages (in offset order) into those the
/// `kafka_skip_broken_messages` allowance skips, and those past it, which the table's
/// `kafka_handle_error_mode` handles. The allowance is per block, as in ClickHouse, whose
/// row formats skip that many errors per block before an error reaches the mode.
pub fn allowance(broken: &[BrokenMessage], allowed: u64) -> (&[BrokenMessage], &[BrokenMessage]) {
    let skipped = usize::try_from(allowed)
        .unwrap_or(usize::MAX)
        .min(broken.len());
    broken.split_at(skipped)
}

/// Decodes one block of messages of a single topic partition of `table`.
pub fn decode_block(
    table: &TableDef,
    topic: &str,
    partition: i32,
    messages: &[RawMessage],
) -> Result<DecodedBlock, FormatError> {
    let (format, settings, mode, allowed) = table
        .kafka()
        .map(|k| {
            (
                k.format,
                k.format_settings,
                k.handle_error_mode,
                k.skip_broken_messages,
            )
        })
        .unwrap_or((
            Format::JsonEachRow,
            FormatSettings::default(),
            HandleErrorMode::Default,
            0,
        ));
    let columns = &table.columns;
    let compiled = table.kafka().and_then(|k| k.compiled_schema.as_ref());
    let (rows, mut rows_per_message, broken) =
        decode_rows(format, compiled, columns, &settings, messages)?;
    // Stream mode: each broken message past the allowance is one row of defaults, in
    // its place among the others, carrying the message and its error.
    let mut errors: Vec<Option<&str>> = vec![None; messages.len()];
    let rows = if mode == HandleErrorMode::Stream {
        let (_, streamed) = allowance(&broken, allowed);
        for b in streamed {
            if let Ok(i) = messages.binary_search_by_key(&b.offset, |m| m.offset) {
                errors[i] = Some(&b.error);
                rows_per_message[i] = 1;
            }
        }
        with_error_rows(columns, &rows, &rows_per_message, &errors)?
    } else {
        rows
    };
    let batch = with_virtual_columns(
        table,
        topic,
        partition,
        messages,
        &rows_per_message,
        rows,
        &errors,
    )?;
    Ok(DecodedBlock { batch, broken })
}

/// Decodes messages in `format` into `columns` (no virtual columns): the rows, how many
/// each message gave, and the messages that could not be decoded. `compiled` is the
/// Protobuf schema a Protobuf format needs.
pub fn decode_rows(
    format: Format,
    compiled: Option<&crate::catalog::kafka_settings::CompiledSchema>,
    columns: &[Column],
    settings: &FormatSettings,
    messages: &[RawMessage],
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    Ok(match format {
        Format::JsonEachRow => {
            json_each_row::decode(columns, messages, settings.skip_unknown_fields)?
        }
        Format::JsonCompactEachRow => json_compact::decode(columns, settings, messages)?,
        Format::Csv => csv::decode(columns, settings, false, messages)?,
        Format::CsvWithNames => csv::decode(columns, settings, true, messages)?,
        Format::TabSeparated => tsv::decode(columns, settings, false, messages)?,
        Format::TabSeparatedWithNames => tsv::decode(columns, settings, true, messages)?,
        Format::JsonAsString | Format::LineAsString | Format::RawBlob => {
            raw::decode(format, columns, settings, messages)?
        }
        Format::Protobuf | Format::ProtobufSingle => {
            protobuf::decode(format, compiled, columns, settings, messages)?
        }
        Format::Avro => avro::decode(columns, settings, messages)?,
    })
}

/// `rows` with a row of defaults inserted for every message that has an error (which
/// produced no row of its own): NULL for a Nullable column, the type's default otherwise,
/// as ClickHouse fills a broken message's row in stream mode.
fn with_error_rows(
    columns: &[Column],
    rows: &RecordBatch,
    rows_per_message: &[usize],
    errors: &[Option<&str>],
) -> Result<RecordBatch, FormatError> {
    if errors.iter().all(Option::is_none) {
        return Ok(rows.clone());
    }
    let mut picks = Vec::with_capacity(rows.num_rows() + errors.len());
    let mut next = 0usize;
    for (count, error) in rows_per_message.iter().zip(errors) {
        if error.is_some() {
            picks.push((1, 0));
        } else {
            picks.extend((next..next + count).map(|r| (0, r)));
            next += count;
        }
    }
    let mut out = Vec::with_capacity(columns.len());
    for (column, array) in columns.iter().zip(rows.columns()) {
        let default: ArrayRef = if column.ty.is_nullable() {
            new_null_array(array.data_type(), 1)
        } else {
            json_each_row::default_scalar(&column.ty)?.into_inner()
        };
        out.push(interleave(&[array.as_ref(), default.as_ref()], &picks)?);
    }
    Ok(RecordBatch::try_new(rows.schema(), out)?)
}

/// The declared columns' `rows` followed by the virtual columns of the messages they
/// came from (`rows_per_message[i]` rows of message `i`).
fn with_virtual_columns(
    table: &TableDef,
    topic: &str,
    partition: i32,
    messages: &[RawMessage],
    rows_per_message: &[usize],
    rows: RecordBatch,
    errors: &[Option<&str>],
) -> Result<RecordBatch, FormatError> {
    let n = rows.num_rows();
    let mut offsets = Vec::with_capacity(n);
    let key_bytes = messages
        .iter()
        .map(|m| m.key.as_ref().map_or(0, Bytes::len))
        .sum();
    let mut keys = StringBuilder::with_capacity(n, key_bytes);
    let mut timestamps = Vec::with_capacity(n);
    let mut timestamps_ms = Vec::with_capacity(n);
    let header_item =
        || arrow::datatypes::Field::new("item", arrow::datatypes::DataType::Utf8, false);
    let mut header_names = ListBuilder::new(StringBuilder::new()).with_field(header_item());
    let mut header_values = ListBuilder::new(StringBuilder::new()).with_field(header_item());
    let stream = table
        .kafka()
        .is_some_and(|k| k.handle_error_mode == HandleErrorMode::Stream);
    let mut raw_messages = StringBuilder::new();
    let mut error_texts = StringBuilder::new();
    for ((m, count), error) in messages.iter().zip(rows_per_message).zip(errors) {
        // A valid key is appended as it is; only an invalid one is copied, mended.
        let key = text(m.key.as_deref().unwrap_or_default());
        let raw = match error {
            Some(_) => text(m.payload.as_deref().unwrap_or_default()),
            None => Cow::Borrowed(""),
        };
        for _ in 0..*count {
            offsets.push(u64::try_from(m.offset).unwrap_or_default());
            keys.append_value(&key);
            timestamps.push(m.timestamp_ms.map(|ms| ms.div_euclid(1000)));
            timestamps_ms.push(m.timestamp_ms);
            for (name, value) in &m.headers {
                header_names.values().append_value(name);
                header_values.values().append_value(text(value));
            }
            header_names.append(true);
            header_values.append(true);
            if stream {
                raw_messages.append_value(&raw);
                error_texts.append_value(error.unwrap_or_default());
            }
        }
    }
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![topic; n])));
    columns.push(Arc::new(UInt64Array::from(vec![
        u64::try_from(partition)
            .unwrap_or_default();
        n
    ])));
    columns.push(Arc::new(UInt64Array::from(offsets)));
    columns.push(Arc::new(keys.finish()));
    columns.push(Arc::new(TimestampSecondArray::from(timestamps)));
    columns.push(Arc::new(TimestampMillisecondArray::from(timestamps_ms)));
    columns.push(Arc::new(header_names.finish()));
    columns.push(Arc::new(header_values.finish()));
    if stream {
        columns.push(Arc::new(raw_messages.finish()));
        columns.push(Arc::new(error_texts.finish()));
    }
    Ok(RecordBatch::try_new(table.source_schema(), columns)?)
}

/// Bytes as text: valid UTF-8 borrowed, anything else mended (String columns hold UTF-8).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{TimestampMillisecondType, UInt32Type};

    use super::test_support::{columns, msg, strings};
    use super::*;
    use crate::catalog::{Engine, KafkaSettings};

    fn table(spec: &[(&str, &str)], mode: HandleErrorMode, allowed: u64) -> TableDef {
        let mut settings = KafkaSettings::for_tests();
        settings.handle_error_mode = mode;
        settings.skip_broken_messages = allowed;
        TableDef {
            name: "q".into(),
            columns: columns(spec),
            engine: Engine::Kafka(Box::new(settings)),
            detached: false,
            layout: Default::default(),
        }
    }

    #[test]
    fn headers_and_millisecond_timestamps_follow_their_rows() {
        let t = table(&[("a", "UInt32")], HandleErrorMode::Default, 0);
        let mut first = msg(4, "{\"a\":1}\n{\"a\":2}");
        first.timestamp_ms = Some(1_700_000_000_999);
        first.headers = vec![
            ("h".into(), Bytes::from_static(b"x")),
            ("bin".into(), Bytes::from_static(b"\xff")),
        ];
        let decoded =
            decode_block(&t, "events", 0, &[first, msg(5, "{\"a\":3}")]).expect("decoded");
        let batch = &decoded.batch;
        assert_eq!(batch.num_rows(), 3);
        let ms = batch
            .column_by_name("_timestamp_ms")
            .expect("_timestamp_ms")
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(
            ms.iter().collect::<Vec<_>>(),
            [Some(1_700_000_000_999), Some(1_700_000_000_999), None]
        );
        let lists = |name: &str| -> Vec<Vec<String>> {
            let list = batch.column_by_name(name).expect(name).as_list::<i32>();
            (0..list.len())
                .map(|i| {
                    list.value(i)
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap_or_default().to_string())
                        .collect()
                })
                .collect()
        };
        assert_eq!(
            lists(crate::catalog::HEADER_NAMES),
            [vec!["h", "bin"], vec!["h", "bin"], vec![]]
        );
        assert_eq!(
            lists(crate::catalog::HEADER_VALUES),
            [vec!["x", "\u{fffd}"], vec!["x", "\u{fffd}"], vec![]]
        );
        assert!(batch.column_by_name("_error").is_none(), "stream mode only");
    }

    #[test]
    fn stream_mode_rows_hold_defaults_past_the_allowance_only() {
        let t = table(
            &[("a", "UInt32"), ("s", "Nullable(String)")],
            HandleErrorMode::Stream,
            1,
        );
        let messages = [
            msg(0, "{\"a\":1,\"s\":\"x\"}"),
            msg(1, "{broken"),
            msg(2, "{\"a\":2}"),
            msg(3, "{also broken"),
        ];
        let decoded = decode_block(&t, "events", 0, &messages).expect("decoded");
        assert_eq!(decoded.broken.len(), 2);
        let batch = &decoded.batch;
        // Offset 1 is within the allowance (skipped); offset 3 is a row.
        let a = batch.column(0).as_primitive::<UInt32Type>();
        assert_eq!(a.values().to_vec(), [1, 2, 0]);
        assert_eq!(strings(batch, 1), [Some("x".into()), None, None]);
        let raw = batch
            .schema()
            .index_of("_raw_message")
            .expect("_raw_message");
        assert_eq!(
            strings(batch, raw),
            [
                Some("".into()),
                Some("".into()),
                Some("{also broken".into())
            ]
        );
        let error = batch.schema().index_of("_error").expect("_error");
        let errors = strings(batch, error);
        assert_eq!(errors[..2], [Some(String::new()), Some(String::new())]);
        assert!(errors[2].as_deref().is_some_and(|e| !e.is_empty()));
        let offsets = batch.column_by_name("_offset").expect("_offset");
        let offsets: Vec<u64> = offsets
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .values()
            .to_vec();
        assert_eq!(offsets, [0, 2, 3]);
    }
}
