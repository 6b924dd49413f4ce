//! `sluice baseline`: the benchmark's floor for fetching. A plain librdkafka consumer reads
//! every partition of a topic from the beginning and discards the messages; the CPU it
//! spends per message is what any consumer of the topic pays before parsing a byte. It
//! also counts the messages' payload bytes, the JSON bytes the benchmark divides by.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::bench::{process_cpu, Stats};

#[derive(clap::Args, Debug)]
pub struct BaselineArgs {
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, default_value = "github")]
    pub topic: String,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Also write the results as key<TAB>value lines to this file.
    #[arg(long)]
    pub stats: Option<PathBuf>,
}

pub async fn run(args: BaselineArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || drain(&args))
        .await
        .context("the drain task failed")?
}

fn drain(args: &BaselineArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", "sluice-bench-baseline")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .with_context(|| format!("metadata of topic {}", args.topic))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    anyhow::ensure!(partitions > 0, "topic {} has no partitions", args.topic);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&args.topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let cpu_start = process_cpu()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.timeout_secs);
    let mut seen = 0u64;
    let mut bytes = 0u64;
    while seen < args.count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "read {seen} of {} messages before the timeout",
            args.count
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.context("consuming")?;
            bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            seen += 1;
        }
    }
    let wall = start.elapsed();
    let cpu = process_cpu()?.saturating_sub(cpu_start);
    let secs = wall.as_secs_f64();
    println!(
        "baseline: {seen} messages ({:.1} MiB) in {secs:.2} s = {:.0} msg/s; CPU {:.2} s = {:.2} µs/msg",
        bytes as f64 / 1_048_576.0,
        seen as f64 / secs,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / seen as f64
    );
    Stats::default()
        .add("rows", seen)
        .add("json_bytes", bytes)
        .add("cpu_ns", cpu.as_nanos())
        .add("wall_ns", wall.as_nanos())
        .write(args.stats.as_deref())?;
    Ok(())
}
