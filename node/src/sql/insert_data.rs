//! Where the data of `INSERT INTO t FORMAT <name> <data>` starts. The data is not SQL (a
//! CSV line may hold an unbalanced quote), so it is cut off before the statement is
//! tokenized; the client uses the same scanner to find a script's inline data.
//! Pure text scanning: no parser, no I/O.

/// The byte offset just past `FORMAT <name>` when `text` is an INSERT whose rows come as
/// data in a format (not a SELECT or VALUES); `None` for anything else. Quotes, comments
/// and parenthesized column lists are skipped, so a `FORMAT` inside them does not count.
pub fn format_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    let mut first_word = true;
    let mut after_format = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => i = skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2)
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b';' if depth == 0 => return None,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if depth > 0 {
                    continue;
                }
                let word = &text[start..i];
                if first_word {
                    if !word.eq_ignore_ascii_case("insert") {
                        return None;
                    }
                    first_word = false;
                } else if after_format {
                    return Some(i);
                } else if ["select", "values", "with"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    return None;
                } else if word.eq_ignore_ascii_case("format") {
                    after_format = true;
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The inline data after `FORMAT <name>`, as ClickHouse takes it: after the first newline
/// when only blanks precede it, else after the blanks; `None` when nothing but
/// whitespace follows (the rows then come from the client's stream).
pub fn inline_data(rest: &str) -> Option<&str> {
    let trimmed = rest.trim_start_matches([' ', '\t']);
    let data = trimmed
        .strip_prefix("\r\n")
        .or_else(|| trimmed.strip_prefix('\n'))
        .unwrap_or(trimmed);
    (!data.trim().is_empty()).then_some(data)
}

/// Past the quoted text starting at `start` (its quote doubled or backslash-escaped
/// inside); the end of `bytes` when it is never closed.
fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_the_format_name() {
        let text = "INSERT INTO t FORMAT CSV\n1,\"it's\"\n";
        let end = format_end(text).expect("data insert");
        assert_eq!(&text[..end], "INSERT INTO t FORMAT CSV");
        assert_eq!(inline_data(&text[end..]), Some("1,\"it's\"\n"));
        let text = "insert into t (a, format) settings insert_deduplication_token = 'format x' format JSONEachRow {\"a\":1}";
        let end = format_end(text).expect("data insert");
        assert!(text[..end].ends_with("JSONEachRow"));
        assert_eq!(inline_data(&text[end..]), Some("{\"a\":1}"));
        assert_eq!(inline_data("  \n  "), None);
    }

    #[test]
    fn selects_values_and_other_statements_have_no_data() {
        assert_eq!(format_end("INSERT INTO t VALUES (1)"), None);
        assert_eq!(format_end("INSERT INTO t SELECT 1 FORMAT CSV"), None);
        assert_eq!(format_end("SELECT 1 FORMAT CSV"), None);
        assert_eq!(format_end("-- FORMAT\nINSERT INTO t; FORMAT CSV"), None);
        assert_eq!(format_end("INSERT INTO t FORMAT"), None);
    }

    #[test]
    fn parse_takes_settings_and_inline_data() {
        use crate::catalog::kafka_settings::Format;
        use crate::sql::{parse, Insert, InsertRows, Statement};
        let parsed =
            parse("INSERT INTO t (a) SETTINGS insert_deduplication_token = 'x' FORMAT CSV\n1,'\n")
                .expect("parses");
        assert_eq!(
            parsed,
            Statement::Insert(Insert {
                table: "t".into(),
                columns: vec!["a".into()],
                settings: vec![("insert_deduplication_token".into(), "x".into())],
                rows: InsertRows::Data {
                    format: Format::Csv,
                    inline: Some("1,'\n".into()),
                },
            })
        );
        let Statement::Insert(values) =
            parse("INSERT INTO t SETTINGS insert_deduplicate = 0 VALUES (1)").expect("parses")
        else {
            panic!("an insert");
        };
        assert_eq!(
            values.settings,
            vec![("insert_deduplicate".into(), "0".into())]
        );
        assert!(matches!(values.rows, InsertRows::Query { .. }));
        let e = parse("INSERT INTO t FORMAT Parquet").expect_err("unknown format");
        assert!(e.to_string().contains("FORMAT Parquet"), "{e}");
    }
}
