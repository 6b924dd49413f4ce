//! A small harness for tests with real parts: a real Kafka broker (started through
//! `scripts/kafka.sh`) and real `sluice` node processes on free loopback ports.
//!
//! Processes are tracked by pid and killed when their handle drops; nothing is killed by
//! name. Waits poll a condition with a deadline; no sleep stands in for synchronization.

pub mod checker;
pub mod cluster;
pub mod disk;
pub mod kafka;
pub mod metrics;
pub mod netns;
pub mod node;
pub mod proxy;
pub mod workload;

use std::time::{Duration, Instant};

pub use cluster::TestCluster;
pub use kafka::{Kafka, SecuredKafka};
pub use node::Node;

/// Runs a system tool (ip, iptables, mount, fiu-ctrl...) and fails with its stderr.
pub fn run_tool(program: &str, args: &[&str]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The repository root (this crate lives in `cluster-tests/`).
///
/// `cargo test` names the crate's directory at run time too, and that is the one to trust:
/// a target dir shared by two clones keeps a test binary built in the other clone when this
/// clone's sources are older than it, and the path baked in at compile time is then the
/// other clone's, or one that no longer exists.
pub fn repo_root() -> std::path::PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from(".."))
}

/// A name unique to this test run, for topics and groups.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `query` (a number) on `node` answers `expected`, then checks it still does
/// a moment later (a row stored twice, or one that should not be read, would show by then).
pub async fn settles_at(node: &Node, query: &str, expected: u64) -> anyhow::Result<()> {
    let reached = wait_for(
        &format!("{query} = {expected}"),
        Duration::from_secs(90),
        || async { (node.number(query).await.ok()? >= expected).then_some(()) },
    )
    .await;
    if reached.is_err() {
        anyhow::bail!(
            "{query}: {:?}, expected {expected}; consumers: {:?}",
            node.number(query).await,
            node.rows("SELECT * FROM system.kafka_consumers").await
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    anyhow::ensure!(
        node.number(query).await? == expected,
        "{query}: {:?} after settling, expected {expected}",
        node.number(query).await
    );
    Ok(())
}

/// The guide's quickstart DDL with broker, topic and group filled in.
pub fn quickstart_sql(brokers: &str, topic: &str, group: &str) -> anyhow::Result<String> {
    sql_file("quickstart.sql", brokers, topic, group)
}

/// The guide's "ClickHouse to Kafka" DDL (github_out_queue, github_out_mv) filled in.
pub fn kafka_out_sql(brokers: &str, topic: &str, group: &str) -> anyhow::Result<String> {
    sql_file("kafka-out.sql", brokers, topic, group)
}

fn sql_file(name: &str, brokers: &str, topic: &str, group: &str) -> anyhow::Result<String> {
    let path = repo_root().join("scripts/sql").join(name);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(text
        .replace("${KAFKA_BROKERS}", brokers)
        .replace("${KAFKA_TOPIC}", topic)
        .replace("${KAFKA_GROUP}", group)
        .replace("${KAFKA_OUT_TOPIC}", topic)
        .replace("${KAFKA_OUT_GROUP}", group))
}
