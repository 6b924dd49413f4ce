//! Compressed topics against a real broker: batches a producer compressed with gzip,
//! snappy, lz4 or zstd land as rows through a view, and a Kafka table's
//! `kafka_compression_codec` is what the broker stores for the rows inserted into it
//! (read from the broker's own log segments, since a consumer only sees them
//! decompressed).

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::{unique, wait_for, Kafka, Node};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Messages per codec: enough for several batches, small enough to stay quick.
const MESSAGES: u64 = 500;

/// The codecs as Kafka's record batch attributes number them.
const CODECS: [(&str, u8); 4] = [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)];

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_topics_land_as_rows() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let node = Node::start_with("codecs-in", vec!["--bootstrap".into()]).await?;
    for (codec, number) in CODECS {
        let topic = unique(&format!("in-{codec}"));
        kafka.create_topic(&topic, 1).await?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .set("compression.codec", codec)
            .set("linger.ms", "20")
            .create()
            .with_context(|| format!("a {codec} producer"))?;
        // Queued all at once so that librdkafka batches (and compresses) them together.
        // librdkafka sends a batch as it is when compressing does not make it smaller, as
        // with a batch of one short message on a busy machine; the padding (a field the
        // table skips) makes even one message smaller compressed.
        let padding = "a".repeat(200);
        let mut deliveries = Vec::new();
        for id in 0..MESSAGES {
            let payload = format!(r#"{{"id": {id}, "codec": "{codec}", "padding": "{padding}"}}"#);
            deliveries.push(
                producer
                    .send_result(
                        FutureRecord::<(), _>::to(&topic)
                            .partition(0)
                            .payload(&payload),
                    )
                    .map_err(|(e, _)| anyhow::anyhow!("queueing for {topic}: {e}"))?,
            );
        }
        for delivery in deliveries {
            delivery
                .await
                .context("the producer went away")?
                .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
        }
        let codecs = kafka.batch_codecs(&topic, 0)?;
        anyhow::ensure!(
            !codecs.is_empty() && codecs.iter().all(|c| *c == number),
            "{codec}: the broker stored batches of codecs {codecs:?}"
        );
        node.script(&format!(
            "CREATE TABLE {codec}_queue (id UInt64, codec String) ENGINE = Kafka()
             SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                      kafka_group_name = '{}', kafka_format = 'JSONEachRow';
             CREATE TABLE {codec}_rows AS {codec}_queue ENGINE = MergeTree() ORDER BY id;
             CREATE MATERIALIZED VIEW {codec}_mv TO {codec}_rows AS SELECT * FROM {codec}_queue;",
            kafka.bootstrap,
            unique(codec)
        ))
        .await?;
    }
    for (codec, _) in CODECS {
        let table = format!("{codec}_rows");
        wait_for_count(&node, &table, MESSAGES).await?;
        assert_eq!(
            node.number(&format!(
                "SELECT sum(id) FROM {table} WHERE codec = '{codec}'"
            ))
            .await?,
            (0..MESSAGES).sum::<u64>(),
            "{codec}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_compress_with_the_tables_codec() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let node = Node::start_with("codecs-out", vec!["--bootstrap".into()]).await?;
    let rows: Vec<String> = (0..MESSAGES)
        .map(|id| format!("({id}, 'row {id} of a compressible topic')"))
        .collect();
    let values = rows.join(", ");
    for (codec, number) in CODECS {
        let topic = unique(&format!("out-{codec}"));
        kafka.create_topic(&topic, 1).await?;
        let level = match codec {
            "gzip" => ", kafka_compression_level = 9",
            "zstd" => ", kafka_compression_level = 3",
            _ => "",
        };
        node.script(&format!(
            "CREATE TABLE out_{codec} (id UInt64, note String) ENGINE = Kafka()
             SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                      kafka_group_name = '{}', kafka_format = 'JSONEachRow',
                      kafka_compression_codec = '{codec}'{level}",
            kafka.bootstrap,
            unique(codec)
        ))
        .await?;
        node.sql(&format!("INSERT INTO out_{codec} VALUES {values}"))
            .await
            .map_err(|s| anyhow::anyhow!("insert into out_{codec}: {}", s.message()))?;

        // Every batch the broker keeps is in the table's codec, and the rows read back whole.
        let codecs = kafka.batch_codecs(&topic, 0)?;
        anyhow::ensure!(
            !codecs.is_empty() && codecs.iter().all(|c| *c == number),
            "out_{codec}: the broker stored batches of codecs {codecs:?}"
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .context("a Kafka consumer")?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let mut ids = Vec::new();
        wait_for(
            &format!("{MESSAGES} rows on {topic}"),
            Duration::from_secs(60),
            || {
                while let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    let text = String::from_utf8_lossy(message.payload().unwrap_or_default());
                    for line in text.lines() {
                        if let Ok(row) = serde_json::from_str::<serde_json::Value>(line) {
                            ids.extend(row["id"].as_u64());
                        }
                    }
                }
                let done = ids.len() as u64 >= MESSAGES;
                async move { done.then_some(()) }
            },
        )
        .await?;
        ids.sort_unstable();
        assert_eq!(ids, (0..MESSAGES).collect::<Vec<_>>(), "out_{codec}");
    }

    // A codec or level librdkafka would refuse is refused when the table is created, named.
    for (settings, expected) in [
        (
            "kafka_compression_codec = 'brotli'",
            "'kafka_compression_codec' = 'brotli'",
        ),
        (
            "kafka_compression_codec = 'gzip', kafka_compression_level = 12",
            "gzip takes levels 0..=9",
        ),
    ] {
        let error = node
            .sql(&format!(
                "CREATE TABLE refused (id UInt64) ENGINE = Kafka()
                 SETTINGS kafka_broker_list = '{}', kafka_topic_list = 't',
                          kafka_group_name = 'g', kafka_format = 'JSONEachRow', {settings}",
                kafka.bootstrap
            ))
            .await
            .err()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        assert!(error.contains(expected), "{settings}: {error:?}");
    }
    Ok(())
}
