//! openraft wiring: the type config, the replicated commands, the log store and state
//! machine on sled, and the tonic transport.
//!
//! The `meta` group carries the catalog, the cluster id, the partition assignment and the
//! placement of tables; each table's blocks go through a data group of their own, on the
//! nodes the table is placed on. Every message names its group.

pub mod disk_sync;
pub mod log_store;
pub mod messages;
pub mod network;
pub mod service;
pub mod snapshot_data;
pub mod snapshot_dirs;
pub mod state_machine;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogCommand, CatalogError, CatalogOutcome};
use crate::table::{ApplyOutcome, Block, PositionKey};
use crate::topology::{Member, NodeId, Placement, Slot};

/// The group that holds the catalog, the membership, the assignment and the placements.
pub const META_GROUP: &str = "meta";

/// A write to the replicated state; applied in log order on every member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// The first entry of a new cluster: its id, kept in every data dir.
    InitCluster {
        cluster_id: String,
    },
    Catalog(CatalogCommand),
    /// A block for a table; from a consumer, fenced by its assignment.
    Block {
        block: Block,
        fence: Option<Fence>,
    },
    /// A source partition's position moved on purpose (a rewind): the table stores
    /// `next_offset` for it and refuses writers through `kafka_table` at epochs below
    /// `fence_epoch`.
    SetPosition {
        table: String,
        key: PositionKey,
        kafka_table: String,
        next_offset: i64,
        fence_epoch: u64,
    },
    /// A new partition assignment from the meta leader.
    Assign {
        owners: Vec<(Slot, NodeId)>,
    },
    /// Where a table lives, from the meta leader; none once the table is gone.
    Place {
        table: String,
        placement: Option<Placement>,
    },
}

/// Who may write a slot's blocks: its owner at the epoch it was given the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub slot: Slot,
    pub node: NodeId,
    pub epoch: u64,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::InitCluster { cluster_id } => write!(f, "init cluster {cluster_id}"),
            Command::Catalog(c) => write!(f, "catalog {c:?}"),
            Command::Block { block, .. } => {
                write!(f, "block of {} rows for {}", block.rows, block.table)
            }
            Command::SetPosition {
                table,
                key,
                next_offset,
                ..
            } => write!(
                f,
                "position of {}/{}/{} in {table} set to {next_offset}",
                key.source, key.topic, key.partition
            ),
            Command::Assign { owners } => write!(f, "assignment of {} partitions", owners.len()),
            Command::Place { table, placement } => match placement {
                Some(p) => write!(f, "placement of {table} on {:?}", p.members),
                None => write!(f, "placement of {table} removed"),
            },
        }
    }
}

/// What applying a command did, returned to the writer once a quorum has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Done,
    Catalog(Result<CatalogOutcome, CatalogError>),
    Block(Result<ApplyOutcome, BlockRefused>),
    /// The position a `SetPosition` replaced.
    Position(Result<Option<i64>, BlockRefused>),
}

/// Why a group did not apply a block: it reached the wrong group, or its table is gone.
/// The same on every replica (the log decides), so the writer learns it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BlockRefused {
    #[error("a block for {table} was sent to the meta group; blocks go to their table's group")]
    SentToMeta { table: String },
    #[error("group {group} of table {table} takes blocks and positions only, not {command}")]
    NotABlock {
        group: String,
        table: String,
        command: String,
    },
    #[error("a block for {block_table} was sent to group {group} of table {table}")]
    WrongGroup {
        block_table: String,
        group: String,
        table: String,
    },
    #[error("table {table} does not exist (any more) in group {group}")]
    TableGone { table: String, group: String },
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot_data::SnapshotData,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// MessagePack, with field names: entries outlive a version, so they stay readable.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

/// A data group snapshots once the entries applied since its last snapshot carry this
/// many bytes of blocks, or `SNAPSHOT_LOG_ENTRIES` entries, whichever comes first: a
/// snapshot pins the table's parts, after which the log can let the blocks go.
pub const SNAPSHOT_LOG_BYTES: u64 = 64 * 1024 * 1024;
pub const SNAPSHOT_LOG_ENTRIES: u64 = 2000;

/// The timing of the cluster; the election timeout bounds how long a leader's death stalls
/// writes. The `meta` group's: its entries are small, so its log may hold many.
pub fn raft_config(cluster_name: &str) -> Result<openraft::Config, Box<openraft::ConfigError>> {
    Ok(openraft::Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_LOG_ENTRIES),
        max_in_snapshot_log_to_keep: 500,
        max_payload_entries: 64,
        ..Default::default()
    }
    .validate()?)
}

/// A data group's config: the same timing, and a log that lets a block go soon after a
/// snapshot holds it, so a replica stores a row once (in a part), not also in its log.
/// The few entries kept let a follower that is a little behind catch up from the log
/// instead of by a snapshot. The byte budget (`SNAPSHOT_LOG_BYTES`) is enforced by
/// `cluster::groups`, openraft's policy knowing only entry counts.
pub fn data_raft_config(
    cluster_name: &str,
) -> Result<openraft::Config, Box<openraft::ConfigError>> {
    Ok(openraft::Config {
        max_in_snapshot_log_to_keep: DATA_LOG_KEPT,
        ..raft_config(cluster_name)?
    }
    .validate()?)
}

/// Entries a data group keeps in its log after a snapshot holds them: as many as a
/// learner may lag by and count as caught up (`groups::CAUGHT_UP_ENTRIES`).
pub const DATA_LOG_KEPT: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_roundtrip_through_the_codec() {
        let data: Vec<u8> = (128..=255).collect();
        let cmd = Command::Block {
            block: Block {
                table: "t".into(),
                source: None,
                rows: 2,
                hash: [7; 32],
                data: data.clone().into(),
            },
            fence: None,
        };
        let bytes = encode(&cmd).unwrap_or_default();
        // Block bytes travel as a byte string, not as an array of numbers (two bytes
        // each for these values).
        assert!(bytes.len() < 128 + 100, "{}", bytes.len());
        let back: Command = decode(&bytes).unwrap_or(Command::InitCluster {
            cluster_id: String::new(),
        });
        assert_eq!(back, cmd);

        // Entries written when the block's bytes were a `Vec<u8>` under `serde_bytes`
        // read the same.
        #[derive(Serialize)]
        struct Before {
            table: String,
            source: Option<crate::table::SourceRange>,
            rows: u64,
            hash: [u8; 32],
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
        }
        #[derive(Serialize)]
        enum BeforeCommand {
            #[allow(dead_code)]
            InitCluster {
                cluster_id: String,
            },
            #[allow(dead_code)]
            Catalog(CatalogCommand),
            Block {
                block: Before,
                fence: Option<Fence>,
            },
        }
        let before = BeforeCommand::Block {
            block: Before {
                table: "t".into(),
                source: None,
                rows: 2,
                hash: [7; 32],
                data,
            },
            fence: None,
        };
        assert_eq!(encode(&before).unwrap_or_default(), bytes);
    }
}
