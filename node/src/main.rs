//! The `sluice` binary: subcommands hand off to the library; no logic here.

use clap::{Parser, Subcommand};

use sluice::cli;
use sluice::config::{NodeArgs, NodeConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Kafka topics into replicated tables, with ClickHouse's Kafka-engine DDL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Node(NodeArgs),
    /// Run SQL on a node and print the result.
    Sql(cli::sql::SqlArgs),
    /// Show a node, its cluster and its consumers.
    Status(cli::status::StatusArgs),
    /// Form a new cluster on this node (once; "already initialized" is a success).
    Init(cli::cluster::InitArgs),
    /// Add the node at an address to the cluster.
    AddNode(cli::cluster::AddNodeArgs),
    /// Take a member out of the cluster.
    RemoveNode(cli::cluster::RemoveNodeArgs),
    /// Show a table's row count as a progress bar until it reaches a target.
    Progress(cli::progress::ProgressArgs),
    /// Prepare a node to stop: stop its consumers, move its partitions and Raft leadership
    /// to other nodes (Kubernetes' preStop).
    Drain(cli::drain::DrainArgs),
    /// Benchmark baseline: read a topic with a plain librdkafka consumer and discard it.
    Baseline(cli::baseline::BaselineArgs),
    /// Produce sample GitHub events (the guide's schema) to a Kafka topic.
    Produce(cli::produce::ProduceArgs),
    /// Benchmark: the CPU of decoding a topic's messages alone, on one thread.
    #[command(hide = true)]
    BenchDecode(cli::bench_decode::BenchDecodeArgs),
    /// Benchmark: produce -> visible latency at a steady rate.
    #[command(hide = true)]
    BenchLatency(cli::bench_latency::BenchLatencyArgs),
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A node frees and refills its block buffers all the time, and mimalloc asks for
/// transparent huge pages: the kernel then zeroed a whole 2 MiB page at each refill, 28%
/// of the nodes' CPU in the three-node benchmark (and a quarter more memory). Losing huge
/// pages costs a node nothing measurable.
fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "could not turn transparent huge pages off");
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => match NodeConfig::resolve(&args) {
            Ok(config) => {
                init_logging(&config.log);
                disable_huge_pages();
                sluice::server::run(config)
            }
            Err(e) => Err(e.into()),
        },
        other => {
            init_logging(&std::env::var("SLUICE_LOG").unwrap_or_else(|_| "warn".into()));
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(async move {
                    match other {
                        Command::Sql(args) => cli::sql::run(args).await,
                        Command::Status(args) => cli::status::run(args).await,
                        Command::Init(args) => cli::cluster::init(args).await,
                        Command::AddNode(args) => cli::cluster::add_node(args).await,
                        Command::RemoveNode(args) => cli::cluster::remove_node(args).await,
                        Command::Progress(args) => cli::progress::run(args).await,
                        Command::Drain(args) => cli::drain::run(args).await,
                        Command::Baseline(args) => cli::baseline::run(args).await,
                        Command::Produce(args) => cli::produce::run(args).await.map(|_| ()),
                        Command::BenchDecode(args) => cli::bench_decode::run(args).await,
                        Command::BenchLatency(args) => cli::bench_latency::run(args).await,
                        Command::Node(_) => Ok(()),
                    }
                }),
                Err(e) => Err(e.into()),
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // `sluice sql` tells a refused statement, a missing node and a failing node
            // apart, as scripts around clickhouse-client expect.
            match e.downcast_ref::<cli::sql::SqlFailure>() {
                Some(failure) => std::process::ExitCode::from(failure.kind.exit_code()),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
