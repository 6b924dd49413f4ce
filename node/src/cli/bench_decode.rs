//! `sluice bench-decode`: the CPU a node's decode alone costs. Reads a topic's messages
//! into memory first, cut into blocks per partition as a consumer cuts them (the Kafka
//! table's rows and bytes limits), then times only `format::decode_block` over those
//! blocks, on one thread, a few times over. Can also write the payloads as a JSONEachRow
//! file, so that another engine loads exactly the rows Sluice decoded.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::bench::{thread_cpu, BenchError, Stats};
use crate::catalog::{Catalog, TableDef};
use crate::format::{decode_block, FormatError, RawMessage};
use crate::ingest::block_cutter::{BlockCutter, BlockLimits};
use crate::ingest::open_block::OpenBlock;

/// The guide's DDL; its first statement is the Kafka table whose decode is measured.
const GUIDE_DDL: &str = include_str!("../../../scripts/sql/quickstart.sql");

#[derive(clap::Args, Debug)]
pub struct BenchDecodeArgs {
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, default_value = "github")]
    pub topic: String,
    /// Read this many messages (from the beginning of every partition).
    #[arg(long)]
    pub count: u64,
    /// A file whose first statement creates the Kafka table to decode for (default: the
    /// guide's github_queue).
    #[arg(long)]
    pub ddl: Option<PathBuf>,
    /// Decode everything this many times; the median run counts.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Write the messages' payloads, one a line, to this file (JSONEachRow for JSON).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Give up reading after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Also write the results as key<TAB>value lines to this file.
    #[arg(long)]
    pub stats: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeBenchError {
    #[error("{0} must be at least 1")]
    Argument(&'static str),
    #[error("reading {}: {source}", path.display())]
    ReadDdl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the DDL's first statement: {0}")]
    Ddl(String),
    #[error("{context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {0} has no partitions")]
    NoPartitions(String),
    #[error("read {read} of {wanted} messages in {secs} s")]
    Timeout { read: u64, wanted: u64, secs: u64 },
    #[error("writing the dump {}: {source}", path.display())]
    Dump {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decoding: {0}")]
    Format(#[from] FormatError),
    #[error("decoded {rows} rows of {messages} messages ({broken} broken)")]
    Rows {
        rows: u64,
        messages: u64,
        broken: u64,
    },
    #[error(transparent)]
    Bench(#[from] BenchError),
}

/// The messages of one partition, cut into blocks.
struct PartitionBlocks {
    partition: i32,
    blocks: Vec<Vec<RawMessage>>,
}

pub async fn run(args: BenchDecodeArgs) -> anyhow::Result<()> {
    Ok(tokio::task::spawn_blocking(move || bench(&args)).await??)
}

fn bench(args: &BenchDecodeArgs) -> Result<(), DecodeBenchError> {
    if args.count == 0 {
        return Err(DecodeBenchError::Argument("--count"));
    }
    if args.runs == 0 {
        return Err(DecodeBenchError::Argument("--runs"));
    }
    let table = kafka_table(args)?;
    let limits = table
        .kafka()
        .map(BlockLimits::of)
        .ok_or_else(|| DecodeBenchError::Ddl(format!("{} is not a Kafka table", table.name)))?;
    let (partitions, json_bytes) = read_topic(args, limits)?;
    let blocks: usize = partitions.iter().map(|p| p.blocks.len()).sum();

    let mut runs = Vec::new();
    for _ in 0..args.runs {
        runs.push(decode_all(&table, &args.topic, &partitions, args.count)?);
    }
    runs.sort_by_key(|r| r.0);
    let (cpu, wall) = runs[runs.len() / 2];
    let (min_cpu, _) = runs[0];
    let rows = args.count as f64;
    println!(
        "decode: {} rows ({:.1} MiB of JSON) in {blocks} blocks, one thread: CPU {:.3} s \
         (median of {}) = {:.3} µs/row, {:.2} ns/byte; {:.0} rows/s",
        args.count,
        json_bytes as f64 / 1_048_576.0,
        cpu.as_secs_f64(),
        args.runs,
        cpu.as_secs_f64() * 1e6 / rows,
        cpu.as_nanos() as f64 / json_bytes.max(1) as f64,
        rows / wall.as_secs_f64().max(1e-9),
    );
    Stats::default()
        .add("rows", args.count)
        .add("json_bytes", json_bytes)
        .add("blocks", blocks)
        .add("cpu_ns", cpu.as_nanos())
        .add("cpu_ns_min", min_cpu.as_nanos())
        .add("wall_ns", wall.as_nanos())
        .add("runs", args.runs)
        .write(args.stats.as_deref())?;
    Ok(())
}

/// The table the DDL's first statement creates.
fn kafka_table(args: &BenchDecodeArgs) -> Result<TableDef, DecodeBenchError> {
    let text = match &args.ddl {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|source| DecodeBenchError::ReadDdl {
                path: path.clone(),
                source,
            })?
        }
        None => GUIDE_DDL.to_string(),
    };
    let text = text
        .replace("${KAFKA_BROKERS}", &args.brokers)
        .replace("${KAFKA_TOPIC}", &args.topic)
        .replace("${KAFKA_GROUP}", "sluice-bench-decode");
    let statements =
        crate::sql::split_statements(&text).map_err(|e| DecodeBenchError::Ddl(e.to_string()))?;
    let first = statements
        .first()
        .ok_or_else(|| DecodeBenchError::Ddl("the file holds no statement".into()))?;
    let crate::sql::Statement::CreateTable(create) =
        crate::sql::parse(first).map_err(|e| DecodeBenchError::Ddl(e.to_string()))?
    else {
        return Err(DecodeBenchError::Ddl("not a CREATE TABLE".into()));
    };
    crate::sql::ddl::table_def(&create, &Catalog::default())
        .map_err(|e| DecodeBenchError::Ddl(e.to_string()))
}

/// Reads `count` messages, cut per partition as a consumer cuts them, and writes the dump
/// when asked; returns the blocks and the payloads' bytes.
fn read_topic(
    args: &BenchDecodeArgs,
    limits: BlockLimits,
) -> Result<(Vec<PartitionBlocks>, u64), DecodeBenchError> {
    let kafka =
        |context: String| move |source: KafkaError| DecodeBenchError::Kafka { context, source };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", "sluice-bench-decode")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka("creating a Kafka consumer".into()))?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .map_err(kafka(format!("metadata of topic {}", args.topic)))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(DecodeBenchError::NoPartitions(args.topic.clone()));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let p = i32::try_from(p).unwrap_or(i32::MAX);
        tpl.add_partition_offset(&args.topic, p, Offset::Beginning)
            .map_err(kafka(format!("partition {p}")))?;
    }
    consumer
        .assign(&tpl)
        .map_err(kafka(format!("assigning topic {}", args.topic)))?;

    let mut dump = match &args.dump {
        Some(path) => Some((
            path.as_path(),
            std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(path).map_err(|source| DecodeBenchError::Dump {
                    path: path.clone(),
                    source,
                })?,
            ),
        )),
        None => None,
    };
    let mut open: BTreeMap<i32, (OpenBlock, BlockCutter, Vec<Vec<RawMessage>>)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let (mut seen, mut bytes) = (0u64, 0u64);
    while seen < args.count {
        if Instant::now() >= deadline {
            return Err(DecodeBenchError::Timeout {
                read: seen,
                wanted: args.count,
                secs: args.timeout_secs,
            });
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.map_err(kafka("consuming".into()))?;
        let payload = m.payload().unwrap_or_default();
        bytes += payload.len() as u64;
        if let Some((path, file)) = &mut dump {
            file.write_all(payload)
                .and_then(|()| file.write_all(b"\n"))
                .map_err(|source| dump_error(path, source))?;
        }
        let (block, cutter, blocks) = open
            .entry(m.partition())
            .or_insert_with(|| (OpenBlock::default(), BlockCutter::new(limits), Vec::new()));
        block.add(cutter, &m, Instant::now());
        if cutter.is_full() {
            blocks.push(block.cut(cutter));
        }
        seen += 1;
    }
    if let Some((path, mut file)) = dump {
        file.flush().map_err(|source| dump_error(path, source))?;
    }
    let partitions = open
        .into_iter()
        .map(|(partition, (mut block, mut cutter, mut blocks))| {
            if !block.is_empty() {
                blocks.push(block.cut(&mut cutter));
            }
            PartitionBlocks { partition, blocks }
        })
        .collect();
    Ok((partitions, bytes))
}

fn dump_error(path: &Path, source: std::io::Error) -> DecodeBenchError {
    DecodeBenchError::Dump {
        path: path.to_path_buf(),
        source,
    }
}

/// Decodes every block once on this thread: its CPU and wall time.
fn decode_all(
    table: &TableDef,
    topic: &str,
    partitions: &[PartitionBlocks],
    messages: u64,
) -> Result<(Duration, Duration), DecodeBenchError> {
    let (mut rows, mut broken) = (0u64, 0u64);
    let cpu_start = thread_cpu()?;
    let start = Instant::now();
    for p in partitions {
        for block in &p.blocks {
            let decoded = decode_block(table, topic, p.partition, block)?;
            rows += decoded.batch.num_rows() as u64;
            broken += decoded.broken.len() as u64;
        }
    }
    let wall = start.elapsed();
    let cpu = thread_cpu()?.saturating_sub(cpu_start);
    if rows != messages || broken > 0 {
        return Err(DecodeBenchError::Rows {
            rows,
            messages,
            broken,
        });
    }
    Ok((cpu, wall))
}
