//! Live ALTERs against a real broker and two real nodes: while messages arrive, a column
//! is added to the target table and to the Kafka table, the Kafka table's block size
//! changes, and the view's query is replaced; every message is stored exactly once,
//! rows read before the view changed hold the column's DEFAULT and rows produced after it
//! hold their field, the new block size shows in the blocks written after it and goes
//! away with RESET SETTING, and the refused ALTERs name what is wrong.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::cluster::TestCluster;
use cluster_tests::{settles_at, unique, Kafka, Node};

const PARTITIONS: i32 = 2;

/// Sends ids `range` as JSON rows `{"id": i, "src": "s<i>"}`, id `i` to partition
/// `i mod 2`, so in each partition id `i` is at offset `i / 2`.
async fn produce(kafka: &Kafka, topic: &str, range: std::ops::Range<i64>) -> anyhow::Result<()> {
    kafka
        .produce_records(topic, PARTITIONS, range, |id| {
            (format!(r#"{{"id": {id}, "src": "s{id}"}}"#), None)
        })
        .await
}

/// The error of a statement that must be refused.
async fn refused(node: &Node, statement: &str) -> String {
    match node.sql(statement).await {
        Ok(r) => panic!("{statement}: accepted ({r:?})"),
        Err(status) => status.message().to_string(),
    }
}

/// The largest block (in messages) written to `events` from partition offsets at or
/// after `from_offset`.
async fn largest_block_from(node: &Node, from_offset: i64) -> anyhow::Result<u64> {
    node.number(&format!(
        "SELECT max(last_offset - first_offset + 1) FROM system.writer_log \
         WHERE \"table\" = 'events' AND first_offset >= {from_offset}"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_alters_keep_every_message_once() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let cluster = TestCluster::start("alter", 2).await?;
    let (node, other) = (&cluster.nodes[0], &cluster.nodes[1]);
    let topic = unique("alter");
    let group = unique("alter_group");
    kafka.create_topic(&topic, PARTITIONS).await?;
    produce(kafka, &topic, 0..300).await?;
    node.script(&format!(
        "CREATE TABLE queue (id Int64) ENGINE = Kafka()
           SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                    kafka_group_name = '{group}', kafka_format = 'JSONEachRow',
                    kafka_max_block_size = 50, kafka_flush_interval_ms = 300;
         CREATE TABLE events (id Int64, part UInt64, off UInt64)
           ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW events_mv TO events AS
           SELECT id, _partition AS part, _offset AS off FROM queue;",
        kafka.bootstrap
    ))
    .await?;
    settles_at(node, "SELECT count() FROM events", 300).await?;

    // The ALTERs while messages keep arriving.
    let during = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for start in (300..900).step_by(100) {
                produce(kafka, &topic, start..start + 100).await?;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            anyhow::Ok(())
        })
    };
    node.sql("ALTER TABLE events ADD COLUMN src String DEFAULT concat('o', 'ld') AFTER id")
        .await?;
    node.sql("ALTER TABLE queue ADD COLUMN src String, MODIFY SETTING kafka_max_block_size = 7")
        .await?;
    node.sql(
        "ALTER TABLE events_mv MODIFY QUERY \
         SELECT id, src, _partition AS part, _offset AS off FROM queue",
    )
    .await?;
    during.await.context("the producing task")??;
    // Each ALTER restarts the table's consumers once the one before has written its open
    // block; nothing in the cluster says when a restart is done, so give it a moment
    // before the messages whose blocks must show the new block size.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // After the ALTERs: ids 900..1200, offsets 450..600 of each partition.
    produce(kafka, &topic, 900..1200).await?;
    settles_at(node, "SELECT count() FROM events", 1200).await?;

    // Every message once: 1,200 ids and 1,200 (partition, offset) pairs.
    for query in [
        "SELECT count(DISTINCT id) FROM events",
        "SELECT count(*) FROM (SELECT DISTINCT part, off FROM events)",
    ] {
        assert_eq!(node.number(query).await?, 1200, "{query}");
    }
    // Each row holds the DEFAULT (read before the view changed) or its own field.
    let filled = "SELECT count() FROM events WHERE src = 'old'";
    let own = "SELECT count() FROM events WHERE src = concat('s', CAST(id AS VARCHAR))";
    let (old, new) = (node.number(filled).await?, node.number(own).await?);
    println!("rows with the default: {old}, with their own field: {new}");
    assert_eq!(old + new, 1200, "every row is filled or its own");
    assert_eq!(
        node.number("SELECT count() FROM events WHERE id < 300 AND src = 'old'")
            .await?,
        300,
        "rows stored before the ALTER read the DEFAULT"
    );
    assert_eq!(
        node.number(&format!("{own} AND id >= 900")).await?,
        300,
        "rows produced after the ALTERs hold their field"
    );
    // The other node answers the same from its own replica.
    assert_eq!(
        other
            .rows("SELECT count(), sum(CASE WHEN src = 'old' THEN 1 ELSE 0 END) FROM events")
            .await?,
        vec![vec!["1200".to_string(), old.to_string()]]
    );
    assert_eq!(
        node.rows("DESCRIBE events")
            .await?
            .iter()
            .map(|r| format!("{} {}", r[0], r[1]))
            .collect::<Vec<_>>(),
        ["id Int64", "src String", "part UInt64", "off UInt64"]
    );

    // The block size set by the ALTER, then reset to its default.
    let small = largest_block_from(node, 450).await?;
    assert!(
        small <= 7,
        "blocks after MODIFY SETTING hold {small} messages"
    );
    node.sql("ALTER TABLE queue RESET SETTING kafka_max_block_size")
        .await?;
    // Once the consumers restarted with the default, a burst lands in blocks of more
    // than 7 messages.
    tokio::time::sleep(Duration::from_secs(2)).await;
    produce(kafka, &topic, 1200..1600).await?;
    settles_at(node, "SELECT count() FROM events", 1600).await?;
    let large = largest_block_from(node, 600).await?;
    assert!(
        large > 7,
        "blocks after RESET SETTING hold at most {large} messages"
    );
    assert_eq!(
        node.number("SELECT count(DISTINCT id) FROM events").await?,
        1600
    );

    // Refusals name what is wrong.
    for (statement, words) in [
        (
            "ALTER TABLE events DROP COLUMN src",
            "view events_mv uses column src",
        ),
        (
            "ALTER TABLE events RENAME COLUMN part TO p",
            "view events_mv uses column part",
        ),
        ("ALTER TABLE events MODIFY COLUMN id Int32", "ORDER BY"),
        (
            "ALTER TABLE events MODIFY COLUMN off Int32",
            "UInt64 cannot be read as Int32",
        ),
        (
            "ALTER TABLE queue MODIFY SETTING kafka_topic_list = 'x'",
            "kafka_topic_list cannot change",
        ),
        (
            "ALTER TABLE events_mv MODIFY QUERY SELECT id, 1 AS nope FROM queue",
            "nope",
        ),
        ("TRUNCATE TABLE events", "TRUNCATE is not supported"),
        ("RENAME TABLE events TO events2", "RENAME is not supported"),
    ] {
        let message = refused(node, statement).await;
        assert!(message.contains(words), "{statement}: {message}");
    }
    // A column no view uses can go, and comes back empty under its old name.
    node.sql("ALTER TABLE events ADD COLUMN extra UInt8 DEFAULT 5")
        .await?;
    assert_eq!(
        node.number("SELECT count() FROM events WHERE extra = 5")
            .await?,
        1600
    );
    node.sql("ALTER TABLE events DROP COLUMN extra, ADD COLUMN extra UInt8")
        .await?;
    assert_eq!(
        node.number("SELECT count() FROM events WHERE extra = 0")
            .await?,
        1600
    );
    Ok(())
}
