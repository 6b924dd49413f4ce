//! Rewind and replay on purpose, against a real broker and a two-node cluster: `ALTER
//! TABLE … RESET OFFSETS` (and the typed call) moves a detached Kafka table's positions to
//! an offset, the latest offset, a time, or by a shift; the rows read again are stored
//! again (a replay is not a duplicate), rows skipped are never read, the group's committed
//! offset moves too, each move is in `system.kafka_offset_resets`, and a reset is refused
//! while the table is attached or when another table of its group reads the topic.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::cluster::TestCluster;
use cluster_tests::{settles_at, unique, Kafka, Node};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice::proto::{reset_offsets_request, ResetOffsetsRequest};

const PARTITIONS: i32 = 2;
/// Message `id` carries the timestamp `BASE_MS + id` seconds, so a time names an id.
const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01 00:00:00 UTC

/// Sends ids `range` as JSON rows, id `i` to partition `i mod 2`, stamped by id.
async fn produce(kafka: &Kafka, topic: &str, range: std::ops::Range<i64>) -> anyhow::Result<()> {
    kafka
        .produce_records(topic, PARTITIONS, range, |id| {
            (format!(r#"{{"id": {id}}}"#), Some(BASE_MS + id * 1_000))
        })
        .await
}

/// The group's committed offsets, as the broker holds them.
fn committed(kafka: &Kafka, group: &str, topic: &str) -> anyhow::Result<Vec<Option<i64>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", group)
        .create()
        .context("a Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let found = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .context("the group's committed offsets")?;
    Ok(found
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect())
}

async fn sql(node: &Node, statement: &str) -> anyhow::Result<Vec<Vec<String>>> {
    node.rows(statement).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_kafka_table_is_rewound_and_replays_on_purpose() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let cluster = TestCluster::start("resets", 2).await?;
    let (node, other) = (&cluster.nodes[0], &cluster.nodes[1]);
    let topic = unique("resets");
    let group = unique("resets_group");
    kafka.create_topic(&topic, PARTITIONS).await?;
    produce(kafka, &topic, 0..400).await?;
    node.script(&format!(
        "CREATE TABLE queue (id Int64) ENGINE = Kafka()
           SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                    kafka_group_name = '{group}', kafka_format = 'JSONEachRow',
                    kafka_flush_interval_ms = 300;
         CREATE TABLE events (id Int64, part UInt64, off UInt64)
           ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW events_mv TO events AS
           SELECT id, _partition AS part, _offset AS off FROM queue;",
        kafka.bootstrap
    ))
    .await?;
    settles_at(node, "SELECT count() FROM events", 400).await?;

    // Attached: refused, and the message says what to do.
    let attached = node
        .sql("ALTER TABLE queue RESET OFFSETS TO EARLIEST")
        .await
        .expect_err("a reset of an attached table");
    assert!(
        attached.message().contains("DETACH TABLE queue"),
        "{}",
        attached.message()
    );

    // One partition back to an offset, from the other node: its rows from there are
    // stored again, the other partition's are not.
    node.sql("DETACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("DETACH: {}", s.message()))?;
    let moved = sql(
        other,
        "ALTER TABLE queue RESET OFFSETS FOR PARTITION 0 TO OFFSET 100",
    )
    .await?;
    assert_eq!(
        moved,
        vec![vec![
            topic.clone(),
            "0".to_string(),
            "200".to_string(),
            "100".to_string()
        ]]
    );
    assert_eq!(committed(kafka, &group, &topic)?[0], Some(100));
    node.sql("ATTACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("ATTACH: {}", s.message()))?;
    settles_at(node, "SELECT count() FROM events", 500).await?;
    assert_eq!(
        node.number("SELECT count() FROM events WHERE part = 0 AND off >= 100")
            .await?,
        200,
        "offsets 100..199 of partition 0 twice"
    );
    assert_eq!(
        node.number("SELECT count(DISTINCT id) FROM events").await?,
        400
    );

    // To the latest offset: what was produced while detached is never read.
    node.sql("DETACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("DETACH: {}", s.message()))?;
    produce(kafka, &topic, 400..600).await?;
    let moved = sql(node, "ALTER TABLE queue RESET OFFSETS TO LATEST").await?;
    assert_eq!(
        moved.iter().map(|r| r[3].as_str()).collect::<Vec<_>>(),
        vec!["300", "300"]
    );
    assert_eq!(
        committed(kafka, &group, &topic)?,
        vec![Some(300), Some(300)]
    );
    node.sql("ATTACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("ATTACH: {}", s.message()))?;
    produce(kafka, &topic, 600..700).await?;
    settles_at(node, "SELECT count() FROM events WHERE id >= 600", 100).await?;
    assert_eq!(
        node.number("SELECT count() FROM events WHERE id >= 400 AND id < 600")
            .await?,
        0,
        "skipped rows were read"
    );

    // To a time: every message stamped at or after it is read again.
    node.sql("DETACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("DETACH: {}", s.message()))?;
    let at = BASE_MS + 650 * 1_000;
    let moved = sql(
        node,
        "ALTER TABLE queue RESET OFFSETS TO TIMESTAMP '2026-01-01 00:10:50'",
    )
    .await?;
    assert_eq!(
        moved.iter().map(|r| r[3].as_str()).collect::<Vec<_>>(),
        vec!["325", "325"],
        "id 650 is offset 325 of partition 0, id 651 offset 325 of partition 1 ({at})"
    );
    node.sql("ATTACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("ATTACH: {}", s.message()))?;
    settles_at(node, "SELECT count() FROM events WHERE id >= 650", 100).await?;

    // The typed call, by a named user: back by a shift on one partition.
    node.sql("DETACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("DETACH: {}", s.message()))?;
    let missing = node
        .sql("ALTER TABLE queue RESET OFFSETS FOR PARTITION 7 TO EARLIEST")
        .await
        .expect_err("a partition the topic does not have");
    assert!(
        missing.message().contains("has no partition 7"),
        "{}",
        missing.message()
    );
    let mut client = node.client().await?;
    let mut request = tonic::Request::new(ResetOffsetsRequest {
        table: "queue".into(),
        partitions: vec![1],
        to: Some(reset_offsets_request::To::ShiftBy(-10)),
    });
    request.metadata_mut().insert(
        "x-sluice-user",
        tonic::metadata::MetadataValue::from_static("alice"),
    );
    let reply = client
        .reset_offsets(request)
        .await
        .map_err(|s| anyhow::anyhow!("ResetOffsets: {}", s.message()))?
        .into_inner();
    let moves: Vec<(i32, Option<i64>, i64)> = reply
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition,
                p.has_from_offset.then_some(p.from_offset),
                p.to_offset,
            )
        })
        .collect();
    assert_eq!(moves, vec![(1, Some(350), 340)]);
    node.sql("ATTACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("ATTACH: {}", s.message()))?;
    settles_at(node, "SELECT count() FROM events WHERE id >= 680", 50).await?;

    // Every move is on record, on either node.
    let record = other
        .rows(
            "SELECT partition, from_offset, to_offset, target, requested_by
             FROM system.kafka_offset_resets WHERE table = 'queue' ORDER BY event_time, partition",
        )
        .await?;
    let summary: Vec<String> = record
        .iter()
        .map(|r| format!("{} {} {} {}", r[0], r[1], r[2], r[3]))
        .collect();
    assert_eq!(
        summary,
        vec![
            "0 200 100 OFFSET 100",
            "0 200 300 LATEST",
            "1 200 300 LATEST",
            "0 350 325 TIMESTAMP '2026-01-01 00:10:50.000'",
            "1 350 325 TIMESTAMP '2026-01-01 00:10:50.000'",
            "1 350 340 SHIFT BY -10",
        ]
    );
    assert!(
        record.last().is_some_and(|r| r[4].starts_with("alice@")),
        "{record:?}"
    );

    // Another table of the same group on the topic would undo a reset: refused by name.
    node.script(&format!(
        "CREATE TABLE queue2 (id Int64) ENGINE = Kafka()
           SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                    kafka_group_name = '{group}', kafka_format = 'JSONEachRow';",
        kafka.bootstrap
    ))
    .await?;
    node.sql("DETACH TABLE queue")
        .await
        .map_err(|s| anyhow::anyhow!("DETACH: {}", s.message()))?;
    let shared = node
        .sql("ALTER TABLE queue RESET OFFSETS TO EARLIEST")
        .await
        .expect_err("a reset of a table sharing its group");
    assert!(shared.message().contains("queue2"), "{}", shared.message());
    Ok(())
}
