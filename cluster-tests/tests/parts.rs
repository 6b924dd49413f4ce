//! Parts under load and faults: tiny blocks make thousands of parts to merge and enough
//! log for snapshots; a node killed while it merges, a wiped member that rejoins through a
//! snapshot, and that member killed while the snapshot streams to it. After heal, every
//! produced (partition, offset) is stored exactly once on every replica, and merges kept
//! the part count far below the block count.

use std::time::Duration;

use cluster_tests::workload::{ddl, heal_and_check, produce_batch, wait_for_ingestion, PARTITIONS};
use cluster_tests::{unique, wait_for, Kafka, TestCluster};

/// The chaos workload with blocks of at most 20 messages.
fn tiny_block_ddl(kafka: &Kafka, topic: &str, group: &str) -> String {
    ddl(kafka, topic, group).replace("kafka_max_block_size = 500", "kafka_max_block_size = 20")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_and_snapshots_keep_every_row_once_through_kills() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("parts");
    kafka.create_topic(&topic, PARTITIONS).await?;
    produce_batch(kafka, &topic, 30_000, 0).await?;
    let mut cluster = TestCluster::start("parts", 3).await?;
    let group = unique("parts");
    cluster.nodes[0]
        .script(&tiny_block_ddl(kafka, &topic, &group))
        .await?;
    let mut history = vec!["ddl".to_string()];
    wait_for_ingestion(&cluster.nodes[0]).await?;

    // A node killed once it is merging: whatever merge it was in leaves no trace.
    wait_for("a merge on node 1", Duration::from_secs(120), || async {
        cluster.nodes[1].log_contains("merged parts").then_some(())
    })
    .await?;
    cluster.nodes[1].kill9()?;
    history.push(format!("kill -9 {} while merging", cluster.nodes[1].name));
    produce_batch(kafka, &topic, 30_000, 30_000).await?;
    cluster.nodes[1].spawn().await?;
    history.push(format!("restarted {}", cluster.nodes[1].name));

    // A snapshot exists once the log grew past the policy; a wiped member then rejoins
    // through it, and is killed once while it streams in.
    wait_for(
        "a snapshot of the table",
        Duration::from_secs(180),
        || async {
            cluster
                .nodes
                .iter()
                .any(|n| n.log_contains("built a snapshot"))
                .then_some(())
        },
    )
    .await?;
    let wiped = 2;
    cluster.nodes[wiped].kill9()?;
    cluster.nodes[wiped].wipe()?;
    cluster.nodes[wiped].spawn().await?;
    history.push(format!(
        "wiped {} and restarted it",
        cluster.nodes[wiped].name
    ));
    wait_for(
        "the wiped member to receive data",
        Duration::from_secs(120),
        || async {
            cluster.nodes[wiped]
                .log_contains("receiving a snapshot")
                .then_some(())
        },
    )
    .await?;
    cluster.nodes[wiped].kill9()?;
    history.push(format!(
        "kill -9 {} during its snapshot",
        cluster.nodes[wiped].name
    ));
    produce_batch(kafka, &topic, 10_000, 60_000).await?;
    cluster.nodes[wiped].spawn().await?;
    history.push(format!("restarted {}", cluster.nodes[wiped].name));

    heal_and_check(&cluster, kafka, &topic, &group, &history).await?;
    anyhow::ensure!(
        cluster.nodes[wiped].log_contains("installed a snapshot"),
        "the wiped member should have caught up from a snapshot\n{}",
        cluster.nodes[wiped].log_tail()
    );
    // 70,300 rows in blocks of at most 20 make thousands of blocks; merges keep tens of parts.
    for node in &cluster.nodes {
        let parts = node
            .number("SELECT parts FROM system.raft_groups WHERE \"table\" = 'seen'")
            .await?;
        println!("{}: {parts} parts", node.name);
        anyhow::ensure!(
            parts <= 120,
            "{} holds {parts} parts: merges did not keep up",
            node.name
        );
    }
    Ok(())
}
