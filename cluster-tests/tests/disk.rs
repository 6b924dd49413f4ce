//! Disk faults on one node: its data dir on a small filesystem that fills up, and fsync
//! failing with EIO (libfiu's `fiu-run`). The node must stop acknowledging at once (it
//! exits non-zero: crash-only, as after any storage error), corrupt nothing, and come back
//! from its disk when the fault clears; the other nodes go on without it. Checked like
//! every chaos scenario after heal.
//!
//! Each test runs in a namespace of its own (`netns`), so its tmpfs mount is private and
//! disappears with it.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::workload::{ddl, heal_and_check, produce_batch, PARTITIONS};
use cluster_tests::{disk, netns, unique, wait_for, Kafka, TestCluster};

const VICTIM: usize = 2;

/// Starts a 3-node cluster in this namespace with the chaos tables, and waits until every
/// node stored the first messages.
async fn cluster_with_data(
    prefix: &str,
    kafka: &Kafka,
    topic: &str,
    group: &str,
) -> anyhow::Result<TestCluster> {
    kafka.create_topic(topic, PARTITIONS).await?;
    let cluster = TestCluster::start(prefix, 3).await?;
    cluster.nodes[0].script(&ddl(kafka, topic, group)).await?;
    produce_batch(kafka, topic, 3_000, 0).await?;
    for node in &cluster.nodes {
        wait_for("the first rows", Duration::from_secs(60), || async {
            (node.number("SELECT count() FROM seen").await.ok()? == 3_000).then_some(())
        })
        .await?;
    }
    Ok(cluster)
}

/// Waits for the victim to exit by itself, and checks it said why.
async fn expect_storage_exit(cluster: &mut TestCluster, why: &str) -> anyhow::Result<()> {
    let node = &mut cluster.nodes[VICTIM];
    let exited = node.exited_within(Duration::from_secs(90)).await?;
    let log = node.log_tail();
    let status = exited.with_context(|| format!("the node kept running\n{log}"))?;
    anyhow::ensure!(!status.success(), "exited {status} after a storage error");
    anyhow::ensure!(
        node.log_contains("storage failed") && node.log_contains(why),
        "the node's log does not say why it stopped ({why}):\n{log}"
    );
    Ok(())
}

/// The two healthy nodes hold every produced message.
async fn survivors_caught_up(cluster: &TestCluster, total: u64) -> anyhow::Result<()> {
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        wait_for(
            "the survivors to go on",
            Duration::from_secs(120),
            || async {
                (node.number("SELECT count() FROM seen").await.ok()? >= total).then_some(())
            },
        )
        .await
        .with_context(|| node.log_tail())?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_a_node_which_recovers_when_space_is_freed() -> anyhow::Result<()> {
    if !netns::inside() {
        return tokio::task::spawn_blocking(|| {
            netns::run_self_inside("a_full_disk_stops_a_node_which_recovers_when_space_is_freed")
        })
        .await?;
    }
    let kafka = tokio::task::spawn_blocking(Kafka::dedicated).await??;
    let (topic, group) = (unique("chaos-full"), unique("chaos"));
    let mut cluster = cluster_with_data("full", &kafka, &topic, &group).await?;
    let mut history = vec!["ddl, 3000 messages stored everywhere".to_string()];

    // The victim's data moves onto a 64 MiB tmpfs.
    let _tmpfs = disk::move_to_tmpfs(&mut cluster.nodes[VICTIM], "64m").await?;
    let dir = cluster.nodes[VICTIM].data_dir.clone();
    cluster.wait_for_voters(3).await?;
    history.push("victim's data dir on a 64 MiB tmpfs".into());

    // Fill it up.
    disk::fill(&dir)?;
    history.push("tmpfs full".into());
    produce_batch(&kafka, &topic, 30_000, 3_000).await?;
    history.push("produced 30000 more".into());
    expect_storage_exit(&mut cluster, "No space left on device").await?;
    history.push("victim exited on ENOSPC".into());
    survivors_caught_up(&cluster, 33_000).await?;

    // Space comes back; the victim restarts from its disk and catches up.
    disk::unfill(&dir)?;
    cluster.nodes[VICTIM].spawn().await?;
    cluster.wait_for_voters(3).await?;
    history.push("space freed, victim restarted".into());
    heal_and_check(&cluster, &kafka, &topic, &group, &history).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_failing_with_eio_stops_a_node_which_recovers_when_it_clears() -> anyhow::Result<()> {
    if !netns::inside() {
        return tokio::task::spawn_blocking(|| {
            netns::run_self_inside(
                "fsync_failing_with_eio_stops_a_node_which_recovers_when_it_clears",
            )
        })
        .await?;
    }
    let kafka = tokio::task::spawn_blocking(Kafka::dedicated).await??;
    let (topic, group) = (unique("chaos-eio"), unique("chaos"));
    let mut cluster = cluster_with_data("eio", &kafka, &topic, &group).await?;
    let mut history = vec!["ddl, 3000 messages stored everywhere".to_string()];

    // The victim runs under libfiu, its failure points off until enabled.
    cluster.nodes[VICTIM].terminate(Duration::from_secs(30))?;
    let ctrl = std::env::temp_dir().join(format!("sluice-fiu-{}", std::process::id()));
    let ctrl_text = ctrl.to_string_lossy().to_string();
    cluster.nodes[VICTIM].wrapper = ["fiu-run", "-x", "-f", &ctrl_text]
        .map(String::from)
        .to_vec();
    cluster.nodes[VICTIM].spawn().await?;
    cluster.wait_for_voters(3).await?;
    let pid = cluster.nodes[VICTIM]
        .pid()
        .context("the victim runs")?
        .to_string();
    cluster_tests::run_tool(
        "fiu-ctrl",
        &[
            "-f",
            &ctrl_text,
            "-c",
            "enable name=posix/io/sync/*,failinfo=5",
            &pid,
        ],
    )
    .context("fiu-ctrl (scripts/env.sh installs fiu-utils)")?;
    history.push("fsync and fdatasync fail with EIO on the victim".into());
    produce_batch(&kafka, &topic, 10_000, 3_000).await?;
    history.push("produced 10000 more".into());
    expect_storage_exit(&mut cluster, "Input/output error").await?;
    history.push("victim exited on EIO".into());
    survivors_caught_up(&cluster, 13_000).await?;

    // The fault clears (a new process without it); the victim recovers from its disk.
    cluster.nodes[VICTIM].wrapper.clear();
    cluster.nodes[VICTIM].spawn().await?;
    cluster.wait_for_voters(3).await?;
    history.push("fault cleared, victim restarted".into());
    heal_and_check(&cluster, &kafka, &topic, &group, &history).await
}
