//! The text formats against a real broker and a real node: messages in CSV, TSV,
//! JSONCompactEachRow, LineAsString and RawBLOB land as rows through a materialized view,
//! with the tables' format settings applied and a broken message skipped and named; and
//! rows inserted into Kafka tables of those formats reach the topic as the exact bytes
//! ClickHouse would write. Protobuf, ProtobufSingle and Avro the same way, both
//! directions, with messages made and read by the protobuf and Avro libraries.

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

/// The schema the Protobuf tables name in `kafka_schema`; also compiled here, to make and
/// read the messages.
const SHOP_PROTO: &str = r#"
syntax = "proto3";
package shop;
enum Status { UNKNOWN = 0; OPEN = 1; CLOSED = 2; }
message Order {
  uint64 id = 1;
  string name = 2;
  Status status = 3;
  repeated string tags = 4;
  int64 at = 5;
  optional double price = 6;
}
"#;

const SHOP_COLUMNS: &str = "id UInt32, name String, status Enum8('UNKNOWN' = 0, 'OPEN' = 1, 'CLOSED' = 2), tags Array(String), at DateTime, price Nullable(Float64)";

const SHOP_AVRO: &str = r#"{"type": "record", "name": "order", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "status", "type": {"type": "enum", "name": "status", "symbols": ["UNKNOWN", "OPEN", "CLOSED"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "price", "type": ["null", "double"]}
]}"#;

/// Even ids are OPEN and have a price; odd ones are CLOSED and have none.
fn even(i: u64) -> bool {
    matches!(i % 2, 0)
}

/// 2024-01-02 03:04:05 UTC.
const AT_SECONDS: i64 = 1_704_164_645;

fn order_message(desc: &prost_reflect::MessageDescriptor, i: u64) -> prost_reflect::DynamicMessage {
    use prost_reflect::Value;
    let mut m = prost_reflect::DynamicMessage::new(desc.clone());
    m.set_field_by_name("id", Value::U64(i));
    m.set_field_by_name("name", Value::String(format!("n{i}")));
    m.set_field_by_name("status", Value::EnumNumber(1 + (i % 2) as i32));
    m.set_field_by_name(
        "tags",
        Value::List(vec![Value::String("a".into()), Value::String("b".into())]),
    );
    m.set_field_by_name("at", Value::I64(AT_SECONDS));
    if even(i) {
        m.set_field_by_name("price", Value::F64(i as f64 / 2.0));
    }
    m
}

/// A message's fields as values (a zero is the same whether sent or not, as in proto3),
/// and whether the optional price is there.
fn fields(m: &prost_reflect::DynamicMessage) -> String {
    use prost_reflect::ReflectMessage as _;
    let values: Vec<String> = m
        .descriptor()
        .fields()
        .map(|f| format!("{}={:?}", f.name(), m.get_field(&f)))
        .collect();
    format!(
        "{} price set: {}",
        values.join(" "),
        m.has_field_by_name("price")
    )
}

fn avro_file(rows: std::ops::Range<u64>) -> anyhow::Result<Vec<u8>> {
    use apache_avro::types::{Record, Value};
    let schema = apache_avro::Schema::parse_str(SHOP_AVRO)?;
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    for i in rows {
        let mut r = Record::new(&schema).context("a record schema")?;
        r.put("id", i as i64);
        r.put("name", format!("n{i}"));
        let status = 1 + (i % 2) as u32;
        r.put(
            "status",
            Value::Enum(
                status,
                ["UNKNOWN", "OPEN", "CLOSED"][status as usize].into(),
            ),
        );
        r.put(
            "tags",
            Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
        );
        r.put("at", Value::TimestampMillis(AT_SECONDS * 1000));
        r.put(
            "price",
            if even(i) {
                Value::Union(1, Box::new(Value::Double(i as f64 / 2.0)))
            } else {
                Value::Union(0, Box::new(Value::Null))
            },
        );
        writer.append(r)?;
    }
    Ok(writer.into_inner()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_formats_both_ways() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let schemas = tempfile::tempdir()?;
    std::fs::write(schemas.path().join("shop.proto"), SHOP_PROTO)?;
    let node = Node::start_with(
        "formats-schema",
        vec![
            "--bootstrap".into(),
            "--format-schema-path".into(),
            schemas.path().display().to_string(),
        ],
    )
    .await?;
    let desc = protox::Compiler::new([schemas.path()])?
        .open_file("shop.proto")?
        .descriptor_pool()
        .get_message_by_name("shop.Order")
        .context("shop.Order")?;

    // Every message holds two rows, ids 2m and 2m+1; one broken message in the middle.
    let rows = u64::from(MESSAGES) * 2;
    let with_broken = |mut payloads: Vec<Vec<u8>>, broken: &[u8]| {
        payloads.insert(payloads.len() / 2, broken.to_vec());
        payloads
    };
    let delimited: Vec<Vec<u8>> = (0..u64::from(MESSAGES))
        .map(|m| {
            use prost::Message as _;
            let mut out = order_message(&desc, 2 * m).encode_length_delimited_to_vec();
            out.extend(order_message(&desc, 2 * m + 1).encode_length_delimited_to_vec());
            out
        })
        .collect();
    let single: Vec<Vec<u8>> = (0..rows)
        .map(|i| {
            use prost::Message as _;
            order_message(&desc, i).encode_to_vec()
        })
        .collect();
    let avro: Vec<Vec<u8>> = (0..u64::from(MESSAGES))
        .map(|m| avro_file(2 * m..2 * m + 2))
        .collect::<anyhow::Result<_>>()?;
    let cases = [
        (
            "pb",
            "Protobuf",
            ", kafka_schema = 'shop.proto:Order'",
            with_broken(delimited, b"\x05\x08"),
            "Protobuf: message 0 in the Kafka message",
        ),
        (
            "pb_single",
            "ProtobufSingle",
            ", kafka_schema = 'shop:Order'",
            with_broken(single, b"\x08"),
            "ProtobufSingle: message 0 in the Kafka message",
        ),
        (
            "avro",
            "Avro",
            "",
            with_broken(avro, b"Obj\x01 cut short"),
            "Avro: not an Avro Object Container File",
        ),
    ];
    for (name, format, settings, payloads, _) in &cases {
        let topic = unique(name);
        produce(kafka, &topic, payloads).await?;
        node.script(&pipeline_ddl(
            kafka,
            name,
            SHOP_COLUMNS,
            &topic,
            format,
            settings,
        ))
        .await?;
    }
    for (name, _, _, _, broken) in &cases {
        wait_for_count(&node, name, rows).await?;
        assert_eq!(
            node.number(&format!("SELECT sum(id) FROM {name}")).await?,
            (0..rows).sum::<u64>(),
            "{name}"
        );
        // Every field arrived in its column: even ids OPEN with a price of id/2, odd ids
        // CLOSED with none (NULL).
        assert_eq!(
            node.number(&format!(
                "SELECT count() FROM {name} WHERE name = concat('n', CAST(id AS VARCHAR))
                   AND at = '2024-01-02 03:04:05' AND cardinality(tags) = 2
                   AND ((id % 2 = 0 AND status = 'OPEN' AND price * 2 = id)
                     OR (id % 2 = 1 AND status = 'CLOSED' AND price IS NULL))"
            ))
            .await?,
            rows,
            "{name}: {:?}",
            node.rows(&format!("SELECT * FROM {name} WHERE id < 2"))
                .await
        );
        assert!(
            node.log_contains(broken),
            "{name}: no '{broken}' in the log"
        );
    }

    // CREATE names what is wrong with a schema.
    for (schema, says) in [
        ("shop:Nope", "shop.proto has no message type Nope"),
        ("nothere:Order", "file nothere.proto not found"),
    ] {
        let error = node
            .sql(&format!(
                "CREATE TABLE bad_schema (id UInt32) ENGINE = Kafka('{}', 't', 'g', 'Protobuf') SETTINGS kafka_schema = '{schema}'",
                kafka.bootstrap
            ))
            .await
            .err()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        assert!(error.contains(says), "{schema}: {error:?}");
    }
    let error = node
        .sql(&format!(
            "CREATE TABLE bad_schema (id UInt32, nope String) ENGINE = Kafka('{}', 't', 'g', 'Protobuf') SETTINGS kafka_schema = 'shop:Order'",
            kafka.bootstrap
        ))
        .await
        .err()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    assert!(
        error.contains("column nope matches no field of message shop.Order"),
        "{error:?}"
    );

    // Rows written to Kafka tables of each format, read back with the libraries.
    let kafka_table = |name: &str, topic: &str, format: &str, settings: &str| {
        format!(
            "CREATE TABLE {name} ({SHOP_COLUMNS}) ENGINE = Kafka()
             SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                      kafka_group_name = '{}', kafka_format = '{format}'{settings}",
            kafka.bootstrap,
            unique(name)
        )
    };
    let topics = [
        unique("out-pb"),
        unique("out-pb-single"),
        unique("out-avro"),
    ];
    for topic in &topics {
        kafka.create_topic(topic, 1).await?;
    }
    node.script(&format!(
        "{};\n{};\n{};",
        kafka_table(
            "out_pb",
            &topics[0],
            "Protobuf",
            ", kafka_schema = 'shop:Order', kafka_max_rows_per_message = 2"
        ),
        kafka_table(
            "out_pb_single",
            &topics[1],
            "ProtobufSingle",
            // One row a message all the same.
            ", kafka_schema = 'shop:Order', kafka_max_rows_per_message = 2"
        ),
        kafka_table(
            "out_avro",
            &topics[2],
            "Avro",
            ", kafka_max_rows_per_message = 2"
        ),
    ))
    .await?;
    for table in ["out_pb", "out_pb_single", "out_avro"] {
        node.sql(&format!(
            "INSERT INTO {table} SELECT * FROM pb WHERE id < 3 ORDER BY id"
        ))
        .await
        .map_err(|s| anyhow::anyhow!("insert into {table}: {}", s.message()))?;
    }
    // Protobuf: two length-delimited messages, then one.
    let written = read_topic(kafka, &topics[0], 2).await?;
    let mut decoded = Vec::new();
    for payload in &written {
        let mut buf = payload.as_slice();
        let mut in_message = 0;
        while !buf.is_empty() {
            use prost::Message as _;
            let mut m = prost_reflect::DynamicMessage::new(desc.clone());
            m.merge_length_delimited(&mut buf)?;
            decoded.push(m);
            in_message += 1;
        }
        assert!(in_message <= 2, "kafka_max_rows_per_message = 2");
    }
    let want: Vec<_> = (0..3).map(|i| fields(&order_message(&desc, i))).collect();
    assert_eq!(decoded.iter().map(fields).collect::<Vec<_>>(), want);
    let written = read_topic(kafka, &topics[1], 3).await?;
    let decoded = written
        .iter()
        .map(|p| prost_reflect::DynamicMessage::decode(desc.clone(), p.as_slice()))
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(decoded.iter().map(fields).collect::<Vec<_>>(), want);
    // Avro: a container file of two rows, then one of one, with the columns' schema.
    let written = read_topic(kafka, &topics[2], 2).await?;
    let mut records = Vec::new();
    for payload in &written {
        for value in apache_avro::Reader::new(payload.as_slice())? {
            records.push(value?);
        }
    }
    let ids: Vec<String> = records.iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(records.len(), 3, "{ids:?}");
    use apache_avro::types::Value;
    let field = |r: &Value, name: &str| match r {
        Value::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    for (i, record) in records.iter().enumerate() {
        assert_eq!(field(record, "id"), Some(Value::Long(i as i64)), "{ids:?}");
        assert_eq!(field(record, "name"), Some(Value::String(format!("n{i}"))));
        let status = if even(i as u64) {
            (1, "OPEN")
        } else {
            (2, "CLOSED")
        };
        assert_eq!(
            field(record, "status"),
            Some(Value::Enum(status.0, status.1.into()))
        );
        assert_eq!(field(record, "at"), Some(Value::Int(AT_SECONDS as i32)));
        let price = if even(i as u64) {
            Value::Union(1, Box::new(Value::Double(i as f64 / 2.0)))
        } else {
            Value::Union(0, Box::new(Value::Null))
        };
        assert_eq!(field(record, "price"), Some(price));
    }
    Ok(())
}
