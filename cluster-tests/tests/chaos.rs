//! Faults against a live cluster, checked by `cluster_tests::checker`: after the fault
//! heals, every produced (partition, offset) is stored exactly once on every replica.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::cluster::{owners, NODE_TIMEOUT_MS};
use cluster_tests::workload::{ddl, heal_and_check, produce_batch, wait_for_ingestion, PARTITIONS};
use cluster_tests::{unique, wait_for, Kafka, TestCluster};

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
    wait_for_ingestion(&cluster.nodes[0]).await?;
    // Pause the owner of partition 0 past the node timeout: the partition moves while the
    // paused node still believes it owns it.
    let before = owners(&cluster.nodes[0]).await?;
    let owner_id = *before
        .get(&(topic.clone(), 0))
        .context("partition 0 is assigned")?;
    let victim = cluster.index_of(owner_id).await?;
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
async fn kills_a_wipe_and_a_rolling_restart_lose_and_double_nothing() -> anyhow::Result<()> {
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
    // Three rounds: produce, kill -9 mid-stream (a random node, then the Raft leader, then
    // the owner of partition 0, whose data dir is wiped as a lost volume would be), bring
    // it back.
    for round in 0..3 {
        produce_batch(kafka, &topic, 8_000, produced_so_far).await?;
        produced_so_far += 8_000;
        history.push(format!("round {round}: produced up to {produced_so_far}"));
        let victim = match round {
            0 => rng.random_range(0..cluster.nodes.len()),
            1 => cluster.leader().await?,
            _ => {
                let owner = *owners(&cluster.nodes[0])
                    .await?
                    .get(&(topic.clone(), 0))
                    .context("partition 0 is assigned")?;
                cluster
                    .index_of(owner)
                    .await
                    .context("the owner of partition 0 is a member")?
            }
        };
        let wipe = round == 2;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
        cluster.nodes[victim].kill9()?;
        history.push(format!(
            "round {round}: kill -9 {}",
            cluster.nodes[victim].name
        ));
        if wipe {
            cluster.nodes[victim].wipe()?;
            history.push(format!(
                "round {round}: wiped the data dir of {}",
                cluster.nodes[victim].name
            ));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..4000))).await;
        cluster.nodes[victim].spawn().await?;
        history.push(format!(
            "round {round}: restarted {}",
            cluster.nodes[victim].name
        ));
        // A wiped node comes back as a new member in its former self's place: still
        // three voters, one cluster.
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
    wait_for_ingestion(&cluster.nodes[0]).await?;
    let broker = kafka.clone();
    tokio::task::spawn_blocking(move || broker.restart(Duration::from_secs(3))).await??;
    history.push("broker stopped for 3 s and restarted".into());
    produce_batch(&kafka, &topic, 10_000, 10_000).await?;
    history.push("produced 10000 more".into());
    heal_and_check(&cluster, &kafka, &topic, &group, &history).await
}
