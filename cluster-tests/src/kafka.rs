//! The test broker: one real Kafka per test run, started (idempotently) by
//! `scripts/kafka.sh` on its own port and state dir, shared by the tests, which keep
//! apart by using their own topics and groups.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// Port of the test broker unless `SLUICE_TEST_KAFKA_PORT` says otherwise.
const TEST_PORT: &str = "19092";

pub struct Kafka {
    pub bootstrap: String,
}

static KAFKA: OnceLock<Result<Kafka, String>> = OnceLock::new();

impl Kafka {
    /// The shared test broker, started on first use.
    pub fn shared() -> anyhow::Result<&'static Kafka> {
        KAFKA
            .get_or_init(|| Kafka::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("starting Kafka: {e}"))
    }

    fn start() -> anyhow::Result<Kafka> {
        let port = std::env::var("SLUICE_TEST_KAFKA_PORT").unwrap_or_else(|_| TEST_PORT.into());
        let cache = std::env::var("SLUICE_CACHE").unwrap_or_else(|_| {
            format!(
                "{}/.cache/sluice",
                std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())
            )
        });
        let script = super::repo_root().join("scripts/kafka.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg("start")
            .env("KAFKA_PORT", &port)
            .env("SLUICE_KAFKA_DIR", format!("{cache}/kafka-test-{port}"))
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        anyhow::ensure!(
            status.success(),
            "{} start failed: {status}",
            script.display()
        );
        Ok(Kafka {
            bootstrap: format!("127.0.0.1:{port}"),
        })
    }

    /// Creates a topic; one that exists already is fine.
    pub async fn create_topic_if_missing(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        match self.create_topic(name, partitions).await {
            Err(e) if e.to_string().contains("already exists") => Ok(()),
            other => other,
        }
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("creating a Kafka admin client")?;
        let results = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .context("creating a topic")?;
        for r in results {
            r.map_err(|(topic, e)| anyhow::anyhow!("creating topic {topic}: {e}"))?;
        }
        Ok(())
    }
}
