//! CSV and CSVWithNames, both directions, with `format_csv_delimiter`.
//!
//! Fields are split here rather than by the `csv` crate because ClickHouse's rules turn
//! on whether a field was quoted, which that crate does not report: an unquoted empty
//! field is the column's default (`input_format_csv_empty_as_default = 1`), an unquoted
//! `\N` is NULL, and spaces and tabs around an unquoted field are trimmed
//! (`input_format_csv_trim_whitespaces = 1`) while a quoted field is kept as written.
//! Quotes inside a quoted field are doubled (`""`); a quoted field may span lines. A row
//! ends at `\n` or `\r\n`. On the producing side strings, dates and arrays are quoted,
//! numbers and Bools are not, NULL is `\N`, and WithNames starts each message with a header.

use std::borrow::Cow;

use arrow::array::RecordBatch;

use super::cells::CellError;
use super::rows::{decode_messages, Header, HeaderError, RowsBuilder};
use super::text_out::{write_csv_quoted, write_delimited_row, Style, UnsupportedType};
use super::{BrokenMessage, FormatError, RawMessage};
use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::Column;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: {source}")]
    Cell { line: usize, source: CellError },
    #[error("line {line}: {found} fields, expected {expected}")]
    FieldCount {
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("line {line}: a quoted field is not closed")]
    Unclosed { line: usize },
    #[error("line {line}: '{}' where the delimiter or a line end belongs", found.escape_default())]
    Unexpected { line: usize, found: char },
    #[error("line 1: {0}")]
    Header(#[from] HeaderError),
}

/// A field as read: its text, and whether it was quoted.
struct Field<'a> {
    text: Cow<'a, str>,
    quoted: bool,
}

pub fn decode(
    columns: &[Column],
    settings: &FormatSettings,
    with_names: bool,
    messages: &[RawMessage],
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    let format = if with_names {
        Format::CsvWithNames
    } else {
        Format::Csv
    };
    decode_messages(format, columns, settings, messages, |text, rows| {
        decode_message(text, rows, with_names, settings)
    })
}

fn decode_message(
    text: &str,
    rows: &mut RowsBuilder,
    with_names: bool,
    settings: &FormatSettings,
) -> Result<(), CsvError> {
    // One record's fields, borrowed from the message where no `""` had to be undone.
    let mut fields = Vec::new();
    let mut reader = Records {
        text,
        pos: 0,
        line: 1,
        delimiter: settings.csv_delimiter,
    };
    let header = if with_names {
        match reader.next(&mut fields) {
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {
                let names = fields.iter().map(|f| f.text.as_ref());
                Header::from_names(names, rows.columns(), settings.skip_unknown_fields)?
            }
            None => return Ok(()),
        }
    } else {
        Header::identity(rows.columns().len())
    };
    loop {
        let line = reader.line;
        fields.clear();
        match reader.next(&mut fields) {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {}
        }
        if fields.len() != header.targets.len() {
            return Err(CsvError::FieldCount {
                line,
                found: fields.len(),
                expected: header.targets.len(),
            });
        }
        for (field, target) in fields.iter().zip(&header.targets) {
            let Some(column) = target.map(|c| &mut rows.columns()[c]) else {
                continue;
            };
            // ClickHouse 26.9 reads a quoted "\N" as NULL too, but only into a Nullable
            // column; elsewhere it is the text.
            let pushed = match (field.quoted, field.text.as_ref()) {
                (false, "") => {
                    column.push_default();
                    Ok(())
                }
                (false, "\\N") => column.push_null(),
                (true, "\\N") if column.is_nullable() => column.push_null(),
                (_, text) => column.push_text(text),
            };
            pushed.map_err(|source| CsvError::Cell { line, source })?;
        }
        for &absent in &header.absent {
            rows.columns()[absent].push_default();
        }
        rows.end_row();
    }
}

/// The records of one message.
struct Records<'a> {
    text: &'a str,
    pos: usize,
    /// The line the next record starts on, for errors.
    line: usize,
    delimiter: u8,
}

impl<'a> Records<'a> {
    fn is_blank(&self, b: u8) -> bool {
        (b == b' ' || b == b'\t') && b != self.delimiter
    }

    /// Reads the next record into `fields`; `None` at the end of the message.
    fn next(&mut self, fields: &mut Vec<Field<'a>>) -> Option<Result<(), CsvError>> {
        if self.pos >= self.text.len() {
            return None;
        }
        Some(self.record(fields))
    }

    fn record(&mut self, fields: &mut Vec<Field<'a>>) -> Result<(), CsvError> {
        let text = self.text;
        let b = text.as_bytes();
        loop {
            let mut p = self.pos;
            while p < b.len() && self.is_blank(b[p]) {
                p += 1;
            }
            if p < b.len() && b[p] == b'"' {
                let (field, end) = self.quoted(p)?;
                fields.push(field);
                p = end;
                while p < b.len() && self.is_blank(b[p]) {
                    p += 1;
                }
            } else {
                let start = self.pos;
                while p < b.len() && b[p] != self.delimiter && b[p] != b'\n' && b[p] != b'\r' {
                    p += 1;
                }
                let mut raw = &text[start..p];
                raw = raw.trim_matches(|c: char| c.is_ascii() && self.is_blank(c as u8));
                fields.push(Field {
                    text: Cow::Borrowed(raw),
                    quoted: false,
                });
            }
            match b.get(p) {
                None => {
                    self.pos = p;
                    return Ok(());
                }
                Some(&c) if c == self.delimiter => self.pos = p + 1,
                Some(b'\n') => {
                    self.pos = p + 1;
                    self.line += 1;
                    return Ok(());
                }
                Some(b'\r') if b.get(p + 1) == Some(&b'\n') => {
                    self.pos = p + 2;
                    self.line += 1;
                    return Ok(());
                }
                Some(_) => {
                    let found = text[p..].chars().next().unwrap_or('?');
                    return Err(CsvError::Unexpected {
                        line: self.line,
                        found,
                    });
                }
            }
        }
    }

    /// A quoted field starting at the quote at `open`: the field and where it ends.
    fn quoted(&mut self, open: usize) -> Result<(Field<'a>, usize), CsvError> {
        let text = self.text;
        let b = text.as_bytes();
        let start = open + 1;
        let first_line = self.line;
        let mut p = start;
        let mut doubled = false;
        loop {
            match b.get(p) {
                None => return Err(CsvError::Unclosed { line: first_line }),
                Some(b'"') if b.get(p + 1) == Some(&b'"') => {
                    doubled = true;
                    p += 2;
                }
                Some(b'"') => break,
                Some(b'\n') => {
                    self.line += 1;
                    p += 1;
                }
                Some(_) => p += 1,
            }
        }
        let body = &text[start..p];
        let text = if doubled {
            Cow::Owned(body.replace("\"\"", "\""))
        } else {
            Cow::Borrowed(body)
        };
        Ok((Field { text, quoted: true }, p + 1))
    }
}

/// The header row: column names, quoted.
pub fn write_header(out: &mut Vec<u8>, columns: &[Column], delimiter: u8) {
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        write_csv_quoted(out, &c.name);
    }
    out.push(b'\n');
}

/// One row, ending with a line feed.
pub fn write_row(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    row: usize,
    delimiter: u8,
) -> Result<(), UnsupportedType> {
    write_delimited_row(out, batch, row, delimiter, Style::Csv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ChType;
    use crate::format::test_support::{self, msg, strings};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampSecondType};

    fn columns() -> Vec<Column> {
        test_support::columns(&[
            ("id", "Int64"),
            ("name", "String"),
            ("note", "Nullable(String)"),
            ("at", "DateTime"),
        ])
    }

    #[test]
    fn quoting_empty_fields_and_null() {
        let messages = [
            msg(
                0,
                "1,\"a, \"\"quoted\"\"\nline\",\\N,2011-02-12 02:22:00\n 2 , plain ,,\"2011-02-12\"\r\n",
            ),
            msg(1, "3,\"\",\"\\N\","),
        ];
        let (batch, rows, broken) =
            decode(&columns(), &FormatSettings::default(), false, &messages).expect("decodes");
        assert!(broken.is_empty(), "{broken:?}");
        assert_eq!(rows, vec![2, 1]);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            vec![1, 2, 3]
        );
        assert_eq!(
            strings(&batch, 1),
            vec![
                Some("a, \"quoted\"\nline".into()),
                Some("plain".into()),
                Some(String::new())
            ]
        );
        // Unquoted empty: the default, NULL for a Nullable column; a quoted \N is NULL
        // there too (ClickHouse 26.9).
        assert_eq!(strings(&batch, 2), vec![None, None, None]);
        assert_eq!(
            batch
                .column(3)
                .as_primitive::<TimestampSecondType>()
                .values()
                .to_vec(),
            vec![1_297_477_320, 1_297_468_800, 0]
        );
    }

    /// Each message as ClickHouse 26.9 reads it:
    /// `SELECT * FROM format(CSV, 'a Int32, b String', '<message>')`; `None`: an error.
    #[test]
    fn quoting_is_read_as_clickhouse_reads_it() {
        let columns: Vec<Column> = [("a", "Int32"), ("b", "String")]
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                ty: ChType::parse(t).expect("type"),
            })
            .collect();
        type Rows = Option<&'static [(i32, &'static str)]>;
        let cases: [(&str, Rows); 10] = [
            ("5,\"a\"\"b\" ", Some(&[(5, "a\"b")])),
            ("5,a\"b\"c", Some(&[(5, "a\"b\"c")])),
            ("5,'x'", Some(&[(5, "'x'")])),
            ("\"\",x", Some(&[(0, "x")])),
            ("5,\"\\N\"", Some(&[(5, "\\N")])),
            ("5,x\r\n6,y\r\n", Some(&[(5, "x"), (6, "y")])),
            ("5,\"a\"b", None),
            ("5", None),
            ("5,x,y", None),
            ("5,x\r6,y", None),
        ];
        for (payload, want) in cases {
            let (batch, _, broken) = decode(
                &columns,
                &FormatSettings::default(),
                false,
                &[msg(0, payload)],
            )
            .expect("decodes");
            let got: Vec<(i32, String)> = (0..batch.num_rows())
                .map(|i| {
                    let a = batch
                        .column(0)
                        .as_primitive::<arrow::datatypes::Int32Type>();
                    (
                        a.value(i),
                        strings(&batch, 1)[i].clone().unwrap_or_default(),
                    )
                })
                .collect();
            match want {
                Some(rows) => {
                    assert!(broken.is_empty(), "{payload:?}: {broken:?}");
                    let want: Vec<(i32, String)> =
                        rows.iter().map(|(a, b)| (*a, b.to_string())).collect();
                    assert_eq!(got, want, "{payload:?}");
                }
                None => assert_eq!(broken.len(), 1, "{payload:?} reads as {got:?}"),
            }
        }
    }

    #[test]
    fn delimiter_setting_and_broken_messages() {
        let settings = FormatSettings {
            csv_delimiter: b';',
            ..FormatSettings::default()
        };
        let messages = [
            msg(5, "1;a,b;x;2011-02-12 02:22:00\n"),
            msg(6, "2;b;x;2011-02-12 02:22:00\n2;\"open;x;y\n"),
            msg(7, "3;\"q\"z;x;0\n"),
            msg(8, "4;b;x\n"),
            msg(9, "5;b;x;tomorrow\n"),
            msg(10, "6;c;\\N;0"),
        ];
        let (batch, rows, broken) =
            decode(&columns(), &settings, false, &messages).expect("decodes");
        assert_eq!(rows, vec![1, 0, 0, 0, 0, 1]);
        assert_eq!(
            strings(&batch, 1),
            vec![Some("a,b".into()), Some("c".into())]
        );
        let errors: Vec<&str> = broken.iter().map(|b| b.error.as_str()).collect();
        assert_eq!(
            errors,
            vec![
                "CSV: line 2: a quoted field is not closed",
                "CSV: line 1: 'z' where the delimiter or a line end belongs",
                "CSV: line 1: 3 fields, expected 4",
                "CSV: line 1: column at: cannot parse 'tomorrow' as DateTime",
            ]
        );
    }

    #[test]
    fn header_maps_by_name_and_round_trips() {
        let messages = [msg(0, "\"name\",\"id\",\"other\"\n\"x\",9,\"skipped\"\n")];
        let (batch, rows, broken) =
            decode(&columns(), &FormatSettings::default(), true, &messages).expect("decodes");
        assert!(broken.is_empty(), "{broken:?}");
        assert_eq!(rows, vec![1]);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 9);
        assert!(batch.column(2).is_null(0));
        let mut out = Vec::new();
        write_header(&mut out, &columns(), b',');
        write_row(&mut out, &batch, 0, b',').expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "\"id\",\"name\",\"note\",\"at\"\n9,\"x\",\\N,\"1970-01-01 00:00:00\"\n"
        );
    }
}
