//! Errors that name their cause, against a real broker with SASL/SCRAM and SSL listeners
//! and ACLs (`scripts/kafka.sh start-secure`) and a real node: each way a Kafka table can
//! fail to connect shows its own message in `system.kafka_consumers.exceptions.text`,
//! correct credentials work, what can be known at once is the answer to `CREATE`, an
//! INSERT's error names its cause, and no password shows anywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::{unique, wait_for, Kafka, Node, SecuredKafka};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use sluice::ingest::cause::Cause;
use sluice::ingest::client_context::{serve_events, with_failure_logs, CauseContext};
use sluice::proto::DescribeTableRequest;

/// A password given to a table and refused by the broker: it must show nowhere.
const WRONG_PASSWORD: &str = "wrong-pass-7f3e9a";
const USERS: [(&str, &str); 3] = [
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
    ("carol", "carol-secret"),
];

/// A Kafka table `q_<name>` with `settings`, read by a view into `t_<name>`.
fn reading_table(name: &str, broker: &str, topic: &str, settings: &str) -> String {
    format!(
        "CREATE TABLE q_{name} (id UInt32) ENGINE = Kafka()
         SETTINGS kafka_broker_list = '{broker}', kafka_topic_list = '{topic}',
                  kafka_group_name = '{group}', kafka_format = 'JSONEachRow'{settings};
         CREATE TABLE t_{name} (id UInt32) ENGINE = MergeTree() ORDER BY id;
         CREATE MATERIALIZED VIEW mv_{name} TO t_{name} AS SELECT * FROM q_{name};",
        group = unique(name)
    )
}

fn sasl(mechanism: &str, user: &str, password: &str) -> String {
    format!(
        ", kafka_security_protocol = 'sasl_plaintext', kafka_sasl_mechanism = '{mechanism}',
           kafka_sasl_username = '{user}', kafka_sasl_password = '{password}'"
    )
}

/// Every table's exceptions, by table.
async fn exceptions(node: &Node) -> anyhow::Result<BTreeMap<String, String>> {
    let rows = node
        .rows("SELECT \"table\", exceptions.text FROM system.kafka_consumers")
        .await?;
    let mut by_table: BTreeMap<String, String> = BTreeMap::new();
    for r in rows {
        // The texts come as an array literal, whose quotes are escaped.
        by_table
            .entry(r[0].clone())
            .or_default()
            .push_str(&r[1].replace("\\'", "'"));
    }
    Ok(by_table)
}

async fn produce(kafka: &Kafka, topic: &str, ids: std::ops::Range<u32>) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .context("a Kafka producer")?;
    for id in ids {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&format!("{{\"id\": {id}}}")),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_names_its_cause_and_no_password_shows() -> anyhow::Result<()> {
    let secured = SecuredKafka::start(&USERS)?;
    let topic = unique("errors");
    secured.kafka.create_topic(&topic, 1).await?;
    produce(&secured.kafka, &topic, 0..3).await?;
    // alice may read the topic in any group; bob the topic only; carol nothing.
    secured.acl(&[
        "--add",
        "--allow-principal",
        "User:alice",
        "--consumer",
        "--topic",
        &topic,
        "--group",
        "*",
    ])?;
    secured.acl(&[
        "--add",
        "--allow-principal",
        "User:bob",
        "--operation",
        "Read",
        "--operation",
        "Describe",
        "--topic",
        &topic,
    ])?;

    // The SSL listener's certificate is trusted node-wide, as an operator would.
    let config_dir = tempfile::tempdir()?;
    let config = config_dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nssl_ca_location = \"{}\"\n",
            secured.ca_pem.display()
        ),
    )?;
    let node = Node::start_with(
        "kafka-errors",
        vec![
            "--bootstrap".into(),
            "--config".into(),
            config.display().to_string(),
        ],
    )
    .await?;

    let closed = cluster_tests::node::free_port()?;
    let plain = secured.kafka.bootstrap.as_str();
    let (sasl_at, ssl_at) = (
        secured.sasl_bootstrap.as_str(),
        secured.ssl_bootstrap.as_str(),
    );
    let missing = unique("missing");
    let cases: Vec<(&str, String, String)> = vec![
        (
            "unreachable",
            reading_table("unreachable", &format!("127.0.0.1:{closed}"), &topic, ""),
            format!("broker 127.0.0.1:{closed} is unreachable: Connection refused"),
        ),
        (
            "plain_to_tls",
            reading_table("plain_to_tls", ssl_at, &topic, ""),
            format!("TLS handshake failure: broker {ssl_at} closed a plaintext connection"),
        ),
        (
            "tls_to_plain",
            reading_table(
                "tls_to_plain",
                plain,
                &topic,
                ", kafka_security_protocol = 'ssl'",
            ),
            format!("TLS handshake failure: broker {plain} answered TLS with plaintext"),
        ),
        (
            "mechanism",
            reading_table(
                "mechanism",
                sasl_at,
                &topic,
                &sasl("PLAIN", "alice", "alice-secret"),
            ),
            format!("SASL mechanism mismatch: broker {sasl_at} does not offer PLAIN (it offers SCRAM-SHA-"),
        ),
        (
            "wrong_password",
            reading_table(
                "wrong_password",
                sasl_at,
                &topic,
                &sasl("SCRAM-SHA-256", "alice", WRONG_PASSWORD),
            ),
            format!("authentication failure: broker {sasl_at} refused the SCRAM-SHA-256 credentials of user 'alice': wrong password or unknown user"),
        ),
        (
            "unknown_user",
            reading_table(
                "unknown_user",
                sasl_at,
                &topic,
                &sasl("SCRAM-SHA-512", "mallory", WRONG_PASSWORD),
            ),
            format!("authentication failure: broker {sasl_at} refused the SCRAM-SHA-512 credentials of user 'mallory': wrong password or unknown user"),
        ),
        (
            "missing_topic",
            reading_table("missing_topic", plain, &missing, ""),
            format!("topic '{missing}' does not exist"),
        ),
        (
            "topic_denied",
            reading_table(
                "topic_denied",
                sasl_at,
                &topic,
                &sasl("SCRAM-SHA-256", "carol", "carol-secret"),
            ),
            format!("not authorized to topic '{topic}'"),
        ),
        (
            "group_denied",
            reading_table(
                "group_denied",
                sasl_at,
                &topic,
                &sasl("SCRAM-SHA-256", "bob", "bob-secret"),
            ),
            "not authorized to consumer group 'group_denied-".to_string(),
        ),
    ];
    for (_, ddl, _) in &cases {
        node.script(ddl).await?;
    }
    // Correct credentials and a trusted certificate read the topic.
    node.script(&reading_table(
        "scram_ok",
        sasl_at,
        &topic,
        &sasl("SCRAM-SHA-512", "alice", "alice-secret"),
    ))
    .await?;
    node.script(&reading_table(
        "ssl_ok",
        ssl_at,
        &topic,
        ", kafka_security_protocol = 'ssl'",
    ))
    .await?;

    let seen = wait_for(
        "every table's exceptions to name its cause",
        Duration::from_secs(90),
        || async {
            let by_table = exceptions(&node).await.ok()?;
            cases
                .iter()
                .all(|(name, _, expected)| {
                    by_table
                        .get(&format!("q_{name}"))
                        .is_some_and(|text| text.contains(expected.as_str()))
                })
                .then_some(by_table)
        },
    )
    .await;
    let seen = match seen {
        Ok(seen) => seen,
        Err(e) => {
            let now = exceptions(&node).await.unwrap_or_default();
            let missed: Vec<String> = cases
                .iter()
                .filter(|(name, _, expected)| {
                    !now.get(&format!("q_{name}"))
                        .is_some_and(|t| t.contains(expected.as_str()))
                })
                .map(|(name, _, expected)| {
                    format!(
                        "q_{name}: expected '{expected}', got {:?}",
                        now.get(&format!("q_{name}"))
                    )
                })
                .collect();
            anyhow::bail!("{e}:\n{}\n{}", missed.join("\n"), node.log_tail());
        }
    };
    for (name, _, _) in &cases {
        println!("q_{name}: {}", seen[&format!("q_{name}")]);
    }
    // Each cause is told apart: no table shows another's message.
    for (name, _, _) in &cases {
        let text = &seen[&format!("q_{name}")];
        for (other, _, expected) in &cases {
            let shared = matches!(
                (*name, *other),
                (
                    "wrong_password" | "unknown_user",
                    "wrong_password" | "unknown_user"
                )
            );
            if other != name && !shared {
                assert!(
                    !text.contains(expected.as_str()),
                    "q_{name} shows q_{other}'s cause: {text}"
                );
            }
        }
    }
    for ok in ["scram_ok", "ssl_ok"] {
        let query = format!("SELECT count() FROM t_{ok}");
        let read = wait_for(
            &format!("3 rows in t_{ok}"),
            Duration::from_secs(60),
            || async { (node.number(&query).await.ok()? == 3).then_some(()) },
        )
        .await;
        if let Err(e) = read {
            let now = exceptions(&node).await.unwrap_or_default();
            anyhow::bail!(
                "{e}: {:?}\n{}",
                now.get(&format!("q_{ok}")),
                node.log_tail()
            );
        }
    }

    // The producing side names the cause too, without waiting out its delivery timeout.
    let started = std::time::Instant::now();
    let insert = node
        .sql("INSERT INTO q_wrong_password (id) VALUES (1)")
        .await
        .map(|_| ())
        .map_err(|s| s.message().to_string());
    let insert_error = insert.err().unwrap_or_default();
    println!("INSERT: {insert_error}");
    assert!(
        insert_error.contains("wrong password or unknown user"),
        "{insert_error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // No password anywhere: the consumers, the tables, a table's description, the log.
    let mut shown = format!(
        "{:?}",
        node.rows("SELECT * FROM system.kafka_consumers").await?
    );
    shown.push_str(&format!(
        "{:?}",
        node.rows("SELECT * FROM system.tables").await?
    ));
    shown.push_str(&insert_error);
    let mut client = node.client().await?;
    for name in ["wrong_password", "unknown_user", "scram_ok"] {
        let described = client
            .describe_table(DescribeTableRequest {
                name: format!("q_{name}"),
            })
            .await?
            .into_inner();
        let settings: BTreeMap<String, String> = described.settings.into_iter().collect();
        assert_eq!(
            settings.get("kafka_sasl_password").map(String::as_str),
            Some("[HIDDEN]")
        );
        shown.push_str(&format!("{settings:?}"));
    }
    for secret in [WRONG_PASSWORD, "alice-secret", "bob-secret", "carol-secret"] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
        assert!(!node.log_contains(secret), "{secret} in the node's log");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_what_it_can_know_at_once() -> anyhow::Result<()> {
    let kafka = Kafka::shared()?;
    let node = Node::start("kafka-errors-create").await?;
    let topic = unique("create-errors");

    let unresolvable = node
        .sql(&format!(
            "CREATE TABLE q_dns (id UInt32) ENGINE = Kafka('no-such-host.invalid:9092', '{topic}', 'g', 'JSONEachRow')"
        ))
        .await
        .err()
        .context("a broker host that does not resolve fails the CREATE")?;
    println!("CREATE (DNS): {}", unresolvable.message());
    assert_eq!(unresolvable.code(), tonic::Code::InvalidArgument);
    assert!(
        unresolvable.message().starts_with(
            "table q_dns: DNS failure: broker host 'no-such-host.invalid:9092' does not resolve"
        ),
        "{}",
        unresolvable.message()
    );

    let conflict = node
        .sql(&format!(
            "CREATE TABLE q_conflict (id UInt32) ENGINE = Kafka()
             SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}', kafka_group_name = 'g',
                      kafka_format = 'JSONEachRow', kafka_sasl_username = 'alice',
                      kafka_sasl_password = '{WRONG_PASSWORD}'",
            kafka.bootstrap
        ))
        .await
        .err()
        .context("SASL credentials over plaintext fail the CREATE")?;
    println!("CREATE (security): {}", conflict.message());
    assert!(
        conflict.message().contains("kafka_sasl_username, kafka_sasl_password given, but the security protocol is plaintext"),
        "{}",
        conflict.message()
    );
    assert!(!conflict.message().contains(WRONG_PASSWORD));

    let incomplete = node
        .sql(&format!(
            "CREATE TABLE q_incomplete (id UInt32) ENGINE = Kafka()
             SETTINGS kafka_broker_list = '{}', kafka_topic_list = '{topic}', kafka_group_name = 'g',
                      kafka_format = 'JSONEachRow', kafka_security_protocol = 'sasl_plaintext',
                      kafka_sasl_mechanism = 'SCRAM-SHA-256'",
            kafka.bootstrap
        ))
        .await
        .err()
        .context("a SCRAM mechanism without a user fails the CREATE")?;
    println!("CREATE (incomplete): {}", incomplete.message());
    assert!(
        incomplete.message().contains("sasl.username"),
        "{}",
        incomplete.message()
    );

    // A broker that is merely down does not: its consumers show why it cannot be read.
    let closed = cluster_tests::node::free_port()?;
    let started = std::time::Instant::now();
    node.script(&reading_table(
        "down",
        &format!("127.0.0.1:{closed}"),
        &topic,
        "",
    ))
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!node.log_contains(WRONG_PASSWORD));

    // What librdkafka says of a host that does not resolve is heard and named.
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", "no-such-host.invalid:9092");
    let config = with_failure_logs(config);
    let context = CauseContext::new("probe", &config).quiet();
    let client: BaseConsumer<CauseContext> = config.create_with_context(context)?;
    let fetched = client.fetch_metadata(None, Duration::from_secs(3));
    assert!(fetched.is_err());
    serve_events(&client);
    let cause = client.context().recent();
    println!("librdkafka, unresolvable: {cause:?}");
    assert!(
        matches!(&cause, Some(Cause::Unresolvable { host, .. }) if host == "no-such-host.invalid:9092"),
        "{cause:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_consumer_names_the_broker_that_went_away() -> anyhow::Result<()> {
    let kafka = Kafka::dedicated()?;
    let topic = unique("gone");
    kafka.create_topic(&topic, 1).await?;
    produce(&kafka, &topic, 0..3).await?;
    let node = Node::start("kafka-errors-gone").await?;
    node.script(&reading_table("gone", &kafka.bootstrap, &topic, ""))
        .await?;
    wait_for("3 rows in t_gone", Duration::from_secs(60), || async {
        (node.number("SELECT count() FROM t_gone").await.ok()? == 3).then_some(())
    })
    .await?;
    let log_from = std::fs::metadata(node.log_path()).map(|m| m.len())?;
    kafka.stop()?;
    // librdkafka names the broker by its id once it knows it; either way its address.
    let expected = format!(
        "broker {} is unreachable: Connection refused",
        kafka.bootstrap
    );
    let text = wait_for(
        "the consumer to name the broker that went away",
        Duration::from_secs(60),
        || async {
            let text = exceptions(&node).await.ok()?.remove("q_gone")?;
            text.contains(&expected).then_some(text)
        },
    )
    .await;
    let text = match text {
        Ok(t) => t,
        Err(e) => anyhow::bail!("{e}: {:?}\n{}", exceptions(&node).await, node.log_tail()),
    };
    println!("q_gone: {text}");
    // Told once, not at every reconnection attempt while the broker stays away.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let told = node
        .log_since(log_from, "is unreachable")
        .iter()
        .filter(|l| l.contains("WARN"))
        .count();
    assert!((1..=2).contains(&told), "told {told} times in the log");
    let recorded = exceptions(&node).await?["q_gone"]
        .matches("is unreachable")
        .count();
    assert!((1..=2).contains(&recorded), "recorded {recorded} times");
    Ok(())
}
