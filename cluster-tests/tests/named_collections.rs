//! Named collections against a real broker and a two-node cluster: a Kafka table made
//! from a collection whose broker port is wrong reads nothing; `ALTER NAMED COLLECTION`
//! fixes the port and the running table picks it up (no re-attach), and a second ALTER
//! during ingestion restarts the consumers from their positions: exact counts, no
//! (partition, offset) twice. Secrets never show in `SHOW CREATE` or
//! `system.named_collections`, on either node.

use std::time::Duration;

use cluster_tests::cluster::TestCluster;
use cluster_tests::{unique, wait_for, Kafka, Node};

const PARTITIONS: i32 = 2;
const SECRET: &str = "hunter2-do-not-print";

async fn produce(kafka: &Kafka, topic: &str, range: std::ops::Range<u64>) -> anyhow::Result<()> {
    let range = i64::try_from(range.start)?..i64::try_from(range.end)?;
    kafka
        .produce_records(topic, PARTITIONS, range, |id| {
            (format!(r#"{{"id": {id}}}"#), None)
        })
        .await
}

async fn refused(node: &Node, sql: &str) -> anyhow::Result<String> {
    match node.sql(sql).await {
        Ok(_) => anyhow::bail!("{sql}: accepted, expected an error"),
        Err(status) => Ok(status.message().to_string()),
    }
}

/// Waits for `expected` rows in `t`, then checks none came twice.
async fn exactly(node: &Node, expected: u64) -> anyhow::Result<()> {
    let reached = wait_for(
        &format!("{expected} rows in t"),
        Duration::from_secs(90),
        || async { (node.number("SELECT count() FROM t").await.ok()? >= expected).then_some(()) },
    )
    .await;
    if reached.is_err() {
        anyhow::bail!(
            "t: {:?} rows, expected {expected}; consumers: {:?}",
            node.number("SELECT count() FROM t").await,
            node.rows("SELECT * FROM system.kafka_consumers").await
        );
    }
    // A moment for a row read twice to show up, had one been.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(node.number("SELECT count() FROM t").await?, expected);
    assert_eq!(
        node.number("SELECT count() FROM (SELECT DISTINCT part, off FROM t)")
            .await?,
        expected,
        "a message stored twice"
    );
    assert_eq!(
        node.number("SELECT count(DISTINCT id) FROM t").await?,
        expected
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_named_collection_reaches_running_consumers() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let cluster = TestCluster::start("collections", 2).await?;
    let (node, other) = (&cluster.nodes[0], &cluster.nodes[1]);
    let topic = unique("collections");
    kafka.create_topic(&topic, PARTITIONS).await?;
    let group = unique("collections");
    // A port nothing listens on: the broker is down, not unknown, so CREATE accepts it.
    let wrong = format!("127.0.0.1:{}", cluster_tests::node::free_port()?);

    node.script(&format!(
        "CREATE NAMED COLLECTION kc AS kafka_broker_list = '{wrong}',
             kafka_format = 'JSONEachRow' NOT OVERRIDABLE, kafka_max_block_size = 1000;
         CREATE NAMED COLLECTION creds AS user = 'svc', password = '{SECRET}' NOT OVERRIDABLE;
         CREATE TABLE q (id UInt64) ENGINE = Kafka(kc, kafka_topic_list = '{topic}')
             SETTINGS kafka_group_name = '{group}', kafka_flush_interval_ms = 300;
         CREATE TABLE t (id UInt64, part UInt64, off UInt64) ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW mv TO t AS SELECT id, _partition AS part, _offset AS off FROM q;"
    ))
    .await?;

    // Mistakes are refused, naming the key, the collection or the tables.
    let message = refused(
        node,
        "CREATE TABLE q2 (id UInt64) ENGINE = Kafka(kc, kafka_format = 'CSV') SETTINGS kafka_topic_list = 'x', kafka_group_name = 'g'",
    )
    .await?;
    assert!(
        message.contains("kafka_format") && message.contains("NOT OVERRIDABLE"),
        "{message}"
    );
    let message = refused(
        node,
        "CREATE TABLE q2 (id UInt64) ENGINE = Kafka(creds) SETTINGS kafka_topic_list = 'x'",
    )
    .await?;
    assert!(
        message.contains("creds") && message.contains("'password'"),
        "{message}"
    );
    assert!(!message.contains(SECRET), "{message}");
    let message = refused(node, "DROP NAMED COLLECTION kc").await?;
    assert!(message.contains("q"), "{message}");
    let message = refused(node, "ALTER NAMED COLLECTION kc DELETE nothere").await?;
    assert!(message.contains("nothere"), "{message}");

    // With the wrong port nothing arrives; the consumers say why.
    produce(kafka, &topic, 0..200).await?;
    wait_for(
        "an error in system.kafka_consumers for q",
        Duration::from_secs(60),
        || async {
            let rows = node
                .rows("SELECT exceptions.text FROM system.kafka_consumers WHERE \"table\" = 'q'")
                .await
                .ok()?;
            rows.iter()
                .any(|r| r.first().is_some_and(|t| t.contains(&wrong)))
                .then_some(())
        },
    )
    .await?;
    assert_eq!(node.number("SELECT count() FROM t").await?, 0);

    // ALTER fixes the port: the running table reads everything, without re-attaching.
    node.sql(&format!(
        "ALTER NAMED COLLECTION kc SET kafka_broker_list = '{}'",
        kafka.bootstrap
    ))
    .await
    .map_err(|s| anyhow::anyhow!("ALTER: {}", s.message()))?;
    exactly(node, 200).await?;

    // An ALTER while rows flow: consumers stop at a block boundary and go on from
    // their positions with the new settings.
    let producing = {
        let topic = topic.clone();
        tokio::spawn(async move {
            let kafka = Kafka::shared()?;
            for step in 0..4u64 {
                produce(kafka, &topic, 200 + step * 100..300 + step * 100).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    node.sql("ALTER NAMED COLLECTION kc SET kafka_max_block_size = 7, kafka_client_id = 'altered'")
        .await
        .map_err(|s| anyhow::anyhow!("ALTER: {}", s.message()))?;
    producing.await??;
    exactly(node, 600).await?;
    exactly(other, 600).await?;
    let shown = node.rows("SHOW CREATE TABLE q").await?;
    let ddl = &shown[0][0];
    assert!(
        ddl.contains(&format!("Kafka(kc, kafka_topic_list = '{topic}')")),
        "{ddl}"
    );

    // Secrets: hidden in SHOW CREATE and system.named_collections, on both nodes.
    for n in [node, other] {
        let shown = n.rows("SHOW CREATE NAMED COLLECTION creds").await?;
        let text = &shown[0][0];
        assert!(
            text.contains("password = '[HIDDEN]' NOT OVERRIDABLE"),
            "{text}"
        );
        assert!(!text.contains(SECRET), "{text}");
        let rows = n
            .rows("SELECT name, collection, source, create_query FROM system.named_collections ORDER BY name")
            .await?;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0][0], "creds");
        assert_eq!(rows[0][1], "{'password':'[HIDDEN]','user':'svc'}");
        assert_eq!(rows[0][2], "sql");
        assert_eq!(rows[1][0], "kc");
        assert!(
            rows[1][1].contains("'kafka_client_id':'altered'"),
            "{rows:?}"
        );
        assert!(!format!("{rows:?}").contains(SECRET));
    }
    for n in &cluster.nodes {
        assert!(!n.log_contains(SECRET), "a node logged the secret");
    }

    // A collection no table uses can go.
    node.sql("DROP NAMED COLLECTION creds")
        .await
        .map_err(|s| anyhow::anyhow!("DROP: {}", s.message()))?;
    assert_eq!(
        node.number("SELECT count() FROM system.named_collections")
            .await?,
        1
    );
    Ok(())
}
