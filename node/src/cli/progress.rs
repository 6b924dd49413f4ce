//! `sluice progress`: a progress bar of a table's row count, until it reaches a target.

use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::proto::ExecuteRequest;

#[derive(clap::Args, Debug)]
pub struct ProgressArgs {
    /// The node's gRPC address.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
    /// The table to count.
    pub table: String,
    /// Stop when the table holds this many rows.
    #[arg(long)]
    pub expect: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

pub async fn run(args: ProgressArgs) -> anyhow::Result<()> {
    let mut client = super::sql::connect(&args.host).await?;
    let bar = ProgressBar::new(args.expect);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} rows ({per_sec})",
        )
        .context("progress bar template")?,
    );
    bar.set_message(args.table.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        let response = client
            .execute(ExecuteRequest {
                sql: format!("SELECT count() FROM `{}`", args.table.replace('`', "")),
                ..ExecuteRequest::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        let count: u64 = response
            .result
            .and_then(|r| r.rows.into_iter().next())
            .and_then(|r| r.values.into_iter().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        bar.set_position(count.min(args.expect));
        if count >= args.expect {
            bar.finish();
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bar.abandon();
            anyhow::bail!(
                "{} holds {count} of {} rows after {}s: see `sluice status` and system.kafka_consumers",
                args.table,
                args.expect,
                args.timeout_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
