//! Lag against a real broker and real nodes: each partition's high watermark, stored
//! offset and lag in `system.kafka_consumers`, the metrics and `sluice status`, exact
//! while a consumer is held behind a broken message and once it caught up, and the same
//! on any node of a cluster; rows of a dropped view or table leave the system table; and
//! a Kafka table reads its topic only while a materialized view reads it, as in ClickHouse.

use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::node::{binary, free_port};
use cluster_tests::{metrics, unique, wait_for, Kafka, Node, TestCluster};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Good messages in each partition before the broken one, and after it.
const BEFORE: i64 = 40;
const AFTER: i64 = 25;

/// Sends `payloads` to one partition, in order, and waits for the broker to take them.
async fn produce(
    kafka: &Kafka,
    topic: &str,
    partition: i32,
    payloads: &[String],
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .context("a Kafka producer")?;
    for payload in payloads {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}/{partition}: {e}"))?;
    }
    Ok(())
}

fn rows_of(ids: std::ops::Range<i64>) -> Vec<String> {
    ids.map(|id| format!(r#"{{"id": {id}}}"#)).collect()
}

/// The offset `group` committed for `topic`/`partition`, if it ever committed one.
fn committed(
    kafka: &Kafka,
    group: &str,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("a Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let offsets = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(offsets
        .find_partition(topic, partition)
        .and_then(|p| match p.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

/// A partition consumer's lag figures as `system.kafka_consumers` shows them.
#[derive(Debug, Clone, PartialEq)]
struct Lag {
    partition: i32,
    high_watermark: Option<i64>,
    stored_offset: Option<i64>,
    lag: Option<u64>,
    messages_per_second: f64,
    rows_per_second: f64,
    skipped: u64,
    exceptions: String,
}

async fn lags(node: &Node, table: &str) -> anyhow::Result<Vec<Lag>> {
    let rows = node
        .rows(&format!(
            "SELECT assignments.partition_id, high_watermark, stored_offset, lag, \
             messages_per_second, rows_per_second, num_skipped_messages, exceptions.text \
             FROM system.kafka_consumers WHERE \"table\" = '{table}' \
             ORDER BY assignments.partition_id ASC"
        ))
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Lag {
                partition: r[0].trim_matches(|c| c == '[' || c == ']').parse()?,
                high_watermark: r[1].parse().ok(),
                stored_offset: r[2].parse().ok(),
                lag: r[3].parse().ok(),
                messages_per_second: r[4].parse()?,
                rows_per_second: r[5].parse()?,
                skipped: r[6].parse()?,
                exceptions: r[7].clone(),
            })
        })
        .collect()
}

/// Waits until each partition of `table` shows `(high watermark, stored offset, lag)`.
async fn wait_for_lags(
    node: &Node,
    table: &str,
    expected: &[(i64, i64, u64)],
) -> anyhow::Result<Vec<Lag>> {
    let reached = wait_for(
        &format!("{table} to show (end, stored, lag) {expected:?}"),
        Duration::from_secs(120),
        || async {
            let lags = lags(node, table).await.ok()?;
            let figures: Vec<(i64, i64, u64)> = lags
                .iter()
                .filter_map(|l| Some((l.high_watermark?, l.stored_offset?, l.lag?)))
                .collect();
            (lags.len() == expected.len() && figures == expected).then_some(lags)
        },
    )
    .await;
    match reached {
        Ok(lags) => Ok(lags),
        Err(e) => anyhow::bail!(
            "{e}: consumers {:?}\n{}",
            node.rows("SELECT * FROM system.kafka_consumers").await,
            node.log_tail()
        ),
    }
}

async fn wait_for_no_consumers(node: &Node, table: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("{table} to leave system.kafka_consumers"),
        Duration::from_secs(60),
        || async { lags(node, table).await.ok().filter(Vec::is_empty) },
    )
    .await
    .map(|_| ())
}

/// No consumer of `idle_queue` anywhere, and its group's offset where it was.
async fn assert_not_read(
    node: &Node,
    kafka: &Kafka,
    group: &str,
    topic: &str,
    committed_at: Option<i64>,
) -> anyhow::Result<()> {
    let consumers = lags(node, "idle_queue").await?;
    anyhow::ensure!(
        consumers.is_empty(),
        "idle_queue has consumers: {consumers:?}"
    );
    assert_eq!(committed(kafka, group, topic, 0)?, committed_at);
    Ok(())
}

async fn count(node: &Node, table: &str) -> anyhow::Result<u64> {
    node.number(&format!("SELECT count() FROM {table}")).await
}

async fn wait_for_count(node: &Node, table: &str, expected: u64) -> anyhow::Result<()> {
    wait_for(
        &format!("{expected} rows in {table}"),
        Duration::from_secs(120),
        || async { (count(node, table).await.ok()? == expected).then_some(()) },
    )
    .await
}

fn queue_ddl(kafka: &Kafka, table: &str, topic: &str, group: &str, skip: u64) -> String {
    format!(
        "CREATE TABLE {table} (id UInt64) ENGINE = Kafka()
         SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                  kafka_group_name = '{group}', kafka_format = 'JSONEachRow',
                  kafka_max_block_size = 1, kafka_skip_broken_messages = {skip}",
        kafka.bootstrap
    )
}

/// A partition held behind a broken message shows exactly what is left past it; once
/// the message is skipped, the lag is 0 with the high watermark and the stored offset
/// equal to the partition's message count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_exact_behind_a_broken_message_and_zero_once_caught_up() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("lag");
    let group = unique("lag-group");
    kafka.create_topic(&topic, 2).await?;
    // Partition 0: BEFORE good messages, one that is not JSON, AFTER good ones; partition
    // 1: as many good ones, all before any table exists.
    let mut p0 = rows_of(0..BEFORE);
    p0.push("not json at all".to_string());
    p0.extend(rows_of(BEFORE..BEFORE + AFTER));
    produce(kafka, &topic, 0, &p0).await?;
    produce(kafka, &topic, 1, &rows_of(1_000..1_000 + BEFORE + AFTER)).await?;
    let p0_end = BEFORE + 1 + AFTER;
    let p1_end = BEFORE + AFTER;

    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    let node = Node::start_with(
        "lag",
        vec![
            "--bootstrap".into(),
            "--metrics-addr".into(),
            metrics_addr.clone(),
        ],
    )
    .await?;
    // One message per block, so partition 0 is stored exactly up to the broken message.
    node.script(&format!(
        "{};
         CREATE TABLE lag_rows (id UInt64) ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW lag_mv TO lag_rows AS SELECT id FROM lag_queue;",
        queue_ddl(kafka, "lag_queue", &topic, &group, 0)
    ))
    .await?;

    // Held behind the broken message: what is left of partition 0 is the broken message
    // and everything after it.
    wait_for_lags(
        &node,
        "lag_queue",
        &[(p0_end, BEFORE, (AFTER + 1) as u64), (p1_end, p1_end, 0)],
    )
    .await?;
    wait_for(
        "the broken message's error",
        Duration::from_secs(60),
        || async {
            let lags = lags(&node, "lag_queue").await.ok()?;
            lags[0]
                .exceptions
                .contains("kafka_skip_broken_messages")
                .then_some(())
        },
    )
    .await?;
    // Failing and restarted, the consumer still stands at the broken message.
    let behind = lags(&node, "lag_queue").await?;
    assert_eq!(
        behind
            .iter()
            .map(|l| (l.high_watermark, l.stored_offset, l.lag))
            .collect::<Vec<_>>(),
        vec![
            (Some(p0_end), Some(BEFORE), Some((AFTER + 1) as u64)),
            (Some(p1_end), Some(p1_end), Some(0))
        ]
    );
    assert_eq!(count(&node, "lag_rows").await?, (BEFORE + p1_end) as u64);

    // The metrics say the same, per partition.
    let scraped = metrics::scrape(&metrics_addr).await?;
    let sample = |name: &str, partition: &str| {
        metrics::sum(
            &scraped,
            name,
            &["table=\"lag_queue\"", &format!("partition=\"{partition}\"")],
        )
    };
    assert_eq!(
        sample("sluice_consumer_lag", "0"),
        Some((AFTER + 1) as f64),
        "{scraped}"
    );
    assert_eq!(sample("sluice_consumer_lag", "1"), Some(0.0), "{scraped}");
    assert_eq!(
        sample("sluice_consumer_high_watermark", "0"),
        Some(p0_end as f64)
    );
    assert_eq!(
        sample("sluice_consumer_stored_offset", "0"),
        Some(BEFORE as f64)
    );
    assert_eq!(
        sample("sluice_consumer_high_watermark", "1"),
        Some(p1_end as f64)
    );
    assert_eq!(
        sample("sluice_consumer_stored_offset", "1"),
        Some(p1_end as f64)
    );

    // `sluice status` shows the table's total lag and each partition's.
    let status = std::process::Command::new(binary()?)
        .args(["status", "--host", &node.address])
        .output()
        .context("running sluice status")?;
    anyhow::ensure!(status.status.success(), "sluice status: {status:?}");
    let shown = String::from_utf8_lossy(&status.stdout);
    // Table cells, with the empty ones outside the borders: `│ a ┆ b │` is ["", a, b, ""].
    let lines: Vec<Vec<String>> = shown
        .lines()
        .map(|line| {
            line.split(['│', '┆'])
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    // The per-table totals: table, partitions, lag, messages/s.
    let total = lines
        .iter()
        .find(|c| c.len() == 6 && c[1] == "lag_queue")
        .with_context(|| format!("no total for lag_queue in:\n{shown}"))?;
    assert_eq!(
        total[2..4],
        ["2".to_string(), (AFTER + 1).to_string()],
        "{shown}"
    );
    // The consumers: node, table, topic, partition, stored, end, lag, ...
    let per_partition: Vec<[String; 4]> = lines
        .iter()
        .filter(|c| c.len() > 8 && c[2] == "lag_queue")
        .map(|c| [c[4].clone(), c[5].clone(), c[6].clone(), c[7].clone()])
        .collect();
    let expected = |partition: i64, stored: i64, end: i64, lag: i64| {
        [partition, stored, end, lag].map(|v| v.to_string())
    };
    assert_eq!(
        per_partition,
        vec![
            expected(0, BEFORE, p0_end, AFTER + 1),
            expected(1, p1_end, p1_end, 0)
        ],
        "{shown}"
    );

    // Dropping the view stops the failing consumer: its rows go, though it was waiting
    // out a backoff rather than running.
    node.sql("DROP VIEW lag_mv")
        .await
        .map_err(|s| anyhow::anyhow!("DROP VIEW: {}", s.message()))?;
    wait_for_no_consumers(&node, "lag_queue").await?;
    let scraped = metrics::scrape(&metrics_addr).await?;
    assert_eq!(
        metrics::sum(&scraped, "sluice_consumer_lag", &["table=\"lag_queue\""]),
        None,
        "{scraped}"
    );

    // The same table again, allowed one broken message per block: it resumes at the
    // stored offset, skips the message, and catches up.
    node.script(&format!(
        "DROP TABLE lag_queue;
         {};
         CREATE MATERIALIZED VIEW lag_mv TO lag_rows AS SELECT id FROM lag_queue;",
        queue_ddl(kafka, "lag_queue", &topic, &group, 1)
    ))
    .await?;
    let caught_up = wait_for_lags(
        &node,
        "lag_queue",
        &[(p0_end, p0_end, 0), (p1_end, p1_end, 0)],
    )
    .await?;
    wait_for_count(&node, "lag_rows", (BEFORE + AFTER + p1_end) as u64).await?;
    assert_eq!(
        node.number("SELECT count(DISTINCT id) FROM lag_rows")
            .await?,
        (BEFORE + AFTER + p1_end) as u64,
        "no message stored twice"
    );
    assert_eq!(caught_up[0].skipped, 1);
    // Partition 0 just read the rest of its messages; partition 1 had nothing to read.
    assert!(
        caught_up[0].messages_per_second > 0.0 && caught_up[0].rows_per_second > 0.0,
        "{caught_up:?}"
    );
    assert_eq!(
        (
            caught_up[1].messages_per_second,
            caught_up[1].rows_per_second
        ),
        (0.0, 0.0)
    );
    // The rates look back a few seconds only: idle, they fall to zero.
    wait_for(
        "the rates to fall to zero",
        Duration::from_secs(40),
        || async {
            let lags = lags(&node, "lag_queue").await.ok()?;
            lags.iter()
                .all(|l| l.messages_per_second == 0.0 && l.rows_per_second == 0.0)
                .then_some(())
        },
    )
    .await?;
    let scraped = metrics::scrape(&metrics_addr).await?;
    assert_eq!(
        metrics::sum(&scraped, "sluice_consumer_lag", &["table=\"lag_queue\""]),
        Some(0.0),
        "{scraped}"
    );
    assert_eq!(
        metrics::sum(
            &scraped,
            "sluice_consumer_stored_offset",
            &["table=\"lag_queue\""]
        ),
        Some((p0_end + p1_end) as f64),
        "{scraped}"
    );

    // Dropping the view and then the table leaves no row behind.
    node.script("DROP VIEW lag_mv; DROP TABLE lag_queue;")
        .await?;
    wait_for_no_consumers(&node, "lag_queue").await?;
    Ok(())
}

/// As in ClickHouse, a Kafka table without a materialized view reads nothing: no
/// consumer, no row in `system.kafka_consumers`, no committed offset for its group. The
/// first view starts it, dropping the last one stops it, and a new view resumes where
/// the table's rows end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_table_reads_only_while_a_view_reads_it() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let (topic, group) = (unique("viewless"), unique("viewless-group"));
    let witness_topic = unique("witness");
    kafka.create_topic(&topic, 1).await?;
    kafka.create_topic(&witness_topic, 1).await?;
    produce(kafka, &topic, 0, &rows_of(0..30)).await?;

    let node = Node::start("viewless").await?;
    node.script(&format!(
        "{};
         CREATE TABLE idle_rows (id UInt64) ENGINE = MergeTree() ORDER BY id;",
        queue_ddl(kafka, "idle_queue", &topic, &group, 0)
    ))
    .await?;
    // A witness table with a view, created after: once it has read its messages, the
    // node has reconciled its consumers with a catalog that holds idle_queue.
    node.script(&format!(
        "{};
         CREATE TABLE witness_rows (id UInt64) ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW witness_mv TO witness_rows AS SELECT id FROM witness_queue;",
        queue_ddl(
            kafka,
            "witness_queue",
            &witness_topic,
            &unique("witness-group"),
            0
        )
    ))
    .await?;
    produce(kafka, &witness_topic, 0, &rows_of(0..10)).await?;
    wait_for_count(&node, "witness_rows", 10).await?;
    wait_for_lags(&node, "witness_queue", &[(10, 10, 0)]).await?;
    assert_not_read(&node, kafka, &group, &topic, None).await?;
    assert_eq!(count(&node, "idle_rows").await?, 0);

    // The first view starts the consumer.
    node.sql("CREATE MATERIALIZED VIEW idle_mv TO idle_rows AS SELECT id FROM idle_queue")
        .await
        .map_err(|s| anyhow::anyhow!("CREATE VIEW: {}", s.message()))?;
    wait_for_count(&node, "idle_rows", 30).await?;
    wait_for_lags(&node, "idle_queue", &[(30, 30, 0)]).await?;
    wait_for(
        "the group offset at 30",
        Duration::from_secs(30),
        || async { (committed(kafka, &group, &topic, 0).ok()? == Some(30)).then_some(()) },
    )
    .await?;

    // Dropping it stops the consumer: what is produced now waits, and the group stays.
    node.sql("DROP VIEW idle_mv")
        .await
        .map_err(|s| anyhow::anyhow!("DROP VIEW: {}", s.message()))?;
    wait_for_no_consumers(&node, "idle_queue").await?;
    produce(kafka, &topic, 0, &rows_of(30..50)).await?;
    produce(kafka, &witness_topic, 0, &rows_of(10..20)).await?;
    wait_for_count(&node, "witness_rows", 20).await?;
    wait_for_lags(&node, "witness_queue", &[(20, 20, 0)]).await?;
    assert_not_read(&node, kafka, &group, &topic, Some(30)).await?;
    assert_eq!(count(&node, "idle_rows").await?, 30);

    // A new view resumes where the table's rows end: the lag it finds is read, once.
    node.sql("CREATE MATERIALIZED VIEW idle_mv TO idle_rows AS SELECT id FROM idle_queue")
        .await
        .map_err(|s| anyhow::anyhow!("CREATE VIEW: {}", s.message()))?;
    wait_for_lags(&node, "idle_queue", &[(50, 50, 0)]).await?;
    wait_for_count(&node, "idle_rows", 50).await?;
    assert_eq!(
        node.number("SELECT count(DISTINCT id) FROM idle_rows")
            .await?,
        50
    );

    node.script("DROP VIEW idle_mv; DROP TABLE idle_queue;")
        .await?;
    wait_for_no_consumers(&node, "idle_queue").await?;
    assert_eq!(
        lags(&node, "witness_queue").await?.len(),
        1,
        "other tables go on"
    );
    Ok(())
}

/// `system.kafka_consumers` is cluster-wide: asked on one node, it shows the lag of the
/// partitions every node runs, and `sum(lag)` is the table's lag across the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodes_lag_is_shown_on_any_node() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let (topic, group) = (unique("lag-cluster"), unique("lag-cluster-group"));
    kafka.create_topic(&topic, 2).await?;
    produce(kafka, &topic, 0, &rows_of(0..30)).await?;
    produce(kafka, &topic, 1, &rows_of(100..145)).await?;
    let cluster = TestCluster::start("lag-cluster", 2).await?;
    let first = &cluster.nodes[0];
    first
        .script(&format!(
            "{};
             CREATE TABLE spread_rows (id UInt64) ENGINE = MergeTree() ORDER BY id;
             CREATE MATERIALIZED VIEW spread_mv TO spread_rows AS SELECT id FROM spread_queue;",
            queue_ddl(kafka, "spread_queue", &topic, &group, 0)
        ))
        .await?;
    wait_for_count(first, "spread_rows", 75).await?;
    for node in &cluster.nodes {
        wait_for_lags(node, "spread_queue", &[(30, 30, 0), (45, 45, 0)]).await?;
        let shown = node
            .rows(
                "SELECT count(DISTINCT node), sum(lag), sum(high_watermark), sum(stored_offset) \
                 FROM system.kafka_consumers WHERE \"table\" = 'spread_queue'",
            )
            .await?;
        assert_eq!(
            shown,
            vec![vec!["2".to_string(), "0".into(), "75".into(), "75".into()]],
            "asked on {}",
            node.name
        );
    }
    Ok(())
}
