//! The rows of a block in the text formats: a builder per column, and the per-message loop
//! that keeps a broken message to its own rows.
//!
//! A message may hold several rows. When one of them fails, every row the message added is
//! dropped (the row being read is padded first, so the columns stay aligned) and the
//! message counts 0 rows: `rows_per_message` then matches the batch row for row, which
//! the virtual columns (`_offset`, `_key`, ...) rely on.

use std::fmt::Display;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema};

use super::cells::ColumnBuilder;
use super::{BrokenMessage, FormatError, RawMessage};
use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::Column;

/// One builder per declared column, and the rows to drop.
pub struct RowsBuilder {
    columns: Vec<ColumnBuilder>,
    rows: usize,
    dropped: Vec<Range<usize>>,
}

impl RowsBuilder {
    pub fn new(columns: &[Column], settings: &FormatSettings, rows_hint: usize) -> Self {
        RowsBuilder {
            columns: columns
                .iter()
                .map(|c| ColumnBuilder::new(&c.name, &c.ty, settings, rows_hint))
                .collect(),
            rows: 0,
            dropped: Vec::new(),
        }
    }

    pub fn columns(&mut self) -> &mut [ColumnBuilder] {
        &mut self.columns
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Ends a row every column has a value for.
    pub fn end_row(&mut self) {
        self.rows += 1;
        debug_assert!(self.columns.iter().all(|c| c.len() == self.rows));
    }

    /// Drops the rows from `first` on, and the row under way if any column began it.
    fn drop_from(&mut self, first: usize) {
        // An array read half way holds items but no row yet: closing it makes it a row
        // of its own, dropped with the others, instead of items the next row would own.
        for column in &mut self.columns {
            column.close_open_row();
        }
        let end = self
            .columns
            .iter()
            .map(ColumnBuilder::len)
            .max()
            .unwrap_or(self.rows)
            .max(self.rows);
        for column in &mut self.columns {
            while column.len() < end {
                column.append_null();
            }
        }
        self.rows = end;
        if first < end {
            self.dropped.push(first..end);
        }
    }

    /// The batch of the declared columns, with their final types and nullability.
    pub fn finish(mut self, declared: &[Column]) -> Result<RecordBatch, FormatError> {
        let arrays = self
            .columns
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        // Padded rows may hold NULL in non-Nullable columns until they are dropped.
        let loose = Arc::new(Schema::new(
            declared
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow_type(), true))
                .collect::<Vec<_>>(),
        ));
        let mut batch = RecordBatch::try_new(loose, arrays)?;
        if !self.dropped.is_empty() {
            let mut keep = vec![true; self.rows];
            for range in &self.dropped {
                keep[range.clone()].fill(false);
            }
            batch = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        }
        let schema = Arc::new(Schema::new(
            declared
                .iter()
                .map(|c| c.ty.arrow_field(&c.name))
                .collect::<Vec<_>>(),
        ));
        Ok(RecordBatch::try_new(schema, batch.columns().to_vec())?)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header names column '{0}' twice")]
    Repeated(String),
    #[error("header names column '{0}', which the table does not have (input_format_skip_unknown_fields = 0)")]
    Unknown(String),
}

/// A `-WithNames` header: where each field of a row goes (`None`: skipped), and the
/// columns it leaves out, which take their defaults.
pub struct Header {
    pub targets: Vec<Option<usize>>,
    pub absent: Vec<usize>,
}

impl Header {
    /// Fields in column order: the formats without names.
    pub fn identity(columns: usize) -> Header {
        Header {
            targets: (0..columns).map(Some).collect(),
            absent: Vec::new(),
        }
    }

    /// Maps header names to columns by name, as ClickHouse's
    /// `input_format_with_names_use_header`.
    pub fn from_names<S: AsRef<str>>(
        names: impl IntoIterator<Item = S>,
        columns: &[ColumnBuilder],
        skip_unknown_fields: bool,
    ) -> Result<Header, HeaderError> {
        let mut targets: Vec<Option<usize>> = Vec::new();
        for name in names {
            let name = name.as_ref();
            let target = columns.iter().position(|c| c.name() == name);
            match target {
                Some(i) if targets.contains(&Some(i)) => {
                    return Err(HeaderError::Repeated(name.to_string()))
                }
                None if !skip_unknown_fields => return Err(HeaderError::Unknown(name.to_string())),
                _ => targets.push(target),
            }
        }
        let absent = (0..columns.len())
            .filter(|i| !targets.contains(&Some(*i)))
            .collect();
        Ok(Header { targets, absent })
    }
}

/// Decodes every message with `decode_message`, which reads one message's text into the
/// rows; a message that is not UTF-8 or fails costs its own rows and is reported broken.
/// An empty message holds no rows.
pub fn decode_messages<E: Display>(
    format: Format,
    columns: &[Column],
    settings: &FormatSettings,
    messages: &[RawMessage],
    mut decode_message: impl FnMut(&str, &mut RowsBuilder) -> Result<(), E>,
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    decode_binary_messages(format, columns, settings, messages, |payload, rows| {
        match std::str::from_utf8(payload) {
            Ok(text) => decode_message(text, rows).map_err(|e| e.to_string()),
            Err(e) => Err(format!(
                "not valid UTF-8 at byte {} (String columns hold UTF-8 text)",
                e.valid_up_to()
            )),
        }
    })
}

/// [`decode_messages`] for the binary formats: `decode_message` reads a message's bytes.
/// The same accounting: a failing message costs its own rows, an empty one holds none
/// (as ClickHouse skips empty Kafka messages in every format).
pub fn decode_binary_messages<E: Display>(
    format: Format,
    columns: &[Column],
    settings: &FormatSettings,
    messages: &[RawMessage],
    mut decode_message: impl FnMut(&[u8], &mut RowsBuilder) -> Result<(), E>,
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    let mut rows = RowsBuilder::new(columns, settings, messages.len());
    let mut rows_per_message = Vec::with_capacity(messages.len());
    let mut broken = Vec::new();
    for m in messages {
        let payload = m.payload.as_deref().unwrap_or_default();
        let first = rows.rows();
        let result = if payload.is_empty() {
            Ok(())
        } else {
            decode_message(payload, &mut rows).map_err(|e| e.to_string())
        };
        match result {
            Ok(()) => rows_per_message.push(rows.rows() - first),
            Err(error) => {
                rows.drop_from(first);
                rows_per_message.push(0);
                broken.push(BrokenMessage {
                    offset: m.offset,
                    error: format!("{format}: {error}"),
                });
            }
        }
    }
    Ok((rows.finish(columns)?, rows_per_message, broken))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ChType;
    use arrow::array::AsArray;
    use arrow::datatypes::UInt32Type;
    use bytes::Bytes;

    #[test]
    fn a_failing_message_drops_its_rows_and_its_half_row() {
        let columns: Vec<Column> = [("a", "UInt32"), ("b", "String")]
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                ty: ChType::parse(t).expect("type"),
            })
            .collect();
        let message = |offset: i64, payload: &[u8]| RawMessage {
            payload: Some(Bytes::copy_from_slice(payload)),
            key: None,
            offset,
            timestamp_ms: None,
            headers: Vec::new(),
        };
        let messages = [
            message(1, b"1 x;2 y"),
            message(2, b"3 z;bad w"),
            message(3, b""),
            message(4, b"\xff"),
            message(5, b"4 v"),
        ];
        let (batch, per_message, broken) = decode_messages(
            Format::TabSeparated,
            &columns,
            &FormatSettings::default(),
            &messages,
            |text, rows| {
                for row in text.split(';') {
                    let (a, b) = row.split_once(' ').ok_or("no space")?;
                    let [ca, cb] = rows.columns() else {
                        return Err("two columns");
                    };
                    ca.push_text(a).map_err(|_| "bad a")?;
                    cb.push_text(b).map_err(|_| "bad b")?;
                    rows.end_row();
                }
                Ok(())
            },
        )
        .expect("decodes");
        assert_eq!(per_message, vec![2, 0, 0, 0, 1]);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec(),
            vec![1, 2, 4]
        );
        let b: Vec<&str> = batch
            .column(1)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(b, vec!["x", "y", "v"]);
        assert!(!batch.schema().field(0).is_nullable());
        let offsets: Vec<i64> = broken.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, vec![2, 4]);
        assert_eq!(broken[0].error, "TabSeparated: bad a");
        assert!(broken[1].error.contains("UTF-8"), "{}", broken[1].error);
    }
}
