//! The command line for people: each subcommand is a thin gRPC or Kafka client.

pub mod baseline;
pub mod bench;
pub mod bench_decode;
pub mod bench_latency;
pub mod cluster;
pub mod drain;
pub mod insert_data;
pub mod produce;
pub mod progress;
pub mod sql;
pub mod status;
