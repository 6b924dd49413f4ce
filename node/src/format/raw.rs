//! The formats that fill a table's single String column with text as it came: RawBLOB
//! (the whole message, one row), LineAsString (one row per line), and JSONAsString (one
//! row per JSON object, its text unchanged). The catalog makes sure such a table has
//! exactly one String column.
//!
//! Producing: RawBLOB writes the value's bytes with nothing around them (rows packed into
//! one message by `kafka_max_rows_per_message` run together, as in ClickHouse);
//! LineAsString ends each value with a line feed. JSONAsString is read only.

use arrow::array::{Array, AsArray, RecordBatch};
use serde::de::IgnoredAny;

use super::cells::CellError;
use super::rows::{decode_messages, RowsBuilder};
use super::{BrokenMessage, FormatError, RawMessage};
use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::Column;

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("{0}")]
    Cell(#[from] CellError),
    #[error("object {object}: {source}")]
    Json {
        object: usize,
        source: serde_json::Error,
    },
    #[error("object {object}: expected a JSON object, found '{found}'")]
    NotAnObject { object: usize, found: char },
    #[error("the table has {0} columns; this format fills exactly one String column")]
    Columns(usize),
}

pub fn decode(
    format: Format,
    columns: &[Column],
    settings: &FormatSettings,
    messages: &[RawMessage],
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    decode_messages(format, columns, settings, messages, |text, rows| {
        decode_message(format, text, rows)
    })
}

fn decode_message(format: Format, text: &str, rows: &mut RowsBuilder) -> Result<(), RawError> {
    let n = rows.columns().len();
    if n != 1 {
        return Err(RawError::Columns(n));
    }
    match format {
        Format::LineAsString => {
            for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
                rows.columns()[0].push_text(line)?;
                rows.end_row();
            }
        }
        Format::JsonAsString => {
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<IgnoredAny>();
            let mut object = 0;
            loop {
                let start = stream.byte_offset();
                let begin = start + (text[start..].len() - text[start..].trim_start().len());
                object += 1;
                match stream.next() {
                    None => break,
                    Some(Err(source)) => return Err(RawError::Json { object, source }),
                    Some(Ok(IgnoredAny)) => {}
                }
                let value = &text[begin..stream.byte_offset()];
                if !value.starts_with('{') {
                    let found = value.chars().next().unwrap_or(' ');
                    return Err(RawError::NotAnObject { object, found });
                }
                rows.columns()[0].push_text(value)?;
                rows.end_row();
            }
        }
        // RawBLOB, and any other format routed here: the message is the value.
        _ => {
            rows.columns()[0].push_text(text)?;
            rows.end_row();
        }
    }
    Ok(())
}

/// One row of a one-String-column table: RawBLOB bare, LineAsString with a line feed.
/// NULL is written as nothing.
pub fn write_row(out: &mut Vec<u8>, batch: &RecordBatch, row: usize, format: Format) {
    if let Some(column) = batch.columns().first() {
        if let Some(strings) = column.as_string_opt::<i32>() {
            if !strings.is_null(row) {
                out.extend_from_slice(strings.value(row).as_bytes());
            }
        }
    }
    if format == Format::LineAsString {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ChType;
    use crate::format::test_support::msg;

    fn column() -> Vec<Column> {
        vec![Column {
            name: "raw".into(),
            ty: ChType::String,
        }]
    }

    fn decoded(
        format: Format,
        messages: &[RawMessage],
    ) -> (Vec<String>, Vec<usize>, Vec<BrokenMessage>) {
        let (batch, rows, broken) =
            decode(format, &column(), &FormatSettings::default(), messages).expect("decodes");
        let values = batch
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect();
        (values, rows, broken)
    }

    #[test]
    fn raw_blob_keeps_the_message_as_is() {
        let messages = [
            msg(0, b"a\tb\\n\n\"c\"\n"),
            msg(1, b""),
            msg(2, b"\xc3\x28"),
        ];
        let (values, rows, broken) = decoded(Format::RawBlob, &messages);
        assert_eq!(values, vec!["a\tb\\n\n\"c\"\n"]);
        assert_eq!(rows, vec![1, 0, 0]);
        assert_eq!(broken.len(), 1);
        assert!(
            broken[0].error.starts_with("RawBLOB: not valid UTF-8"),
            "{}",
            broken[0].error
        );
    }

    #[test]
    fn line_as_string_splits_lines() {
        let messages = [msg(0, b"one\n\ntwo \\t\n"), msg(1, b"three")];
        let (values, rows, _) = decoded(Format::LineAsString, &messages);
        assert_eq!(values, vec!["one", "", "two \\t", "three"]);
        assert_eq!(rows, vec![3, 1]);
    }

    #[test]
    fn json_as_string_keeps_each_object_text() {
        let messages = [
            msg(0, b"{\"a\": [1, {\"b\": null}]}\n  {\"c\":\"d\"}\n"),
            msg(1, b"{\"a\": 1} [2]"),
            msg(2, b"{\"a\": "),
        ];
        let (values, rows, broken) = decoded(Format::JsonAsString, &messages);
        assert_eq!(values, vec!["{\"a\": [1, {\"b\": null}]}", "{\"c\":\"d\"}"]);
        assert_eq!(rows, vec![2, 0, 0]);
        assert!(
            broken[0].error.contains("object 2: expected a JSON object"),
            "{}",
            broken[0].error
        );
        assert!(broken[1].error.contains("object 1"), "{}", broken[1].error);
    }

    #[test]
    fn writes_raw_and_lines() {
        let (batch, _, _) = decode(
            Format::LineAsString,
            &column(),
            &FormatSettings::default(),
            &[msg(0, b"x\ny")],
        )
        .expect("decodes");
        let mut raw = Vec::new();
        let mut lines = Vec::new();
        for row in 0..2 {
            write_row(&mut raw, &batch, row, Format::RawBlob);
            write_row(&mut lines, &batch, row, Format::LineAsString);
        }
        assert_eq!(raw, b"xy");
        assert_eq!(lines, b"x\ny\n");
    }
}
