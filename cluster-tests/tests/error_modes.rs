//! Broken messages and message envelopes against a real broker and a real node: each
//! `kafka_handle_error_mode` over the same mix of good and broken messages (`default`
//! stops at the broken one and names it, `stream` makes rows of them that views split by
//! `_error`, `dead_letter_queue` records each once in `system.dead_letter_queue`, across
//! a restart); and headers and millisecond timestamps read into `_headers.*` and
//! `_timestamp_ms`, and a key, timestamp and headers written from an INSERT.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::cluster::owners;
use cluster_tests::{unique, wait_for, Kafka, Node, TestCluster};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};

/// Messages per topic; the broken ones are at `BROKEN` (22 only where a test produces
/// past `MESSAGES`).
const MESSAGES: i64 = 20;
const BROKEN: [i64; 4] = [3, 7, 12, 22];
/// Every message's timestamp: this plus its offset, in milliseconds.
const BASE_MS: i64 = 1_700_000_000_123;

/// The parse error of every broken message.
const PARSE_ERROR: &str = "Json error: Encountered unexpected 'b' whilst parsing object";

fn payload(offset: i64) -> String {
    if BROKEN.contains(&offset) {
        format!("{{\"id\": {offset}, broken")
    } else {
        format!("{{\"id\": {offset}, \"name\": \"n{offset}\"}}")
    }
}

/// Produces `MESSAGES` messages to partition 0 of a new topic.
async fn produce_mix(kafka: &Kafka, topic: &str) -> anyhow::Result<()> {
    kafka.create_topic(topic, 1).await?;
    produce(kafka, topic, 0, 0..MESSAGES).await
}

/// Produces the messages at `offsets` to `partition` of `topic`, keyed `k<offset>`, with
/// two headers each and timestamp `BASE_MS + offset`.
async fn produce(
    kafka: &Kafka,
    topic: &str,
    partition: i32,
    offsets: std::ops::Range<i64>,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .context("a Kafka producer")?;
    for offset in offsets {
        let key = format!("k{offset}");
        let value = format!("v{offset}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "source",
                value: Some("test"),
            })
            .insert(Header {
                key: "seq",
                value: Some(value.as_str()),
            });
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&payload(offset))
                    .timestamp(BASE_MS + offset)
                    .headers(headers),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

fn queue_ddl(kafka: &Kafka, name: &str, topic: &str, settings: &str) -> String {
    format!(
        "CREATE TABLE {name} (id UInt32, name String) ENGINE = Kafka()
         SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                  kafka_group_name = '{}', kafka_format = 'JSONEachRow'{settings};",
        kafka.bootstrap,
        unique(name)
    )
}

async fn wait_for_count(node: &Node, table: &str, expected: u64) -> anyhow::Result<()> {
    let query = format!("SELECT count() FROM {table}");
    let reached = wait_for(
        &format!("{expected} rows in {table}"),
        Duration::from_secs(120),
        || async { (node.number(&query).await.ok()? == expected).then_some(()) },
    )
    .await;
    if reached.is_err() {
        let consumers = node.rows("SELECT * FROM system.kafka_consumers").await;
        anyhow::bail!(
            "{table}: {:?} rows, expected {expected}; consumers: {consumers:?}\n{}",
            node.number(&query).await,
            node.log_tail()
        );
    }
    Ok(())
}

/// The ids of the good messages.
fn good_ids() -> Vec<String> {
    (0..MESSAGES)
        .filter(|o| !BROKEN.contains(o))
        .map(|o| o.to_string())
        .collect()
}

fn column(rows: &[Vec<String>], i: usize) -> Vec<String> {
    rows.iter().map(|r| r[i].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_mode_stops_at_the_broken_message_and_names_it() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("errors-default");
    produce_mix(kafka, &topic).await?;
    let node = Node::start("errors-default").await?;
    // One message a block: the rows before the first broken message are stored, exactly.
    node.script(&format!(
        "{}
         CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW mv TO t AS SELECT * FROM q;",
        queue_ddl(kafka, "q", &topic, ", kafka_max_block_size = 1")
    ))
    .await?;
    let error = wait_for(
        "the broken-message error",
        Duration::from_secs(60),
        || async {
            let rows = node
                .rows("SELECT exceptions.text FROM system.kafka_consumers WHERE \"table\" = 'q'")
                .await
                .ok()?;
            rows.into_iter()
                .map(|r| r[0].clone())
                .find(|t| t.contains("kafka_skip_broken_messages"))
        },
    )
    .await?;
    assert!(
        error.contains(&format!("q/{topic}/0")) && error.contains("stopped at offset 3"),
        "the error names table, topic, partition and offset: {error}"
    );
    wait_for_count(&node, "t", 3).await?;
    let position = node
        .rows("SELECT assignments.current_offset, num_skipped_messages FROM system.kafka_consumers WHERE \"table\" = 'q'")
        .await?;
    assert_eq!(position, vec![vec!["[3]".to_string(), "0".to_string()]]);
    // It stays stopped there: no later row is written, nothing skipped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.number("SELECT count() FROM t").await?, 3);
    assert_eq!(
        node.number("SELECT count() FROM system.dead_letter_queue")
            .await?,
        0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_rows_carry_the_error_and_views_split_them() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("errors-stream");
    kafka.create_topic(&topic, 1).await?;
    let node = Node::start("errors-stream").await?;
    node.script(&format!(
        "{}
         CREATE TABLE good (id UInt32, name String) ENGINE = MergeTree() ORDER BY id;
         CREATE TABLE bad (offset UInt64, raw String, error String) ENGINE = MergeTree() ORDER BY offset;
         CREATE MATERIALIZED VIEW good_mv TO good AS SELECT * FROM q WHERE length(_error) = 0;
         CREATE MATERIALIZED VIEW bad_mv TO bad AS
           SELECT _offset AS offset, _raw_message AS raw, _error AS error FROM q WHERE _error != '';",
        queue_ddl(kafka, "q", &topic, ", kafka_handle_error_mode = 'stream'")
    ))
    .await?;
    // Produced once both views exist: a view created while its table is being read starts
    // where the table's group got to (as in ClickHouse), so the second view would miss
    // what the first had read.
    produce(kafka, &topic, 0, 0..MESSAGES).await?;
    wait_for_count(&node, "good", (MESSAGES as u64) - 3).await?;
    wait_for_count(&node, "bad", 3).await?;
    let good = node.rows("SELECT id, name FROM good ORDER BY id").await?;
    assert_eq!(column(&good, 0), good_ids());
    assert_eq!(good[0][1], "n0");
    let bad = node
        .rows("SELECT offset, raw, error FROM bad ORDER BY offset")
        .await?;
    let expected: Vec<Vec<String>> = BROKEN[..3]
        .iter()
        .map(|&o| vec![o.to_string(), payload(o), PARSE_ERROR.to_string()])
        .collect();
    assert_eq!(bad, expected);
    // Stream-mode rows are rows, not skipped messages; nothing went to the queue.
    assert_eq!(
        node.number("SELECT sum(num_skipped_messages) FROM system.kafka_consumers")
            .await?,
        0
    );
    assert_eq!(
        node.number("SELECT count() FROM system.dead_letter_queue")
            .await?,
        0
    );
    // A table that is not in stream mode has no _error column, as in ClickHouse.
    node.script(&queue_ddl(kafka, "plain", &topic, "")).await?;
    let refused = node
        .sql("CREATE MATERIALIZED VIEW plain_mv TO bad AS SELECT _offset AS offset, _error AS error FROM plain")
        .await
        .expect_err("no _error without stream mode");
    assert!(
        refused.message().contains("_error"),
        "{}",
        refused.message()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_mode_records_each_broken_message_once_and_goes_on() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("errors-dlq");
    produce_mix(kafka, &topic).await?;
    let mut node = Node::start("errors-dlq").await?;
    // Small blocks, so the broken messages fall in different blocks.
    node.script(&format!(
        "{}
         CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW mv TO t AS SELECT * FROM q;",
        queue_ddl(
            kafka,
            "q",
            &topic,
            ", kafka_handle_error_mode = 'dead_letter_queue', kafka_max_block_size = 5"
        )
    ))
    .await?;
    wait_for_count(&node, "t", (MESSAGES as u64) - 3).await?;
    let ids = node.rows("SELECT id FROM t ORDER BY id").await?;
    assert_eq!(column(&ids, 0), good_ids());
    let query = "SELECT table_engine, database, \"table\", kafka_topic_name, kafka_partition, kafka_offset, kafka_key, raw_message, error, node
                 FROM system.dead_letter_queue ORDER BY kafka_offset";
    let letters = node.rows(query).await?;
    assert_eq!(letters.len(), 3, "{letters:?}");
    for (row, &offset) in letters.iter().zip(&BROKEN[..3]) {
        assert_eq!(
            row[..8],
            [
                "Kafka".to_string(),
                "default".to_string(),
                "q".to_string(),
                topic.clone(),
                "0".to_string(),
                offset.to_string(),
                format!("k{offset}"),
                payload(offset),
            ],
        );
        assert_eq!(row[8], PARSE_ERROR);
        assert_eq!(row[9], "errors-dlq");
    }
    assert_eq!(
        node.number("SELECT sum(num_skipped_messages) FROM system.kafka_consumers")
            .await?,
        3
    );

    // Killed and started again: the letters are on disk, once each, and nothing is read
    // twice into the table.
    node.kill9()?;
    node.spawn().await?;
    wait_for(
        "the node to serve queries again",
        Duration::from_secs(60),
        || async { node.number("SELECT count() FROM t").await.ok() },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        node.number("SELECT count() FROM t").await?,
        (MESSAGES as u64) - 3
    );
    let again = node.rows(query).await?;
    assert_eq!(again, letters, "the same letters after a restart");

    // And it goes on from there: one more broken message among five.
    produce(kafka, &topic, 0, MESSAGES..MESSAGES + 5).await?;
    wait_for_count(&node, "t", (MESSAGES as u64) + 5 - 4).await?;
    let letters = node.rows(query).await?;
    assert_eq!(
        column(&letters, 5),
        BROKEN.iter().map(|o| o.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(letters[..3], again[..]);
    Ok(())
}

/// A message as a reader sees it: payload, key, timestamp (ms) and headers.
type Written = (String, String, Option<i64>, Vec<(String, String)>);

fn written(m: &rdkafka::message::OwnedMessage) -> Written {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (
        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        m.timestamp().to_millis(),
        headers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_queue_is_cluster_wide() -> anyhow::Result<()> {
    const PARTITIONS: i32 = 3;
    let kafka = Kafka::shared()?;
    let topic = unique("errors-dlq-cluster");
    kafka.create_topic(&topic, PARTITIONS).await?;
    for partition in 0..PARTITIONS {
        produce(kafka, &topic, partition, 0..MESSAGES).await?;
    }
    let cluster = TestCluster::start("dlq-cluster", 3).await?;
    cluster.nodes[0]
        .script(&format!(
            "{}
             CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree() ORDER BY id;
             CREATE MATERIALIZED VIEW mv TO t AS SELECT * FROM q;",
            queue_ddl(
                kafka,
                "q",
                &topic,
                ", kafka_handle_error_mode = 'dead_letter_queue'"
            )
        ))
        .await?;
    let good = (PARTITIONS as u64) * (MESSAGES as u64 - 3);
    wait_for_count(&cluster.nodes[0], "t", good).await?;
    // Each partition's letters are on the node that consumed it; every node shows all.
    let query =
        "SELECT kafka_partition, kafka_offset, raw_message, node FROM system.dead_letter_queue
                 ORDER BY kafka_partition, kafka_offset";
    let seen = cluster.nodes[0].rows(query).await?;
    let expected: Vec<(String, String, String)> = (0..PARTITIONS)
        .flat_map(|p| {
            BROKEN[..3]
                .iter()
                .map(move |o| (p.to_string(), o.to_string(), payload(*o)))
        })
        .collect();
    let letters: Vec<(String, String, String)> = seen
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    assert_eq!(letters, expected);
    for node in &cluster.nodes[1..] {
        assert_eq!(
            node.rows(query).await?,
            seen,
            "the same rows from every node"
        );
    }
    let recorders: std::collections::BTreeSet<&String> = seen.iter().map(|r| &r[3]).collect();
    let consumers: std::collections::BTreeSet<u64> = owners(&cluster.nodes[0])
        .await?
        .into_iter()
        .filter(|((t, _), _)| t == &topic)
        .map(|(_, node)| node)
        .collect();
    assert_eq!(
        recorders.len(),
        consumers.len(),
        "each partition's letters come from the node that consumed it: {seen:?}"
    );
    Ok(())
}

/// The messages of partition 0 of `topic` once there are `expected`.
async fn read_messages(
    kafka: &Kafka,
    topic: &str,
    expected: usize,
) -> anyhow::Result<Vec<rdkafka::message::OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .context("a Kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut messages = Vec::new();
    wait_for(
        &format!("{expected} messages on {topic}"),
        Duration::from_secs(60),
        || {
            while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                messages.push(m.detach());
            }
            let done = messages.len() >= expected;
            async move { done.then_some(()) }
        },
    )
    .await?;
    Ok(messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_millisecond_timestamps_are_read_and_written() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("envelope-in");
    produce_mix(kafka, &topic).await?;
    let node = Node::start("envelope").await?;
    let pushed = unique("envelope-pushed");
    kafka.create_topic(&pushed, 1).await?;
    // `_headers.name` unquoted, as ClickHouse's Nested columns are written; and a view that
    // pushes what `t` stores to another topic, headers and key included.
    node.script(&format!(
        "{}
         CREATE TABLE t (id UInt32, names Array(String), vals Array(String), ts_ms Int64, ts DateTime)
           ENGINE = MergeTree() ORDER BY id;
         CREATE TABLE pushed_q (id UInt32) ENGINE = Kafka()
           SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{pushed}',
                    kafka_group_name = '{}', kafka_format = 'JSONEachRow';
         CREATE MATERIALIZED VIEW push_mv TO pushed_q AS
           SELECT id, CAST(id AS VARCHAR) AS _key, names AS \"_headers.name\",
                  vals AS \"_headers.value\" FROM t;
         CREATE MATERIALIZED VIEW mv TO t AS
           SELECT id, _headers.name AS names, _headers.value AS vals, _timestamp_ms AS ts_ms,
                  _timestamp AS ts FROM q;",
        queue_ddl(kafka, "q", &topic, ", kafka_skip_broken_messages = 3"),
        kafka.bootstrap,
        unique("pushed"),
    ))
    .await?;
    wait_for_count(&node, "t", (MESSAGES as u64) - 3).await?;
    let rows = node
        .rows("SELECT id, names, vals, ts_ms, ts FROM t ORDER BY id")
        .await?;
    let good: Vec<i64> = (0..MESSAGES).filter(|o| !BROKEN.contains(o)).collect();
    let expected: Vec<Vec<String>> = good
        .iter()
        .map(|o| {
            let ms = BASE_MS + o;
            vec![
                o.to_string(),
                "['source','seq']".to_string(),
                format!("['test','v{o}']"),
                ms.to_string(),
                // 1_700_000_000 seconds, whatever the offset (0..20 ms past it).
                "2023-11-14 22:13:20".to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, expected);
    let mut pushed_messages: Vec<Written> = read_messages(kafka, &pushed, good.len())
        .await?
        .iter()
        .map(written)
        .collect();
    pushed_messages.sort_by_key(|m| m.1.parse::<i64>().unwrap_or_default());
    // The producer stamps the time it sent them: not compared.
    for m in &mut pushed_messages {
        m.2 = None;
    }
    let expected_pushed: Vec<Written> = good
        .iter()
        .map(|o| {
            (
                format!("{{\"id\":{o}}}"),
                o.to_string(),
                None,
                vec![
                    ("source".to_string(), "test".to_string()),
                    ("seq".to_string(), format!("v{o}")),
                ],
            )
        })
        .collect();
    assert_eq!(pushed_messages, expected_pushed);

    // Written: an INSERT's _key, _timestamp and _headers.* make each message's key,
    // timestamp and headers.
    let out = unique("envelope-out");
    kafka.create_topic(&out, 1).await?;
    node.script(&format!(
        "CREATE TABLE out_q (id UInt32, name String) ENGINE = Kafka()
         SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{out}',
                  kafka_group_name = '{}', kafka_format = 'JSONEachRow';",
        kafka.bootstrap,
        unique("out")
    ))
    .await?;
    node.sql(
        "INSERT INTO out_q (id, name, _key, _timestamp, _headers.name, _headers.value)
         VALUES (1, 'a', 'key-1', '2024-01-02 03:04:05', ['trace', 'tenant'], ['t-1', 'acme']),
                (2, 'b', 'key-2', '2024-01-02 03:04:06', [], [])",
    )
    .await
    .map_err(|s| anyhow::anyhow!("insert: {}", s.message()))?;
    let messages = read_messages(kafka, &out, 2).await?;
    let seen: Vec<Written> = messages.iter().map(written).collect();
    assert_eq!(
        seen,
        vec![
            (
                "{\"id\":1,\"name\":\"a\"}".to_string(),
                "key-1".to_string(),
                Some(1_704_164_645_000),
                vec![
                    ("trace".to_string(), "t-1".to_string()),
                    ("tenant".to_string(), "acme".to_string())
                ],
            ),
            (
                "{\"id\":2,\"name\":\"b\"}".to_string(),
                "key-2".to_string(),
                Some(1_704_164_646_000),
                vec![],
            ),
        ]
    );
    // Header names and values pair up: unequal lists are refused, naming the row.
    let refused = node
        .sql("INSERT INTO out_q (id, _headers.name, _headers.value) VALUES (3, ['a', 'b'], ['x'])")
        .await
        .expect_err("unpaired headers");
    assert!(
        refused.message().contains("row 1") && refused.message().contains("2 header names"),
        "{}",
        refused.message()
    );
    Ok(())
}
