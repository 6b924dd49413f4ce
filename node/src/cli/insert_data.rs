//! The client's half of `INSERT … FORMAT <name>` with data: finding a script's
//! statements and the inline data of its inserts (the data is not SQL, so the script is
//! not tokenized past it), and streaming rows to the node's `Insert` call in chunks,
//! standard input included, so no insert needs to fit in memory.

use std::io::Read as _;

use crate::proto::{admin_client::AdminClient, ExecuteResponse, InsertRequest};
use crate::sql::insert_data::{format_end, inline_data};

/// Bytes per message of the stream.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks read ahead of the network.
const CHUNKS_AHEAD: usize = 4;

/// One statement of a script, and the inline data of an `INSERT … FORMAT <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub statement: String,
    /// `Some` for an insert that takes data (possibly none written: `Some("")`).
    pub data: Option<String>,
}

/// A script's statements in order. As clickhouse-client does with several statements,
/// an insert's inline data is the rest of its line, or the next line when the format
/// name ends its line.
pub fn script_pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.is_empty() {
            return out;
        }
        if let Some(end) = format_end(rest) {
            let after = &rest[end..];
            let blanks = after.len() - after.trim_start_matches([' ', '\t']).len();
            let mut start = blanks;
            if after[start..].starts_with("\r\n") {
                start += 2;
            } else if after[start..].starts_with('\n') {
                start += 1;
            }
            let line_end = after[start..].find('\n').map_or(after.len(), |p| start + p);
            out.push(Piece {
                statement: rest[..end].to_string(),
                data: Some(after[start..line_end].trim_end_matches('\r').to_string()),
            });
            rest = &after[line_end..];
        } else {
            let end = statement_end(rest);
            let statement = rest[..end].trim_end_matches(';').trim();
            if !statement.is_empty() {
                out.push(Piece {
                    statement: statement.to_string(),
                    data: None,
                });
            }
            rest = &rest[end..];
        }
    }
}

/// The end of the first statement: past its `;` outside quotes and comments, or the end.
fn statement_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map_or(bytes.len(), |p| i + p + 1)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2)
            }
            b';' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A `-q` text that is one insert taking data: its statement and everything after the
/// format name as data (a single query's data runs to its end, as in clickhouse-client).
pub fn single_insert(text: &str) -> Option<Piece> {
    let end = format_end(text)?;
    Some(Piece {
        statement: text[..end].to_string(),
        data: Some(inline_data(&text[end..]).unwrap_or_default().to_string()),
    })
}

/// Sends an insert with its inline data, then standard input when `stdin` is set, in
/// chunks through the node's `Insert` call.
pub async fn send(
    client: &mut AdminClient<tonic::transport::Channel>,
    user: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    piece: &Piece,
    stdin: bool,
) -> Result<ExecuteResponse, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel::<InsertRequest>(CHUNKS_AHEAD);
    let first = InsertRequest {
        sql: piece.statement.clone(),
        data: piece.data.clone().unwrap_or_default().into_bytes(),
    };
    tx.send(first)
        .await
        .map_err(|_| tonic::Status::cancelled("the insert stream closed"))?;
    let reader = if stdin {
        // Standard input is read on a thread of its own: its reads block.
        Some(std::thread::spawn(move || -> std::io::Result<()> {
            let mut input = std::io::stdin().lock();
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let n = input.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                let chunk = InsertRequest {
                    sql: String::new(),
                    data: buf,
                };
                // The call ended early (the node refused the insert): stop reading.
                if tx.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        }))
    } else {
        drop(tx);
        None
    };
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(user) = user {
        request
            .metadata_mut()
            .insert(crate::admin::service::USER_HEADER, user.clone());
    }
    let response = client.insert(request).await;
    if let Some(reader) = reader {
        match reader.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(tonic::Status::aborted(format!(
                    "reading the rows from standard input: {e}"
                )))
            }
            Err(_) => return Err(tonic::Status::aborted("the standard input reader failed")),
        }
    }
    Ok(response?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(statement: &str, data: Option<&str>) -> Piece {
        Piece {
            statement: statement.into(),
            data: data.map(str::to_string),
        }
    }

    #[test]
    fn inline_data_is_the_rest_of_the_line() {
        let script = "CREATE TABLE t (a UInt8, s String) ENGINE = MergeTree ORDER BY a;\n\
                      INSERT INTO t FORMAT CSV 1,\"it's; fine\"\n\
                      INSERT INTO t FORMAT JSONEachRow\n{\"a\":2}\n\
                      SELECT count() FROM t; SELECT 'a;b'";
        assert_eq!(
            script_pieces(script),
            vec![
                piece(
                    "CREATE TABLE t (a UInt8, s String) ENGINE = MergeTree ORDER BY a",
                    None
                ),
                piece("INSERT INTO t FORMAT CSV", Some("1,\"it's; fine\"")),
                piece("INSERT INTO t FORMAT JSONEachRow", Some("{\"a\":2}")),
                piece("SELECT count() FROM t", None),
                piece("SELECT 'a;b'", None),
            ]
        );
        assert_eq!(
            single_insert("INSERT INTO t FORMAT CSV\n1,a\n2,b\n"),
            Some(piece("INSERT INTO t FORMAT CSV", Some("1,a\n2,b\n")))
        );
        assert_eq!(
            single_insert("INSERT INTO t FORMAT CSV"),
            Some(piece("INSERT INTO t FORMAT CSV", Some("")))
        );
        assert_eq!(single_insert("INSERT INTO t VALUES (1)"), None);
    }
}
