//! Rows of a Kafka table to message payloads in the table's format: the producing side.
//!
//! Rows are packed `kafka_max_rows_per_message` to a message. Payloads are bytes, not
//! text: RawBLOB writes values as they are. JSONEachRow messages are the rows' JSON objects
//! joined by line feeds (no final one, as Sluice always wrote them); the other row formats
//! end every row with a line feed, as ClickHouse writes them, and the `-WithNames` formats
//! start every message with a header. Protobuf packs that many length-delimited messages
//! into a Kafka message, ProtobufSingle one, and Avro writes one container file per
//! Kafka message.

use arrow::array::RecordBatch;
use arrow::json::writer::{LineDelimited, WriterBuilder};

use super::avro::AvroWriteError;
use super::protobuf::ProtoEncodeError;
use super::text_out::UnsupportedType;
use super::{avro, csv, json_compact, protobuf, raw, tsv};
use crate::catalog::kafka_settings::{Format, FormatSettings, KafkaSettings};
use crate::catalog::Column;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("format {0} cannot be written: ClickHouse reads it only")]
    ReadOnly(Format),
    #[error("{format}: {source}")]
    Unsupported {
        format: Format,
        source: UnsupportedType,
    },
    #[error("JSONEachRow: {0}")]
    Json(String),
    #[error("{format}: {source}")]
    Protobuf {
        format: Format,
        source: Box<ProtoEncodeError>,
    },
    #[error("Avro: {0}")]
    Avro(#[from] AvroWriteError),
}

/// The messages for `batch`, whose columns are `columns`, in the format of `kafka`.
pub fn encode_messages(
    columns: &[Column],
    kafka: &KafkaSettings,
    batch: &RecordBatch,
    rows_per_message: usize,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let format = kafka.format;
    match format {
        Format::Protobuf | Format::ProtobufSingle => {
            let compiled = kafka.compiled_schema.as_ref();
            return protobuf::encode(format, compiled, columns, batch, rows_per_message).map_err(
                |source| EncodeError::Protobuf {
                    format,
                    source: Box::new(source),
                },
            );
        }
        Format::Avro => return Ok(avro::encode(columns, batch, rows_per_message)?),
        _ => {}
    }
    encode_text(
        columns,
        format,
        &kafka.format_settings,
        batch,
        rows_per_message,
    )
}

/// The text formats' messages.
fn encode_text(
    columns: &[Column],
    format: Format,
    settings: &FormatSettings,
    batch: &RecordBatch,
    rows_per_message: usize,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let per_message = rows_per_message.max(1);
    if format == Format::JsonEachRow {
        let lines = json_lines(batch)?;
        return Ok(lines
            .chunks(per_message)
            .map(|rows| rows.join("\n").into_bytes())
            .collect());
    }
    if !format.can_write() {
        return Err(EncodeError::ReadOnly(format));
    }
    let unsupported = |source| EncodeError::Unsupported { format, source };
    let mut messages = Vec::with_capacity(batch.num_rows().div_ceil(per_message));
    let mut start = 0;
    while start < batch.num_rows() {
        let end = (start + per_message).min(batch.num_rows());
        let mut out = Vec::new();
        match format {
            Format::CsvWithNames => csv::write_header(&mut out, columns, settings.csv_delimiter),
            Format::TabSeparatedWithNames => tsv::write_header(&mut out, columns),
            _ => {}
        }
        for row in start..end {
            match format {
                Format::Csv | Format::CsvWithNames => {
                    csv::write_row(&mut out, batch, row, settings.csv_delimiter)
                        .map_err(unsupported)?
                }
                Format::TabSeparated | Format::TabSeparatedWithNames => {
                    tsv::write_row(&mut out, batch, row).map_err(unsupported)?
                }
                Format::JsonCompactEachRow => {
                    json_compact::write_row(&mut out, batch, row).map_err(unsupported)?
                }
                _ => raw::write_row(&mut out, batch, row, format),
            }
        }
        messages.push(out);
        start = end;
    }
    Ok(messages)
}

/// One JSON object per row, with ClickHouse's spelling of dates and times.
fn json_lines(batch: &RecordBatch) -> Result<Vec<String>, EncodeError> {
    let failed = |e: arrow::error::ArrowError| EncodeError::Json(e.to_string());
    let mut out = Vec::new();
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format("%Y-%m-%d %H:%M:%S".to_string())
        .with_date_format("%Y-%m-%d".to_string())
        .build::<_, LineDelimited>(&mut out);
    writer.write(batch).map_err(failed)?;
    writer.finish().map_err(failed)?;
    drop(writer);
    let text = String::from_utf8(out).map_err(|e| EncodeError::Json(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ChType;
    use arrow::array::{ArrayRef, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn table() -> (Vec<Column>, RecordBatch) {
        let columns = vec![
            Column {
                name: "n".into(),
                ty: ChType::Int32,
            },
            Column {
                name: "s".into(),
                ty: ChType::String,
            },
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", arrow::datatypes::DataType::Int32, false),
            Field::new("s", arrow::datatypes::DataType::Utf8, false),
        ]));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["a,b", "c\td", "e"])),
        ];
        (
            columns,
            RecordBatch::try_new(schema, arrays).expect("batch"),
        )
    }

    fn texts(format: Format, per_message: usize, settings: &FormatSettings) -> Vec<String> {
        let (columns, batch) = table();
        encode_text(&columns, format, settings, &batch, per_message)
            .expect("encodes")
            .into_iter()
            .map(|m| String::from_utf8(m).expect("utf-8"))
            .collect()
    }

    #[test]
    fn rows_per_message_and_headers() {
        let d = FormatSettings::default();
        assert_eq!(
            texts(Format::JsonEachRow, 2, &d),
            vec![
                "{\"n\":1,\"s\":\"a,b\"}\n{\"n\":2,\"s\":\"c\\td\"}",
                "{\"n\":3,\"s\":\"e\"}"
            ]
        );
        assert_eq!(
            texts(Format::CsvWithNames, 2, &d),
            vec![
                "\"n\",\"s\"\n1,\"a,b\"\n2,\"c\td\"\n",
                "\"n\",\"s\"\n3,\"e\"\n"
            ]
        );
        let semicolon = FormatSettings {
            csv_delimiter: b';',
            ..d
        };
        assert_eq!(
            texts(Format::Csv, 3, &semicolon),
            vec!["1;\"a,b\"\n2;\"c\td\"\n3;\"e\"\n"]
        );
        assert_eq!(
            texts(Format::TabSeparatedWithNames, 1, &d),
            vec!["n\ts\n1\ta,b\n", "n\ts\n2\tc\\td\n", "n\ts\n3\te\n"]
        );
        assert_eq!(
            texts(Format::JsonCompactEachRow, 5, &d),
            vec!["[1, \"a,b\"]\n[2, \"c\\td\"]\n[3, \"e\"]\n"]
        );
        let (columns, batch) = table();
        let err =
            encode_text(&columns, Format::JsonAsString, &d, &batch, 1).expect_err("read only");
        assert!(err.to_string().contains("JSONAsString"), "{err}");
    }
}
