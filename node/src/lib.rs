//! Sluice: Kafka topics into replicated tables, with ClickHouse's Kafka-engine DDL.
//!
//! The path of a message, each module visited once, forward only:
//!
//! ```text
//! Kafka partition
//!   -> ingest::pipeline     a consumer actor's work: poll, cut a block (ingest::block_cutter)
//!   -> format               JSONEachRow bytes -> Arrow batch + virtual columns
//!   -> query::views         each materialized view's SELECT over the batch
//!   -> table::block         one block per target table; its identity is its hash
//!   -> cluster / raft       proposed to the leader of the table's group, replicated,
//!                           applied on each of the table's replicas
//!   -> table::store         apply: the block's part file, then its record + source position
//!                           + dedup window, one atomic batch; `merger` merges parts later
//!   -> Kafka group commit   for lag tools; where to resume is the table's stored position
//! ```
//!
//! A consumer decodes its next block while the previous one is being written, so the
//! `format` step of block N+1 overlaps the `cluster / raft` step of block N.
//!
//! DDL takes the path `sql` -> `sql::ddl` / `query::views` -> `catalog` -> `state`.

pub mod admin;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod files;
pub mod format;
pub mod ingest;
pub mod merger;
pub mod metrics;
pub mod open_requests;
pub mod query;
pub mod raft;
pub mod sample;
pub mod server;
pub mod shutdown;
pub mod sql;
pub mod state;
pub mod table;
pub mod topology;

/// Generated from `proto/admin.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("sluice.admin.v1");
}

/// Generated from `proto/raft.proto`.
pub mod raft_proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("sluice.raft.v1");
}
