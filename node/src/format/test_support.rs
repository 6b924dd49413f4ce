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

/// The first `columns` columns of each row, as `a|b|c` in Arrow's display form.
pub fn rows_text(batch: &RecordBatch, columns: usize) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<ArrayFormatter> = batch.columns()[..columns]
        .iter()
        .map(|a| ArrayFormatter::try_new(a.as_ref(), &options).expect("displayable"))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// A Kafka table of these columns, in this format, with these extra settings.
pub fn kafka_table(
    spec: &[(&str, &str)],
    format: &str,
    extra: &[(&str, &str)],
) -> crate::catalog::TableDef {
    let pairs: Vec<(String, String)> = [
        ("kafka_broker_list", "b:9092"),
        ("kafka_topic_list", "t"),
        ("kafka_group_name", "g"),
        ("kafka_format", format),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = crate::catalog::KafkaSettings::from_pairs(&pairs).expect("valid settings");
    crate::catalog::TableDef {
        name: "q".into(),
        columns: columns(spec),
        engine: crate::catalog::Engine::Kafka(Box::new(settings)),
        detached: false,
        layout: Default::default(),
    }
}
