//! Sluice: Kafka topics into replicated tables, with ClickHouse's Kafka-engine DDL.
//!
//! The path of a message, each module visited once, forward only:
//!
//! ```text
//! Kafka partition
//!   -> ingest::pipeline     a consumer actor's work: poll, cut a block (ingest::block_cutter)
//!   -> format               message bytes (kafka_format) -> Arrow batch + virtual columns
//!   -> query::views         each materialized view's SELECT over the batch
//!   -> table::block         one block per target table; its identity is its hash
//!   -> cluster::propose     proposed to the leader of the table's group (raft), replicated,
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
//!
//! ## Who owns what
//!
//! ```text
//! topology   ids and replicated records: NodeId, Member, Slot/Assignments, Placement(s)
//! shutdown   Tasks: every background loop's owner (cancel, await, log once)
//! catalog    tables and views as typed values; ClickHouse types <-> Arrow
//! sql        SQL text -> typed statements; nothing deeper sees SQL text
//! format     message bytes -> Arrow batches (JSONEachRow, CSV, Protobuf, Avro, ...)
//! table      a table's replica: parts, positions, dedup window (the only sled code for rows)
//! dead_letters  this node's dead-letter queue (messages that did not parse), on sled
//! state      the node's replicated state: catalog, tables, assignment, placements
//! query      DataFusion: SELECTs, system tables, views; reads the cluster through traits
//! raft       openraft on sled: log, state machine, snapshots, transport, peer protocol
//! ingest     consumer actors and their pipeline; the Replica trait it writes through
//! cluster    the coordinator: membership, proposing, placement, groups, reads (see its map)
//! merger     merges parts in the background
//! metrics    Prometheus endpoint
//! admin      the gRPC admin API; errors -> tonic::Status; system tables that ask every member
//! config     the node's settings
//! server     starts everything in order, stops it in reverse
//! cli        the `sluice` subcommands
//! ```
//!
//! ## Layers
//!
//! A module imports only modules on lower floors; a higher one calls down, and a lower one
//! that must reach up does so through a trait it defines (`raft::service::PeerHandler`,
//! `query::source::TableSource`, `ingest::Replica`). `tests/layering.rs` reads this table
//! and fails the build on an import against it.
//!
//! ```text
//! floor  modules
//! 13     cli
//! 12     server
//! 11     config
//! 10     admin, merger, metrics
//! 9      cluster
//! 8      ingest
//! 7      raft
//! 6      query
//! 5      state
//! 4      table
//! 3      format
//! 2      sql
//! 1      catalog
//! 0      topology, shutdown, files, open_requests, sample, dead_letters, proto, raft_proto
//! ```

pub mod admin;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dead_letters;
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
