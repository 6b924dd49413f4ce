//! What the format modules' tests build their input from and read their output with.

use arrow::array::{AsArray, RecordBatch};
use bytes::Bytes;

use super::RawMessage;
use crate::catalog::{ChType, Column};

/// Columns from `(name, ClickHouse type)` pairs.
pub fn columns(spec: &[(&str, &str)]) -> Vec<Column> {
    spec.iter()
        .map(|(n, t)| Column {
            name: n.to_string(),
            ty: ChType::parse(t).expect("type"),
        })
        .collect()
}

/// A message with this payload at this offset, with no key or timestamp.
pub fn msg(offset: i64, payload: impl AsRef<[u8]>) -> RawMessage {
    RawMessage {
        payload: Some(Bytes::copy_from_slice(payload.as_ref())),
        key: None,
        offset,
        timestamp_ms: None,
        headers: Vec::new(),
    }
}

/// Column `i` of a batch, read as strings.
pub fn strings(batch: &RecordBatch, i: usize) -> Vec<Option<String>> {
    batch
        .column(i)
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}
