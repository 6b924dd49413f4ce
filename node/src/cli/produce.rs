//! `sluice produce`: loads sample GitHub events (the guide's schema) into a Kafka topic.
//!
//! Event `i` goes to partition `i % partitions` with key `i`, so a test can tell where
//! every event went. The topic is created when missing. Returns only after the broker
//! acknowledged every message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use crate::sample::github;

#[derive(clap::Args, Debug, Clone)]
pub struct ProduceArgs {
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, default_value = "github")]
    pub topic: String,
    /// How many events.
    #[arg(long, default_value_t = 200_000)]
    pub count: u64,
    /// Partitions of the topic when it has to be created; events go round-robin over them.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// The same seed produces the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Index of the first event, to append to an earlier load.
    #[arg(long, default_value_t = 0)]
    pub start_index: u64,
    /// Also send one malformed message after every N events (to try kafka_skip_broken_messages).
    #[arg(long)]
    pub malformed_every: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What a load sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProduceReport {
    pub events: u64,
    pub malformed: u64,
    pub seconds: f64,
}

/// Counts delivery reports; the first failure is kept to report it.
#[derive(Default)]
pub(crate) struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl DeliveryCounter {
    /// How many messages failed, and the first failure's error.
    pub(crate) fn failures(&self) -> (u64, String) {
        let first = self
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        (self.failed.load(Ordering::Relaxed), first)
    }
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<ProduceReport> {
    anyhow::ensure!(args.partitions > 0, "--partitions must be at least 1");
    anyhow::ensure!(
        args.malformed_every != Some(0),
        "--malformed-every must be at least 1"
    );
    ensure_topic(&args.brokers, &args.topic, args.partitions).await?;
    tokio::task::spawn_blocking(move || produce(&args))
        .await
        .context("the producer task failed")?
}

pub(crate) async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating a Kafka admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .with_context(|| format!("creating topic {topic} on {brokers}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, e)) => anyhow::bail!("creating topic {name} on {brokers}: {e}"),
        }
    }
    Ok(())
}

fn produce(args: &ProduceArgs) -> anyhow::Result<ProduceReport> {
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "120000")
        .create_with_context(DeliveryCounter::default())
        .with_context(|| format!("creating a Kafka producer for {}", args.brokers))?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(args.count);
        bar.set_style(
            ProgressStyle::with_template(
                "produce {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec})",
            )
            .context("progress bar template")?,
        );
        bar.set_message(args.topic.clone());
        bar
    };
    let start = Instant::now();
    let mut malformed = 0u64;
    for n in 0..args.count {
        let index = args.start_index + n;
        let partition = i32::try_from(index % args.partitions as u64).unwrap_or(0);
        let key = index.to_string();
        send(
            &producer,
            &args.topic,
            partition,
            &key,
            &github::event(args.seed, index).json_line(),
        )?;
        if args
            .malformed_every
            .is_some_and(|every| (n + 1) % every == 0)
        {
            let payload = github::malformed_message(malformed);
            send(
                &producer,
                &args.topic,
                partition,
                &format!("malformed-{malformed}"),
                &payload,
            )?;
            malformed += 1;
        }
        if n % 1024 == 0 {
            producer.poll(Duration::ZERO);
            bar.set_position(n);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .with_context(|| format!("waiting for {} to acknowledge the messages", args.brokers))?;
    bar.finish();
    let context = producer.context();
    let (failed, first) = context.failures();
    if failed > 0 {
        anyhow::bail!(
            "{failed} messages were not delivered to {}: {first}",
            args.topic
        );
    }
    let delivered = context.delivered.load(Ordering::Relaxed);
    anyhow::ensure!(
        delivered == args.count + malformed,
        "{delivered} of {} messages acknowledged",
        args.count + malformed
    );
    let seconds = start.elapsed().as_secs_f64();
    if !args.quiet {
        println!(
            "produced {} events{} to {} in {seconds:.1} s",
            args.count,
            if malformed > 0 {
                format!(" and {malformed} malformed messages")
            } else {
                String::new()
            },
            args.topic
        );
    }
    Ok(ProduceReport {
        events: args.count,
        malformed,
        seconds,
    })
}

/// Sends one message, waiting for room in librdkafka's queue when it is full.
pub(crate) fn send(
    producer: &BaseProducer<DeliveryCounter>,
    topic: &str,
    partition: i32,
    key: &str,
    payload: &str,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e).with_context(|| format!("producing to {topic}")),
        }
    }
}
