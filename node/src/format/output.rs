//! Query results as text in ClickHouse's output formats, for `SELECT … FORMAT <name>`, the
//! SQL call's `format` and `sluice sql --format`: TabSeparated (escaped) and its `WithNames`
//! and `WithNamesAndTypes` forms, CSV and CSVWithNames, JSONEachRow, JSON, JSONCompact,
//! Vertical, Pretty, PrettyCompact and Null.
//!
//! Values are written as ClickHouse writes them: the cells of the Kafka formats
//! (`text_out`), 64-bit integers quoted in the JSON formats
//! (`output_format_json_quote_64bit_integers = 1`, ClickHouse's default), NULL as `\N` in
//! TSV and CSV, `null` in JSON and `ᴺᵁᴸᴸ` in the formats for people. Types the Kafka side
//! never writes (decimals, other time units, views of strings) are written as their text.

use std::io::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::text_out::{write_csv_quoted, write_escaped, write_string, write_value, Style};

/// How NULL looks in the formats for people.
const NULL_SHOWN: &str = "ᴺᵁᴸᴸ";
const DATETIME: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    TabSeparated,
    TabSeparatedWithNames,
    TabSeparatedWithNamesAndTypes,
    Csv,
    CsvWithNames,
    JsonEachRow,
    Json,
    JsonCompact,
    Vertical,
    Pretty,
    PrettyCompact,
    Null,
}

/// ClickHouse's names and aliases, lower-cased (format names are case-insensitive there).
const NAMES: &[(&str, OutputFormat)] = &[
    ("tabseparated", OutputFormat::TabSeparated),
    ("tsv", OutputFormat::TabSeparated),
    ("tabseparatedwithnames", OutputFormat::TabSeparatedWithNames),
    ("tsvwithnames", OutputFormat::TabSeparatedWithNames),
    (
        "tabseparatedwithnamesandtypes",
        OutputFormat::TabSeparatedWithNamesAndTypes,
    ),
    (
        "tsvwithnamesandtypes",
        OutputFormat::TabSeparatedWithNamesAndTypes,
    ),
    ("csv", OutputFormat::Csv),
    ("csvwithnames", OutputFormat::CsvWithNames),
    ("jsoneachrow", OutputFormat::JsonEachRow),
    ("jsonlines", OutputFormat::JsonEachRow),
    ("ndjson", OutputFormat::JsonEachRow),
    ("json", OutputFormat::Json),
    ("jsoncompact", OutputFormat::JsonCompact),
    ("vertical", OutputFormat::Vertical),
    ("pretty", OutputFormat::Pretty),
    ("prettycompact", OutputFormat::PrettyCompact),
    ("null", OutputFormat::Null),
];

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("unknown output format {0} (known: TabSeparated, TSVWithNames, TSVWithNamesAndTypes, CSV, CSVWithNames, JSONEachRow, JSON, JSONCompact, Vertical, Pretty, PrettyCompact, Null)")]
    UnknownFormat(String),
    #[error("writing {format:?}: {source}")]
    Arrow {
        format: OutputFormat,
        #[source]
        source: ArrowError,
    },
}

impl OutputFormat {
    pub fn from_name(name: &str) -> Result<OutputFormat, OutputError> {
        let lower = name.trim().to_ascii_lowercase();
        NAMES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, f)| *f)
            .ok_or_else(|| OutputError::UnknownFormat(name.to_string()))
    }
}

/// A result's columns: name and ClickHouse type name, as the client shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: String,
    pub type_name: String,
}

/// What a query cost, for the JSON format's `statistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Statistics {
    pub elapsed_seconds: f64,
}

/// A ClickHouse-style name for an Arrow type.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Int8 => "Int8".into(),
        DataType::Int16 => "Int16".into(),
        DataType::Int32 => "Int32".into(),
        DataType::Int64 => "Int64".into(),
        DataType::UInt8 => "UInt8".into(),
        DataType::UInt16 => "UInt16".into(),
        DataType::UInt32 => "UInt32".into(),
        DataType::UInt64 => "UInt64".into(),
        DataType::Float32 => "Float32".into(),
        DataType::Float64 => "Float64".into(),
        DataType::Boolean => "Bool".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "String".into(),
        DataType::Date32 => "Date".into(),
        DataType::Timestamp(TimeUnit::Second, _) => "DateTime".into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "DateTime64(3)".into(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => "DateTime64(6)".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => "DateTime64(9)".into(),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("Array({})", type_name(f.data_type()))
        }
        DataType::Dictionary(_, value) => format!("LowCardinality({})", type_name(value)),
        other => other.to_string(),
    }
}

/// Writes `batches` in `format`. `columns` names them (the batches' own field names
/// may differ in case or be generated).
pub fn render(
    format: OutputFormat,
    columns: &[OutputColumn],
    batches: &[RecordBatch],
    statistics: Statistics,
) -> Result<Vec<u8>, OutputError> {
    let failed = |source| OutputError::Arrow { format, source };
    let json = matches!(
        format,
        OutputFormat::JsonEachRow | OutputFormat::Json | OutputFormat::JsonCompact
    );
    let mut normalized = Vec::with_capacity(batches.len());
    for b in batches {
        normalized.push(
            b.columns()
                .iter()
                .map(|c| writable(c, json))
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?,
        );
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut out = Vec::new();
    let each_row = |f: &mut RowWriter| {
        for (batch, cols) in batches.iter().zip(&normalized) {
            for row in 0..batch.num_rows() {
                f(cols, row)?;
            }
        }
        Ok::<(), ArrowError>(())
    };
    match format {
        OutputFormat::Null => {}
        OutputFormat::TabSeparated
        | OutputFormat::TabSeparatedWithNames
        | OutputFormat::TabSeparatedWithNamesAndTypes => {
            if format != OutputFormat::TabSeparated {
                delimited_line(&mut out, columns.iter().map(|c| c.name.as_str()), b'\t');
            }
            if format == OutputFormat::TabSeparatedWithNamesAndTypes {
                delimited_line(
                    &mut out,
                    columns.iter().map(|c| c.type_name.as_str()),
                    b'\t',
                );
            }
            each_row(&mut |cols, row| delimited_row(&mut out, cols, row, b'\t', Style::Tsv))
                .map_err(failed)?;
        }
        OutputFormat::Csv | OutputFormat::CsvWithNames => {
            if format == OutputFormat::CsvWithNames {
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_csv_quoted(&mut out, &c.name);
                }
                out.push(b'\n');
            }
            each_row(&mut |cols, row| delimited_row(&mut out, cols, row, b',', Style::Csv))
                .map_err(failed)?;
        }
        OutputFormat::JsonEachRow => {
            each_row(&mut |cols, row| {
                json_object(&mut out, columns, cols, row, None)?;
                out.push(b'\n');
                Ok(())
            })
            .map_err(failed)?;
        }
        OutputFormat::Json | OutputFormat::JsonCompact => {
            out.extend_from_slice(b"{\n\t\"meta\":\n\t[\n");
            for (i, c) in columns.iter().enumerate() {
                out.extend_from_slice(b"\t\t{\n\t\t\t\"name\": ");
                write_string(&mut out, &c.name, Style::Json);
                out.extend_from_slice(b",\n\t\t\t\"type\": ");
                write_string(&mut out, &c.type_name, Style::Json);
                out.extend_from_slice(b"\n\t\t}");
                out.extend_from_slice(if i + 1 < columns.len() { b",\n" } else { b"\n" });
            }
            out.extend_from_slice(b"\t],\n\n\t\"data\":\n\t[\n");
            let mut written = 0usize;
            each_row(&mut |cols, row| {
                out.extend_from_slice(b"\t\t");
                if format == OutputFormat::Json {
                    json_object(&mut out, columns, cols, row, Some("\t\t"))?;
                } else {
                    out.push(b'[');
                    for (i, col) in cols.iter().enumerate() {
                        if i > 0 {
                            out.extend_from_slice(b", ");
                        }
                        cell(&mut out, col.as_ref(), row, Style::Json)?;
                    }
                    out.push(b']');
                }
                written += 1;
                out.extend_from_slice(if written < rows { b",\n" } else { b"\n" });
                Ok(())
            })
            .map_err(failed)?;
            let _ = write!(
                out,
                "\t],\n\n\t\"rows\": {rows},\n\n\t\"statistics\":\n\t{{\n\t\t\"elapsed\": {}\n\t}}\n}}\n",
                statistics.elapsed_seconds
            );
        }
        OutputFormat::Vertical => {
            let width = columns
                .iter()
                .map(|c| c.name.chars().count())
                .max()
                .unwrap_or(0);
            let mut n = 0usize;
            each_row(&mut |cols, row| {
                n += 1;
                if n > 1 {
                    out.push(b'\n');
                }
                let title = format!("Row {n}:");
                let _ = writeln!(out, "{title}\n{}", "─".repeat(title.chars().count()));
                for (c, col) in columns.iter().zip(cols) {
                    let pad = width - c.name.chars().count();
                    let _ = writeln!(
                        out,
                        "{}:{} {}",
                        c.name,
                        " ".repeat(pad),
                        shown(col.as_ref(), row)?
                    );
                }
                Ok(())
            })
            .map_err(failed)?;
        }
        OutputFormat::Pretty | OutputFormat::PrettyCompact => {
            let mut cells: Vec<Vec<String>> = Vec::with_capacity(rows);
            each_row(&mut |cols, row| {
                cells.push(
                    cols.iter()
                        .map(|c| shown(c.as_ref(), row))
                        .collect::<Result<_, _>>()?,
                );
                Ok(())
            })
            .map_err(failed)?;
            let right: Vec<bool> = batches
                .first()
                .map(|b| {
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| f.data_type().is_numeric())
                        .collect()
                })
                .unwrap_or_default();
            pretty(&mut out, format, columns, &cells, &right);
        }
    }
    Ok(out)
}

/// Writes one row, given the row's columns and its index in them.
type RowWriter<'a> = dyn FnMut(&[ArrayRef], usize) -> Result<(), ArrowError> + 'a;

/// The column as the writers take it: strings as `Utf8`, dictionaries as their values,
/// types the Kafka writers do not know as their text, and for JSON 64-bit integers as
/// strings (quoted, as ClickHouse writes them).
fn writable(array: &ArrayRef, json: bool) -> Result<ArrayRef, ArrowError> {
    let dt = array.data_type();
    Ok(match dt {
        DataType::Int64 | DataType::UInt64 if json => cast(array, &DataType::Utf8)?,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Boolean
        | DataType::Utf8
        | DataType::Date32
        | DataType::Timestamp(TimeUnit::Second, None) => array.clone(),
        DataType::LargeUtf8 | DataType::Utf8View => cast(array, &DataType::Utf8)?,
        DataType::Dictionary(_, value) => writable(&cast(array, value)?, json)?,
        DataType::List(field) => {
            let list = array.as_list::<i32>();
            let items = writable(list.values(), json)?;
            let item_field = Arc::new(Field::new(
                field.name(),
                items.data_type().clone(),
                field.is_nullable(),
            ));
            Arc::new(arrow::array::ListArray::try_new(
                item_field,
                list.offsets().clone(),
                items,
                list.nulls().cloned(),
            )?)
        }
        _ => as_text(array.as_ref())?,
    })
}

/// Any column as the text arrow's display gives it, in ClickHouse's date and time forms.
fn as_text(array: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_datetime_format(Some(DATETIME))
        .with_date_format(Some("%Y-%m-%d"));
    let formatter = ArrayFormatter::try_new(array, &options)?;
    let values: StringArray = (0..array.len())
        .map(|i| (!array.is_null(i)).then(|| formatter.value(i).to_string()))
        .collect();
    Ok(Arc::new(values))
}

fn cell(out: &mut Vec<u8>, array: &dyn Array, row: usize, style: Style) -> Result<(), ArrowError> {
    write_value(out, array, row, style).map_err(|e| ArrowError::CastError(e.to_string()))
}

/// A value as people read it: strings bare, arrays and dates as ClickHouse prints them.
fn shown(array: &dyn Array, row: usize) -> Result<String, ArrowError> {
    if array.is_null(row) {
        return Ok(NULL_SHOWN.to_string());
    }
    if let DataType::Utf8 = array.data_type() {
        return Ok(array.as_string::<i32>().value(row).to_string());
    }
    let mut out = Vec::new();
    cell(&mut out, array, row, Style::Tsv)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn delimited_line<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a str>, delimiter: u8) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        write_escaped(out, item);
    }
    out.push(b'\n');
}

fn delimited_row(
    out: &mut Vec<u8>,
    cols: &[ArrayRef],
    row: usize,
    delimiter: u8,
    style: Style,
) -> Result<(), ArrowError> {
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        cell(out, col.as_ref(), row, style)?;
    }
    out.push(b'\n');
    Ok(())
}

/// `{"name":value,…}` on one line, or (`indent`) one member per line as ClickHouse's JSON.
fn json_object(
    out: &mut Vec<u8>,
    columns: &[OutputColumn],
    cols: &[ArrayRef],
    row: usize,
    indent: Option<&str>,
) -> Result<(), ArrowError> {
    out.push(b'{');
    for (i, (c, col)) in columns.iter().zip(cols).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(indent) = indent {
            let _ = write!(out, "\n{indent}\t");
        }
        write_string(out, &c.name, Style::Json);
        out.extend_from_slice(if indent.is_some() { b": " } else { b":" });
        cell(out, col.as_ref(), row, Style::Json)?;
    }
    if let Some(indent) = indent {
        let _ = write!(out, "\n{indent}");
    }
    out.push(b'}');
    Ok(())
}

/// ClickHouse's Pretty (a grid with a heavy header and a line between rows) and
/// PrettyCompact (the names in the top border, no lines between rows). Numbers are
/// right-aligned.
fn pretty(
    out: &mut Vec<u8>,
    format: OutputFormat,
    columns: &[OutputColumn],
    cells: &[Vec<String>],
    right: &[bool],
) {
    let len = |s: &str| s.chars().count();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .filter_map(|r| r.get(i))
                .map(|v| len(v))
                .chain([len(&c.name)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut Vec<u8>, left: &str, fill: &str, join: &str, end: &str| {
        let parts: Vec<String> = widths.iter().map(|w| fill.repeat(w + 2)).collect();
        let _ = writeln!(out, "{left}{}{end}", parts.join(join));
    };
    let row_line = |out: &mut Vec<u8>, values: &[String], bar: &str| {
        let parts: Vec<String> = values
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (v, w))| {
                let pad = " ".repeat(w - len(v));
                if right.get(i).copied().unwrap_or(false) {
                    format!(" {pad}{v} ")
                } else {
                    format!(" {v}{pad} ")
                }
            })
            .collect();
        let _ = writeln!(out, "{bar}{}{bar}", parts.join(bar));
    };
    if format == OutputFormat::PrettyCompact {
        let header: Vec<String> = columns
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("─{}{}─", c.name, "─".repeat(w - len(&c.name))))
            .collect();
        let _ = writeln!(out, "┌{}┐", header.join("┬"));
        for r in cells {
            row_line(out, r, "│");
        }
        line(out, "└", "─", "┴", "┘");
    } else {
        line(out, "┏", "━", "┳", "┓");
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let header: Vec<String> = names
            .iter()
            .zip(&widths)
            .map(|(n, w)| format!(" {n}{} ", " ".repeat(w - len(n))))
            .collect();
        let _ = writeln!(out, "┃{}┃", header.join("┃"));
        line(out, "┡", "━", "╇", "┩");
        for (i, r) in cells.iter().enumerate() {
            if i > 0 {
                line(out, "├", "─", "┼", "┤");
            }
            row_line(out, r, "│");
        }
        line(out, "└", "─", "┴", "┘");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, ListBuilder, StringBuilder, UInt8Array};
    use arrow::datatypes::Schema;

    fn sample() -> (Vec<OutputColumn>, Vec<RecordBatch>) {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a'b");
        tags.append(true);
        tags.append(true);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::UInt8, false),
            Field::new("tags", DataType::new_list(DataType::Utf8, true), false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 20])),
                Arc::new(StringArray::from(vec![Some("tab\there"), None])),
                Arc::new(UInt8Array::from(vec![7, 8])),
                Arc::new(tags.finish()),
            ],
        )
        .expect("batch");
        let columns = schema
            .fields()
            .iter()
            .map(|f| OutputColumn {
                name: f.name().clone(),
                type_name: type_name(f.data_type()),
            })
            .collect();
        (columns, vec![batch])
    }

    fn text(format: &str) -> String {
        let (columns, batches) = sample();
        let format = OutputFormat::from_name(format).expect("format");
        String::from_utf8(
            render(
                format,
                &columns,
                &batches,
                Statistics {
                    elapsed_seconds: 0.5,
                },
            )
            .expect("render"),
        )
        .expect("utf-8")
    }

    #[test]
    fn delimited_formats_escape_as_clickhouse() {
        assert_eq!(text("TSV"), "1\ttab\\there\t7\t['a\\'b']\n20\t\\N\t8\t[]\n");
        assert_eq!(
            text("TSVWithNamesAndTypes"),
            "id\tname\tn\ttags\nInt64\tString\tUInt8\tArray(String)\n1\ttab\\there\t7\t['a\\'b']\n20\t\\N\t8\t[]\n"
        );
        assert_eq!(
            text("CSVWithNames"),
            "\"id\",\"name\",\"n\",\"tags\"\n1,\"tab\there\",7,\"['a\\'b']\"\n20,\\N,8,\"[]\"\n"
        );
    }

    #[test]
    fn json_formats_quote_64_bit_integers() {
        assert_eq!(
            text("JSONEachRow"),
            "{\"id\":\"1\",\"name\":\"tab\\there\",\"n\":7,\"tags\":[\"a'b\"]}\n{\"id\":\"20\",\"name\":null,\"n\":8,\"tags\":[]}\n"
        );
        let json: serde_json::Value = serde_json::from_str(&text("JSON")).expect("valid JSON");
        assert_eq!(json["rows"], 2);
        assert_eq!(json["meta"][3]["type"], "Array(String)");
        assert_eq!(json["data"][1]["id"], "20");
        assert_eq!(json["data"][0]["tags"][0], "a'b");
        assert_eq!(json["statistics"]["elapsed"], 0.5);
        let compact: serde_json::Value =
            serde_json::from_str(&text("JSONCompact")).expect("valid JSON");
        assert_eq!(compact["data"][1], serde_json::json!(["20", null, 8, []]));
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(
            text("PrettyCompact"),
            "┌─id─┬─name─────┬─n─┬─tags─────┐\n\
             │  1 │ tab\there │ 7 │ ['a\\'b'] │\n\
             │ 20 │ ᴺᵁᴸᴸ     │ 8 │ []       │\n\
             └────┴──────────┴───┴──────────┘\n"
        );
        assert_eq!(
            text("Vertical"),
            "Row 1:\n──────\nid:   1\nname: tab\there\nn:    7\ntags: ['a\\'b']\n\n\
             Row 2:\n──────\nid:   20\nname: ᴺᵁᴸᴸ\nn:    8\ntags: []\n"
        );
        let pretty = text("Pretty");
        assert!(pretty.starts_with("┏━━━━┳"), "{pretty}");
        assert!(pretty.contains("├────┼"), "{pretty}");
        assert_eq!(text("Null"), "");
        assert!(OutputFormat::from_name("Parquet")
            .expect_err("unknown")
            .to_string()
            .contains("Parquet"));
    }
}
