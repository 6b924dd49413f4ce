//! The text formats against a real broker and a real node: messages in CSV, TSV,
//! JSONCompactEachRow, LineAsString and RawBLOB land as rows through a materialized view,
//! with the tables' format settings applied and a broken message skipped and named; and
//! rows inserted into Kafka tables of those formats reach the topic as the exact bytes
//! ClickHouse would write.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::{unique, wait_for, Kafka, Node};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};

/// Messages per topic: small, the point is the formats, not the volume.
const MESSAGES: u32 = 100;

/// Sends `payloads` in order to partition 0 of a new one-partition topic.
async fn produce(kafka: &Kafka, topic: &str, payloads: &[Vec<u8>]) -> anyhow::Result<()> {
    kafka.create_topic(topic, 1).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .context("a Kafka producer")?;
    for payload in payloads {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(payload),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

/// The payloads of partition 0 of `topic`, once it holds `expected` messages.
async fn read_topic(kafka: &Kafka, topic: &str, expected: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .context("a Kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut payloads = Vec::new();
    let read = wait_for(
        &format!("{expected} messages on {topic}"),
        Duration::from_secs(60),
        || {
            while let Some(message) = consumer.poll(Duration::from_millis(100)) {
                if let Ok(m) = message {
                    payloads.push(m.payload().unwrap_or_default().to_vec());
                }
            }
            let done = payloads.len() >= expected;
            async move { done.then_some(()) }
        },
    )
    .await;
    read.with_context(|| format!("read so far: {payloads:?}"))?;
    Ok(payloads)
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

/// A Kafka table of `format` over `topic`, a MergeTree table of the same columns, and the
/// view between them.
fn pipeline_ddl(
    kafka: &Kafka,
    name: &str,
    columns: &str,
    topic: &str,
    format: &str,
    settings: &str,
) -> String {
    format!(
        "CREATE TABLE {name}_queue ({columns}) ENGINE = Kafka()
         SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                  kafka_group_name = '{}', kafka_format = '{format}',
                  kafka_skip_broken_messages = 1{settings};
         CREATE TABLE {name} AS {name}_queue ENGINE = MergeTree() ORDER BY tuple();
         CREATE MATERIALIZED VIEW {name}_mv TO {name} AS SELECT * FROM {name}_queue;",
        kafka.bootstrap,
        unique(name)
    )
}

/// A name with the characters each format must quote or escape.
fn awkward_name(i: u32) -> String {
    format!("n{i} \"q\", tab\there; back\\slash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_formats_land_rows_through_views() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let node = Node::start_with("formats-in", vec!["--bootstrap".into()]).await?;
    let columns = "id UInt32, name String, at DateTime, tags Array(String)";
    // Every message holds two rows, ids 2i and 2i+1; one broken message sits in the middle.
    let rows = u64::from(MESSAGES) * 2;
    let expected_ids: u64 = (0..rows).sum();
    let at = "2024-01-02 03:04:05";
    let with_broken = |mut payloads: Vec<Vec<u8>>, broken: &str| {
        payloads.insert(payloads.len() / 2, broken.as_bytes().to_vec());
        payloads
    };

    // CSV with a ';' delimiter and ISO 8601 times (best_effort).
    let csv_quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let csv: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|m| {
            (2 * m..2 * m + 2)
                .map(|i| {
                    format!(
                        "{i};{};2024-01-02T04:04:05+01:00;\"['a','b']\"\n",
                        csv_quoted(&awkward_name(i))
                    )
                })
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    // TSV with names, the columns in another order than the table's.
    let tsv_escaped = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let tsv: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|m| {
            let mut text = "name\ttags\tid\tat\n".to_string();
            for i in 2 * m..2 * m + 2 {
                text.push_str(&format!(
                    "{}\t['a','b']\t{i}\t{at}\n",
                    tsv_escaped(&awkward_name(i))
                ));
            }
            text.into_bytes()
        })
        .collect();
    let compact: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|m| {
            (2 * m..2 * m + 2)
                .map(|i| {
                    let row = serde_json::json!([i, awkward_name(i), at, ["a", "b"]]);
                    format!("{row}\n")
                })
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    let cases = [
        (
            "csv",
            "CSV",
            ", format_csv_delimiter = ';', date_time_input_format = 'best_effort'",
            with_broken(csv, "1;\"unclosed;x;[]\n"),
            "CSV: line 1: a quoted field is not closed",
        ),
        (
            "tsv",
            "TSVWithNames",
            "",
            with_broken(tsv, "name\tid\nx\tnot a number\n"),
            "TabSeparatedWithNames: line 2: column id: cannot parse 'not a number' as UInt32",
        ),
        (
            "compact",
            "JSONCompactEachRow",
            "",
            with_broken(compact, "[1, \"only two\"]"),
            "JSONCompactEachRow: row 1: 2 values, the table has 4 columns",
        ),
    ];
    for (name, format, settings, payloads, _) in &cases {
        let topic = unique(name);
        produce(kafka, &topic, payloads).await?;
        node.script(&pipeline_ddl(
            kafka, name, columns, &topic, format, settings,
        ))
        .await?;
    }
    for (name, _, _, _, broken) in &cases {
        wait_for_count(&node, name, rows).await?;
        assert_eq!(
            node.number(&format!("SELECT sum(id) FROM {name}")).await?,
            expected_ids,
            "{name}"
        );
        // Each row read its name back whole, its time in UTC, its array item by item.
        assert_eq!(
            node.number(&format!(
                "SELECT count() FROM {name} WHERE name = concat('n', CAST(id AS VARCHAR), ' \"q\", tab', chr(9), 'here; back', chr(92), 'slash') AND at = '{at}' AND cardinality(tags) = 2"
            ))
            .await?,
            rows,
            "{name}: {:?}",
            node.rows(&format!("SELECT * FROM {name} WHERE id = 7")).await
        );
        assert!(
            node.log_contains(broken),
            "{name}: no '{broken}' in the log"
        );
    }

    // The whole-message formats: one String column.
    let lines: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|m| format!("line {m}.a\nline {m}.b\tTAB \\n\n").into_bytes())
        .collect();
    let blobs: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|m| format!("blob {m}\n\t\"as is\" \\N\n").into_bytes())
        .collect();
    for (name, format, payloads) in [
        ("lines", "LineAsString", &lines),
        ("blobs", "RawBLOB", &blobs),
    ] {
        let topic = unique(name);
        produce(kafka, &topic, payloads).await?;
        node.script(&pipeline_ddl(kafka, name, "v String", &topic, format, ""))
            .await?;
    }
    wait_for_count(&node, "lines", u64::from(MESSAGES) * 2).await?;
    wait_for_count(&node, "blobs", u64::from(MESSAGES)).await?;
    // Compared by their ends: LIKE would read the backslashes as its escapes.
    assert_eq!(
        node.number("SELECT count() FROM lines WHERE starts_with(v, 'line ') AND ends_with(v, concat('.b', chr(9), 'TAB ', chr(92), 'n'))")
            .await?,
        u64::from(MESSAGES)
    );
    assert_eq!(
        node.number("SELECT count() FROM blobs WHERE starts_with(v, 'blob ') AND ends_with(v, concat(chr(10), chr(9), '\"as is\" ', chr(92), 'N', chr(10)))")
            .await?,
        u64::from(MESSAGES)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_write_the_kafka_tables_format() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let node = Node::start_with("formats-out", vec!["--bootstrap".into()]).await?;
    let kafka_table = |name: &str, columns: &str, topic: &str, format: &str, settings: &str| {
        format!(
            "CREATE TABLE {name} ({columns}) ENGINE = Kafka()
             SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                      kafka_group_name = '{}', kafka_format = '{format}'{settings}",
            kafka.bootstrap,
            unique(name)
        )
    };
    let columns = "id UInt32, name String, note Nullable(String), at DateTime, tags Array(String)";
    let (csv_topic, tsv_topic, compact_topic, blob_topic) = (
        unique("out-csv"),
        unique("out-tsv"),
        unique("out-compact"),
        unique("out-blob"),
    );
    for topic in [&csv_topic, &tsv_topic, &compact_topic, &blob_topic] {
        kafka.create_topic(topic, 1).await?;
    }
    node.script(&format!(
        "{};\n{};\n{};\n{};",
        kafka_table(
            "out_csv",
            columns,
            &csv_topic,
            "CSVWithNames",
            ", format_csv_delimiter = ';', kafka_max_rows_per_message = 2"
        ),
        kafka_table("out_tsv", columns, &tsv_topic, "TabSeparated", ""),
        kafka_table(
            "out_compact",
            columns,
            &compact_topic,
            "JSONCompactEachRow",
            ""
        ),
        kafka_table("out_blob", "v String", &blob_topic, "RawBLOB", ""),
    ))
    .await?;
    let rows = "SELECT 1 AS id, concat('a;b \"q\"', chr(9), 'x', chr(10), 'y', chr(92)) AS name, CAST(NULL AS VARCHAR) AS note, '2024-01-02 03:04:05' AS at, ['it''s', 'z'] AS tags
                UNION ALL SELECT 2, 'plain', 'n', '1970-01-01 00:00:00', []";
    for (table, clause) in [
        ("out_csv", "FORMAT CSVWithNames"),
        ("out_tsv", "FORMAT TSV"),
        ("out_compact", ""),
    ] {
        node.sql(&format!(
            "INSERT INTO {table} SELECT * FROM ({rows}) ORDER BY id {clause}"
        ))
        .await
        .map_err(|s| anyhow::anyhow!("insert into {table}: {}", s.message()))?;
    }
    node.sql("INSERT INTO out_blob SELECT concat('bytes', chr(10), chr(9), 'kept') AS v")
        .await
        .map_err(|s| anyhow::anyhow!("insert into out_blob: {}", s.message()))?;

    // What ClickHouse 26.9 writes for these rows in each format.
    let csv = read_topic(kafka, &csv_topic, 1).await?;
    assert_eq!(
        String::from_utf8_lossy(&csv[0]),
        "\"id\";\"name\";\"note\";\"at\";\"tags\"\n\
         1;\"a;b \"\"q\"\"\tx\ny\\\";\\N;\"2024-01-02 03:04:05\";\"['it\\'s','z']\"\n\
         2;\"plain\";\"n\";\"1970-01-01 00:00:00\";\"[]\"\n"
    );
    let tsv = read_topic(kafka, &tsv_topic, 2).await?;
    assert_eq!(
        tsv.iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect::<Vec<_>>(),
        vec![
            "1\ta;b \"q\"\\tx\\ny\\\\\t\\N\t2024-01-02 03:04:05\t['it\\'s','z']\n",
            "2\tplain\tn\t1970-01-01 00:00:00\t[]\n",
        ]
    );
    let compact = read_topic(kafka, &compact_topic, 2).await?;
    assert_eq!(
        compact
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect::<Vec<_>>(),
        vec![
            "[1, \"a;b \\\"q\\\"\\tx\\ny\\\\\", null, \"2024-01-02 03:04:05\", [\"it's\",\"z\"]]\n",
            "[2, \"plain\", \"n\", \"1970-01-01 00:00:00\", []]\n",
        ]
    );
    let blob = read_topic(kafka, &blob_topic, 1).await?;
    assert_eq!(blob, vec![b"bytes\n\tkept".to_vec()]);

    // A FORMAT clause naming another format than the table's is refused, naming both.
    let error = node
        .sql(&format!(
            "INSERT INTO out_tsv SELECT * FROM ({rows}) FORMAT CSV"
        ))
        .await
        .err()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    assert!(
        error.contains("FORMAT CSV: the table writes its kafka_format, TabSeparated"),
        "{error:?}"
    );
    Ok(())
}
