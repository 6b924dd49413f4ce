//! Consumer groups as in ClickHouse, against a real broker and a two-node cluster: Kafka
//! tables that share a `kafka_group_name` split a topic's partitions (each partition read
//! by exactly one of them), a table of another group reads everything, and a partition
//! that changes hands when a table joins or leaves the group goes on from where the group
//! got to, nothing read twice and nothing skipped.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::cluster::TestCluster;
use cluster_tests::{unique, wait_for, Kafka, Node};

const PARTITIONS: i32 = 4;

/// Sends ids `range` as JSON rows, id `i` to partition `i mod PARTITIONS`.
async fn produce(kafka: &Kafka, topic: &str, range: std::ops::Range<u64>) -> anyhow::Result<()> {
    let range = i64::try_from(range.start)?..i64::try_from(range.end)?;
    kafka
        .produce_records(topic, PARTITIONS, range, |id| {
            (format!(r#"{{"id": {id}}}"#), None)
        })
        .await
}

/// A Kafka table `{name}_queue` in `group`, a stored table `{name}` keeping each row's
/// partition and offset, and the view `{name}_mv` between them.
fn pipeline(kafka: &Kafka, name: &str, topic: &str, group: &str) -> String {
    format!(
        "CREATE TABLE {name}_queue (id UInt64) ENGINE = Kafka()
         SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                  kafka_group_name = '{group}', kafka_format = 'JSONEachRow',
                  kafka_flush_interval_ms = 300;
         CREATE TABLE {name} (id UInt64, part UInt64, off UInt64)
             ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW {name}_mv TO {name} AS
             SELECT id, _partition AS part, _offset AS off FROM {name}_queue;",
        kafka.bootstrap
    )
}

/// Waits until the consumers of Kafka tables `ta_queue` and `tb_queue` are exactly
/// `expected` (pipeline name, partition), each one running.
async fn split_is(node: &Node, expected: &[(&str, u64)]) -> anyhow::Result<()> {
    let query = "SELECT \"table\", assignments.partition_id FROM system.kafka_consumers
                 WHERE \"table\" IN ('ta_queue', 'tb_queue') AND is_currently_used
                 ORDER BY \"table\", assignments.partition_id";
    let want: Vec<Vec<String>> = expected
        .iter()
        .map(|(t, p)| vec![format!("{t}_queue"), format!("[{p}]")])
        .collect();
    let reached = wait_for(
        &format!("consumers {expected:?}"),
        Duration::from_secs(60),
        || async { (node.rows(query).await.ok()? == want).then_some(()) },
    )
    .await;
    if reached.is_err() {
        anyhow::bail!(
            "consumers of ta and tb: {:?}, expected {want:?}; all consumers: {:?}",
            node.rows(query).await,
            node.rows("SELECT \"table\", assignments.partition_id, is_currently_used FROM system.kafka_consumers").await
        );
    }
    Ok(())
}

async fn count(node: &Node, query: &str) -> anyhow::Result<u64> {
    node.number(query)
        .await
        .with_context(|| format!("running {query}"))
}

/// Waits until the tables together hold `expected` rows, then checks that no (partition,
/// offset) is in two of them or twice in one, and returns each table's partitions.
async fn settled(node: &Node, tables: &[&str], expected: u64) -> anyhow::Result<Vec<Vec<u64>>> {
    let union = tables
        .iter()
        .map(|t| format!("SELECT '{t}' AS t, id, part, off FROM {t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let total = format!("SELECT count() FROM ({union})");
    let reached = wait_for(
        &format!("{expected} rows in {tables:?}"),
        Duration::from_secs(120),
        || async { (node.number(&total).await.ok()? >= expected).then_some(()) },
    )
    .await;
    if reached.is_err() {
        anyhow::bail!(
            "{tables:?}: {:?} rows, expected {expected}; consumers: {:?}",
            node.number(&total).await,
            node.rows("SELECT * FROM system.kafka_consumers").await
        );
    }
    // A moment for a row read twice to show up, had one been.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(node, &total).await?, expected, "{tables:?}");
    assert_eq!(
        count(
            node,
            &format!("SELECT count() FROM (SELECT DISTINCT part, off FROM ({union}))")
        )
        .await?,
        expected,
        "a message read twice in {tables:?}"
    );
    assert_eq!(
        count(node, &format!("SELECT count(DISTINCT id) FROM ({union})")).await?,
        expected
    );
    let mut partitions = Vec::new();
    for table in tables {
        let rows = node
            .rows(&format!("SELECT DISTINCT part FROM {table} ORDER BY part"))
            .await?;
        partitions.push(
            rows.iter()
                .filter_map(|r| r.first().and_then(|p| p.parse().ok()))
                .collect(),
        );
    }
    Ok(partitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_sharing_a_group_split_its_partitions() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let cluster = TestCluster::start("groups", 2).await?;
    let node = &cluster.nodes[0];
    let topic = unique("groups");
    kafka.create_topic(&topic, PARTITIONS).await?;
    let (shared, other) = (unique("shared"), unique("other"));
    let batch = 400;

    // One table of the group reads every partition; a table of another group too.
    produce(kafka, &topic, 0..batch).await?;
    node.script(&format!(
        "{};\n{}",
        pipeline(kafka, "ta", &topic, &shared),
        pipeline(kafka, "tc", &topic, &other)
    ))
    .await?;
    assert_eq!(settled(node, &["ta"], batch).await?, vec![vec![0, 1, 2, 3]]);

    // A second table joins the group: from then on each takes half the partitions, and
    // those that moved go on from where the first one stopped.
    node.script(&pipeline(kafka, "tb", &topic, &shared)).await?;
    // The rows that follow must find the partitions handed over: a consumer of ta still
    // reading partition 1 would rightly take what arrives before the handover.
    split_is(node, &[("ta", 0), ("ta", 2), ("tb", 1), ("tb", 3)]).await?;
    produce(kafka, &topic, batch..2 * batch).await?;
    settled(node, &["ta", "tb"], 2 * batch).await?;
    let since_join =
        |t: &str| format!("SELECT DISTINCT part FROM {t} WHERE id >= {batch} ORDER BY part");
    let joined: Vec<Vec<Vec<String>>> = vec![
        node.rows(&since_join("ta")).await?,
        node.rows(&since_join("tb")).await?,
    ];
    assert_eq!(
        joined,
        vec![
            vec![vec!["0".to_string()], vec!["2".to_string()]],
            vec![vec!["1".to_string()], vec!["3".to_string()]]
        ],
        "the partitions read after tb joined"
    );
    // Written from the other node too: the split is the cluster's, not one node's.
    settled(&cluster.nodes[1], &["ta", "tb"], 2 * batch).await?;

    // The second table leaves the group: its partitions go back, from its positions.
    node.sql("DROP VIEW tb_mv")
        .await
        .map_err(|s| anyhow::anyhow!("dropping tb_mv: {}", s.message()))?;
    produce(kafka, &topic, 2 * batch..3 * batch).await?;
    settled(node, &["ta", "tb"], 3 * batch).await?;
    assert_eq!(
        count(
            node,
            &format!("SELECT count() FROM ta WHERE id >= {}", 2 * batch)
        )
        .await?,
        batch
    );

    // The table of the other group read everything, once.
    assert_eq!(
        settled(node, &["tc"], 3 * batch).await?,
        vec![vec![0, 1, 2, 3]]
    );
    Ok(())
}
