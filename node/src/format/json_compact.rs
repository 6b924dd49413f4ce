//! JSONCompactEachRow, both directions: a row is a JSON array of the table's columns in
//! order (`["a", 1, null, [1,2]]`), rows separated by whitespace (a line each on the
//! producing side).
//!
//! Values go from serde_json's parser straight into the column builders: a JSON string is
//! the value's text (so `"9"` reads into a number column and `"2011-02-12 02:22:00"` into a
//! DateTime), a number or Bool its literal, `null` NULL, an array an Array column's items.
//! A row with fewer or more values than the table has columns is broken.

use std::fmt::{self, Write as _};

use arrow::array::RecordBatch;
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};

use super::cells::ColumnBuilder;
use super::rows::{decode_messages, RowsBuilder};
use super::text_out::{write_value, Style, UnsupportedType};
use super::{BrokenMessage, FormatError, RawMessage};
use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::Column;

#[derive(Debug, thiserror::Error)]
#[error("row {row}: {source}")]
pub struct JsonCompactError {
    row: usize,
    source: serde_json::Error,
}

pub fn decode(
    columns: &[Column],
    settings: &FormatSettings,
    messages: &[RawMessage],
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    let mut scratch = String::new();
    decode_messages(
        Format::JsonCompactEachRow,
        columns,
        settings,
        messages,
        |text, rows| decode_message(text, rows, &mut scratch),
    )
}

fn decode_message(
    text: &str,
    rows: &mut RowsBuilder,
    scratch: &mut String,
) -> Result<(), JsonCompactError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut row = 0;
    // `end` only looks past whitespace: it succeeds at the end of the message and leaves
    // the next row in place otherwise.
    while de.end().is_err() {
        row += 1;
        RowSeed {
            rows: &mut *rows,
            scratch: &mut *scratch,
        }
        .deserialize(&mut de)
        .map_err(|source| JsonCompactError { row, source })?;
        rows.end_row();
    }
    Ok(())
}

struct RowSeed<'a> {
    rows: &'a mut RowsBuilder,
    scratch: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of the row's values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let columns = self.rows.columns();
        let n = columns.len();
        for (i, column) in columns.iter_mut().enumerate() {
            let seed = CellSeed {
                column,
                scratch: &mut *self.scratch,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Err(de::Error::custom(format!(
                    "{i} values, the table has {n} columns"
                )));
            }
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!(
                "more than {n} values, the table has {n} columns"
            )));
        }
        Ok(())
    }
}

/// One value into one column.
struct CellSeed<'a> {
    column: &'a mut ColumnBuilder,
    scratch: &'a mut String,
}

impl CellSeed<'_> {
    fn literal<E: de::Error>(self, value: impl fmt::Display) -> Result<(), E> {
        self.scratch.clear();
        let _ = write!(self.scratch, "{value}");
        self.column.push_text(self.scratch).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value for column {}", self.column.name())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.column.push_text(v).map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        // A number column reads a JSON Bool as 1 or 0, as ClickHouse does
        // (`input_format_json_read_bools_as_numbers`); a String column keeps the word.
        let text = match (self.column.is_number(), v) {
            (true, true) => "1",
            (true, false) => "0",
            (false, true) => "true",
            (false, false) => "false",
        };
        self.column.push_text(text).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.literal(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.literal(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.literal(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.column.push_null().map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(items) = self.column.array_items() else {
            return Err(de::Error::custom(self.column.mismatch("a JSON array")));
        };
        while seq
            .next_element_seed(CellSeed {
                column: &mut *items,
                scratch: &mut *self.scratch,
            })?
            .is_some()
        {}
        self.column.end_array();
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(self.column.mismatch("a JSON object")))
    }
}

/// One row as a JSON array, ending with a line feed.
pub fn write_row(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    row: usize,
) -> Result<(), UnsupportedType> {
    out.push(b'[');
    for (i, column) in batch.columns().iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        write_value(out, column.as_ref(), row, Style::Json)?;
    }
    out.extend_from_slice(b"]\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ChType;
    use crate::format::test_support::{self, msg};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, UInt32Type};

    fn columns() -> Vec<Column> {
        test_support::columns(&[
            ("id", "UInt32"),
            ("name", "String"),
            ("score", "Nullable(Float64)"),
            ("tags", "Array(String)"),
        ])
    }

    #[test]
    fn rows_as_arrays_several_per_message() {
        let messages = [
            msg(
                0,
                "[1, \"a\\\"b\", 1.5, [\"x\", \"y\"]]\n[\"2\", 7, null, []]\n",
            ),
            msg(1, "  [3,\"c\",-2,[]]  "),
        ];
        let (batch, rows, broken) =
            decode(&columns(), &FormatSettings::default(), &messages).expect("decodes");
        assert!(broken.is_empty(), "{broken:?}");
        assert_eq!(rows, vec![2, 1]);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec(),
            vec![1, 2, 3]
        );
        let names: Vec<&str> = batch
            .column(1)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(names, vec!["a\"b", "7", "c"]);
        let scores = batch.column(2).as_primitive::<Float64Type>();
        assert_eq!(
            (scores.value(0), scores.is_null(1), scores.value(2)),
            (1.5, true, -2.0)
        );
        let mut out = Vec::new();
        write_row(&mut out, &batch, 0).expect("writes");
        write_row(&mut out, &batch, 1).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "[1, \"a\\\"b\", 1.5, [\"x\",\"y\"]]\n[2, \"7\", null, []]\n"
        );
    }

    #[test]
    fn wrong_counts_and_types_break_only_their_message() {
        let messages = [
            msg(0, "[1,\"a\",null,[]]"),
            msg(1, "[2,\"b\",null]"),
            msg(2, "[3,\"c\",null,[],4]"),
            msg(3, "[4,\"d\",null,[]]\n[-5,\"e\",null,[]]"),
            msg(4, "[6,\"f\",null,[\"half\""),
            msg(5, "[7,{\"o\":1},null,[]]"),
            msg(6, "[8,\"g\",null,[\"ok\"]]"),
        ];
        let (batch, rows, broken) =
            decode(&columns(), &FormatSettings::default(), &messages).expect("decodes");
        assert_eq!(rows, vec![1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec(),
            vec![1, 8]
        );
        let tags = batch.column(3).as_list::<i32>();
        assert_eq!(tags.value(1).as_string::<i32>().value(0), "ok");
        let errors: Vec<&str> = broken.iter().map(|b| b.error.as_str()).collect();
        assert!(
            errors[0].contains("row 1: 3 values, the table has 4 columns"),
            "{errors:?}"
        );
        assert!(errors[1].contains("more than 4 values"), "{errors:?}");
        assert!(
            errors[2].contains("row 2: column id: cannot parse '-5'"),
            "{errors:?}"
        );
        assert!(errors[4].contains("JSON object"), "{errors:?}");
    }

    #[test]
    fn a_half_read_nested_array_leaves_nothing_behind() {
        let columns: Vec<Column> = [("tags", "Array(Array(UInt8))"), ("n", "UInt8")]
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                ty: ChType::parse(t).expect("type"),
            })
            .collect();
        let messages = [
            msg(0, "[[[1,2],[3,\"x\"]], 1]"),
            msg(1, "[[[4]], true]"),
            msg(2, "[[[5],[9,{}]], 0]"),
            msg(3, "[[], false]"),
        ];
        let (batch, rows, broken) =
            decode(&columns, &FormatSettings::default(), &messages).expect("decodes");
        assert_eq!(rows, vec![0, 1, 0, 1]);
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(broken[0].error.contains("'x'"), "{}", broken[0].error);
        let tags = batch.column(0).as_list::<i32>();
        let first = tags.value(0);
        let first = first.as_list::<i32>();
        assert_eq!(first.len(), 1);
        let inner = first.value(0);
        assert_eq!(
            inner
                .as_primitive::<arrow::datatypes::UInt8Type>()
                .values()
                .to_vec(),
            vec![4]
        );
        assert_eq!(tags.value(1).len(), 0);
        // A JSON Bool reads into a number column as 1 or 0.
        let n = batch
            .column(1)
            .as_primitive::<arrow::datatypes::UInt8Type>();
        assert_eq!(n.values().to_vec(), vec![1, 0]);
    }
}
