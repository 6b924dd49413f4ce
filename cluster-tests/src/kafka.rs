//! The test broker: one real Kafka per test run, started (idempotently) by
//! `scripts/kafka.sh` on its own port and state dir, shared by the tests, which keep
//! apart by using their own topics and groups.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Port of the test broker unless `SLUICE_TEST_KAFKA_PORT` says otherwise.
const TEST_PORT: &str = "19092";

pub struct Kafka {
    pub bootstrap: String,
    /// The broker's state dir; its log segments are under `data/`.
    state_dir: std::path::PathBuf,
    /// Set for a broker of one test's own, which it may stop and restart.
    dedicated: Option<(String, String)>,
}

static KAFKA: OnceLock<Result<Kafka, String>> = OnceLock::new();

fn cache_dir() -> String {
    std::env::var("SLUICE_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/sluice",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())
        )
    })
}

fn kafka_sh(action: &str, port: &str, dir: &str) -> anyhow::Result<()> {
    kafka_sh_with(action, port, dir, &[])
}

fn kafka_sh_with(action: &str, port: &str, dir: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
    let script = super::repo_root().join("scripts/kafka.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args(action.split(' '))
        .env("KAFKA_PORT", port)
        .env("SLUICE_KAFKA_DIR", dir)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(status.success(), "kafka.sh {action} failed: {status}");
    Ok(())
}

/// A broker of a test's own with SASL/SCRAM and SSL listeners and ACLs
/// (`scripts/kafka.sh start-secure`); stopped and wiped when dropped.
pub struct SecuredKafka {
    /// The PLAINTEXT listener, whose anonymous user is a super user.
    pub kafka: Kafka,
    /// SASL_PLAINTEXT, SCRAM-SHA-256 and SCRAM-SHA-512 only.
    pub sasl_bootstrap: String,
    /// SSL, with a self-signed certificate.
    pub ssl_bootstrap: String,
    /// The certificate of the SSL listener, as PEM.
    pub ca_pem: std::path::PathBuf,
    port: String,
    dir: String,
}

impl SecuredKafka {
    /// Starts one with the SCRAM users `users` (name, password).
    pub fn start(users: &[(&str, &str)]) -> anyhow::Result<SecuredKafka> {
        let port = crate::node::free_port_run(4)?;
        let (sasl, ssl) = (port + 2, port + 3);
        let dir = format!("{}/kafka-secured-{port}", cache_dir());
        let users = users
            .iter()
            .map(|(name, password)| format!("{name}:{password}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (port, sasl_text, ssl_text) = (port.to_string(), sasl.to_string(), ssl.to_string());
        kafka_sh_with(
            "start-secure",
            &port,
            &dir,
            &[
                ("KAFKA_SASL_PORT", &sasl_text),
                ("KAFKA_SSL_PORT", &ssl_text),
                ("KAFKA_SCRAM_USERS", &users),
            ],
        )?;
        Ok(SecuredKafka {
            kafka: Kafka {
                bootstrap: format!("127.0.0.1:{port}"),
                state_dir: dir.clone().into(),
                dedicated: None,
            },
            sasl_bootstrap: format!("127.0.0.1:{sasl}"),
            ssl_bootstrap: format!("127.0.0.1:{ssl}"),
            ca_pem: std::path::PathBuf::from(&dir).join("tls/ca.pem"),
            port,
            dir,
        })
    }

    /// Runs Kafka's ACL tool over the PLAINTEXT listener with `args` after the bootstrap.
    pub fn acl(&self, args: &[&str]) -> anyhow::Result<()> {
        let script = super::repo_root().join("scripts/kafka.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args([
                "run-class",
                ACL_COMMAND,
                "--bootstrap-server",
                &self.kafka.bootstrap,
            ])
            .args(args)
            .env("KAFKA_PORT", &self.port)
            .env("SLUICE_KAFKA_DIR", &self.dir)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "acl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

/// Kafka's ACL tool (kafka-acls.sh).
const ACL_COMMAND: &str = "org.apache.kafka.tools.AclCommand";

impl Drop for SecuredKafka {
    fn drop(&mut self) {
        let _ = kafka_sh("stop --wipe", &self.port, &self.dir);
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if let Some((port, dir)) = &self.dedicated {
            let _ = kafka_sh("stop --wipe", port, dir);
        }
    }
}

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
        let dir = format!("{}/kafka-test-{port}", cache_dir());
        kafka_sh("start", &port, &dir)?;
        Ok(Kafka {
            bootstrap: format!("127.0.0.1:{port}"),
            state_dir: dir.into(),
            dedicated: None,
        })
    }

    /// A broker of this test's own (on a free port pair), for faults of the broker itself;
    /// stopped and wiped when dropped.
    pub fn dedicated() -> anyhow::Result<Kafka> {
        // The controller listens on port + 1: find two free ports in a row.
        let port = crate::node::free_port_run(2)?.to_string();
        let dir = format!("{}/kafka-dedicated-{port}", cache_dir());
        kafka_sh("start", &port, &dir)?;
        Ok(Kafka {
            bootstrap: format!("127.0.0.1:{port}"),
            state_dir: dir.clone().into(),
            dedicated: Some((port, dir)),
        })
    }

    /// Stops a dedicated broker, its data kept (dropping it wipes it).
    pub fn stop(&self) -> anyhow::Result<()> {
        let (port, dir) = self
            .dedicated
            .as_ref()
            .context("only a dedicated broker can be stopped")?;
        kafka_sh("stop", port, dir)
    }

    /// Stops a dedicated broker (its data kept) and starts it again.
    pub fn restart(&self, down_for: std::time::Duration) -> anyhow::Result<()> {
        let (port, dir) = self
            .dedicated
            .as_ref()
            .context("only a dedicated broker can be restarted")?;
        kafka_sh("stop", port, dir)?;
        std::thread::sleep(down_for);
        kafka_sh("start", port, dir)
    }

    /// Produces the sample events `range` (seeded) round-robin over `partitions`, with a
    /// malformed message after every `malformed_every` events if given.
    pub async fn produce(
        &self,
        topic: &str,
        partitions: i32,
        seed: u64,
        range: std::ops::Range<u64>,
        malformed_every: Option<u64>,
    ) -> anyhow::Result<()> {
        sluice::cli::produce::run(sluice::cli::produce::ProduceArgs {
            brokers: self.bootstrap.clone(),
            topic: topic.to_string(),
            count: range.end - range.start,
            partitions,
            seed,
            start_index: range.start,
            malformed_every,
            quiet: true,
        })
        .await?;
        Ok(())
    }

    /// Produces one message per id of `range` to partition `id % partitions`, made by
    /// `record`: its payload and, if given, its timestamp in ms. Returns once the broker
    /// has acknowledged every one.
    pub async fn produce_records(
        &self,
        topic: &str,
        partitions: i32,
        range: std::ops::Range<i64>,
        record: impl Fn(i64) -> (String, Option<i64>),
    ) -> anyhow::Result<()> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .context("a Kafka producer")?;
        let mut deliveries = Vec::new();
        for id in range {
            let (payload, timestamp) = record(id);
            let mut message = FutureRecord::<(), _>::to(topic)
                .partition(i32::try_from(id.rem_euclid(i64::from(partitions)))?)
                .payload(&payload);
            if let Some(ms) = timestamp {
                message = message.timestamp(ms);
            }
            deliveries.push(
                producer
                    .send_result(message)
                    .map_err(|(e, _)| anyhow::anyhow!("queueing for {topic}: {e}"))?,
            );
        }
        for delivery in deliveries {
            delivery
                .await
                .context("the producer went away")?
                .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
        }
        Ok(())
    }

    /// The compression codec of every record batch the broker stored for a partition,
    /// read from its log segments as Kafka's record batch format (v2) lays them out:
    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd. What a consumer reads is decompressed
    /// already; only the segments show how a producer compressed it.
    pub fn batch_codecs(&self, topic: &str, partition: i32) -> anyhow::Result<Vec<u8>> {
        let dir = self.state_dir.join(format!("data/{topic}-{partition}"));
        let mut segments: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .collect();
        segments.sort();
        let mut codecs = Vec::new();
        for segment in segments {
            let bytes = std::fs::read(&segment)
                .with_context(|| format!("reading {}", segment.display()))?;
            let mut at = 0;
            // baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8, crc u32,
            // attributes i16 (its low three bits the codec).
            while at + 23 <= bytes.len() {
                let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into()?);
                let Ok(length) = usize::try_from(length) else {
                    anyhow::bail!("{}: a negative batch length at {at}", segment.display());
                };
                anyhow::ensure!(
                    bytes[at + 16] == 2,
                    "{}: batch at {at} has magic {}, not 2",
                    segment.display(),
                    bytes[at + 16]
                );
                codecs.push(bytes[at + 22] & 0x07);
                at += 12 + length;
            }
        }
        Ok(codecs)
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
