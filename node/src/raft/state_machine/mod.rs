//! The state machine of a Raft group: applies its commands to the node's state, and
//! builds and installs snapshots (`snapshot`) of the part of the state the group owns:
//! the catalog, assignment and placements for `meta`, one table's replica for a data
//! group.
//!
//! Applying is deterministic: a command's effect depends only on the command and the
//! state. The applied log id is written after the command's own atomic write, so a crash
//! between the two re-applies that command on restart; every command is idempotent under
//! re-apply (a block's source range or hash is already stored, a table already exists),
//! which keeps the replicas equal without a multi-tree transaction.

// openraft's storage traits fix the error type, a large one; boxing it is not ours to do.
#![allow(clippy::result_large_err)]

mod snapshot;

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::Serialize;

use super::network::ClusterIdCell;
use super::snapshot_data::{SnapshotData, SnapshotFileError};
use super::snapshot_dirs::GroupSnapshots;
use super::{
    decode, encode, BlockRefused, Command, Member, NodeId, Response, StorageError, TypeConfig,
};
use crate::state::{NodeState, StateError, StateImage};

const APPLIED: &[u8] = b"applied";

/// The log index a group's state machine has applied, as its tree holds it: what the log
/// store waits for before it purges (see `LogStore::purge`).
pub fn applied_index(sm_tree: &sled::Tree) -> Result<Option<u64>, sled::Error> {
    Ok(sm_tree
        .get(APPLIED)?
        .and_then(|bytes| decode::<Option<LogId<NodeId>>>(&bytes).ok().flatten())
        .map(|l| l.index))
}

/// The tree of a group's state machine.
pub fn sm_tree_name(group: &str) -> String {
    format!("raft/{group}/sm")
}
const MEMBERSHIP: &[u8] = b"membership";

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

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("group {group}: {source}")]
    Files {
        group: String,
        #[source]
        source: SnapshotFileError,
    },
    #[error("group {group}: snapshot of the state: {source}")]
    State {
        group: String,
        #[source]
        source: StateError,
    },
    #[error("group {group}: snapshot directory: {source}")]
    Dir {
        group: String,
        #[source]
        source: std::io::Error,
    },
    #[error("group {group}: a snapshot task stopped: {reason}")]
    Task { group: String, reason: String },
    #[error("group {group}: storage: {source}")]
    Storage {
        group: String,
        #[source]
        source: sled::Error,
    },
    #[error("group {group}: the record of the current snapshot is unreadable: {reason}")]
    Record { group: String, reason: String },
}

#[derive(Clone)]
pub struct StateMachine {
    state: Arc<NodeState>,
    scope: Scope,
    group: String,
    tree: sled::Tree,
    /// Held while applying and while pinning a snapshot, so a snapshot is exactly the
    /// state at its last log id.
    gate: Arc<tokio::sync::Mutex<()>>,
    cluster_id: ClusterIdCell,
    snapshots: Arc<GroupSnapshots>,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl StateMachine {
    /// Opens a group's state machine; `snapshots` is the group's snapshot directory,
    /// whose leftovers (of a crash, or of a failed build or install) are removed here.
    pub fn open(
        db: &sled::Db,
        group: &str,
        scope: Scope,
        state: Arc<NodeState>,
        cluster_id: ClusterIdCell,
        snapshots: Arc<GroupSnapshots>,
    ) -> Result<StateMachine, SnapshotError> {
        let tree = db
            .open_tree(sm_tree_name(group))
            .map_err(|source| SnapshotError::Storage {
                group: group.to_string(),
                source,
            })?;
        let sm = StateMachine {
            state,
            scope,
            group: group.to_string(),
            cluster_id,
            tree,
            gate: Arc::new(tokio::sync::Mutex::new(())),
            snapshots,
        };
        sm.recover_snapshots()?;
        Ok(sm)
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
            Command::Block { block, .. } => Response::Block(Err(BlockRefused::SentToMeta {
                table: block.table.clone(),
            })),
            Command::SetPosition { table, .. } => {
                Response::Position(Err(BlockRefused::SentToMeta {
                    table: table.clone(),
                }))
            }
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
        if let Command::SetPosition {
            table: target,
            key,
            kafka_table,
            next_offset,
            fence_epoch,
        } = command
        {
            if let Err(refused) = self.owns(table, group, target) {
                return Ok(Response::Position(Err(refused)));
            }
            return Ok(
                match self
                    .state
                    .set_position(table, key, kafka_table, *next_offset, *fence_epoch)
                {
                    Ok(previous) => Response::Position(Ok(previous)),
                    Err(crate::state::StateError::NoTable(t)) => {
                        Response::Position(Err(BlockRefused::TableGone {
                            table: t,
                            group: group.to_string(),
                        }))
                    }
                    Err(e) => return Err(sm_write(e)),
                },
            );
        }
        let Command::Block { block, fence } = command else {
            return Ok(Response::Block(Err(BlockRefused::NotABlock {
                group: group.to_string(),
                table: table.to_string(),
                command: command.to_string(),
            })));
        };
        if let Err(refused) = self.owns(table, group, &block.table) {
            return Ok(Response::Block(Err(refused)));
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
                Response::Block(Err(BlockRefused::TableGone {
                    table: t,
                    group: group.to_string(),
                }))
            }
            Err(e) => return Err(sm_write(e)),
        })
    }

    /// Whether a write for `written` belongs to this group of `table`.
    fn owns(&self, table: &str, group: &str, written: &str) -> Result<(), BlockRefused> {
        if written != table {
            return Err(BlockRefused::WrongGroup {
                block_table: written.to_string(),
                group: group.to_string(),
                table: table.to_string(),
            });
        }
        // The table was dropped, or dropped and created again with a group of its own,
        // after this write was proposed: its data is not this group's any more.
        if self
            .state
            .placements()
            .of(table)
            .is_none_or(|p| p.group != group)
        {
            return Err(BlockRefused::TableGone {
                table: table.to_string(),
                group: group.to_string(),
            });
        }
        Ok(())
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        self.begin_receiving().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        self.install(meta, *snapshot).await?;
        self.learn_cluster_id()?;
        self.state.notify();
        tracing::info!(group = %self.group, snapshot = %meta.snapshot_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.current_snapshot().await
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use openraft::RaftSnapshotBuilder;

    use super::*;
    use crate::raft::snapshot_data;
    use crate::raft::snapshot_data::tests::{read_all, stream};
    use crate::raft::snapshot_dirs::SnapshotDirs;
    use crate::table::{Block, MergePolicy, SourceRange};
    use arrow::array::{RecordBatch, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use openraft::CommittedLeaderId;

    /// A node's storage as a data dir lays it out, and the state machine of table `t`'s
    /// group `g` (or of `meta`) on it.
    struct Node {
        db: sled::Db,
        state: Arc<NodeState>,
        sm: StateMachine,
    }

    impl Node {
        fn open(root: &Path, scope: Scope) -> Node {
            let db = sled::open(root.join("sled")).expect("sled");
            let state =
                Arc::new(NodeState::open(db.clone(), root.join("table-parts")).expect("state"));
            Node::reopen(root, db, state, scope)
        }

        /// The state machine opened again on the same storage, as by a new process.
        fn reopen(root: &Path, db: sled::Db, state: Arc<NodeState>, scope: Scope) -> Node {
            let group = match &scope {
                Scope::Meta => super::super::META_GROUP.to_string(),
                Scope::Table { group, .. } => group.clone(),
            };
            let dirs = SnapshotDirs::new(root.join("raft-snapshots"));
            let sm = StateMachine::open(
                &db,
                &group,
                scope,
                state.clone(),
                Arc::default(),
                dirs.group(&group),
            )
            .expect("state machine");
            Node { db, state, sm }
        }

        fn snapshot_dirs(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.sm.snapshots.dir())
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }

        /// Marks the state as applied through `index`, as the log would.
        async fn applied(&mut self, index: u64) {
            self.sm
                .apply([Entry::<TypeConfig> {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                    payload: EntryPayload::Blank,
                }])
                .await
                .expect("apply");
        }
    }

    fn table_scope() -> Scope {
        Scope::Table {
            table: "t".into(),
            group: "g".into(),
        }
    }

    fn batch(values: Vec<u32>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::UInt32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(UInt32Array::from(values))]).expect("batch")
    }

    fn write_rows(node: &Node, first: i64, count: u32) {
        let values: Vec<u32> = (0..count).map(|v| v * 7 + first as u32).collect();
        let block = Block::new(
            "t",
            Some(SourceRange {
                source: "mv".into(),
                topic: "topic".into(),
                partition: 0,
                first_offset: first,
                last_offset: first + i64::from(count) - 1,
            }),
            &batch(values),
            &["a".to_string()],
        )
        .expect("block");
        node.state
            .tables
            .get("t")
            .expect("t")
            .apply(&block, &["a".to_string()], 100, None)
            .expect("apply");
    }

    fn rows(node: &Node) -> Vec<u32> {
        let mut out: Vec<u32> = node
            .state
            .tables
            .get("t")
            .expect("t")
            .scan(None)
            .expect("scan")
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("u32")
                    .values()
                    .to_vec()
            })
            .collect();
        out.sort();
        out
    }

    /// Sends a snapshot to a node as openraft's chunked transport does, in small chunks
    /// with a retry, and installs it there.
    async fn send(snapshot: Snapshot<TypeConfig>, to: &mut Node) {
        let mut data = snapshot.snapshot;
        let mut receiver = to.sm.begin_receiving_snapshot().await.expect("begin");
        stream(&mut data, &mut receiver, &[5, 4099, 100_003], &[3]).await;
        to.sm
            .install_snapshot(&snapshot.meta, receiver)
            .await
            .expect("install");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_built_then_merged_away_is_still_sent_and_installed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut a = Node::open(&tmp.path().join("a"), table_scope());
        for i in 0..3 {
            write_rows(&a, i * 10, 10);
        }
        a.applied(5).await;
        let expected = rows(&a);
        let built = a.sm.build_snapshot().await.expect("build");
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(5));
        let first_dirs = a.snapshot_dirs();
        assert_eq!(first_dirs.len(), 1, "{first_dirs:?}");
        let built_files = snapshot_data::read_image(&a.sm.snapshots.path(&first_dirs[0]))
            .expect("image")
            .files;
        assert_eq!(built_files.len(), 3);
        let store = a.state.tables.get("t").expect("t");
        let parts_before: Vec<PathBuf> = store
            .parts()
            .expect("parts")
            .iter()
            .map(|p| p.path().to_path_buf())
            .collect();
        assert_eq!(parts_before.len(), 3);

        // The table merges its parts away, and a newer snapshot replaces the first one.
        let policy = MergePolicy {
            fan_in: 2,
            max_parts: 1,
            ..MergePolicy::default()
        };
        while store
            .merge_step(&batch(vec![]).schema(), &["a".to_string()], &policy)
            .expect("merge")
            .is_some()
        {}
        assert!(parts_before.iter().all(|p| !p.exists()), "merged away");
        // The snapshot alone keeps the merged-away parts now: what makes a group build
        // a new one even with no new entry.
        let held = |store: &crate::table::TableStore| {
            store
                .parts()
                .expect("parts")
                .iter()
                .filter_map(|p| {
                    p.path()
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .collect::<std::collections::HashSet<String>>()
        };
        let pinned_parts: u64 = built_files.iter().map(|(_, len)| len).sum();
        assert_eq!(
            a.sm.snapshots.bytes_only_pinned(&held(&store)),
            pinned_parts
        );
        write_rows(&a, 30, 5);
        a.applied(6).await;
        a.sm.build_snapshot().await.expect("build again");
        assert_eq!(a.sm.snapshots.bytes_only_pinned(&held(&store)), 0);
        let dirs = a.snapshot_dirs();
        assert_eq!(dirs.len(), 1, "only the newest is kept: {dirs:?}");
        assert_ne!(dirs, first_dirs);

        // The first snapshot, read since it was built, is sent whole anyway.
        let mut b = Node::open(&tmp.path().join("b"), table_scope());
        write_rows(&b, 0, 3);
        send(built, &mut b).await;
        assert_eq!(rows(&b), expected);
        assert_eq!(
            b.state
                .tables
                .get("t")
                .expect("t")
                .row_count()
                .expect("rows"),
            30
        );
        let (applied, _) = b.sm.applied_state().await.expect("applied");
        assert_eq!(applied.map(|l| l.index), Some(5));
        // The installed snapshot is b's current one, to send on; only it is kept, and
        // nothing is left of the staging or the install.
        let current =
            b.sm.get_current_snapshot()
                .await
                .expect("get")
                .expect("some");
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(5));
        assert_eq!(b.snapshot_dirs().len(), 1, "{:?}", b.snapshot_dirs());
        assert!(b.snapshot_dirs()[0].starts_with("snap-"));

        // And a third node installs it from b.
        let mut c = Node::open(&tmp.path().join("c"), table_scope());
        send(current, &mut c).await;
        assert_eq!(rows(&c), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_current_snapshot_is_found_again_after_a_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("a");
        let mut a = Node::open(&root, table_scope());
        write_rows(&a, 0, 10);
        a.applied(3).await;
        let built = a.sm.build_snapshot().await.expect("build");
        let mut data = built.snapshot;
        let bytes = read_all(&mut data).await;
        let group_dir = a.sm.snapshots.dir().to_path_buf();

        // Left by a crash: a stream being received, a build not recorded yet.
        std::fs::create_dir_all(group_dir.join("staging-00ff/files")).expect("mkdir");
        std::fs::write(group_dir.join("staging-00ff/files/x.parquet"), b"half").expect("write");
        std::fs::create_dir_all(group_dir.join("snap-00ff/files")).expect("mkdir");
        let Node { db, state, .. } = a;
        let mut a = Node::reopen(&root, db, state, table_scope());
        assert_eq!(a.snapshot_dirs().len(), 1, "{:?}", a.snapshot_dirs());
        let current =
            a.sm.get_current_snapshot()
                .await
                .expect("get")
                .expect("some");
        assert_eq!(current.meta, built.meta);
        let mut data = current.snapshot;
        assert_eq!(read_all(&mut data).await, bytes);

        // A record whose directory went missing is dropped: openraft builds anew.
        std::fs::remove_dir_all(group_dir.join(&a.snapshot_dirs()[0])).expect("rm");
        let Node { db, state, .. } = a;
        let mut a = Node::reopen(&root, db, state, table_scope());
        assert!(a.sm.get_current_snapshot().await.expect("get").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_meta_group_snapshots_without_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut a = Node::open(&tmp.path().join("a"), Scope::Meta);
        a.state.set_cluster_id("c-1").expect("cluster id");
        a.applied(2).await;
        let built = a.sm.build_snapshot().await.expect("build");
        let mut b = Node::open(&tmp.path().join("b"), Scope::Meta);
        b.state.set_cluster_id("c-old").expect("cluster id");
        send(built, &mut b).await;
        assert_eq!(b.state.cluster_id().expect("id").as_deref(), Some("c-1"));
    }

    /// Routes the Raft messages of in-process nodes straight to their `Raft`.
    #[derive(Clone, Default)]
    struct Router(Arc<std::sync::Mutex<std::collections::BTreeMap<NodeId, super::super::Raft>>>);

    struct Link {
        router: Router,
        target: NodeId,
    }

    impl openraft::network::RaftNetworkFactory<TypeConfig> for Router {
        type Network = Link;

        async fn new_client(&mut self, target: NodeId, _node: &Member) -> Link {
            Link {
                router: self.clone(),
                target,
            }
        }
    }

    type RpcResult<T, E = openraft::error::Infallible> =
        Result<T, openraft::error::RPCError<NodeId, Member, openraft::error::RaftError<NodeId, E>>>;

    impl Link {
        fn raft(&self) -> Result<super::super::Raft, openraft::error::Unreachable> {
            self.router
                .0
                .lock()
                .expect("router")
                .get(&self.target)
                .cloned()
                .ok_or_else(|| {
                    openraft::error::Unreachable::new(&std::io::Error::other("no such node"))
                })
        }

        fn remote<E: std::error::Error>(
            &self,
            e: openraft::error::RaftError<NodeId, E>,
        ) -> openraft::error::RPCError<NodeId, Member, openraft::error::RaftError<NodeId, E>>
        {
            openraft::error::RPCError::RemoteError(openraft::error::RemoteError::new(
                self.target,
                e,
            ))
        }
    }

    impl openraft::network::RaftNetwork<TypeConfig> for Link {
        async fn append_entries(
            &mut self,
            rpc: openraft::raft::AppendEntriesRequest<TypeConfig>,
            _option: openraft::network::RPCOption,
        ) -> RpcResult<openraft::raft::AppendEntriesResponse<NodeId>> {
            let raft = self.raft()?;
            raft.append_entries(rpc).await.map_err(|e| self.remote(e))
        }

        async fn install_snapshot(
            &mut self,
            rpc: openraft::raft::InstallSnapshotRequest<TypeConfig>,
            _option: openraft::network::RPCOption,
        ) -> RpcResult<
            openraft::raft::InstallSnapshotResponse<NodeId>,
            openraft::error::InstallSnapshotError,
        > {
            let raft = self.raft()?;
            raft.install_snapshot(rpc).await.map_err(|e| self.remote(e))
        }

        async fn vote(
            &mut self,
            rpc: openraft::raft::VoteRequest<NodeId>,
            _option: openraft::network::RPCOption,
        ) -> RpcResult<openraft::raft::VoteResponse<NodeId>> {
            let raft = self.raft()?;
            raft.vote(rpc).await.map_err(|e| self.remote(e))
        }
    }

    fn member(id: NodeId) -> Member {
        Member {
            name: format!("n{id}"),
            addr: format!("127.0.0.1:{id}"),
        }
    }

    /// Table `t` created and placed in group `g` on a node, as the meta group would.
    fn create_table(node: &Node) {
        use crate::catalog::types::ChType;
        use crate::catalog::{CatalogCommand, Column, Engine, MergeTreeSettings, TableDef};
        node.state
            .apply_catalog(&CatalogCommand::CreateTable {
                def: TableDef {
                    name: "t".into(),
                    columns: vec![Column {
                        name: "a".into(),
                        ty: ChType::UInt32,
                    }],
                    engine: Engine::MergeTree {
                        engine_name: "MergeTree".into(),
                        order_by: vec!["a".into()],
                        settings: MergeTreeSettings::default(),
                    },
                    detached: false,
                    layout: Default::default(),
                },
                if_not_exists: false,
            })
            .expect("create table");
        node.state
            .set_placement(
                "t",
                Some(&crate::topology::Placement {
                    group: "g".into(),
                    members: vec![1, 2],
                    initial: vec![1],
                    generation: 0,
                }),
            )
            .expect("place");
    }

    /// The whole path through openraft: a leader whose log no longer holds the table's
    /// blocks brings a new member in by a snapshot, which its chunked transport sends in
    /// many small chunks through `SnapshotData`, and the member installs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn openraft_brings_a_new_member_in_by_a_chunked_snapshot() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Arc::new(
            openraft::Config {
                cluster_name: "test".into(),
                heartbeat_interval: 50,
                election_timeout_min: 200,
                election_timeout_max: 400,
                snapshot_policy: openraft::SnapshotPolicy::Never,
                snapshot_max_chunk_size: 1021,
                max_in_snapshot_log_to_keep: 0,
                ..Default::default()
            }
            .validate()
            .expect("config"),
        );
        let router = Router::default();
        let mut nodes = Vec::new();
        for id in [1, 2] {
            let node = Node::open(&tmp.path().join(format!("n{id}")), table_scope());
            create_table(&node);
            let log = crate::raft::log_store::LogStore::open(&node.db, "g", None).expect("log");
            let raft =
                super::super::Raft::new(id, config.clone(), router.clone(), log, node.sm.clone())
                    .await
                    .expect("raft");
            router.0.lock().expect("router").insert(id, raft.clone());
            nodes.push((node, raft));
        }
        let (leader, follower) = (&nodes[0].1, &nodes[1].1);
        leader
            .initialize(std::collections::BTreeMap::from([(1, member(1))]))
            .await
            .expect("initialize");
        leader
            .wait(Some(std::time::Duration::from_secs(10)))
            .current_leader(1, "leader")
            .await
            .expect("leader");
        let mut last = None;
        for i in 0..6 {
            let values: Vec<u32> = (0..500).map(|v| v * 13 + i).collect();
            let block = Block::new(
                "t",
                Some(SourceRange {
                    source: "mv".into(),
                    topic: "topic".into(),
                    partition: 0,
                    first_offset: i64::from(i) * 500,
                    last_offset: i64::from(i) * 500 + 499,
                }),
                &batch(values),
                &["a".to_string()],
            )
            .expect("block");
            // The write's own log id: the metrics may not show it applied yet.
            let written = leader
                .client_write(Command::Block { block, fence: None })
                .await
                .expect("write");
            last = Some(written.log_id.index);
        }
        leader.trigger().snapshot().await.expect("snapshot");
        leader
            .wait(Some(std::time::Duration::from_secs(10)))
            .metrics(
                |m| m.snapshot.map(|l| l.index) == last && m.purged.map(|l| l.index) == last,
                "snapshot built and log purged",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}: {:?}", leader.metrics().borrow()));

        // Many chunks, not one.
        let mut sent = nodes[0]
            .0
            .sm
            .clone()
            .get_current_snapshot()
            .await
            .expect("get")
            .expect("some")
            .snapshot;
        let size = read_all(&mut sent).await.len() as u64;
        assert!(size > 10 * config.snapshot_max_chunk_size, "{size}");

        leader
            .add_learner(2, member(2), true)
            .await
            .expect("add learner");
        follower
            .wait(Some(std::time::Duration::from_secs(10)))
            .applied_index_at_least(last, "the follower installed the snapshot")
            .await
            .expect("applied");
        let (follower_node, _) = &nodes[1];
        assert_eq!(rows(follower_node), rows(&nodes[0].0));
        assert_eq!(rows(follower_node).len(), 3000);
        let metrics = follower.metrics().borrow().clone();
        assert_eq!(metrics.snapshot.map(|l| l.index), last);
        for (_, raft) in &nodes {
            raft.shutdown().await.expect("shutdown");
        }
    }
}
