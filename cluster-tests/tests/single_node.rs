//! One real node against a real Kafka broker: the guide's quickstart, a crash in the middle
//! of ingestion, malformed messages, DDL errors, and when blocks are cut.

use std::time::Duration;

use cluster_tests::cluster::table_digest;
use cluster_tests::node::free_port;
use cluster_tests::{
    kafka_out_sql, metrics, quickstart_sql, settles_at, unique, wait_for, Kafka, Node,
};
use sluice::sample::github::{self, GITHUB_COLUMNS};

const EVENTS: u64 = 200_000;
const SEED: u64 = 42;

async fn produce_events(
    kafka: &Kafka,
    topic: &str,
    count: u64,
    malformed_every: Option<u64>,
) -> anyhow::Result<()> {
    kafka.create_topic(topic, 3).await?;
    kafka
        .produce(topic, 3, SEED, 0..count, malformed_every)
        .await
}

async fn count(node: &Node, table: &str) -> u64 {
    node.number(&format!("SELECT count() FROM {table}"))
        .await
        .unwrap_or(0)
}

async fn wait_for_count(
    node: &Node,
    table: &str,
    expected: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let result = wait_for(&format!("{expected} rows in {table}"), timeout, || async {
        (count(node, table).await == expected).then_some(())
    })
    .await;
    if result.is_err() {
        let consumers = node.rows("SELECT * FROM system.kafka_consumers").await;
        anyhow::bail!(
            "{table} has {} rows, expected {expected}; consumers: {consumers:?}\n{}",
            count(node, table).await,
            node.log_tail()
        );
    }
    result
}

/// A value of the generator as clickhouse-client prints it.
fn printed(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| format!(
                    "'{}'",
                    printed(i).replace('\\', "\\\\").replace('\'', "\\'")
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_flow_lands_every_event_exactly() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("github");
    produce_events(kafka, &topic, EVENTS, None).await?;
    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    let node = Node::start_with(
        "quickstart",
        vec![
            "--bootstrap".into(),
            "--metrics-addr".into(),
            metrics_addr.clone(),
        ],
    )
    .await?;
    node.script(&quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?)
        .await?;
    wait_for_count(&node, "github", EVENTS, Duration::from_secs(300)).await?;

    // Every column of a spread of rows equals what the generator produced.
    let sample: Vec<u64> = (0..EVENTS).step_by(997).collect();
    let expected: Vec<serde_json::Value> = sample
        .iter()
        .map(|i| serde_json::to_value(github::event(SEED, *i)))
        .collect::<Result<_, _>>()?;
    let times: Vec<String> = expected
        .iter()
        .map(|e| format!("'{}'", printed(&e["created_at"])))
        .collect();
    let rows = node
        .rows(&format!(
            "SELECT * FROM github WHERE created_at IN ({}) ORDER BY created_at",
            times.join(",")
        ))
        .await?;
    assert_eq!(rows.len(), sample.len(), "one stored row per sampled event");
    let mut non_ascii = 0;
    let mut arrays = (0, 0);
    for (row, event) in rows.iter().zip(&expected) {
        assert_eq!(row.len(), GITHUB_COLUMNS.len());
        for (value, column) in row.iter().zip(GITHUB_COLUMNS) {
            assert_eq!(
                value,
                &printed(&event[column]),
                "column {column} of {event}"
            );
        }
        non_ascii += usize::from(!event["title"].as_str().unwrap_or_default().is_ascii());
        if event["labels"].as_array().is_some_and(|a| a.is_empty()) {
            arrays.0 += 1;
        } else {
            arrays.1 += 1;
        }
    }
    assert!(non_ascii > 0, "the sample covers non-ASCII titles");
    assert!(
        arrays.0 > 0 && arrays.1 > 0,
        "the sample covers empty and non-empty arrays"
    );

    // No row twice.
    assert_eq!(
        node.number("SELECT count(DISTINCT created_at) FROM github")
            .await?,
        EVENTS
    );
    // count() reads the table's stored row count; queries that read the rows agree.
    assert_eq!(
        node.number("SELECT count(created_at) FROM github").await?,
        EVENTS
    );
    assert_eq!(node.number("SELECT sum(1) FROM github").await?, EVENTS);
    // The guide's sample query.
    let rows = node
        .rows("SELECT actor_login, event_type, created_at FROM github LIMIT 10")
        .await?;
    assert_eq!(rows.len(), 10);
    // Consumers: one per partition, positions sum to the events read.
    let consumers = node
        .rows("SELECT assignments.partition_id, assignments.current_offset, num_messages_read, exceptions.text FROM system.kafka_consumers ORDER BY assignments.partition_id ASC")
        .await?;
    assert_eq!(consumers.len(), 3, "{consumers:?}");
    let offsets: u64 = consumers
        .iter()
        .map(|r| {
            r[1].trim_matches(|c| c == '[' || c == ']')
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(offsets, EVENTS);
    // The Prometheus endpoint tells the same story.
    let scraped = metrics::scrape(&metrics_addr).await?;
    let sample = |name: &str, labels: &[&str]| metrics::sum(&scraped, name, labels);
    assert_eq!(
        sample("sluice_consumer_messages_read_total", &[]),
        Some(EVENTS as f64),
        "{scraped}"
    );
    assert_eq!(
        sample(
            "sluice_consumer_rows_written_total",
            &["table=\"github_queue\""]
        ),
        Some(EVENTS as f64),
        "{scraped}"
    );
    assert_eq!(
        sample("sluice_table_rows", &["table=\"github\""]),
        Some(EVENTS as f64),
        "{scraped}"
    );
    assert_eq!(
        sample("sluice_consumer_active", &[]),
        Some(3.0),
        "{scraped}"
    );
    assert_eq!(sample("sluice_raft_leader", &[]), Some(1.0), "{scraped}");
    assert_eq!(sample("sluice_in_quorum", &[]), Some(1.0), "{scraped}");
    assert_eq!(
        sample("sluice_owned_partitions", &[]),
        Some(3.0),
        "{scraped}"
    );
    assert_eq!(
        node.rows("SHOW TABLES").await?,
        vec![
            vec!["github".to_string()],
            vec!["github_mv".to_string()],
            vec!["github_queue".to_string()]
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_ingestion_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("github");
    produce_events(kafka, &topic, EVENTS, None).await?;
    let mut node = Node::start("crash").await?;
    // Small blocks so the crash lands between many blocks.
    let ddl = quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?.replace(
        "kafka_num_consumers = 1",
        "kafka_num_consumers = 1, kafka_max_block_size = 2000",
    );
    node.script(&ddl).await?;
    let seen = wait_for("ingestion to start", Duration::from_secs(120), || async {
        let n = count(&node, "github").await;
        (n > 0).then_some(n)
    })
    .await?;
    node.kill9()?;
    assert!(seen < EVENTS, "the crash must land mid-stream (saw {seen})");
    node.spawn().await?;
    wait_for_count(&node, "github", EVENTS, Duration::from_secs(300)).await?;
    assert_eq!(
        node.number("SELECT count(DISTINCT created_at) FROM github")
            .await?,
        EVENTS
    );
    // Nothing more arrives later (no late duplicates).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&node, "github").await, EVENTS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_skipped_within_budget_and_shown_past_it() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let topic = unique("mixed");
    let good = 20_000;
    // One malformed message after every 100 good ones: 200 in all.
    produce_events(kafka, &topic, good, Some(100)).await?;
    let node = Node::start("malformed").await?;
    let ddl = quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?.replace(
        "kafka_num_consumers = 1",
        "kafka_num_consumers = 1, kafka_max_block_size = 500, kafka_skip_broken_messages = 10",
    );
    node.script(&ddl).await?;
    wait_for_count(&node, "github", good, Duration::from_secs(180)).await?;
    let skipped = node
        .number("SELECT sum(num_skipped_messages) FROM system.kafka_consumers")
        .await?;
    assert_eq!(skipped, 200);

    // The same topic into a table with no budget: the error shows, the node lives on.
    node.script(&format!(
        "CREATE TABLE strict_queue AS github_queue ENGINE = Kafka() SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}', kafka_group_name = '{}', kafka_format = 'JSONEachRow';
         CREATE TABLE strict AS github_queue ENGINE = MergeTree() ORDER BY created_at;
         CREATE MATERIALIZED VIEW strict_mv TO strict AS SELECT * FROM strict_queue;",
        kafka.bootstrap,
        unique("strict")
    ))
    .await?;
    let error = wait_for("the broken-message error to show", Duration::from_secs(60), || async {
        let rows = node
            .rows("SELECT exceptions.text FROM system.kafka_consumers WHERE \"table\" = 'strict_queue'")
            .await
            .ok()?;
        rows.into_iter()
            .map(|r| r[0].clone())
            .find(|t| t.contains("kafka_skip_broken_messages"))
    })
    .await?;
    assert!(error.contains("offset"), "{error}");
    assert!(count(&node, "strict").await < good);
    assert_eq!(
        count(&node, "github").await,
        good,
        "the other table is unaffected"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_errors_name_the_part_and_change_nothing() -> anyhow::Result<()> {
    let node = Node::start("ddl").await?;
    node.script(
        "CREATE TABLE q (a UInt32, s String) ENGINE = Kafka('127.0.0.1:1', 't', 'g', 'JSONEachRow');
         CREATE TABLE t (a UInt32, s String) ENGINE = MergeTree() ORDER BY a;",
    )
    .await?;
    let before = node.rows("SHOW TABLES").await?;
    let cases = [
        ("CREATE TABLE x (a UInt23) ENGINE = MergeTree() ORDER BY a", "UInt23"),
        (
            "CREATE TABLE x (a UInt8) ENGINE = Kafka('b:1', 't', 'g', 'JSONEachRow') SETTINGS kafka_max_blok_size = 1",
            "kafka_max_blok_size",
        ),
        (
            "CREATE TABLE x (a UInt8) ENGINE = Kafka() SETTINGS kafka_broker_list = 'b:1', kafka_topic_list = 't', kafka_format = 'JSONEachRow'",
            "kafka_group_name",
        ),
        ("CREATE TABLE t (a UInt8) ENGINE = MergeTree() ORDER BY a", "t already exists"),
        ("CREATE MATERIALIZED VIEW mv TO t AS SELECT a, s AS nope FROM q", "nope"),
        ("CREATE MATERIALIZED VIEW mv TO t AS SELECT a FROM missing", "missing"),
        ("CREATE TABLE x (a UInt8) ENGINE = Memory", "Memory"),
        ("CREATE TABLE x (a Enum8('a' = 1000)) ENGINE = MergeTree() ORDER BY a", "Enum8"),
        ("DROP TABLE nothere", "nothere"),
        ("SELECT * FROM q", "Kafka table"),
        ("CREATE TABLE x (a UInt8 ENGINE = MergeTree()", "syntax"),
    ];
    for (statement, needle) in cases {
        let status = node.sql(statement).await.err();
        let message = status
            .as_ref()
            .map(|s| s.message().to_string())
            .unwrap_or_else(|| panic!("{statement} must fail"));
        assert!(
            message.contains(needle),
            "{statement}: error '{message}' should name '{needle}'"
        );
    }
    assert_eq!(node.rows("SHOW TABLES").await?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_clickhouse_to_kafka_flow_pushes_every_row() -> anyhow::Result<()> {
    const OUT_EVENTS: u64 = 20_000;
    let kafka = Kafka::shared()?;
    let (topic, out_topic) = (unique("github"), unique("github-out"));
    kafka.create_topic(&topic, 3).await?;
    kafka.create_topic(&out_topic, 3).await?;
    let node = Node::start("to-kafka").await?;
    // The guide's two halves: Kafka → github, then github → github_out_queue (its topic).
    node.script(&quickstart_sql(&kafka.bootstrap, &topic, &unique("group"))?)
        .await?;
    node.script(&kafka_out_sql(
        &kafka.bootstrap,
        &out_topic,
        &unique("out"),
    )?)
    .await?;
    // What reaches the out topic is read back by a second Kafka table into a copy.
    node.script(&format!(
        "CREATE TABLE github_copy_queue AS github_queue ENGINE = Kafka('{}', '{out_topic}', '{}', 'JSONEachRow');
         CREATE TABLE github_copy AS github ENGINE = MergeTree() ORDER BY (event_type, repo_name, created_at);
         CREATE MATERIALIZED VIEW github_copy_mv TO github_copy AS SELECT * FROM github_copy_queue;",
        kafka.bootstrap,
        unique("copy")
    ))
    .await?;
    kafka.produce(&topic, 3, SEED, 0..OUT_EVENTS, None).await?;
    wait_for_count(&node, "github", OUT_EVENTS, Duration::from_secs(120)).await?;
    // Every stored row went out once and came back equal, column for column.
    wait_for_count(&node, "github_copy", OUT_EVENTS, Duration::from_secs(120)).await?;
    assert_eq!(
        table_digest(&node, "github_copy").await?,
        table_digest(&node, "github").await?,
        "the rows read back from the out topic differ from the stored ones"
    );

    // The guide's direct insert: 100 rows back into the source topic, which the
    // engine reads again into github, and which github_out_mv pushes out once more.
    let done = node
        .sql("INSERT INTO github_queue SELECT * FROM github LIMIT 100 FORMAT JSONEachRow")
        .await
        .map_err(|s| anyhow::anyhow!("insert: {}", s.message()))?;
    assert!(done.message.contains("100 rows sent"), "{}", done.message);
    wait_for_count(&node, "github", OUT_EVENTS + 100, Duration::from_secs(60)).await?;
    wait_for_count(
        &node,
        "github_copy",
        OUT_EVENTS + 100,
        Duration::from_secs(60),
    )
    .await?;
    // VALUES with a column list: the other columns get their defaults.
    node.sql("INSERT INTO github_queue (event_type, actor_login, created_at) VALUES ('PushEvent', 'values-row', '2024-05-06 07:08:09')")
        .await
        .map_err(|s| anyhow::anyhow!("insert values: {}", s.message()))?;
    wait_for_count(&node, "github", OUT_EVENTS + 101, Duration::from_secs(60)).await?;
    assert_eq!(
        node.rows("SELECT event_type, created_at, number, labels FROM github WHERE actor_login = 'values-row'")
            .await?,
        vec![vec![
            "PushEvent".to_string(),
            "2024-05-06 07:08:09".to_string(),
            "0".to_string(),
            "[]".to_string()
        ]]
    );

    // Bad inserts name what is wrong and send nothing.
    for (statement, expected) in [
        (
            "INSERT INTO no_such_table VALUES (1)",
            "table no_such_table does not exist",
        ),
        (
            "INSERT INTO github_queue (event_type) VALUES ('NoSuchEvent')",
            "'NoSuchEvent' is not a member",
        ),
        (
            "INSERT INTO github_queue SELECT * FROM github LIMIT 1 FORMAT CSV",
            "FORMAT CSV: the table writes its kafka_format, JSONEachRow",
        ),
        (
            "INSERT INTO github_queue (no_such_column) VALUES (1)",
            "no column no_such_column",
        ),
        (
            "INSERT INTO github_queue SELECT actor_login FROM github LIMIT 1",
            "the rows have 1 columns, the insert fills 25",
        ),
    ] {
        let error = node
            .sql(statement)
            .await
            .err()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        assert!(error.contains(expected), "{statement}: {error:?}");
    }
    // An absence: a wrongly sent row would take well under 2 s through the view.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&node, "github").await, OUT_EVENTS + 101);
    // A view between two storage tables has no Kafka side: refused, naming both.
    let error = node
        .sql("CREATE MATERIALIZED VIEW copy_of_copy TO github AS SELECT * FROM github_copy")
        .await
        .err()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    assert!(
        error.contains("neither source github_copy nor target github"),
        "{error}"
    );
    Ok(())
}

/// A block is cut as soon as its consumer has caught up with what the broker holds: a
/// steady trickle of rows becomes queryable although neither the flush interval nor the
/// poll timeout (ten minutes each) would cut it, while a backlog is still written in big
/// blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_partition_cuts_its_block_at_once() -> anyhow::Result<()> {
    const BACKLOG: i64 = 20_000;
    const TRICKLE: i64 = 100;
    let kafka = Kafka::shared()?;
    let topic = unique("trickle");
    kafka.create_topic(&topic, 1).await?;
    let json = |id: i64| (format!(r#"{{"id": {id}}}"#), None);
    kafka.produce_records(&topic, 1, 0..BACKLOG, json).await?;

    let node = Node::start("trickle").await?;
    node.script(&format!(
        "CREATE TABLE trickle_queue (id UInt64) ENGINE = Kafka()
         SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}',
                  kafka_group_name = '{}', kafka_format = 'JSONEachRow',
                  kafka_flush_interval_ms = 600000, kafka_poll_timeout_ms = 600000;
         CREATE TABLE trickle (id UInt64) ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW trickle_mv TO trickle AS SELECT id FROM trickle_queue;",
        kafka.bootstrap,
        unique("trickle-group")
    ))
    .await?;
    let blocks = "SELECT num_commits FROM system.kafka_consumers WHERE \"table\" = 'trickle_queue'";
    wait_for_count(&node, "trickle", BACKLOG as u64, Duration::from_secs(60)).await?;
    let backlog_blocks = node.number(blocks).await?;
    // librdkafka fetches a waiting backlog ahead of the consumer, in responses of up to
    // 1 MiB: blocks hold thousands of rows, not one each.
    assert!(
        (1..=20).contains(&backlog_blocks),
        "{BACKLOG} waiting rows were written in {backlog_blocks} blocks"
    );

    // One row every 50 ms: each poll brings a message, so only the partition's end cuts.
    for id in BACKLOG..BACKLOG + TRICKLE {
        kafka.produce_records(&topic, 1, id..id + 1, json).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_count(
        &node,
        "trickle",
        (BACKLOG + TRICKLE) as u64,
        Duration::from_secs(60),
    )
    .await?;
    let trickle_blocks = node.number(blocks).await? - backlog_blocks;
    assert!(
        trickle_blocks >= 10,
        "{TRICKLE} rows produced over seconds were written in {trickle_blocks} blocks"
    );
    settles_at(
        &node,
        "SELECT count() FROM trickle",
        (BACKLOG + TRICKLE) as u64,
    )
    .await?;
    assert_eq!(
        node.number("SELECT uniqExact(id) FROM trickle").await?,
        (BACKLOG + TRICKLE) as u64
    );
    Ok(())
}
