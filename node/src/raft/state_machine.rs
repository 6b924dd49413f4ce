//! The state machine of the `meta` group: applies commands to the node's state, and builds
//! and installs snapshots of it.
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
use crate::cluster::assignment::Owner;
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

/// The snapshot's content: the replicated state as of `meta.last_log_id`.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotContent {
    image: StateImage,
}

#[derive(Clone)]
pub struct StateMachine {
    state: Arc<NodeState>,
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
        state: Arc<NodeState>,
        cluster_id: ClusterIdCell,
    ) -> Result<StateMachine, sled::Error> {
        Ok(StateMachine {
            state,
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
            Command::Block {
                fence: Some(fence), ..
            } if state.assignments().owner(&fence.slot)
                != Some(Owner {
                    node: fence.node,
                    epoch: fence.epoch,
                }) =>
            {
                let current = state.assignments().owner(&fence.slot);
                Response::Block(Err(format!(
                    "fenced: {} belongs to {} now, not to node {} at epoch {}",
                    fence.slot,
                    current.map_or("nobody".to_string(), |o| format!(
                        "node {} at epoch {}",
                        o.node, o.epoch
                    )),
                    fence.node,
                    fence.epoch
                )))
            }
            Command::Block { block, fence } => match state.apply_block(
                block,
                fence.as_ref().map(|f| crate::table::Writer {
                    node: f.node,
                    kafka_table: f.slot.table.clone(),
                    epoch: f.epoch,
                    log_index: index,
                }),
            ) {
                Ok(outcome) => Response::Block(Ok(outcome)),
                // The table was dropped after the block was proposed: refused, like any
                // write to a missing table.
                Err(crate::state::StateError::NoTable(t)) => {
                    Response::Block(Err(format!("table {t} does not exist")))
                }
                Err(e) => return Err(sm_write(e)),
            },
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
        let image = self.state.export().map_err(snap_err)?;
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
        tokio::task::block_in_place(|| state.import(&content.image)).map_err(snap_err)?;
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
