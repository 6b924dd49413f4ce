//! The chaos workload: numbered messages into a multi-partition topic, a Kafka table with
//! a view that stores each message's (partition, offset), and the checks after a fault
//! heals (`checker` for exactly-once, then DDL, group offsets and liveness).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::checker::{check, check_fencing, Position, WriterEntry};
use crate::{wait_for, Kafka, Node, TestCluster};

pub const PARTITIONS: i32 = 3;

/// Produces `count` numbered messages, retrying while the broker is down (a broker
/// restart is one of the faults). A retried batch may land twice in Kafka: those are new
/// offsets, and each must still be stored exactly once.
pub async fn produce_batch(
    kafka: &Kafka,
    topic: &str,
    count: u64,
    start_index: u64,
) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        let produced = kafka
            .produce(
                topic,
                PARTITIONS,
                11,
                start_index..start_index + count,
                None,
            )
            .await;
        match produced {
            Ok(()) => return Ok(()),
            Err(e) if tries < 10 => {
                tries += 1;
                eprintln!("producing failed ({e:#}); retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `node` stored its first rows.
pub async fn wait_for_ingestion(node: &Node) -> anyhow::Result<()> {
    wait_for("ingestion to start", Duration::from_secs(60), || async {
        (node.number("SELECT count() FROM seen").await.ok()? > 0).then_some(())
    })
    .await
}

/// Every (partition, offset) the topic holds: offsets of a fresh topic without
/// transactions run from 0 to the high watermark.
pub fn produced(kafka: &Kafka, topic: &str) -> anyhow::Result<BTreeSet<Position>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .context("a Kafka client")?;
    let mut out = BTreeSet::new();
    for p in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .context("watermarks")?;
        out.extend((low..high).map(|o| (p, o)));
    }
    Ok(out)
}

pub async fn stored(node: &Node) -> anyhow::Result<Vec<Position>> {
    let rows = node.rows("SELECT part, off FROM seen").await?;
    rows.iter()
        .map(|r| Ok((r[0].parse::<i32>()?, r[1].parse::<i64>()?)))
        .collect()
}

pub fn ddl(kafka: &Kafka, topic: &str, group: &str) -> String {
    format!(
        "CREATE TABLE q (number UInt32) ENGINE = Kafka() SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}', kafka_group_name = '{}', kafka_format = 'JSONEachRow', kafka_max_block_size = 500;
         CREATE TABLE seen (part Int32, off Int64) ENGINE = MergeTree() ORDER BY (part, off);
         CREATE MATERIALIZED VIEW seen_mv TO seen AS SELECT _partition AS part, _offset AS off FROM q;",
        kafka.bootstrap, group
    )
}

/// Every running node's row count, its view of the replicas, and its log's tail: what
/// explains a node that fell behind.
async fn what_nodes_see(cluster: &TestCluster) -> String {
    let mut seen = String::new();
    if let Some(node) = cluster.nodes.iter().find(|n| n.is_running()) {
        let consumers = node
            .rows("SELECT node, assignments.partition_id, assignments.current_offset, is_currently_used, num_messages_read, num_restarts, exceptions.text FROM system.kafka_consumers")
            .await;
        let owners = crate::cluster::status(node).await.map(|s| {
            s.assignments
                .iter()
                .map(|a| (a.partition, a.node_id, a.epoch))
                .collect::<Vec<_>>()
        });
        let members = crate::cluster::status(node).await.map(|s| {
            s.members
                .iter()
                .map(|m| (m.name.clone(), m.node_id, m.voter))
                .collect::<Vec<_>>()
        });
        seen.push_str(&format!(
            "consumers: {consumers:?}\nassignment (partition, node, epoch): {owners:?}\nmembers: {members:?}\n"
        ));
    }
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let count = node.number("SELECT count() FROM seen").await;
        let replicas = node
            .rows("SELECT node, role, term, last_log_index, applied_index, lag, error FROM system.replicas")
            .await;
        seen.push_str(&format!(
            "{}: {count:?} rows; replicas {replicas:?}\n{}\n",
            node.name,
            node.log_tail()
        ));
    }
    seen
}

/// The `seen` table's writer log on one replica.
pub async fn writer_log(node: &Node) -> anyhow::Result<Vec<WriterEntry>> {
    let rows = node
        .rows("SELECT log_index, partition, first_offset, last_offset, node_id, epoch FROM system.writer_log WHERE \"table\" = 'seen' ORDER BY log_index")
        .await?;
    rows.iter()
        .map(|r| {
            Ok(WriterEntry {
                log_index: r[0].parse()?,
                partition: r[1].parse()?,
                first_offset: r[2].parse()?,
                last_offset: r[3].parse()?,
                node: r[4].parse()?,
                epoch: r[5].parse()?,
            })
        })
        .collect()
}

/// The group's committed offset of every partition reaches the end of the partition.
pub async fn group_offsets_reach_the_end(
    kafka: &Kafka,
    topic: &str,
    group: &str,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", group)
        .create()
        .context("a Kafka client")?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    // (partition, committed, end) of every partition.
    let positions = || -> Vec<(i32, Option<i64>, i64)> {
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .map(|c| {
                c.elements()
                    .iter()
                    .map(|e| (e.partition(), e.offset().to_raw()))
                    .collect()
            })
            .unwrap_or_else(|_| Vec::new());
        committed
            .into_iter()
            .map(|(p, c)| {
                let high = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .map(|(_, h)| h)
                    .unwrap_or(i64::MAX);
                (p, c, high)
            })
            .collect()
    };
    let reached = wait_for(
        "the group offsets to reach the end",
        Duration::from_secs(60),
        || {
            let now = positions();
            let done = now.len() == PARTITIONS as usize
                && now.iter().all(|(_, c, high)| *c == Some(*high));
            async move { done.then_some(()) }
        },
    )
    .await;
    reached.with_context(|| format!("(partition, committed, end): {:?}", positions()))
}

/// Waits until every running node stored everything, then checks the invariants: exactly
/// once per (partition, offset) on every replica, identical replicas, every DDL everywhere,
/// the group offsets at the end, and ingestion still going.
pub async fn heal_and_check(
    cluster: &TestCluster,
    kafka: &Kafka,
    topic: &str,
    group: &str,
    history: &[String],
) -> anyhow::Result<()> {
    heal_and_check_timed(cluster, kafka, topic, group, history)
        .await
        .map(|_| ())
}

/// `heal_and_check`, returning when every running node had stored every message produced
/// so far (what a soak reports as the time to recover).
pub async fn heal_and_check_timed(
    cluster: &TestCluster,
    kafka: &Kafka,
    topic: &str,
    group: &str,
    history: &[String],
) -> anyhow::Result<std::time::Instant> {
    let expected = produced(kafka, topic)?;
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let n = expected.len() as u64;
        let reached = wait_for(
            &format!("{n} rows on {}", node.name),
            Duration::from_secs(180),
            || async { (node.number("SELECT count() FROM seen").await.ok()? >= n).then_some(()) },
        )
        .await;
        if let Err(e) = reached {
            return Err(e.context(format!(
                "history: {history:?}\n{}",
                what_nodes_see(cluster).await
            )));
        }
    }
    let caught_up = std::time::Instant::now();
    // Nothing late: a zombie's block would land now if fencing failed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut replicas = Vec::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        replicas.push((node.name.clone(), stored(node).await?));
    }
    let report = check(&expected, &replicas);
    println!("{report}history: {history:?}");
    anyhow::ensure!(
        report.ok(),
        "invariants broken:\n{report}history: {history:?}"
    );
    let mut logs = Vec::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let log = writer_log(node).await?;
        let broken = check_fencing(&log);
        anyhow::ensure!(
            broken.is_empty(),
            "fencing broken on {}: {broken:?}\nhistory: {history:?}",
            node.name
        );
        logs.push((node.name.clone(), log));
    }
    if let Some((first, log)) = logs.first() {
        let epochs: BTreeSet<u64> = log.iter().map(|e| e.epoch).collect();
        println!(
            "fencing: {} blocks under {} epochs, one writer per epoch, epochs never back",
            log.len(),
            epochs.len()
        );
        for (name, other) in &logs[1..] {
            anyhow::ensure!(
                other == log,
                "the writer logs of {name} and {first} differ; history: {history:?}"
            );
        }
    }
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let tables = node.rows("SHOW TABLES").await?;
        let names: Vec<&str> = tables.iter().map(|r| r[0].as_str()).collect();
        anyhow::ensure!(
            names == ["q", "seen", "seen_mv"],
            "{}: acknowledged DDL missing: {names:?}; history: {history:?}",
            node.name
        );
    }
    group_offsets_reach_the_end(kafka, topic, group)
        .await
        .with_context(|| format!("history: {history:?}"))?;
    // Healthy and still ingesting.
    let before = expected.len() as u64;
    produce_batch(kafka, topic, 300, 1_000_000).await?;
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let reached = wait_for(
            &format!("new rows on {} after heal", node.name),
            Duration::from_secs(60),
            || async {
                (node.number("SELECT count() FROM seen").await.ok()? == before + 300).then_some(())
            },
        )
        .await;
        if let Err(e) = reached {
            return Err(e.context(format!(
                "{before} rows before; history: {history:?}\n{}",
                what_nodes_see(cluster).await
            )));
        }
    }
    Ok(caught_up)
}
