//! `sluice sql`: a client that behaves like clickhouse-client. Statements come from `-q`,
//! the command line, a file, standard input, or an interactive prompt (with history and
//! statements over several lines) when standard input is a terminal. Rows are written by
//! the node in the output format asked for (`--format` or the statement's `FORMAT`):
//! PrettyCompact on a terminal, TabSeparated otherwise, as clickhouse-client does. The
//! exit code says what failed: 2 a statement the node refused, 3 no connection, 4 the
//! node failed; 1 anything else (a file that cannot be read).

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

use super::insert_data::{script_pieces, single_insert, Piece};
use crate::admin::GRPC_MESSAGE_MAX;
use crate::proto::{admin_client::AdminClient, ExecuteRequest};

/// The port a node serves gRPC on unless told otherwise.
const DEFAULT_PORT: u16 = 7070;

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The node: host, host:port or http://host:port.
    #[arg(long, env = "SLUICE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// The node's gRPC port; overrides a port in --host.
    #[arg(long, env = "SLUICE_PORT")]
    pub port: Option<u16>,
    /// The statements to run (several separated by ';').
    #[arg(short = 'q', long = "query")]
    pub query: Option<String>,
    /// A file of statements separated by ';' ('-' reads standard input).
    #[arg(short = 'f', long = "file", alias = "queries-file")]
    pub file: Option<PathBuf>,
    /// Accepted for clickhouse-client's sake: several statements always run in order.
    #[arg(short = 'n', long = "multiquery")]
    pub multiquery: bool,
    /// Output format: TabSeparated (TSV), TSVWithNames, TSVWithNamesAndTypes, CSV,
    /// CSVWithNames, JSONEachRow, JSON, JSONCompact, Vertical, Pretty, PrettyCompact, Null.
    /// Default: PrettyCompact on a terminal, TabSeparated otherwise.
    #[arg(long)]
    pub format: Option<String>,
    /// Print each query's elapsed time to standard error.
    #[arg(short = 't', long = "time")]
    pub time: bool,
    /// The user name the node records for the statements (offset resets record it);
    /// by default the login name of this shell.
    #[arg(long, env = "SLUICE_USER")]
    pub user: Option<String>,
    /// The statements, when neither -q nor a file gives them.
    pub statement: Option<String>,
}

/// What went wrong, by the exit code it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The node refused the statement: syntax, unknown table, a refused change.
    BadStatement,
    /// No node answered at the address.
    Connection,
    /// The node took the statement and failed running it.
    Server,
}

impl FailureKind {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::BadStatement => 2,
            FailureKind::Connection => 3,
            FailureKind::Server => 4,
        }
    }

    /// The kind of a gRPC status. A transport failure reaches the caller as
    /// `Unavailable` too, with the transport's words; the node's own `Unavailable` (no
    /// quorum) is the node failing.
    pub fn of_status(status: &tonic::Status) -> FailureKind {
        use tonic::Code;
        match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated => FailureKind::BadStatement,
            Code::Unavailable
                if status.message().contains("transport error")
                    || status.message().contains("error trying to connect")
                    || status.message().contains("tcp connect error") =>
            {
                FailureKind::Connection
            }
            _ => FailureKind::Server,
        }
    }
}

/// A failed statement or connection, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SqlFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// `host`, `host:port` or a URL, with `port` (if given) in place of its port.
pub fn endpoint(host: &str, port: Option<u16>) -> String {
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", host),
    };
    let rest = rest.trim_end_matches('/');
    // An IPv6 address keeps its brackets; only a colon after them starts a port.
    let (name, own_port) = match rest.rsplit_once(':') {
        Some((name, p)) if !name.is_empty() && !p.contains(']') && p.parse::<u16>().is_ok() => {
            (name, p.parse::<u16>().ok())
        }
        _ => (rest, None),
    };
    let port = port.or(own_port).unwrap_or(DEFAULT_PORT);
    format!("{scheme}://{name}:{port}")
}

pub async fn connect(host: &str) -> anyhow::Result<AdminClient<tonic::transport::Channel>> {
    let endpoint = if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    };
    let client = AdminClient::connect(endpoint.clone())
        .await
        .map_err(|e| SqlFailure {
            kind: FailureKind::Connection,
            message: format!("connecting to a Sluice node at {endpoint}: {e}"),
        })?;
    Ok(client
        .max_decoding_message_size(GRPC_MESSAGE_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_MAX))
}

struct Session {
    client: AdminClient<tonic::transport::Channel>,
    user: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    format: String,
    terminal: bool,
    time: bool,
}

impl Session {
    /// Runs one statement and writes what it returned to standard output.
    async fn run(&mut self, statement: &str) -> Result<(), SqlFailure> {
        let mut request = tonic::Request::new(ExecuteRequest {
            sql: statement.to_string(),
            format: self.format.clone(),
        });
        if let Some(user) = &self.user {
            request
                .metadata_mut()
                .insert(crate::admin::service::USER_HEADER, user.clone());
        }
        let started = Instant::now();
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|status| SqlFailure {
                kind: FailureKind::of_status(&status),
                message: status.message().to_string(),
            })?
            .into_inner();
        let elapsed = started.elapsed().as_secs_f64();
        let mut stdout = std::io::stdout().lock();
        let written = if !response.format.is_empty() {
            let mut w = stdout.write_all(&response.formatted);
            if self.terminal {
                w = w.and_then(|()| {
                    writeln!(
                        stdout,
                        "\n{} row{} in set. Elapsed: {elapsed:.3} sec.\n",
                        response.rows,
                        if response.rows == 1 { "" } else { "s" }
                    )
                });
            }
            w
        } else if self.terminal && !response.message.is_empty() {
            writeln!(stdout, "{}\n", response.message)
        } else {
            Ok(())
        };
        written
            .and_then(|()| stdout.flush())
            .map_err(|e| SqlFailure {
                kind: FailureKind::Server,
                message: format!("writing the result: {e}"),
            })?;
        if self.time {
            eprintln!("{elapsed:.3}");
        }
        Ok(())
    }

    /// Runs an `INSERT … FORMAT <name>` with its inline data, then standard input's when
    /// `stdin` is set, streamed to the node.
    async fn run_insert(&mut self, piece: &Piece, stdin: bool) -> Result<(), SqlFailure> {
        let started = Instant::now();
        let response = super::insert_data::send(&mut self.client, self.user.as_ref(), piece, stdin)
            .await
            .map_err(|status| SqlFailure {
                kind: FailureKind::of_status(&status),
                message: status.message().to_string(),
            })?;
        if self.terminal && !response.message.is_empty() {
            println!("{}\n", response.message);
        }
        if self.time {
            eprintln!("{:.3}", started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let stdin_terminal = std::io::stdin().is_terminal();
    let terminal = std::io::stdout().is_terminal();
    let text = match (&args.query, &args.file, &args.statement) {
        (Some(q), _, _) => Some(q.clone()),
        (None, Some(path), _) if path.as_os_str() == "-" => Some(read_stdin()?),
        (None, Some(path), _) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        (None, None, Some(s)) => Some(s.clone()),
        (None, None, None) if !stdin_terminal => Some(read_stdin()?),
        (None, None, None) => None,
    };
    let format = match &args.format {
        Some(f) => {
            crate::format::output::OutputFormat::from_name(f).map_err(|e| SqlFailure {
                kind: FailureKind::BadStatement,
                message: e.to_string(),
            })?;
            f.clone()
        }
        None if terminal => "PrettyCompact".into(),
        None => "TabSeparated".into(),
    };
    let user = args
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .and_then(|u| tonic::metadata::MetadataValue::try_from(u).ok());
    let client = connect(&endpoint(&args.host, args.port)).await?;
    let mut session = Session {
        client,
        user,
        format,
        terminal,
        time: args.time,
    };
    let single_query = args.query.is_some() || (args.file.is_none() && args.statement.is_some());
    match text {
        // One insert taking data, from -q: its data runs to the end, and standard input
        // (when not a terminal) follows it, as clickhouse-client reads it.
        Some(text) if single_query && single_insert(&text).is_some() => {
            let Some(piece) = single_insert(&text) else {
                return Ok(());
            };
            session
                .run_insert(&piece, !stdin_terminal)
                .await
                .map_err(|f| in_statement(f, &piece.statement))?;
            Ok(())
        }
        // A script with inserts that carry data: split around the data, not through it.
        Some(text) if script_pieces(&text).iter().any(|p| p.data.is_some()) => {
            for piece in script_pieces(&text) {
                match &piece.data {
                    Some(_) => session.run_insert(&piece, false).await,
                    None => session.run(&piece.statement).await,
                }
                .map_err(|f| in_statement(f, &piece.statement))?;
            }
            Ok(())
        }
        Some(text) => {
            let statements = crate::sql::split_statements(&text).map_err(|e| SqlFailure {
                kind: FailureKind::BadStatement,
                message: e.to_string(),
            })?;
            for statement in statements {
                session.run(&statement).await.map_err(|f| SqlFailure {
                    kind: f.kind,
                    message: format!("{} (in: {})", f.message, first_line(&statement)),
                })?;
            }
            Ok(())
        }
        None => interactive(&mut session, &args).await,
    }
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading statements from standard input")?;
    Ok(s)
}

/// Where the prompt keeps its history.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".sluice_history"))
}

/// The prompt: a statement ends at `;` (and may span lines), `exit`, `quit` or Ctrl-D
/// leave. A failed statement is reported and the prompt goes on, as in clickhouse-client.
async fn interactive(session: &mut Session, args: &SqlArgs) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new().context("starting the prompt")?;
    let history = history_path();
    if let Some(path) = &history {
        // No history yet is the usual first run.
        let _ = editor.load_history(path);
    }
    println!(
        "Connected to Sluice at {}.\n",
        endpoint(&args.host, args.port)
    );
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "sluice :) "
        } else {
            "        :-] "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading a statement"),
        };
        let trimmed = line.trim();
        if pending.is_empty() && matches!(trimmed, "exit" | "quit" | "q" | "logout") {
            break;
        }
        if trimmed.is_empty() && pending.is_empty() {
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(text.trim_end());
        match crate::sql::split_statements(&text) {
            Ok(statements) => {
                for statement in statements {
                    if let Err(f) = session.run(&statement).await {
                        eprintln!("Error: {}\n", f.message);
                        if f.kind == FailureKind::Connection {
                            break;
                        }
                    }
                }
            }
            Err(e) => eprintln!("Error: {e}\n"),
        }
    }
    if let Some(path) = &history {
        if let Err(e) = editor.save_history(path) {
            tracing::debug!(error = %e, "could not save the prompt's history");
        }
    }
    println!("Bye.");
    Ok(())
}

fn in_statement(f: SqlFailure, statement: &str) -> SqlFailure {
    SqlFailure {
        kind: f.kind,
        message: format!("{} (in: {})", f.message, first_line(statement)),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.len() < s.len() {
        format!("{line} ...")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_takes_the_port_given() {
        assert_eq!(endpoint("127.0.0.1", None), "http://127.0.0.1:7070");
        assert_eq!(endpoint("node-1:7171", None), "http://node-1:7171");
        assert_eq!(
            endpoint("http://node-1:7171", Some(9000)),
            "http://node-1:9000"
        );
        assert_eq!(endpoint("https://node-1/", None), "https://node-1:7070");
        assert_eq!(endpoint("[::1]:7171", None), "http://[::1]:7171");
        assert_eq!(endpoint("[::1]", Some(1)), "http://[::1]:1");
    }

    #[test]
    fn exit_codes_tell_failures_apart() {
        let kind = |status| FailureKind::of_status(&status).exit_code();
        assert_eq!(kind(tonic::Status::invalid_argument("syntax error")), 2);
        assert_eq!(kind(tonic::Status::not_found("table t does not exist")), 2);
        assert_eq!(
            kind(tonic::Status::unavailable(
                "transport error: connection refused"
            )),
            3
        );
        assert_eq!(kind(tonic::Status::unavailable("no quorum")), 4);
        assert_eq!(kind(tonic::Status::internal("storage")), 4);
    }
}
