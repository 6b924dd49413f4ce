//! Three and four real nodes in one Raft cluster, against a real Kafka broker: DDL
//! anywhere is seen everywhere, replicas hold identical rows, and killed members, a killed
//! leader, a lagging member and membership changes lose and duplicate nothing.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use cluster_tests::cluster::{owners, status, table_digest, NODE_TIMEOUT_MS};
use cluster_tests::{quickstart_sql, unique, wait_for, Kafka, Node, TestCluster};
use sluice::proto::{DrainRequest, RemoveNodeRequest};

async fn produce_events(
    kafka: &Kafka,
    topic: &str,
    count: u64,
    start_index: u64,
) -> anyhow::Result<()> {
    kafka.create_topic_if_missing(topic, 3).await?;
    kafka
        .produce(topic, 3, 7, start_index..start_index + count, None)
        .await
}

/// Three nodes with the guide's tables (small blocks) reading a new topic that holds
/// `first` events.
async fn three_nodes_ingesting(
    kafka: &Kafka,
    prefix: &str,
    first: u64,
) -> anyhow::Result<(String, TestCluster)> {
    let topic = unique("github");
    produce_events(kafka, &topic, first, 0).await?;
    let cluster = TestCluster::start(prefix, 3).await?;
    let ddl = quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?.replace(
        "kafka_num_consumers = 1",
        "kafka_num_consumers = 1, kafka_max_block_size = 2000",
    );
    cluster.nodes[0].script(&ddl).await?;
    Ok((topic, cluster))
}

async fn count(node: &Node, table: &str) -> u64 {
    node.number(&format!("SELECT count() FROM {table}"))
        .await
        .unwrap_or(0)
}

/// Waits until every running node holds exactly `expected` rows, then checks that their
/// rows are the same (count and digest of every column) and that no row is there twice.
async fn assert_replicas_equal(
    cluster: &TestCluster,
    table: &str,
    expected: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let reached = wait_for(
            &format!("{expected} rows in {table} on {}", node.name),
            timeout,
            || async { (count(node, table).await == expected).then_some(()) },
        )
        .await;
        if reached.is_err() {
            let consumers = node.rows("SELECT node, assignments.partition_id, assignments.current_offset, exceptions.text FROM system.kafka_consumers").await;
            anyhow::bail!(
                "{} holds {} rows of {table}, expected {expected}; its consumers: {consumers:?}\n{}",
                node.name,
                count(node, table).await,
                node.log_tail()
            );
        }
    }
    let mut digests = Vec::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let digest = table_digest(node, table).await?;
        assert_eq!(
            digest.0, expected,
            "{} read back {} rows",
            node.name, digest.0
        );
        assert_eq!(
            node.number(&format!("SELECT count(DISTINCT created_at) FROM {table}"))
                .await?,
            expected,
            "{}: a row is stored twice",
            node.name
        );
        digests.push((node.name.clone(), digest));
    }
    let first = digests[0].1;
    for (name, d) in &digests {
        assert_eq!(*d, first, "replica {name} differs from {}", digests[0].0);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_on_any_node_is_visible_on_every_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start("ddl", 3).await?;
    cluster.nodes[1]
        .script("CREATE TABLE events (id UInt64, name String) ENGINE = MergeTree() ORDER BY id")
        .await?;
    // A sequentially consistent read on another node sees the table at once.
    assert_eq!(
        cluster.nodes[2]
            .number("SELECT count() FROM events SETTINGS select_sequential_consistency = 1")
            .await?,
        0
    );
    // Every member, its role and how far behind it is.
    let replicas = cluster.nodes[0]
        .rows("SELECT node, role, lag, error FROM system.replicas ORDER BY node")
        .await?;
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    assert_eq!(
        replicas.iter().filter(|r| r[1] == "leader").count(),
        1,
        "{replicas:?}"
    );
    assert!(
        replicas.iter().all(|r| r[3].is_empty() && r[2] != "NULL"),
        "{replicas:?}"
    );
    for node in &cluster.nodes {
        wait_for(
            &format!("the table on {}", node.name),
            Duration::from_secs(10),
            || async {
                let rows = node.rows("SHOW TABLES").await.ok()?;
                (rows == vec![vec!["events".to_string()]]).then_some(())
            },
        )
        .await?;
    }
    // A refused statement on another node names the problem and changes nothing.
    let err = cluster.nodes[2]
        .sql("CREATE TABLE events (id UInt64) ENGINE = MergeTree() ORDER BY id")
        .await
        .err()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    assert!(err.contains("events already exists"), "{err}");
    cluster.nodes[0].script("DROP TABLE events").await?;
    for node in &cluster.nodes {
        wait_for(
            &format!("the drop on {}", node.name),
            Duration::from_secs(10),
            || async {
                node.rows("SHOW TABLES")
                    .await
                    .ok()?
                    .is_empty()
                    .then_some(())
            },
        )
        .await?;
    }
    // Initialize again: already initialized, the same cluster.
    let mut client = cluster.nodes[2].client().await?;
    let again = client
        .initialize(sluice::proto::InitializeRequest {})
        .await?
        .into_inner();
    assert!(!again.created);
    assert_eq!(
        again.cluster_id,
        status(&cluster.nodes[0]).await?.cluster_id
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_identical_rows_through_a_killed_member() -> anyhow::Result<()> {
    const EVENTS: u64 = 200_000;
    let kafka = Kafka::shared()?;
    let topic = unique("github");
    produce_events(kafka, &topic, EVENTS, 0).await?;
    let mut cluster = TestCluster::start("replicas", 3).await?;
    let ddl = quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?.replace(
        "kafka_num_consumers = 1",
        "kafka_num_consumers = 1, kafka_max_block_size = 5000",
    );
    cluster.nodes[1].script(&ddl).await?;
    wait_for("ingestion to start", Duration::from_secs(120), || async {
        (count(&cluster.nodes[0], "github").await > 0).then_some(())
    })
    .await?;
    // Every node owns one of the three partitions. Kill one mid-stream: after the node
    // timeout its partition moves to a survivor and resumes from the table's offsets.
    let before = owners(&cluster.nodes[0]).await?;
    assert_eq!(before.len(), 3, "{before:?}");
    let victim = 2;
    let victim_id = status(&cluster.nodes[victim]).await?.node_id;
    let victim_slots = before.values().filter(|n| **n == victim_id).count();
    assert_eq!(
        victim_slots, 1,
        "balanced: one partition per node, {before:?}"
    );
    // system.kafka_consumers is cluster-wide: any node lists every partition's consumer
    // and the node that runs it.
    let consumers = cluster.nodes[0]
        .rows("SELECT node, assignments.partition_id FROM system.kafka_consumers WHERE is_currently_used ORDER BY node")
        .await?;
    let nodes: std::collections::BTreeSet<&str> = consumers.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(consumers.len(), 3, "{consumers:?}");
    assert_eq!(nodes.len(), 3, "{consumers:?}");
    cluster.nodes[victim].kill9()?;
    let killed_at = Instant::now();
    let first = &cluster.nodes[0];
    let moved = wait_for(
        "the dead node's partition to move",
        Duration::from_secs(60),
        || async {
            let now = owners(first).await.ok()?;
            (now.len() == 3 && now.values().all(|n| *n != victim_id)).then_some(now)
        },
    )
    .await?;
    let moved_in = killed_at.elapsed();
    println!("the dead node's partition moved {moved_in:?} after the kill (node timeout {NODE_TIMEOUT_MS} ms)");
    // Only the dead node's partition moved.
    let changed = before
        .iter()
        .filter(|(k, n)| moved.get(*k) != Some(*n))
        .count();
    assert_eq!(changed, 1, "{before:?} -> {moved:?}");
    // The survivors alone finish the topic...
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        wait_for(
            &format!("all rows on {}", node.name),
            Duration::from_secs(300),
            || async { (count(node, "github").await == EVENTS).then_some(()) },
        )
        .await
        .with_context(|| node.log_tail())?;
    }
    println!(
        "ingestion finished {:?} after the kill",
        killed_at.elapsed()
    );
    // ...and the dead node, back, catches up to identical rows.
    cluster.nodes[victim].spawn().await?;
    assert_replicas_equal(&cluster, "github", EVENTS, Duration::from_secs(300)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_is_lost() -> anyhow::Result<()> {
    const EVENTS: u64 = 60_000;
    let kafka = Kafka::shared()?;
    let (topic, mut cluster) = three_nodes_ingesting(kafka, "leader", EVENTS / 2).await?;
    let old = cluster.leader().await?;
    let old_id = status(&cluster.nodes[old]).await?.node_id;
    cluster.nodes[old].kill9()?;
    let killed_at = Instant::now();
    let new = cluster.leader().await?;
    let elected_in = killed_at.elapsed();
    assert_ne!(status(&cluster.nodes[new]).await?.node_id, old_id);
    println!("new leader elected {elected_in:?} after the old one was killed");
    assert!(
        elected_in < Duration::from_secs(10),
        "election took {elected_in:?}"
    );
    // Writes go on through the new leader while the old one is down.
    produce_events(kafka, &topic, EVENTS / 2, EVENTS / 2).await?;
    cluster.nodes[new]
        .script("CREATE TABLE during_outage (a UInt8) ENGINE = MergeTree() ORDER BY a")
        .await?;
    cluster.nodes[old].spawn().await?;
    assert_replicas_equal(&cluster, "github", EVENTS, Duration::from_secs(300)).await?;
    let tables = cluster.nodes[old].rows("SHOW TABLES").await?;
    assert!(tables.iter().any(|r| r[0] == "during_outage"), "{tables:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_catches_up_from_a_snapshot() -> anyhow::Result<()> {
    const EVENTS: u64 = 45_000;
    let kafka = Kafka::shared()?;
    let topic = unique("github");
    produce_events(kafka, &topic, EVENTS, 0).await?;
    let mut cluster = TestCluster::start("snapshot", 3).await?;
    // The node with the smallest Raft id, still counted live when the table is placed, is
    // the group's first member: it would form the group at once, but is down, so the
    // others form it and it must not form it again when it comes back.
    let mut ids = Vec::new();
    for node in &cluster.nodes {
        ids.push(status(node).await?.node_id);
    }
    let lagging = (0..ids.len()).min_by_key(|i| ids[*i]).unwrap_or(0);
    let other = (lagging + 1) % cluster.nodes.len();
    cluster.nodes[lagging].kill9()?;
    // Tiny blocks: thousands of log entries, more than the log keeps after a snapshot.
    let ddl = quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?.replace(
        "kafka_num_consumers = 1",
        "kafka_num_consumers = 1, kafka_max_block_size = 10",
    );
    cluster.nodes[other].script(&ddl).await?;
    // The two live nodes own two of the three partitions; the third waits for its owner.
    let leader = cluster.leader().await?;
    let leader_node = &cluster.nodes[leader];
    wait_for(
        "the log to be purged behind a snapshot",
        Duration::from_secs(300),
        || async { leader_node.log_contains("built a snapshot").then_some(()) },
    )
    .await?;
    cluster.nodes[lagging].spawn().await?;
    assert_replicas_equal(&cluster, "github", EVENTS, Duration::from_secs(300)).await?;
    assert!(
        cluster.nodes[lagging].log_contains("installed a snapshot"),
        "the lagging member should catch up from a snapshot\n{}",
        cluster.nodes[lagging].log_tail()
    );
    assert!(
        !cluster.nodes[lagging].log_contains("formed a table's group"),
        "a member back from an outage formed its running group again\n{}",
        cluster.nodes[lagging].log_tail()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_and_a_removed_member_hands_over() -> anyhow::Result<()> {
    const EVENTS: u64 = 32_000;
    let kafka = Kafka::shared()?;
    let topic = unique("github");
    // Eight partitions: three nodes hold 3, 3 and 2; four hold 2 each.
    kafka.create_topic(&topic, 8).await?;
    kafka.produce(&topic, 8, 7, 0..EVENTS / 2, None).await?;
    let mut cluster = TestCluster::start("members", 3).await?;
    let ddl = quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?;
    cluster.nodes[0].script(&ddl).await?;
    assert_replicas_equal(&cluster, "github", EVENTS / 2, Duration::from_secs(180)).await?;
    let three = wait_for(
        "eight partitions assigned",
        Duration::from_secs(30),
        || async {
            owners(&cluster.nodes[0])
                .await
                .ok()
                .filter(|o| o.len() == 8)
        },
    )
    .await?;

    let fourth = Node::start_with(
        "members-3",
        vec![
            "--peers".into(),
            cluster.peers.clone(),
            "--node-timeout-ms".into(),
            NODE_TIMEOUT_MS.to_string(),
        ],
    )
    .await?;
    cluster.nodes.push(fourth);
    cluster.wait_for_voters(4).await?;
    let fourth_id = status(&cluster.nodes[3]).await?.node_id;
    let four = wait_for(
        "a partition on the new node",
        Duration::from_secs(30),
        || async {
            owners(&cluster.nodes[0])
                .await
                .ok()
                .filter(|o| o.values().filter(|n| **n == fourth_id).count() == 2)
        },
    )
    .await?;
    // Balanced, and sticky: only the two partitions the new node takes moved.
    let mut per_node = std::collections::BTreeMap::new();
    for n in four.values() {
        *per_node.entry(*n).or_insert(0) += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2, 2],
        "{four:?}"
    );
    let moved = three
        .iter()
        .filter(|(k, n)| four.get(*k) != Some(*n))
        .count();
    assert_eq!(moved, 2, "{three:?} -> {four:?}");
    assert_replicas_equal(&cluster, "github", EVENTS / 2, Duration::from_secs(120)).await?;

    // A member removed cleanly: its partitions go to the others, and ingestion goes on.
    let removed_id = status(&cluster.nodes[1]).await?.node_id;
    let mut client = cluster.nodes[3].client().await?;
    client
        .remove_node(RemoveNodeRequest {
            node: "members-1".into(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("remove: {}", s.message()))?;
    let removed = cluster.nodes.remove(1);
    cluster.wait_for_voters(3).await?;
    wait_for(
        "the removed node's partitions to move",
        Duration::from_secs(30),
        || async {
            owners(&cluster.nodes[0])
                .await
                .ok()
                .filter(|o| o.len() == 8 && o.values().all(|n| *n != removed_id))
        },
    )
    .await?;
    // The removed node learns it from the leader: it reports not ready, runs no consumer,
    // and a drain (its pod's preStop) has nothing to wait for.
    wait_for(
        "the removed node to know it",
        Duration::from_secs(30),
        || async {
            let s = status(&removed).await.ok()?;
            let running = removed
                .number("SELECT count() FROM system.kafka_consumers WHERE node = 'members-1'")
                .await
                .ok()?;
            (!s.in_quorum && running == 0).then_some(())
        },
    )
    .await
    .with_context(|| removed.log_tail())?;
    let started = Instant::now();
    let drained = removed
        .client()
        .await?
        .drain(DrainRequest { timeout_ms: 20_000 })
        .await
        .map_err(|s| anyhow::anyhow!("drain: {}", s.message()))?
        .into_inner();
    assert!(
        drained.partitions_moved && drained.leadership_released,
        "{}",
        drained.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(removed);
    kafka
        .produce(&topic, 8, 7, EVENTS / 2..EVENTS, None)
        .await?;
    assert_replicas_equal(&cluster, "github", EVENTS, Duration::from_secs(180)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_rejoins_as_new_and_a_removed_one_stays_out() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start("wiped", 3).await?;
    cluster.nodes[0]
        .script("CREATE TABLE kept (a UInt8) ENGINE = MergeTree() ORDER BY a")
        .await?;
    let cluster_id = status(&cluster.nodes[0]).await?.cluster_id;
    let old_id = status(&cluster.nodes[2]).await?.node_id;
    cluster.nodes[2].kill9()?;
    cluster.nodes[2].wipe()?;
    cluster.nodes[2].spawn().await?;
    cluster.wait_for_voters(3).await?;
    let rejoined = status(&cluster.nodes[2]).await?;
    assert_ne!(
        rejoined.node_id, old_id,
        "a wiped node comes back under a new id"
    );
    assert_eq!(
        rejoined.cluster_id, cluster_id,
        "it joined the cluster, it did not form one"
    );
    let node0 = &cluster.nodes[0];
    wait_for(
        "the former self to be dropped",
        Duration::from_secs(20),
        || async {
            let members = status(node0).await.ok()?.members;
            (members.len() == 3 && members.iter().all(|m| m.node_id != old_id)).then_some(())
        },
    )
    .await
    .with_context(|| node0.log_tail())?;
    wait_for(
        "the catalog on the wiped node",
        Duration::from_secs(30),
        || async {
            let tables = cluster.nodes[2].rows("SHOW TABLES").await.ok()?;
            (tables == vec![vec!["kept".to_string()]]).then_some(())
        },
    )
    .await?;

    // Removed cleanly, restarted: it stays out.
    let mut client = cluster.nodes[0].client().await?;
    client
        .remove_node(RemoveNodeRequest {
            node: "wiped-2".into(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("remove: {}", s.message()))?;
    cluster.nodes[2].kill9()?;
    cluster.wait_for_voters(2).await?;
    cluster.nodes[2].spawn().await?;
    // An absence: no condition to wait for, so give it two join attempts (every 2 s)
    // to come back in wrongly.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let members = status(&cluster.nodes[0]).await?.members;
    assert_eq!(members.len(), 2, "{members:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_leader_hands_over_partitions_and_leadership() -> anyhow::Result<()> {
    const EVENTS: u64 = 40_000;
    let kafka = Kafka::shared()?;
    let (topic, mut cluster) = three_nodes_ingesting(kafka, "drain", EVENTS / 2).await?;
    let leader = cluster.leader().await?;
    let leader_id = status(&cluster.nodes[leader]).await?.node_id;
    let other = (leader + 1) % 3;
    wait_for(
        "the leader to own a partition",
        Duration::from_secs(60),
        || async {
            let o = owners(&cluster.nodes[other]).await.ok()?;
            o.values().any(|n| *n == leader_id).then_some(())
        },
    )
    .await?;

    let started = Instant::now();
    let reply = cluster.nodes[leader]
        .client()
        .await?
        .drain(DrainRequest { timeout_ms: 20_000 })
        .await
        .map_err(|s| anyhow::anyhow!("drain: {}", s.message()))?
        .into_inner();
    let took = started.elapsed();
    println!("drain of the leader took {took:?}: {}", reply.message);
    assert!(
        reply.partitions_moved && reply.leadership_released,
        "{}\n{}",
        reply.message,
        cluster.nodes[leader].log_tail()
    );
    // The drained node has stepped down; a follower other than the winner learns of the
    // new leader with its first append, a moment later.
    let followed = wait_for(
        "the other nodes to follow a new leader",
        Duration::from_secs(30),
        || async {
            let seen = status(&cluster.nodes[other]).await.ok()?;
            (seen.leader_id != 0 && seen.leader_id != leader_id).then_some(())
        },
    )
    .await;
    if followed.is_err() {
        let mut views = Vec::new();
        for node in &cluster.nodes {
            let seen = status(node).await;
            views.push(format!(
                "{}: {:?}\n{}",
                node.name,
                seen.map(|s| (s.role, s.term, s.leader_id)),
                node.log_tail()
            ));
        }
        anyhow::bail!("leadership did not move:\n{}", views.join("\n"));
    }
    let o = owners(&cluster.nodes[other]).await?;
    assert!(
        !o.is_empty() && o.values().all(|n| *n != leader_id),
        "the drained node still owns partitions: {o:?}"
    );

    // The drained node stays a member: it goes on applying what the others ingest.
    produce_events(kafka, &topic, EVENTS / 2, EVENTS / 2).await?;
    assert_replicas_equal(&cluster, "github", EVENTS, Duration::from_secs(300)).await?;
    // Nothing is left to drain at SIGTERM, so it stops at once.
    let stopping = Instant::now();
    cluster.nodes[leader].terminate(Duration::from_secs(30))?;
    let stopped_in = stopping.elapsed();
    println!("the drained node stopped {stopped_in:?} after SIGTERM");
    assert!(
        stopped_in < Duration::from_secs(10),
        "stopping took {stopped_in:?}"
    );
    Ok(())
}

/// The nodes that run `table`'s data group, as `system.raft_groups` on each node says,
/// with the rows of their own replica.
async fn holders(cluster: &TestCluster, table: &str) -> anyhow::Result<Vec<(usize, u64)>> {
    Ok(group_view(cluster, table)
        .await?
        .into_iter()
        .map(|(i, rows, _)| (i, rows))
        .collect())
}

/// Each node that runs `table`'s data group: its rows and the group's voters as it sees them.
async fn group_view(
    cluster: &TestCluster,
    table: &str,
) -> anyhow::Result<Vec<(usize, u64, String)>> {
    let mut out = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        if !node.is_running() {
            continue;
        }
        let rows = node
            .rows(&format!(
                "SELECT rows, voters FROM system.raft_groups WHERE \"table\" = '{table}'"
            ))
            .await?;
        for r in rows {
            out.push((i, r[0].parse()?, r[1].clone()));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lives_on_its_replicas_and_moves_when_one_is_removed() -> anyhow::Result<()> {
    const EVENTS: u64 = 20_000;
    let kafka = Kafka::shared()?;
    let topic = unique("github");
    produce_events(kafka, &topic, EVENTS, 0).await?;
    let mut cluster = TestCluster::start("placed", 3).await?;
    let ddl = quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?.replace(
        "ORDER BY (event_type, repo_name, created_at);",
        "ORDER BY (event_type, repo_name, created_at)\nSETTINGS replicas = 2;",
    );
    anyhow::ensure!(ddl.contains("replicas = 2"), "the guide's DDL changed");
    cluster.nodes[0].script(&ddl).await?;
    // Every node answers with every row, the one that holds no replica too.
    assert_replicas_equal(&cluster, "github", EVENTS, Duration::from_secs(180)).await?;
    let held = wait_for(
        "two replicas holding every row",
        Duration::from_secs(60),
        || async {
            holders(&cluster, "github")
                .await
                .ok()
                .filter(|h| h.len() == 2 && h.iter().all(|(_, rows)| *rows == EVENTS))
        },
    )
    .await?;
    let outside = (0..3)
        .find(|i| held.iter().all(|(h, _)| h != i))
        .context("a node outside the group")?;
    assert_eq!(
        cluster.nodes[outside]
            .number("SELECT count() FROM github SETTINGS select_sequential_consistency = 1")
            .await?,
        EVENTS,
        "a sequentially consistent read through a replica"
    );

    // A holder removed from the cluster: the table moves to the node outside, which
    // catches up from the group, and ingestion goes on.
    let meta_leader = cluster.leader().await?;
    let (gone, _) = *held
        .iter()
        .find(|(i, _)| *i != meta_leader)
        .context("a holder that does not lead the cluster")?;
    let gone_name = cluster.nodes[gone].name.clone();
    let outside_name = cluster.nodes[outside].name.clone();
    cluster.nodes[outside]
        .client()
        .await?
        .remove_node(RemoveNodeRequest {
            node: gone_name.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("remove: {}", s.message()))?;
    let removed = cluster.nodes.remove(gone);
    cluster.wait_for_voters(2).await?;
    let moved_at = Instant::now();
    let newcomer = cluster
        .nodes
        .iter()
        .position(|n| n.name == outside_name)
        .context("the node outside")?;
    // Done when the node outside holds every row and the group's voters are it and the
    // holder that stayed: a group of two needs both of its old voters to commit the change,
    // so the removed node is stopped only then.
    wait_for(
        "the node outside to hold every row as a voter",
        Duration::from_secs(120),
        || async {
            let view = group_view(&cluster, "github").await.ok()?;
            let voters_moved = |v: &String| v.contains(&outside_name) && !v.contains(&gone_name);
            (view.len() == 2
                && view.iter().any(|(i, _, _)| *i == newcomer)
                && view.iter().all(|(_, r, v)| *r == EVENTS && voters_moved(v)))
            .then_some(())
        },
    )
    .await
    .with_context(|| cluster.nodes[newcomer].log_tail())?;
    println!(
        "the table moved to {} in {:?} after {gone_name} was removed",
        cluster.nodes[newcomer].name,
        moved_at.elapsed()
    );
    drop(removed);
    produce_events(kafka, &topic, EVENTS, EVENTS).await?;
    assert_replicas_equal(&cluster, "github", 2 * EVENTS, Duration::from_secs(180)).await?;
    wait_for(
        "both replicas to hold every row",
        Duration::from_secs(60),
        || async {
            holders(&cluster, "github")
                .await
                .ok()
                .filter(|h| h.len() == 2 && h.iter().all(|(_, rows)| *rows == 2 * EVENTS))
        },
    )
    .await?;
    Ok(())
}
