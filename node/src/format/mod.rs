//! Message formats to Arrow batches and back, and the accounting of broken messages.
//!
//! Input is the raw Kafka message (payload, key, offset, timestamp); output is one Arrow
//! batch per block with the Kafka table's declared columns followed by the virtual
//! columns `_topic`, `_partition`, `_offset`, `_key`, `_timestamp`. One module per format
//! family decodes (and, in `encode`, writes) its formats; `cells` and `rows` are the text
//! formats' shared core. Must not import `rdkafka`, `actix` or storage: the consumer hands
//! plain messages in, and the producer takes plain bytes out.

mod array_text;
mod cells;
mod csv;
mod datetime_text;
pub mod encode;
mod json_columns;
mod json_compact;
pub mod json_each_row;
mod raw;
mod rows;
#[cfg(test)]
mod test_support;
mod text_out;
mod tsv;

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, RecordBatch, StringArray, StringBuilder, TimestampSecondArray, UInt64Array,
};
use arrow::error::ArrowError;
use bytes::Bytes;

use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::TableDef;

/// A Kafka message as the consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub payload: Option<Bytes>,
    pub key: Option<Bytes>,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

impl RawMessage {
    pub fn len_bytes(&self) -> usize {
        self.payload.as_ref().map_or(0, Bytes::len) + self.key.as_ref().map_or(0, Bytes::len)
    }
}

/// A message that could not be decoded, kept for status and error reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenMessage {
    pub offset: i64,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("{0}")]
    Internal(String),
}

/// A decoded block: rows of the good messages with virtual columns, and the broken ones.
#[derive(Debug)]
pub struct DecodedBlock {
    pub batch: RecordBatch,
    pub broken: Vec<BrokenMessage>,
}

/// Decodes one block of messages of a single topic partition of `table`.
pub fn decode_block(
    table: &TableDef,
    topic: &str,
    partition: i32,
    messages: &[RawMessage],
) -> Result<DecodedBlock, FormatError> {
    let (format, settings) = table
        .kafka()
        .map(|k| (k.format, k.format_settings))
        .unwrap_or((Format::JsonEachRow, FormatSettings::default()));
    let columns = &table.columns;
    let (rows, rows_per_message, broken) = match format {
        Format::JsonEachRow => {
            json_each_row::decode(columns, messages, settings.skip_unknown_fields)?
        }
        Format::JsonCompactEachRow => json_compact::decode(columns, &settings, messages)?,
        Format::Csv => csv::decode(columns, &settings, false, messages)?,
        Format::CsvWithNames => csv::decode(columns, &settings, true, messages)?,
        Format::TabSeparated => tsv::decode(columns, &settings, false, messages)?,
        Format::TabSeparatedWithNames => tsv::decode(columns, &settings, true, messages)?,
        Format::JsonAsString | Format::LineAsString | Format::RawBlob => {
            raw::decode(format, columns, &settings, messages)?
        }
    };
    let n = rows.num_rows();
    let mut offsets = Vec::with_capacity(n);
    let key_bytes = messages
        .iter()
        .map(|m| m.key.as_ref().map_or(0, Bytes::len))
        .sum();
    let mut keys = StringBuilder::with_capacity(n, key_bytes);
    let mut timestamps = Vec::with_capacity(n);
    for (m, count) in messages.iter().zip(&rows_per_message) {
        // A valid key is appended as it is; only an invalid one is copied, mended.
        let key = m.key.as_deref().unwrap_or_default();
        let key = std::str::from_utf8(key)
            .map(Cow::Borrowed)
            .unwrap_or_else(|_| String::from_utf8_lossy(key));
        for _ in 0..*count {
            offsets.push(u64::try_from(m.offset).unwrap_or_default());
            keys.append_value(&key);
            timestamps.push(m.timestamp_ms.map(|ms| ms.div_euclid(1000)));
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
    let batch = RecordBatch::try_new(table.source_schema(), columns)?;
    Ok(DecodedBlock { batch, broken })
}
