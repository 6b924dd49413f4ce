//! Arrow values to ClickHouse's text, for the producing side of the text formats.
//!
//! One cell at a time, into a byte buffer: TabSeparated escaping (`\t`, `\n`, `\\`, `\'`,
//! ...), CSV quoting (strings, dates and arrays in double quotes, `""` inside), JSON values,
//! and the single-quoted form array items take (`['a','b']`). NULL is `\N` in TSV and CSV,
//! `null` in JSON, `NULL` inside an array.

use std::io::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use chrono::{DateTime, Days, NaiveDate};

/// How a cell is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Tsv,
    Csv,
    Json,
    /// An array item: strings, dates and times in single quotes, escaped as in TSV.
    Quoted,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("values of Arrow type {0} cannot be written as text")]
pub struct UnsupportedType(pub String);

/// Appends the value at `row` of `array`.
pub fn write_value(
    out: &mut Vec<u8>,
    array: &dyn Array,
    row: usize,
    style: Style,
) -> Result<(), UnsupportedType> {
    if array.is_null(row) {
        out.extend_from_slice(match style {
            Style::Json => b"null",
            Style::Quoted => b"NULL",
            Style::Tsv | Style::Csv => b"\\N",
        });
        return Ok(());
    }
    // Writing into a Vec cannot fail.
    macro_rules! display {
        ($t:ty) => {{
            let _ = write!(out, "{}", array.as_primitive::<$t>().value(row));
        }};
    }
    match array.data_type() {
        DataType::Int8 => display!(Int8Type),
        DataType::Int16 => display!(Int16Type),
        DataType::Int32 => display!(Int32Type),
        DataType::Int64 => display!(Int64Type),
        DataType::UInt8 => display!(UInt8Type),
        DataType::UInt16 => display!(UInt16Type),
        DataType::UInt32 => display!(UInt32Type),
        DataType::UInt64 => display!(UInt64Type),
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            write_float(
                out,
                v.is_finite(),
                v.is_nan(),
                v.is_sign_negative(),
                style,
                v,
            );
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            write_float(
                out,
                v.is_finite(),
                v.is_nan(),
                v.is_sign_negative(),
                style,
                v,
            );
        }
        DataType::Boolean => {
            let v = array.as_boolean().value(row);
            out.extend_from_slice(if v { b"true" } else { b"false" });
        }
        DataType::Utf8 => write_string(out, array.as_string::<i32>().value(row), style),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date = date_text(days).ok_or_else(|| UnsupportedType(format!("Date {days}")))?;
            write_temporal(out, &date, style);
        }
        DataType::Timestamp(TimeUnit::Second, _) => {
            let seconds = array.as_primitive::<TimestampSecondType>().value(row);
            let text = DateTime::from_timestamp(seconds, 0)
                .ok_or_else(|| UnsupportedType(format!("DateTime {seconds}")))?
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            write_temporal(out, &text, style);
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            if style == Style::Csv {
                // ClickHouse writes the array as in TSV, then quotes that text as CSV.
                let mut text = Vec::new();
                write_items(&mut text, items.as_ref(), Style::Quoted)?;
                write_csv_quoted(out, &String::from_utf8_lossy(&text));
            } else {
                let item_style = if style == Style::Json {
                    Style::Json
                } else {
                    Style::Quoted
                };
                write_items(out, items.as_ref(), item_style)?;
            }
        }
        other => return Err(UnsupportedType(other.to_string())),
    }
    Ok(())
}

fn write_items(out: &mut Vec<u8>, items: &dyn Array, style: Style) -> Result<(), UnsupportedType> {
    out.push(b'[');
    for i in 0..items.len() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, items, i, style)?;
    }
    out.push(b']');
    Ok(())
}

/// `inf`, `-inf` and `nan` as ClickHouse spells them; JSON has no word for them: `null`.
fn write_float(
    out: &mut Vec<u8>,
    finite: bool,
    nan: bool,
    negative: bool,
    style: Style,
    v: impl std::fmt::Display,
) {
    if finite {
        let _ = write!(out, "{v}");
    } else if style == Style::Json {
        out.extend_from_slice(b"null");
    } else if nan {
        out.extend_from_slice(b"nan");
    } else if negative {
        out.extend_from_slice(b"-inf");
    } else {
        out.extend_from_slice(b"inf");
    }
}

fn date_text(days: i32) -> Option<String> {
    let date = if days >= 0 {
        NaiveDate::default().checked_add_days(Days::new(u64::from(days.unsigned_abs())))
    } else {
        NaiveDate::default().checked_sub_days(Days::new(u64::from(days.unsigned_abs())))
    }?;
    Some(date.format("%Y-%m-%d").to_string())
}

/// Dates and times: bare in TSV, quoted elsewhere.
fn write_temporal(out: &mut Vec<u8>, text: &str, style: Style) {
    match style {
        Style::Tsv => out.extend_from_slice(text.as_bytes()),
        Style::Csv | Style::Json => {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        Style::Quoted => {
            out.push(b'\'');
            out.extend_from_slice(text.as_bytes());
            out.push(b'\'');
        }
    }
}

/// One row of a delimited text format (CSV, TSV), ending with a line feed.
pub fn write_delimited_row(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    row: usize,
    delimiter: u8,
    style: Style,
) -> Result<(), UnsupportedType> {
    for (i, column) in batch.columns().iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        write_value(out, column.as_ref(), row, style)?;
    }
    out.push(b'\n');
    Ok(())
}

pub fn write_string(out: &mut Vec<u8>, s: &str, style: Style) {
    match style {
        Style::Tsv => write_escaped(out, s),
        Style::Csv => write_csv_quoted(out, s),
        Style::Json => {
            // serde_json writes a str as an escaped JSON string; a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Style::Quoted => {
            out.push(b'\'');
            write_escaped(out, s);
            out.push(b'\'');
        }
    }
}

/// ClickHouse's escaping in TabSeparated and in quoted strings.
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\'' => b"\\'",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\0' => b"\\0",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                out.push(b);
                continue;
            }
        };
        out.extend_from_slice(escaped);
    }
}

/// A CSV field in double quotes, a quote inside doubled.
pub fn write_csv_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, Date32Array, Float64Array, Int32Array, ListArray, StringArray,
        TimestampSecondArray,
    };
    use arrow::datatypes::Int32Type as I32;
    use std::sync::Arc;

    fn text(array: &ArrayRef, style: Style) -> Vec<String> {
        (0..array.len())
            .map(|row| {
                let mut out = Vec::new();
                write_value(&mut out, array.as_ref(), row, style).expect("writable");
                String::from_utf8(out).expect("utf-8")
            })
            .collect()
    }

    #[test]
    fn strings_in_each_style() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("it's a\ttab\nline \\ \"q\""),
            None,
        ]));
        assert_eq!(
            text(&a, Style::Tsv),
            vec!["it\\'s a\\ttab\\nline \\\\ \"q\"", "\\N"]
        );
        assert_eq!(
            text(&a, Style::Csv),
            vec!["\"it's a\ttab\nline \\ \"\"q\"\"\"", "\\N"]
        );
        assert_eq!(
            text(&a, Style::Json),
            vec!["\"it's a\\ttab\\nline \\\\ \\\"q\\\"\"", "null"]
        );
    }

    #[test]
    fn numbers_dates_and_arrays() {
        let f: ArrayRef = Arc::new(Float64Array::from(vec![
            1.5,
            f64::INFINITY,
            f64::NAN,
            -0.25,
        ]));
        assert_eq!(text(&f, Style::Tsv), vec!["1.5", "inf", "nan", "-0.25"]);
        assert_eq!(text(&f, Style::Json), vec!["1.5", "null", "null", "-0.25"]);
        let d: ArrayRef = Arc::new(Date32Array::from(vec![19_782, -1]));
        assert_eq!(text(&d, Style::Tsv), vec!["2024-02-29", "1969-12-31"]);
        assert_eq!(
            text(&d, Style::Csv),
            vec!["\"2024-02-29\"", "\"1969-12-31\""]
        );
        let t: ArrayRef = Arc::new(TimestampSecondArray::from(vec![1_297_477_320]));
        assert_eq!(text(&t, Style::Json), vec!["\"2011-02-12 02:22:00\""]);
        let i: ArrayRef = Arc::new(Int32Array::from(vec![-7]));
        assert_eq!(text(&i, Style::Csv), vec!["-7"]);
        let l: ArrayRef = Arc::new(ListArray::from_iter_primitive::<I32, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            Some(vec![]),
        ]));
        assert_eq!(text(&l, Style::Tsv), vec!["[1,NULL,3]", "[]"]);
        assert_eq!(text(&l, Style::Json), vec!["[1,null,3]", "[]"]);
        let s = StringArray::from(vec!["a'b", "c,d"]);
        let offsets = arrow::buffer::OffsetBuffer::new(vec![0, 2].into());
        let field = Arc::new(arrow::datatypes::Field::new("item", DataType::Utf8, false));
        let l: ArrayRef =
            Arc::new(ListArray::try_new(field, offsets, Arc::new(s), None).expect("list"));
        assert_eq!(text(&l, Style::Tsv), vec!["['a\\'b','c,d']"]);
        assert_eq!(text(&l, Style::Csv), vec!["\"['a\\'b','c,d']\""]);
        assert_eq!(text(&l, Style::Json), vec!["[\"a'b\",\"c,d\"]"]);
    }
}
