//! The state machine of a Raft group: applies its commands to the node's state, and
//! builds and installs snapshots of the part of the state the group owns: the catalog,
//! assignment and placements for `meta`, one table's replica for a data group.
//!
//! Applying is deterministic: a command's effect depends only on the command and the
//! state. The applied log id is written after the command's own atomic write, so a crash
//! between the two re-applies that command on restart; every command is idempotent under
//! re-apply (a block's source range or hash is already stored, a table already exists),
//! which keeps the replicas equal without a multi-tree transaction.

// openraft's storage traits fix the error type, a large one; boxing it is not ours to do.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::network::ClusterIdCell;
use super::{decode, encode, Command, Member, NodeId, Response, StorageError, TypeConfig};
use crate::state::{NodeState, StateImage};

const APPLIED: &[u8] = b"applied";
const MEMBERSHIP: &[u8] = b"membership";
const SNAPSHOT: &[u8] = b"snapshot";

/// A built snapshot, kept so a lagging follower can be sent the latest one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// What a group's state machine owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Meta,
    /// The data group of one table, under its group id.
    Table {
        table: String,
        group: String,
    },
}

/// The snapshot's content: the replicated state as of `meta.last_log_id`.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotContent {
    image: StateImage,
}

#[derive(Clone)]
pub struct StateMachine {
    state: Arc<NodeState>,
    scope: Scope,
    tree: sled::Tree,
    /// Held while applying and while exporting, so a snapshot is exactly the state at its
    /// last log id.
    gate: Arc<tokio::sync::Mutex<()>>,
    cluster_id: ClusterIdCell,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl StateMachine {
    pub fn open(
        db: &sled::Db,
        group: &str,
        scope: Scope,
        state: Arc<NodeState>,
        cluster_id: ClusterIdCell,
    ) -> Result<StateMachine, sled::Error> {
        Ok(StateMachine {
            state,
            scope,
            cluster_id,
            tree: db.open_tree(format!("raft/{group}/sm"))?,
            gate: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.tree.get(key).map_err(sm_read)? {
            Some(bytes) => decode(&bytes).map(Some).map_err(sm_read),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(sm_write)?;
        self.tree.insert(key, bytes).map_err(sm_write)?;
        Ok(())
    }

    fn apply_command(&self, command: &Command, index: u64) -> Result<Response, StorageError> {
        match &self.scope {
            Scope::Meta => self.apply_meta(command, index),
            Scope::Table { table, group } => self.apply_data(table, group, command, index),
        }
    }

    fn apply_meta(&self, command: &Command, index: u64) -> Result<Response, StorageError> {
        let state = &self.state;
        Ok(match command {
            Command::InitCluster { cluster_id } => {
                if state.cluster_id().map_err(sm_read)?.is_none() {
                    state.set_cluster_id(cluster_id).map_err(sm_write)?;
                }
                self.learn_cluster_id()?;
                Response::Done
            }
            Command::Catalog(cmd) => match state.apply_catalog(cmd) {
                Ok(outcome) => Response::Catalog(Ok(outcome)),
                Err(crate::state::StateError::Catalog(e)) => Response::Catalog(Err(e)),
                Err(e) => return Err(sm_write(e)),
            },
            Command::Assign { owners } => {
                state.apply_assign(owners, index).map_err(sm_write)?;
                Response::Done
            }
            Command::Place { table, placement } => {
                // A placement for a table dropped since it was proposed is dropped too.
                let placement = placement
                    .as_ref()
                    .filter(|_| state.catalog().table(table).is_some());
                state.set_placement(table, placement).map_err(sm_write)?;
                Response::Done
            }
            Command::Block { block, .. } => Response::Block(Err(format!(
                "a block for {} was sent to the meta group; blocks go to their table's group",
                block.table
            ))),
        })
    }

    /// A data group applies the blocks of its table. Fencing here needs only the table's
    /// own state (the highest epoch that wrote each partition), which every replica of the
    /// group holds alike; the meta group's assignment is not ordered with this log.
    fn apply_data(
        &self,
        table: &str,
        group: &str,
        command: &Command,
        index: u64,
    ) -> Result<Response, StorageError> {
        let Command::Block { block, fence } = command else {
            return Ok(Response::Block(Err(format!(
                "group {group} of table {table} takes blocks only, not {command}"
            ))));
        };
        if block.table != table {
            return Ok(Response::Block(Err(format!(
                "a block for {} was sent to group {group} of table {table}",
                block.table
            ))));
        }
        // The table was dropped, or dropped and created again with a group of its own,
        // after this block was proposed: its data is not this group's any more.
        if self
            .state
            .placements()
            .of(table)
            .is_none_or(|p| p.group != group)
        {
            return Ok(Response::Block(Err(format!(
                "table {table} does not exist (any more) in group {group}"
            ))));
        }
        let writer = fence.as_ref().map(|f| crate::table::Writer {
            node: f.node,
            kafka_table: f.slot.table.clone(),
            epoch: f.epoch,
            log_index: index,
        });
        Ok(match self.state.apply_block(block, writer) {
            Ok(outcome) => Response::Block(Ok(outcome)),
            Err(crate::state::StateError::NoTable(t)) => {
                Response::Block(Err(format!("table {t} does not exist")))
            }
            Err(e) => return Err(sm_write(e)),
        })
    }

    /// Copies the replicated cluster id into the transport's cell.
    fn learn_cluster_id(&self) -> Result<(), StorageError> {
        if let Some(id) = self.state.cluster_id().map_err(sm_read)? {
            if let Ok(mut cell) = self.cluster_id.write() {
                *cell = id;
            }
        }
        Ok(())
    }

    fn build(
        &self,
        last_applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, Member>,
    ) -> Result<StoredSnapshot, StorageError> {
        let image = match &self.scope {
            Scope::Meta => self.state.export_meta(),
            Scope::Table { table, .. } => self.state.export_table(table),
        }
        .map_err(snap_err)?;
        let data = encode(&SnapshotContent { image }).map_err(snap_err)?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("0-0-{}", data.len()),
        };
        Ok(StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            },
            data,
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let stored = {
            let _gate = self.gate.lock().await;
            let applied: Option<LogId<NodeId>> =
                self.get::<Option<LogId<NodeId>>>(APPLIED)?.flatten();
            let membership: StoredMembership<NodeId, Member> =
                self.get(MEMBERSHIP)?.unwrap_or_default();
            let this = self.clone();
            tokio::task::block_in_place(|| this.build(applied, membership))?
        };
        self.put(SNAPSHOT, &stored)?;
        self.tree.flush_async().await.map_err(snap_err)?;
        tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), "built a snapshot");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError> {
        let applied = self.get::<Option<LogId<NodeId>>>(APPLIED)?.flatten();
        let membership = self.get(MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _gate = self.gate.lock().await;
        let mut responses = Vec::new();
        let mut last = None;
        let mut membership = None;
        for entry in entries {
            last = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => Response::Done,
                EntryPayload::Normal(command) => {
                    tokio::task::block_in_place(|| self.apply_command(command, entry.log_id.index))?
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    Response::Done
                }
            };
            responses.push(response);
        }
        if let Some(m) = &membership {
            self.put(MEMBERSHIP, m)?;
            // Consumers are placed by membership: let the supervisor look again.
            self.state.notify();
        }
        if last.is_some() {
            // Not flushed: the next log append flushes it (sled flushes everything), and a
            // lost applied index only means entries are applied again, which is a no-op.
            self.put(APPLIED, &last)?;
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let _gate = self.gate.lock().await;
        let data = snapshot.into_inner();
        let content: SnapshotContent = decode(&data).map_err(snap_err)?;
        let state = self.state.clone();
        let scope = self.scope.clone();
        tokio::task::block_in_place(|| match &scope {
            Scope::Meta => state.import_meta(&content.image),
            Scope::Table { table, .. } => state.import_table(table, &content.image),
        })
        .map_err(snap_err)?;
        self.put(APPLIED, &meta.last_log_id)?;
        self.put(MEMBERSHIP, &meta.last_membership)?;
        self.put(
            SNAPSHOT,
            &StoredSnapshot {
                meta: meta.clone(),
                data,
            },
        )?;
        self.tree.flush_async().await.map_err(snap_err)?;
        self.learn_cluster_id()?;
        self.state.notify();
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.get::<StoredSnapshot>(SNAPSHOT)?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
