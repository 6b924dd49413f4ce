//! A round trip through Kafka's own console tools, the clients users already trust: lines
//! sent with `kafka-console-producer` in JSONEachRow and CSV land as rows through a view,
//! and rows inserted into Kafka tables of those formats read back with
//! `kafka-console-consumer` as the exact text ClickHouse would write. (Avro is binary and
//! the console tools are line-based; its round trip is in `formats.rs`, through the Avro
//! library, and in the unit tests, through files ClickHouse wrote.)

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::{repo_root, unique, wait_for, Kafka, Node};

/// Runs one of `scripts/kafka.sh`'s console tools with `stdin` on its standard input, and
/// returns its standard output.
fn console(tool: &str, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    let mut child = Command::new("bash")
        .arg(repo_root().join("scripts/kafka.sh"))
        .arg(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running kafka.sh {tool}"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(stdin.as_bytes())
        .with_context(|| format!("writing to kafka.sh {tool}"))?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for kafka.sh {tool}"))?;
    anyhow::ensure!(
        out.status.success(),
        "kafka.sh {tool} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn rows(node: &Node, query: &str, expected: usize) -> anyhow::Result<Vec<Vec<String>>> {
    let count = format!("SELECT count() FROM ({query})");
    wait_for(
        &format!("{expected} rows of {query}"),
        Duration::from_secs(60),
        || async { (node.number(&count).await.ok()? >= expected as u64).then_some(()) },
    )
    .await?;
    node.rows(query).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_tools_read_and_write_what_sluice_does() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let node = Node::start("console").await?;
    let bootstrap = kafka.bootstrap.as_str();
    let (json_in, csv_in, json_out, csv_out) = (
        unique("console-json-in"),
        unique("console-csv-in"),
        unique("console-json-out"),
        unique("console-csv-out"),
    );
    for topic in [&json_in, &csv_in, &json_out, &csv_out] {
        kafka.create_topic(topic, 1).await?;
    }
    let kafka_table = |name: &str, topic: &str, format: &str| {
        format!(
            "CREATE TABLE {name} (id UInt32, name String, note Nullable(String)) ENGINE = Kafka()
             SETTINGS kafka_broker_list = '{bootstrap}', kafka_topic_list = '{topic}',
                      kafka_group_name = '{}', kafka_format = '{format}',
                      kafka_flush_interval_ms = 300",
            unique(name)
        )
    };
    node.script(&format!(
        "{};
         {};
         CREATE TABLE landed (src String, id UInt32, name String, note Nullable(String))
           ENGINE = MergeTree ORDER BY (src, id);
         CREATE MATERIALIZED VIEW json_mv TO landed AS SELECT 'json' AS src, id, name, note FROM json_queue;
         CREATE MATERIALIZED VIEW csv_mv TO landed AS SELECT 'csv' AS src, id, name, note FROM csv_queue;
         {};
         {};",
        kafka_table("json_queue", &json_in, "JSONEachRow"),
        kafka_table("csv_queue", &csv_in, "CSV"),
        kafka_table("json_out", &json_out, "JSONEachRow"),
        kafka_table("csv_out", &csv_out, "CSV"),
    ))
    .await?;

    // In: one message per line, as the console producer sends them.
    console(
        "console-producer",
        &["--bootstrap-server", bootstrap, "--topic", &json_in],
        "{\"id\":1,\"name\":\"a \\\"quoted\\\" word\",\"note\":null}\n{\"id\":2,\"name\":\"tab\\there\",\"note\":\"n\"}\n",
    )?;
    console(
        "console-producer",
        &["--bootstrap-server", bootstrap, "--topic", &csv_in],
        "1,\"a \"\"quoted\"\" word\",\\N\n2,plain,\"n, with comma\"\n",
    )?;
    let landed = rows(
        &node,
        "SELECT src, id, name, note FROM landed ORDER BY src, id",
        4,
    )
    .await?;
    assert_eq!(
        landed,
        vec![
            vec!["csv", "1", "a \"quoted\" word", "NULL"],
            vec!["csv", "2", "plain", "n, with comma"],
            vec!["json", "1", "a \"quoted\" word", "NULL"],
            vec!["json", "2", "tab\there", "n"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );

    // Out: the console consumer prints each message as Sluice wrote it.
    node.script(
        "INSERT INTO json_out VALUES (1, 'a \"quoted\" word', NULL), (2, 'tab\there', 'n');
         INSERT INTO csv_out VALUES (1, 'a \"quoted\" word', NULL), (2, 'plain', 'n, with comma');",
    )
    .await?;
    let read = |topic: &str| {
        console(
            "console-consumer",
            &[
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--from-beginning",
                "--max-messages",
                "2",
                "--timeout-ms",
                "30000",
            ],
            "",
        )
    };
    assert_eq!(
        read(&json_out)?,
        "{\"id\":1,\"name\":\"a \\\"quoted\\\" word\",\"note\":null}\n{\"id\":2,\"name\":\"tab\\there\",\"note\":\"n\"}\n"
    );
    // CSV rows end with a line feed, which the console consumer's own line feed follows.
    assert_eq!(
        read(&csv_out)?,
        "1,\"a \"\"quoted\"\" word\",\\N\n\n2,\"plain\",\"n, with comma\"\n\n"
    );
    Ok(())
}
