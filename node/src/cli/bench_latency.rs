//! `sluice bench-latency`: produce → visible latency as a user sees it. Produces sample
//! GitHub events to a topic at a steady rate, noting when each was handed to the Kafka
//! client, while it asks a node for `SELECT count()` of the table the topic feeds every
//! few milliseconds. Rows become visible in order (one partition), so row k is visible at
//! the first answer counting at least k rows; its latency is the time that answer arrived
//! minus the time row k was sent. Prints the median, 99th percentile and maximum.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};

use super::bench::{quantile, BenchError, Stats};
use super::produce::{ensure_topic, send, DeliveryCounter};
use crate::proto::{admin_client::AdminClient, ExecuteRequest};
use crate::sample::github;

/// More rows than this would hold their send times in too much memory for a benchmark.
const MAX_ROWS: u64 = 100_000_000;

#[derive(clap::Args, Debug)]
pub struct BenchLatencyArgs {
    /// The node to poll: host:port or http://host:port.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The topic to produce to; created with one partition when missing (rows are then
    /// visible in the order they were sent, which the measurement relies on).
    #[arg(long)]
    pub topic: String,
    /// The table the topic's rows land in; it must be empty at the start.
    #[arg(long)]
    pub table: String,
    /// Rows per second.
    #[arg(long)]
    pub rate: f64,
    /// How long to produce, in seconds.
    #[arg(long)]
    pub seconds: f64,
    /// How often to ask for the count, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub poll_ms: u64,
    /// How long to wait, after the last row was sent, for every row to become visible.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// The same seed produces the same events.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also write the results as key<TAB>value lines to this file.
    #[arg(long)]
    pub stats: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    #[error("{0}")]
    Argument(String),
    #[error("table {table} already holds {rows} rows; the measurement needs an empty table")]
    NotEmpty { table: String, rows: u64 },
    #[error("asking {host} for the count: {message}")]
    Query { host: String, message: String },
    #[error("the count of {table} is not a number: {text:?}")]
    NotACount { table: String, text: String },
    #[error("producing: {0}")]
    Produce(String),
    #[error("{visible} of {sent} rows visible {secs} s after the last was sent")]
    Incomplete { visible: u64, sent: u64, secs: u64 },
    #[error(transparent)]
    Bench(#[from] BenchError),
}

/// What the producer did: when each row was sent, and how long sending took.
struct Sent {
    at: Vec<Instant>,
    wall: Duration,
}

pub async fn run(args: BenchLatencyArgs) -> anyhow::Result<()> {
    let total = check(&args)?;
    ensure_topic(&args.brokers, &args.topic, 1).await?;
    let mut client = super::sql::connect(&args.host).await?;
    let sql = format!("SELECT count() FROM {}", args.table);
    let rows = count(&mut client, &args, &sql).await?;
    if rows != 0 {
        return Err(LatencyError::NotEmpty {
            table: args.table.clone(),
            rows,
        }
        .into());
    }

    let (brokers, topic, rate, seed) = (
        args.brokers.clone(),
        args.topic.clone(),
        args.rate,
        args.seed,
    );
    let mut producer = Some(tokio::task::spawn_blocking(move || {
        produce(&brokers, &topic, rate, total, seed)
    }));
    let mut sent: Option<Sent> = None;
    // (arrival of the answer, count), kept only when the count grew.
    let mut polls: Vec<(Instant, u64)> = Vec::new();
    let every = Duration::from_millis(args.poll_ms);
    let settle = Duration::from_secs(args.settle_secs);
    let mut next = Instant::now();
    let mut asked = 0u64;
    loop {
        let visible = count(&mut client, &args, &sql).await?;
        let now = Instant::now();
        asked += 1;
        if polls.last().is_none_or(|&(_, c)| visible > c) {
            polls.push((now, visible));
        }
        if visible >= total {
            break;
        }
        if let Some(handle) = producer.take_if(|h| h.is_finished()) {
            sent = Some(handle.await??);
        }
        if let Some(s) = &sent {
            let last = s.at.last().copied().unwrap_or(now);
            if now.saturating_duration_since(last) > settle {
                return Err(LatencyError::Incomplete {
                    visible,
                    sent: total,
                    secs: args.settle_secs,
                }
                .into());
            }
        }
        next += every;
        // Behind schedule (a slow answer): ask again now rather than in a burst.
        next = next.max(Instant::now());
        tokio::time::sleep_until(next.into()).await;
    }
    let sent = match (sent, producer) {
        (Some(s), _) => s,
        (None, Some(handle)) => handle.await??,
        (None, None) => return Err(LatencyError::Produce("the producer vanished".into()).into()),
    };

    let mut latencies = latencies(&sent.at, &polls);
    latencies.sort_unstable();
    let ms = |q: f64| quantile(&latencies, q).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let achieved = total as f64 / sent.wall.as_secs_f64().max(1e-9);
    println!(
        "latency: {total} rows at {achieved:.0} rows/s ({} asked) into {}: produce -> visible \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({asked} counts, every {} ms)",
        args.rate,
        args.table,
        ms(0.5),
        ms(0.99),
        ms(1.0),
        args.poll_ms
    );
    Stats::default()
        .add("rows", total)
        .add("rate_asked", args.rate)
        .add("rate", format!("{achieved:.1}"))
        .add("p50_ms", format!("{:.1}", ms(0.5)))
        .add("p99_ms", format!("{:.1}", ms(0.99)))
        .add("max_ms", format!("{:.1}", ms(1.0)))
        .add("polls", asked)
        .write(args.stats.as_deref())?;
    Ok(())
}

/// The rows to send, once the arguments are known to make sense.
fn check(args: &BenchLatencyArgs) -> Result<u64, LatencyError> {
    let bad = |m: &str| Err(LatencyError::Argument(m.to_string()));
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return bad("--rate takes a positive number of rows per second");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return bad("--seconds takes a positive number");
    }
    if args.poll_ms == 0 {
        return bad("--poll-ms must be at least 1");
    }
    let valid_name = !args.table.is_empty()
        && args
            .table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !valid_name {
        return Err(LatencyError::Argument(format!(
            "--table takes a table name (letters, digits, _ and .), not {:?}",
            args.table
        )));
    }
    let rows = (args.rate * args.seconds).round();
    if rows < 1.0 {
        return bad("--rate times --seconds makes no row");
    }
    if rows > MAX_ROWS as f64 {
        return Err(LatencyError::Argument(format!(
            "--rate times --seconds makes more than {MAX_ROWS} rows"
        )));
    }
    Ok(rows as u64)
}

async fn count(
    client: &mut AdminClient<tonic::transport::Channel>,
    args: &BenchLatencyArgs,
    sql: &str,
) -> Result<u64, LatencyError> {
    let reply = client
        .execute(ExecuteRequest {
            sql: sql.to_string(),
            format: "TabSeparated".into(),
        })
        .await
        .map_err(|status| LatencyError::Query {
            host: args.host.clone(),
            message: status.message().to_string(),
        })?
        .into_inner();
    let text = String::from_utf8_lossy(&reply.formatted);
    text.trim().parse().map_err(|_| LatencyError::NotACount {
        table: args.table.clone(),
        text: text.into_owned(),
    })
}

/// Sends `total` events to partition 0 of `topic`, `rate` a second, each at its due time
/// (a sleep cannot wait for less than tens of microseconds, so at high rates rows leave in
/// small bursts that keep the average rate).
fn produce(
    brokers: &str,
    topic: &str,
    rate: f64,
    total: u64,
    seed: u64,
) -> Result<Sent, LatencyError> {
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "60000")
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| LatencyError::Produce(format!("creating a producer for {brokers}: {e}")))?;
    // Connected and the topic's leader known before the clock starts, so the first rows
    // do not carry the connection's setup.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| LatencyError::Produce(format!("metadata of topic {topic}: {e}")))?;
    let capacity = usize::try_from(total).unwrap_or(usize::MAX);
    let mut at = Vec::with_capacity(capacity);
    let start = Instant::now();
    for i in 0..total {
        let payload = github::event(seed, i).json_line();
        let key = i.to_string();
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        at.push(Instant::now());
        send(&producer, topic, 0, &key, &payload)
            .map_err(|e| LatencyError::Produce(format!("{e:#}")))?;
        producer.poll(Duration::ZERO);
    }
    let wall = start.elapsed();
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| LatencyError::Produce(format!("waiting for {brokers}: {e}")))?;
    let (failed, first) = producer.context().failures();
    if failed > 0 {
        return Err(LatencyError::Produce(format!(
            "{failed} rows were not delivered to {topic}: {first}"
        )));
    }
    Ok(Sent { at, wall })
}

/// Each row's latency: the first poll whose count covers it, minus its send time. `polls`
/// are in time order with growing counts; rows no poll covers get none.
fn latencies(sent: &[Instant], polls: &[(Instant, u64)]) -> Vec<Duration> {
    let mut out = Vec::with_capacity(sent.len());
    for &(at, visible) in polls {
        let upto = usize::try_from(visible)
            .unwrap_or(usize::MAX)
            .min(sent.len());
        while out.len() < upto {
            out.push(at.saturating_duration_since(sent[out.len()]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rate: f64, seconds: f64, table: &str) -> BenchLatencyArgs {
        BenchLatencyArgs {
            host: "h".into(),
            brokers: "b".into(),
            topic: "t".into(),
            table: table.into(),
            rate,
            seconds,
            poll_ms: 10,
            settle_secs: 1,
            seed: 1,
            stats: None,
        }
    }

    #[test]
    fn a_row_is_visible_at_the_first_count_that_covers_it() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let sent = [ms(0), ms(10), ms(20), ms(30)];
        let polls = [(ms(5), 0), (ms(25), 2), (ms(40), 4)];
        let got: Vec<u128> = latencies(&sent, &polls)
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(got, vec![25, 15, 20, 10]);
    }

    #[test]
    fn bad_arguments_are_refused_with_the_argument_named() {
        for (a, name) in [
            (args(0.0, 10.0, "t"), "--rate"),
            (args(f64::NAN, 10.0, "t"), "--rate"),
            (args(10.0, -1.0, "t"), "--seconds"),
            (args(10.0, 10.0, "t; DROP TABLE x"), "--table"),
            (args(0.01, 1.0, "t"), "no row"),
        ] {
            let err = check(&a).expect_err("refused").to_string();
            assert!(err.contains(name), "{err}");
        }
        assert_eq!(check(&args(100.0, 25.0, "lat.t_1")).expect("valid"), 2_500);
    }
}
