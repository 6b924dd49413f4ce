//! TabSeparated (TSV) and TabSeparatedWithNames, both directions.
//!
//! A row is a line (`\n`; a final line end is optional in a message), fields split by tabs,
//! values unescaped as ClickHouse does: `\b \f \r \n \t \0 \' \\ \a \v \xHH`, any other
//! `\c` is `c`; a field that is exactly `\N` is NULL. Arrays (`['a','b\'c']`) are read as
//! written, their quoted items unescaped by the array reader. An empty field is not a default
//! (`input_format_tsv_empty_as_default = 0`, ClickHouse's default): it parses as an empty
//! string, and fails for numbers. With names, the first line of every message is its
//! header; on the producing side each message starts with one.

use std::borrow::Cow;

use arrow::array::RecordBatch;

use super::rows::{decode_messages, Header, HeaderError, RowsBuilder};
use super::text_out::{write_delimited_row, write_escaped, Style, UnsupportedType};
use super::{BrokenMessage, FormatError, RawMessage};
use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::Column;

#[derive(Debug, thiserror::Error)]
pub enum TsvError {
    #[error("line {line}: {source}")]
    Cell {
        line: usize,
        source: super::cells::CellError,
    },
    #[error("line {line}: {found} fields, expected {expected}")]
    FieldCount {
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("line 1: {0}")]
    Header(#[from] HeaderError),
}

pub fn decode(
    columns: &[Column],
    settings: &FormatSettings,
    with_names: bool,
    messages: &[RawMessage],
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    let format = if with_names {
        Format::TabSeparatedWithNames
    } else {
        Format::TabSeparated
    };
    decode_messages(format, columns, settings, messages, |text, rows| {
        decode_message(text, rows, with_names, settings.skip_unknown_fields)
    })
}

fn decode_message(
    text: &str,
    rows: &mut RowsBuilder,
    with_names: bool,
    skip_unknown_fields: bool,
) -> Result<(), TsvError> {
    let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    let header = if with_names {
        let names = lines.next().unwrap_or_default().split('\t').map(unescape);
        Header::from_names(names, rows.columns(), skip_unknown_fields)?
    } else {
        Header::identity(rows.columns().len())
    };
    let first_line = if with_names { 2 } else { 1 };
    for (i, line) in lines.enumerate() {
        let line_no = first_line + i;
        let mut found = 0;
        for field in line.split('\t') {
            let target = header.targets.get(found).copied().flatten();
            found += 1;
            let Some(column) = target.map(|c| &mut rows.columns()[c]) else {
                continue;
            };
            // An array's items carry their own escapes inside their quotes, as ClickHouse
            // writes them; unescaping the field first would unbalance the quotes.
            let pushed = if field == "\\N" {
                column.push_null()
            } else if column.is_array() {
                column.push_text(field)
            } else {
                column.push_text(&unescape(field))
            };
            pushed.map_err(|source| TsvError::Cell {
                line: line_no,
                source,
            })?;
        }
        if found != header.targets.len() {
            return Err(TsvError::FieldCount {
                line: line_no,
                found,
                expected: header.targets.len(),
            });
        }
        for &absent in &header.absent {
            rows.columns()[absent].push_default();
        }
        rows.end_row();
    }
    Ok(())
}

/// A field's text with ClickHouse's escapes resolved; borrowed when it has none.
pub fn unescape(field: &str) -> Cow<'_, str> {
    if !field.contains('\\') {
        return Cow::Borrowed(field);
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => out.push('\\'),
            Some('x') => {
                let hex: String = chars.clone().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    // A byte outside ASCII cannot stand alone in UTF-8 text: it is kept
                    // as written.
                    Ok(b) if hex.len() == 2 && b.is_ascii() => {
                        out.push(char::from(b));
                        chars.nth(1);
                    }
                    _ => out.push_str("\\x"),
                }
            }
            Some(e) => push_unescaped(&mut out, e),
        }
    }
    Cow::Owned(out)
}

/// Appends what `\c` stands for, as ClickHouse 26.9 reads it: an escape it does not know
/// keeps its backslash (`\q` reads as `\q`), punctuation stands for itself (`\'`, `\"`,
/// `\\`), and `\N` inside a field stands for nothing.
pub fn push_unescaped(out: &mut String, c: char) {
    let unescaped = match c {
        'N' => return,
        'e' => '\u{1b}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'r' => '\r',
        'n' => '\n',
        't' => '\t',
        '0' => '\0',
        'a' => '\u{7}',
        'v' => '\u{b}',
        '\\' | '\'' | '"' | '`' | '/' | '=' => c,
        other => {
            out.push('\\');
            other
        }
    };
    out.push(unescaped);
}

/// The header line: column names, escaped.
pub fn write_header(out: &mut Vec<u8>, columns: &[Column]) {
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        write_escaped(out, &c.name);
    }
    out.push(b'\n');
}

/// One row, tab-separated, ending with a line feed.
pub fn write_row(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    row: usize,
) -> Result<(), UnsupportedType> {
    write_delimited_row(out, batch, row, b'\t', Style::Tsv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_support::{self, msg, strings};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt32Type;

    fn columns() -> Vec<Column> {
        test_support::columns(&[
            ("id", "UInt32"),
            ("name", "String"),
            ("note", "Nullable(String)"),
            ("tags", "Array(String)"),
        ])
    }

    #[test]
    fn unescapes_and_reads_null() {
        let messages = [
            msg(0, "1\ta\\tb\\nc\\\\d\\'e\t\\N\t['x','y\\'z']\n2\t\t\t[]\n"),
            msg(1, "3\t\\x41\\q\tnote\t[]"),
        ];
        let (batch, rows, broken) =
            decode(&columns(), &FormatSettings::default(), false, &messages).expect("decodes");
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
        assert_eq!(
            strings(&batch, 1),
            vec![
                Some("a\tb\nc\\d'e".into()),
                Some(String::new()),
                Some("A\\q".into())
            ]
        );
        assert_eq!(
            strings(&batch, 2),
            vec![None, Some(String::new()), Some("note".into())]
        );
        let tags = batch.column(3).as_list::<i32>().value(0);
        let tags: Vec<&str> = tags.as_string::<i32>().iter().flatten().collect();
        assert_eq!(tags, vec!["x", "y'z"]);
    }

    /// Each field as ClickHouse 26.9 reads it:
    /// `SELECT a FROM format(TSV, 'a String', '<field>')`.
    #[test]
    fn escapes_are_read_as_clickhouse_reads_them() {
        for (field, want) in [
            ("a\\x41\\q\\\\", "aA\\q\\"),
            ("a\\\"b", "a\"b"),
            ("a\\`b", "a`b"),
            ("a\\/b", "a/b"),
            ("a\\Nb", "ab"),
            ("a\\eb", "a\u{1b}b"),
            ("a\\Zb", "a\\Zb"),
            ("\\x41\\x42", "AB"),
            ("x\r", "x\r"),
        ] {
            assert_eq!(unescape(field), want, "{field}");
        }
        // An empty integer field is 0 (`format(TSV, 'a Int32, b String', '\tx')`).
        let (batch, rows, broken) = decode(
            &columns(),
            &FormatSettings::default(),
            false,
            &[msg(0, "\tb\t\\N\t[]")],
        )
        .expect("decodes");
        assert!(broken.is_empty(), "{broken:?}");
        assert_eq!(rows, vec![1]);
        assert_eq!(batch.column(0).as_primitive::<UInt32Type>().value(0), 0);
    }

    #[test]
    fn a_broken_row_breaks_only_its_message() {
        let messages = [
            msg(10, "1\ta\t\\N\t[]\n"),
            msg(11, "2\tb\t\\N\t[]\nx\tc\t\\N\t[]\n"),
            msg(12, "3\tonly three\t\\N\n"),
            msg(13, "4\td\t\\N\t[]\t5\n"),
            msg(14, "-1\t\t\t[]"),
            msg(15, "6\te\t\\N\t[]"),
        ];
        let (batch, rows, broken) =
            decode(&columns(), &FormatSettings::default(), false, &messages).expect("decodes");
        assert_eq!(rows, vec![1, 0, 0, 0, 0, 1]);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec(),
            vec![1, 6]
        );
        let errors: Vec<&str> = broken.iter().map(|b| b.error.as_str()).collect();
        assert_eq!(
            errors,
            vec![
                "TabSeparated: line 2: column id: cannot parse 'x' as UInt32",
                "TabSeparated: line 1: 3 fields, expected 4",
                "TabSeparated: line 1: 5 fields, expected 4",
                "TabSeparated: line 1: column id: cannot parse '-1' as UInt32",
            ]
        );
    }

    #[test]
    fn header_maps_columns_by_name() {
        let messages = [
            msg(0, "name\textra\tid\nbob\t?\t7\n"),
            msg(1, "id\tid\n1\t2\n"),
        ];
        let (batch, rows, broken) =
            decode(&columns(), &FormatSettings::default(), true, &messages).expect("decodes");
        assert_eq!(rows, vec![1, 0]);
        assert_eq!(batch.column(0).as_primitive::<UInt32Type>().value(0), 7);
        assert_eq!(strings(&batch, 1), vec![Some("bob".into())]);
        assert!(batch.column(2).is_null(0));
        assert_eq!(batch.column(3).as_list::<i32>().value(0).len(), 0);
        assert!(broken[0].error.contains("twice"), "{}", broken[0].error);

        let strict = FormatSettings {
            skip_unknown_fields: false,
            ..FormatSettings::default()
        };
        let (_, rows, broken) = decode(&columns(), &strict, true, &messages[..1]).expect("decodes");
        assert_eq!(rows, vec![0]);
        assert!(broken[0].error.contains("'extra'"), "{}", broken[0].error);
    }

    #[test]
    fn writes_escaped_rows_and_a_header() {
        let messages = [msg(0, "1\ttab\\there\\\\\t\\N\t['a']\n")];
        let (batch, _, _) =
            decode(&columns(), &FormatSettings::default(), false, &messages).expect("decodes");
        let mut out = Vec::new();
        write_header(&mut out, &columns());
        write_row(&mut out, &batch, 0).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "id\tname\tnote\ttags\n1\ttab\\there\\\\\t\\N\t['a']\n"
        );
    }
}
