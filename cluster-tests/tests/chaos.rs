//! Faults against a live cluster, checked by `cluster_tests::checker`: after the fault
//! heals, every produced (partition, offset) is stored exactly once on every replica.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::checker::{check, Position};
use cluster_tests::cluster::{owners, status, NODE_TIMEOUT_MS};
use cluster_tests::{unique, wait_for, Kafka, Node, TestCluster};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const PARTITIONS: i32 = 3;

async fn produce_batch(
    kafka: &Kafka,
    topic: &str,
    count: u64,
    start_index: u64,
) -> anyhow::Result<()> {
    kafka
        .produce(
            topic,
            PARTITIONS,
            11,
            start_index..start_index + count,
            None,
        )
        .await
}

/// Every (partition, offset) the topic holds: offsets of a fresh topic without
/// transactions run from 0 to the high watermark.
fn produced(kafka: &Kafka, topic: &str) -> anyhow::Result<BTreeSet<Position>> {
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

async fn stored(node: &Node) -> anyhow::Result<Vec<Position>> {
    let rows = node.rows("SELECT part, off FROM seen").await?;
    rows.iter()
        .map(|r| Ok((r[0].parse::<i32>()?, r[1].parse::<i64>()?)))
        .collect()
}

fn ddl(kafka: &Kafka, topic: &str, group: &str) -> String {
    format!(
        "CREATE TABLE q (number UInt32) ENGINE = Kafka() SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}', kafka_group_name = '{}', kafka_format = 'JSONEachRow', kafka_max_block_size = 500;
         CREATE TABLE seen (part Int32, off Int64) ENGINE = MergeTree() ORDER BY (part, off);
         CREATE MATERIALIZED VIEW seen_mv TO seen AS SELECT _partition AS part, _offset AS off FROM q;",
        kafka.bootstrap, group
    )
}

/// The group's committed offset of every partition reaches the end of the partition.
async fn group_offsets_reach_the_end(
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
    wait_for(
        "the group offsets to reach the end",
        Duration::from_secs(60),
        || {
            let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(5));
            let done = committed.ok().is_some_and(|c| {
                c.elements().iter().all(|e| {
                    let high = consumer
                        .fetch_watermarks(topic, e.partition(), Duration::from_secs(5))
                        .map(|(_, h)| h)
                        .unwrap_or(i64::MAX);
                    e.offset().to_raw() == Some(high)
                })
            });
            async move { done.then_some(()) }
        },
    )
    .await
}

/// Waits until every running node stored everything, then checks the invariants: exactly
/// once per (partition, offset) on every replica, identical replicas, every DDL everywhere,
/// the group offsets at the end, and ingestion still going.
async fn heal_and_check(
    cluster: &TestCluster,
    kafka: &Kafka,
    topic: &str,
    group: &str,
    history: &[String],
) -> anyhow::Result<()> {
    let expected = produced(kafka, topic)?;
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let n = expected.len() as u64;
        wait_for(
            &format!("{n} rows on {}", node.name),
            Duration::from_secs(180),
            || async { (node.number("SELECT count() FROM seen").await.ok()? >= n).then_some(()) },
        )
        .await
        .with_context(|| format!("history: {history:?}\n{}", node.log_tail()))?;
    }
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
        wait_for(
            &format!("new rows on {} after heal", node.name),
            Duration::from_secs(60),
            || async {
                (node.number("SELECT count() FROM seen").await.ok()? == before + 300).then_some(())
            },
        )
        .await
        .with_context(|| format!("history: {history:?}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_loses_its_partition_and_nothing_is_lost_or_doubled() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("chaos-pause");
    kafka.create_topic(&topic, PARTITIONS).await?;
    produce_batch(kafka, &topic, 15_000, 0).await?;
    let cluster = TestCluster::start("pause", 3).await?;
    let group = unique("chaos");
    cluster.nodes[0].script(&ddl(kafka, &topic, &group)).await?;
    let mut history = vec!["ddl".to_string()];
    wait_for("ingestion to start", Duration::from_secs(60), || async {
        (cluster.nodes[0]
            .number("SELECT count() FROM seen")
            .await
            .ok()?
            > 0)
        .then_some(())
    })
    .await?;
    // Pause the owner of partition 0 past the node timeout: the partition moves while the
    // paused node still believes it owns it.
    let before = owners(&cluster.nodes[0]).await?;
    let owner_id = *before
        .get(&(topic.clone(), 0))
        .context("partition 0 is assigned")?;
    let mut victim = 0;
    for (i, node) in cluster.nodes.iter().enumerate() {
        if status(node).await?.node_id == owner_id {
            victim = i;
        }
    }
    cluster.nodes[victim].signal("STOP")?;
    history.push(format!("SIGSTOP {}", cluster.nodes[victim].name));
    produce_batch(kafka, &topic, 15_000, 15_000).await?;
    history.push("produced 15000 more".into());
    let observer = (victim + 1) % 3;
    wait_for("partition 0 to move", Duration::from_secs(60), || async {
        let now = owners(&cluster.nodes[observer]).await.ok()?;
        (now.get(&(topic.clone(), 0)).is_some_and(|n| *n != owner_id)).then_some(())
    })
    .await?;
    history.push("partition 0 moved".into());
    tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS)).await;
    cluster.nodes[victim].signal("CONT")?;
    history.push(format!("SIGCONT {}", cluster.nodes[victim].name));
    heal_and_check(&cluster, kafka, &topic, &group, &history).await?;
    println!(
        "stale writes of the woken node refused by fencing: {}",
        cluster.nodes[victim].log_contains("fenced")
    );
    Ok(())
}

/// The seed of a randomized scenario: `SLUICE_CHAOS_SEED`, else drawn and printed, so a
/// failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("SLUICE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos seed {seed} (replay with SLUICE_CHAOS_SEED={seed})");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_and_a_rolling_restart_lose_and_double_nothing() -> anyhow::Result<()> {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let kafka = Kafka::shared()?;
    let topic = unique("chaos-kill");
    kafka.create_topic(&topic, PARTITIONS).await?;
    let mut cluster = TestCluster::start("kill", 3).await?;
    let group = unique("chaos");
    cluster.nodes[0].script(&ddl(kafka, &topic, &group)).await?;
    let mut history = vec!["ddl".to_string()];
    let mut produced_so_far = 0;
    // Three rounds: produce, kill -9 a random node mid-stream, bring it back.
    for round in 0..3 {
        produce_batch(kafka, &topic, 8_000, produced_so_far).await?;
        produced_so_far += 8_000;
        history.push(format!("round {round}: produced up to {produced_so_far}"));
        let victim = rng.random_range(0..cluster.nodes.len());
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
        cluster.nodes[victim].kill9()?;
        history.push(format!(
            "round {round}: kill -9 {}",
            cluster.nodes[victim].name
        ));
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..4000))).await;
        cluster.nodes[victim].spawn().await?;
        history.push(format!(
            "round {round}: restarted {}",
            cluster.nodes[victim].name
        ));
        cluster.wait_for_voters(3).await?;
    }
    // A rolling restart with SIGTERM, while messages keep coming: each node drains and
    // stops within the deadline (a hang fails the test), then comes back.
    let producing = {
        let topic = topic.clone();
        let start = produced_so_far;
        tokio::spawn(async move {
            for i in 0..4 {
                produce_batch(kafka, &topic, 2_000, start + i * 2_000).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            anyhow::Ok(())
        })
    };
    for i in 0..cluster.nodes.len() {
        let exit = cluster.nodes[i].terminate(Duration::from_secs(30))?;
        history.push(format!("SIGTERM {}: {exit}", cluster.nodes[i].name));
        cluster.nodes[i].spawn().await?;
        cluster.wait_for_voters(3).await?;
    }
    producing.await??;
    history.push("rolling restart done".into());
    heal_and_check(&cluster, kafka, &topic, &group, &history).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_broker_restart_mid_stream_is_ridden_out() -> anyhow::Result<()> {
    // A broker of this test's own: the shared one serves tests running beside this one.
    let kafka = std::sync::Arc::new(tokio::task::spawn_blocking(Kafka::dedicated).await??);
    let topic = unique("chaos-broker");
    kafka.create_topic(&topic, PARTITIONS).await?;
    produce_batch(&kafka, &topic, 10_000, 0).await?;
    let cluster = TestCluster::start("broker", 3).await?;
    let group = unique("chaos");
    cluster.nodes[0]
        .script(&ddl(&kafka, &topic, &group))
        .await?;
    let mut history = vec!["ddl".to_string()];
    wait_for("ingestion to start", Duration::from_secs(60), || async {
        (cluster.nodes[0]
            .number("SELECT count() FROM seen")
            .await
            .ok()?
            > 0)
        .then_some(())
    })
    .await?;
    let broker = kafka.clone();
    tokio::task::spawn_blocking(move || broker.restart(Duration::from_secs(3))).await??;
    history.push("broker stopped for 3 s and restarted".into());
    produce_batch(&kafka, &topic, 10_000, 10_000).await?;
    history.push("produced 10000 more".into());
    heal_and_check(&cluster, &kafka, &topic, &group, &history).await
}
