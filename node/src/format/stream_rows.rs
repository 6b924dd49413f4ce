//! Rows out of a stream of data in a row format, for `INSERT … FORMAT <name>`: the
//! client's bytes arrive in chunks cut anywhere, and each complete row becomes one
//! message for the format's decoder, so a bad row is named by its number. A row ends at
//! a newline outside quotes (CSV), at a newline (TSV, LineAsString), or where a JSON
//! value closes (JSONEachRow, JSONCompactEachRow, JSONAsString: a value may span lines).
//! Invariant: feeding the same bytes in any chunking yields the same rows, so a
//! retried insert is cut into the same blocks and deduplicated.

use bytes::{Bytes, BytesMut};

use crate::catalog::kafka_settings::Format;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("format {format} cannot be split into rows from a stream (row formats can: JSONEachRow, JSONCompactEachRow, JSONAsString, CSV, CSVWithNames, TSV, TSVWithNames, LineAsString)")]
    NotSplittable { format: &'static str },
    #[error("format {format}: the data ends inside row {row} (an unclosed quote or bracket)")]
    Unterminated { format: &'static str, row: u64 },
}

/// How a format's rows end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lines,
    Csv,
    Json,
}

/// Where the scan of the unfinished row stands, kept across chunks.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes of the buffer already looked at.
    pos: usize,
    in_quotes: bool,
    escaped: bool,
    depth: usize,
    started: bool,
}

pub struct RowSplitter {
    format: Format,
    kind: Kind,
    /// `…WithNames`: the first row names the columns and goes before every row, since
    /// the decoder reads each message as a header and its rows.
    with_names: bool,
    header: Option<Bytes>,
    buf: BytesMut,
    scan: Scan,
    rows: u64,
}

impl RowSplitter {
    pub fn new(format: Format) -> Result<RowSplitter, SplitError> {
        let kind = match format {
            Format::TabSeparated | Format::TabSeparatedWithNames | Format::LineAsString => {
                Kind::Lines
            }
            Format::Csv | Format::CsvWithNames => Kind::Csv,
            Format::JsonEachRow | Format::JsonCompactEachRow | Format::JsonAsString => Kind::Json,
            Format::RawBlob | Format::Protobuf | Format::ProtobufSingle | Format::Avro => {
                return Err(SplitError::NotSplittable {
                    format: format.name(),
                })
            }
        };
        Ok(RowSplitter {
            format,
            kind,
            with_names: matches!(format, Format::CsvWithNames | Format::TabSeparatedWithNames),
            header: None,
            buf: BytesMut::new(),
            scan: Scan::default(),
            rows: 0,
        })
    }

    /// Takes a chunk and appends the rows it completed to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) {
        self.buf.extend_from_slice(chunk);
        while let Some(end) = self.row_end() {
            let row = self.buf.split_to(end).freeze();
            self.scan = Scan::default();
            self.emit(row, out);
        }
    }

    /// The last row, which needs no newline after it.
    pub fn finish(mut self, out: &mut Vec<Bytes>) -> Result<(), SplitError> {
        let unterminated = match self.kind {
            Kind::Lines => false,
            Kind::Csv => self.scan_rest().in_quotes,
            Kind::Json => self.scan_rest().started,
        };
        if unterminated {
            return Err(SplitError::Unterminated {
                format: self.format.name(),
                row: self.rows + 1,
            });
        }
        let rest = self.buf.split().freeze();
        self.emit(rest, out);
        Ok(())
    }

    /// Rows taken so far, the header not counted.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn scan_rest(&mut self) -> &Scan {
        let _ = self.row_end();
        &self.scan
    }

    fn emit(&mut self, row: Bytes, out: &mut Vec<Bytes>) {
        let text = trim(&row, self.kind);
        if text.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let row = row.slice_ref(text);
        if self.with_names {
            match &self.header {
                None => {
                    self.header = Some(row);
                    return;
                }
                Some(header) => {
                    let mut joined = Vec::with_capacity(header.len() + 1 + row.len());
                    joined.extend_from_slice(header);
                    joined.push(b'\n');
                    joined.extend_from_slice(&row);
                    self.rows += 1;
                    out.push(Bytes::from(joined));
                    return;
                }
            }
        }
        self.rows += 1;
        out.push(row);
    }

    /// The length of the first complete row in the buffer (its terminator included).
    fn row_end(&mut self) -> Option<usize> {
        let s = &mut self.scan;
        let buf = &self.buf[..];
        while s.pos < buf.len() {
            let b = buf[s.pos];
            s.pos += 1;
            match self.kind {
                Kind::Lines => {
                    if b == b'\n' {
                        return Some(s.pos);
                    }
                }
                Kind::Csv => match b {
                    // A doubled quote inside quotes toggles twice: still inside.
                    b'"' => s.in_quotes = !s.in_quotes,
                    b'\n' if !s.in_quotes => return Some(s.pos),
                    _ => {}
                },
                Kind::Json => {
                    if s.in_quotes {
                        if s.escaped {
                            s.escaped = false;
                        } else if b == b'\\' {
                            s.escaped = true;
                        } else if b == b'"' {
                            s.in_quotes = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => {
                            s.in_quotes = true;
                            s.started = true;
                        }
                        b'{' | b'[' => {
                            s.depth += 1;
                            s.started = true;
                        }
                        b'}' | b']' => {
                            s.depth = s.depth.saturating_sub(1);
                            if s.depth == 0 && s.started {
                                return Some(s.pos);
                            }
                        }
                        // Rows may be separated by commas, as ClickHouse allows.
                        b',' if !s.started => {}
                        b if b.is_ascii_whitespace() => {}
                        _ => s.started = true,
                    }
                }
            }
        }
        None
    }
}

/// `row` without its line end (`\n`, `\r\n`) and, for JSON rows, without the whitespace
/// and commas between them; a text row's leading blanks are data.
fn trim(row: &[u8], kind: Kind) -> &[u8] {
    let start = match kind {
        Kind::Json => row
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != b',')
            .unwrap_or(row.len()),
        Kind::Lines | Kind::Csv => 0,
    };
    let end = row
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(start, |p| p + 1)
        .max(start);
    &row[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(format: Format, data: &str, chunk: usize) -> Vec<String> {
        let mut s = RowSplitter::new(format).expect("splittable");
        let mut out = Vec::new();
        for piece in data.as_bytes().chunks(chunk) {
            s.push(piece, &mut out);
        }
        s.finish(&mut out).expect("complete");
        out.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    #[test]
    fn any_chunking_gives_the_same_rows() {
        let csv = "1,\"a\nb\"\r\n2,\"say \"\"hi\"\"\"\n\n3,c";
        let json = "{\"a\":1,\"s\":\"}\\\"{\"}\n{\n \"a\": 2\n},{\"a\":[3]}";
        for chunk in [1, 2, 3, 7, 100] {
            assert_eq!(
                split(Format::Csv, csv, chunk),
                ["1,\"a\nb\"", "2,\"say \"\"hi\"\"\"", "3,c"]
            );
            assert_eq!(
                split(Format::JsonEachRow, json, chunk),
                [
                    "{\"a\":1,\"s\":\"}\\\"{\"}",
                    "{\n \"a\": 2\n}",
                    "{\"a\":[3]}"
                ]
            );
            assert_eq!(
                split(Format::TabSeparatedWithNames, "a\tb\n1\tx\n2\ty\n", chunk),
                ["a\tb\n1\tx", "a\tb\n2\ty"]
            );
        }
        assert_eq!(
            split(Format::JsonCompactEachRow, "[1, \"x\"]\n[2, \"]\"]", 4),
            ["[1, \"x\"]", "[2, \"]\"]"]
        );
    }

    #[test]
    fn unsplittable_and_unterminated_data_is_named() {
        assert_eq!(
            RowSplitter::new(Format::Avro).err(),
            Some(SplitError::NotSplittable { format: "Avro" })
        );
        let mut s = RowSplitter::new(Format::Csv).expect("splittable");
        let mut out = Vec::new();
        s.push(b"1,a\n2,\"open\n", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            s.finish(&mut out),
            Err(SplitError::Unterminated {
                format: "CSV",
                row: 2
            })
        );
    }
}
