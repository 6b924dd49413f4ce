//! `sluice sql`: statements to a node over gRPC, results printed as aligned tables the way
//! clickhouse-client prints them (or as TSV for scripts).

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context as _;
use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, ContentArrangement, Table};

use crate::admin::GRPC_MESSAGE_MAX;
use crate::proto::{admin_client::AdminClient, ExecuteRequest, ResultSet};

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The node's gRPC address.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
    /// A file of statements separated by ';' ('-' reads standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Output: `pretty` (aligned table) or `tsv` (tab-separated, no header).
    #[arg(long, default_value = "pretty")]
    pub format: OutputFormat,
    /// The user name the node records for the statements (offset resets record it);
    /// by default the login name of this shell.
    #[arg(long, env = "SLUICE_USER")]
    pub user: Option<String>,
    /// The statement (when no file is given).
    pub statement: Option<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Pretty,
    Tsv,
}

pub async fn connect(host: &str) -> anyhow::Result<AdminClient<tonic::transport::Channel>> {
    let endpoint = if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    };
    let client = AdminClient::connect(endpoint.clone())
        .await
        .with_context(|| format!("connecting to a Sluice node at {endpoint}"))?;
    Ok(client
        .max_decoding_message_size(GRPC_MESSAGE_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_MAX))
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let text = match (&args.file, &args.statement) {
        (Some(path), _) if path.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading statements from standard input")?;
            s
        }
        (Some(path), _) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, Some(s)) => s.clone(),
        (None, None) => anyhow::bail!("give a statement, or -f FILE"),
    };
    let statements = crate::sql::split_statements(&text)?;
    let mut client = connect(&args.host).await?;
    let user = args
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .and_then(|u| tonic::metadata::MetadataValue::try_from(u).ok());
    for statement in statements {
        let mut request = tonic::Request::new(ExecuteRequest {
            sql: statement.clone(),
        });
        if let Some(user) = &user {
            request
                .metadata_mut()
                .insert(crate::admin::service::USER_HEADER, user.clone());
        }
        let response = client
            .execute(request)
            .await
            .map_err(|status| anyhow::anyhow!("{}", status.message()))
            .with_context(|| format!("statement failed: {}", first_line(&statement)))?
            .into_inner();
        match response.result {
            Some(result) => print_result(&result, args.format),
            None => {
                if args.format == OutputFormat::Pretty {
                    println!("{}", response.message);
                }
            }
        }
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.len() < s.len() {
        format!("{line} ...")
    } else {
        line.to_string()
    }
}

fn is_numeric(type_name: &str) -> bool {
    type_name.starts_with("Int")
        || type_name.starts_with("UInt")
        || type_name.starts_with("Float")
        || type_name.starts_with("Decimal")
}

pub fn render(result: &ResultSet) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(result.columns.iter().map(|c| c.name.clone()));
    for row in &result.rows {
        table.add_row(row.values.clone());
    }
    for (i, c) in result.columns.iter().enumerate() {
        if is_numeric(&c.r#type) {
            if let Some(column) = table.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    table.to_string()
}

fn print_result(result: &ResultSet, format: OutputFormat) {
    match format {
        OutputFormat::Pretty => {
            println!("{}", render(result));
            println!("{} rows in set.", result.rows.len());
        }
        OutputFormat::Tsv => {
            for row in &result.rows {
                println!("{}", row.values.join("\t"));
            }
        }
    }
}
