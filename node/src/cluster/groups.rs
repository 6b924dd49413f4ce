//! The data groups: one Raft group per table, run by the nodes the table is placed on.
//!
//! A keeper on every node starts the groups placed on it, forms a new group with its first
//! members, stops (and deletes) the groups it no longer holds, and, where this node leads
//! a group, moves the group's members to its placement: learners first, then voters.
//!
//! Writes and reads of a table go to the table's group wherever it runs: a node that holds
//! no replica of a table forwards its blocks to a member and reads the table from one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use openraft::error::{InitializeError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::placement::{self, Placement};
use super::{Cluster, ClusterError, ProposeFailure, WRITE_TIMEOUT};
use crate::raft::log_store::{Formation, LogStore};
use crate::raft::network::{self, Method, Network};
use crate::raft::snapshot_dirs::GroupSnapshots;
use crate::raft::state_machine::{Scope, StateMachine};
use crate::raft::{
    data_raft_config, Command, Member, NodeId, Raft, Response, META_GROUP, SNAPSHOT_LOG_BYTES,
};
use crate::raft_proto::{ScanChunk, ScanRequest};
use crate::table::{PartRef, PositionKey, WriterLogEntry};

/// How often the keeper looks at the placements without being woken.
const KEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A learner this close to the leader's log is made a voter.
const CAUGHT_UP_ENTRIES: u64 = 64;
/// How long a read from another node's replica may take; for a scan, how long the
/// replica may take to start streaming.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node taken out of a group keeps its replica running while the group's leader
/// moves the members: the group may need this node's vote to commit the change.
const LEAVE_GRACE: Duration = Duration::from_secs(60);
/// How long a read waits for some member to run a table's group (one placed a moment ago
/// starts within a keeper pass), and how often it asks again meanwhile.
const GROUP_START_WAIT: Duration = Duration::from_secs(3);
const GROUP_START_RETRY: Duration = Duration::from_millis(50);
/// How long a member about to form a group waits for each other first member to say
/// whether it already holds the group's log.
const FORMED_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the other first members of a new group leave forming it to the first one.
/// Formed by all at once, each voted for itself and no one won until an election timeout
/// (1 to 2 s) passed; they step in only when the first member has not reached them.
pub(super) const FORM_GRACE: Duration = Duration::from_secs(5);
/// How often a data group's log and snapshot are weighed against `SNAPSHOT_LOG_BYTES`.
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often the first member of a new group campaigns again while it has no leader: its
/// first votes often reach members whose keeper has not started the group yet, and
/// openraft would otherwise wait a whole election timeout before asking again.
const FIRST_ELECTION_RETRY: Duration = Duration::from_millis(150);

/// A table's data group as run on this node.
pub struct DataGroup {
    pub group: String,
    pub table: String,
    pub raft: Raft,
    pub(super) log_store: LogStore,
    /// Set while this node, as leader, changes the group's members.
    changing: AtomicBool,
    started_at: Instant,
    /// The task that asks for a snapshot by the log's bytes; stopped with the group.
    snapshot_trigger: tokio::task::AbortHandle,
}

/// The data groups this node runs.
#[derive(Default)]
pub struct DataGroups {
    running: std::sync::RwLock<BTreeMap<String, Arc<DataGroup>>>,
    /// One keeper pass at a time.
    pass: tokio::sync::Mutex<()>,
    /// The address that last accepted a write for each group this node does not run.
    leaders: std::sync::Mutex<BTreeMap<String, String>>,
    /// When this node was taken out of each group it still runs.
    left_at: std::sync::Mutex<BTreeMap<String, Instant>>,
}

/// A read of a table's replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TableRead {
    /// The stored next offset of a source partition.
    Position(PositionKey),
    RowCount,
    WriterLog,
    /// Whether the replica holds (or held) entries of its group.
    Formed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReadRequest {
    pub table: String,
    /// Read what every write acknowledged before the read holds.
    pub linearizable: bool,
    pub read: TableRead,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TableReadReply {
    Position(Option<i64>),
    RowCount(u64),
    WriterLog(Vec<WriterLogEntry>),
    Formed(bool),
}

/// A replica's part count past which writes to its table slow down, and past which they
/// are refused (ClickHouse's `parts_to_delay_insert` and `parts_to_throw_insert`, scaled to
/// a merge policy that keeps tens of parts).
const PARTS_TO_DELAY_INSERT: usize = 150;
const PARTS_TO_THROW_INSERT: usize = 300;

/// What a scan of a table reads.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    /// The columns, in the order the scan yields them; at least one.
    pub columns: Vec<String>,
    pub limit: Option<usize>,
    /// See every write acknowledged before the scan.
    pub linearizable: bool,
}

/// Where a scan of a table reads from.
pub enum TableScan {
    /// This node's replica: its parts, pinned, past the read barrier if asked.
    Local(Vec<PartRef>),
    /// A member's replica, streaming the rows as the chunks of one Arrow IPC stream.
    Remote {
        from: String,
        chunks: Box<tonic::Streaming<ScanChunk>>,
    },
}

/// One data group as `system.raft_groups` shows it.
#[derive(Debug, Clone, Default)]
pub struct GroupRow {
    pub group: String,
    pub table: String,
    pub role: String,
    pub leader: String,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub voters: Vec<String>,
    pub rows: u64,
    /// The local replica's part files: how many, and their bytes.
    pub parts: u64,
    pub bytes_on_disk: u64,
}

/// Campaigns again every `FIRST_ELECTION_RETRY` until the new group has a leader, for at
/// most an election timeout; only the first member campaigns this early, so the retries
/// cannot split the vote.
fn spawn_first_election(raft: Raft, group: String) {
    tokio::spawn(async move {
        let give_up = Instant::now() + Duration::from_millis(raft.config().election_timeout_max);
        while Instant::now() < give_up {
            tokio::time::sleep(FIRST_ELECTION_RETRY).await;
            if raft.metrics().borrow().current_leader.is_some() {
                return;
            }
            if let Err(e) = raft.trigger().elect().await {
                tracing::debug!(%group, error = %e, "campaigning in a new group failed");
                return;
            }
        }
    });
}

/// What the snapshot trigger of a data group weighs.
struct SnapshotWatch {
    raft: Raft,
    log: LogStore,
    snapshots: Arc<GroupSnapshots>,
    state: Arc<crate::state::NodeState>,
    table: String,
    group: String,
}

impl SnapshotWatch {
    /// The bytes of parts only the current snapshot keeps on disk: merges replaced them
    /// in the table. Checked only when the table's part list changed.
    fn only_pinned(&self, seen: &mut Vec<String>) -> u64 {
        let parts = match self.state.tables.existing(&self.table) {
            Ok(Some(store)) => store.parts().unwrap_or_default(),
            _ => return 0,
        };
        let held: Vec<String> = parts
            .iter()
            .filter_map(|p| p.path().file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if held == *seen {
            return 0;
        }
        let bytes = self
            .snapshots
            .bytes_only_pinned(&held.iter().cloned().collect());
        if bytes <= SNAPSHOT_LOG_BYTES {
            *seen = held;
        }
        bytes
    }
}

/// Asks a data group's Raft for a snapshot whenever the blocks applied since its last one
/// weigh more than `SNAPSHOT_LOG_BYTES` (openraft's own policy counts entries only, and a
/// table's blocks stay in its log, a second copy of its rows, until a snapshot holds
/// them), or when its current snapshot alone keeps that many bytes of parts merges
/// replaced (a snapshot is its parts' hard links: on a table that takes no writes, it
/// would keep them for good). Checks at most every `SNAPSHOT_CHECK_INTERVAL`; ends when
/// the Raft stops.
fn spawn_snapshot_trigger(watch: SnapshotWatch) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut seen_parts = Vec::new();
        let mut metrics = watch.raft.metrics();
        loop {
            let (running, snapshot, applied) = {
                let m = metrics.borrow_and_update();
                (
                    m.running_state.is_ok(),
                    m.snapshot.map(|l| l.index),
                    m.last_applied.map(|l| l.index),
                )
            };
            if !running {
                return;
            }
            let in_log = applied.map_or(0, |applied| watch.log.block_bytes(snapshot, applied));
            let only_pinned = watch.only_pinned(&mut seen_parts);
            if in_log > SNAPSHOT_LOG_BYTES || only_pinned > SNAPSHOT_LOG_BYTES {
                tracing::debug!(group = %watch.group, in_log, only_pinned, "asking for a snapshot: over budget");
                // A build in progress makes this a no-op; an error means the Raft stopped.
                if watch.raft.trigger().snapshot().await.is_err() {
                    return;
                }
            }
            // A tick, not a wait for new metrics: merges change what a snapshot pins on a
            // table that takes no writes.
            tokio::time::sleep(SNAPSHOT_CHECK_INTERVAL).await;
            if metrics.has_changed().is_err() {
                return;
            }
        }
    })
    .abort_handle()
}

/// A group id for a table placed for the first time: readable, and new every time.
pub fn new_group_id(table: &str) -> String {
    let readable: String = table
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    format!("{readable}.{:016x}", rand::random::<u64>())
}

/// Deletes a group's block files; a failure is logged (they are only space).
fn remove_payload_dir(dir: &std::path::Path) {
    if let Err(e) = crate::files::remove_dir(dir) {
        tracing::warn!(error = %e, "deleting a group's block files");
    }
}

/// Whether a Raft stopped on openraft's replication race rather than on storage: a
/// follower's higher vote ends the leader's replication task to it, and a snapshot sent
/// to that task before the leader steps down fails as a storage error (openraft 0.9). The
/// stored state is whole, so the group starts again from it.
fn is_replication_race(fatal: &openraft::error::Fatal<NodeId>) -> bool {
    let race = openraft::StorageIOError::<NodeId>::read_snapshot(
        None,
        openraft::AnyError::error("replication channel closed"),
    );
    let race = openraft::error::Fatal::<NodeId>::StorageError(race.into());
    fatal.to_string() == race.to_string()
}

fn stopped_on_race(raft: &Raft) -> bool {
    matches!(&raft.metrics().borrow().running_state, Err(e) if is_replication_race(e))
}

/// The group a Raft tree of this node belongs to (`raft/<group>/<part>`).
fn group_of_tree(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("raft/")?;
    let (group, _) = rest.rsplit_once('/')?;
    Some(group)
}

impl Cluster {
    /// The data group `group`, if this node runs it.
    pub fn data_group(&self, group: &str) -> Option<Arc<DataGroup>> {
        self.groups
            .running
            .read()
            .ok()
            .and_then(|r| r.get(group).cloned())
    }

    /// The Raft of `group` (`meta` or a data group), if this node runs it.
    pub fn raft_of(&self, group: &str) -> Option<Raft> {
        if group == META_GROUP {
            return Some(self.raft.clone());
        }
        self.data_group(group).map(|g| g.raft.clone())
    }

    fn running_groups(&self) -> Vec<Arc<DataGroup>> {
        self.groups
            .running
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The group of `table` if this node runs it.
    pub fn hosted_group_of(&self, table: &str) -> Option<Arc<DataGroup>> {
        let placements = self.state.placements();
        let group = &placements.of(table)?.group;
        self.data_group(group)
    }

    /// A cluster member's name and address, from the meta group's membership.
    fn member_of(&self, id: NodeId) -> Option<Member> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// On the meta leader: proposes a placement for every stored table that has none or
    /// whose members must change.
    pub async fn place_tables(&self) {
        let catalog = self.state.catalog();
        let wanted: Vec<placement::Wanted<'_>> = catalog
            .tables
            .values()
            .filter_map(|t| {
                t.replicas().map(|replicas| placement::Wanted {
                    table: &t.name,
                    replicas,
                })
            })
            .collect();
        let changes = placement::plan(
            &self.state.placements(),
            &wanted,
            &self.voters(),
            &self.live_voters(),
            new_group_id,
        );
        for (table, placement) in changes {
            tracing::info!(%table, group = %placement.group, members = ?placement.members, generation = placement.generation, "placing a table");
            let placed = self
                .write(Command::Place {
                    table: table.clone(),
                    placement: Some(placement),
                })
                .await;
            if let Err(e) = placed {
                tracing::warn!(%table, error = %e, "proposing a placement failed");
            }
        }
    }

    /// Runs the keeper: a pass whenever the meta state changes, and once a second.
    pub fn spawn_group_keeper(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut changes = this.state.watch_catalog();
            loop {
                this.keep_groups().await;
                tokio::select! {
                    _ = tokio::time::sleep(KEEP_INTERVAL) => {}
                    _ = changes.changed() => {}
                }
            }
        });
    }

    /// One pass of the keeper.
    pub async fn keep_groups(self: &Arc<Self>) {
        let _one = self.groups.pass.lock().await;
        let placements = self.state.placements();
        let catalog = self.state.catalog();
        let mine: BTreeMap<String, (String, Placement)> = if self.is_removed() {
            BTreeMap::new()
        } else {
            placements
                .tables
                .iter()
                .filter(|(t, p)| p.holds(self.node_id) && catalog.table(t).is_some())
                .map(|(t, p)| (p.group.clone(), (t.clone(), p.clone())))
                .collect()
        };
        for g in self.running_groups() {
            if mine.contains_key(&g.group) {
                self.left(&g.group, false);
                continue;
            }
            // Taken out of a group that goes on: this replica stays until the group no
            // longer counts on it (or for a grace period), so the change can commit.
            let goes_on = placements
                .of(&g.table)
                .filter(|p| p.group == g.group && !p.members.is_empty());
            if let Some(p) = goes_on {
                let metrics = g.raft.metrics().borrow().clone();
                let leads = metrics.current_leader == Some(self.node_id);
                if self.is_removed() {
                    // Removed from the cluster, this node no longer hears of placements:
                    // a member that does must lead the group and move its members.
                    g.raft.runtime_config().elect(false);
                    if leads {
                        self.spawn_hand_over(&g);
                    }
                } else if leads {
                    self.spawn_member_change(&g, p.clone());
                    continue;
                }
                let voter = metrics
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|id| id == self.node_id);
                if voter && self.left(&g.group, true) < LEAVE_GRACE {
                    continue;
                }
            }
            let holds_table = placements
                .of(&g.table)
                .is_some_and(|p| p.holds(self.node_id));
            self.left(&g.group, false);
            self.stop_group(&g, !holds_table).await;
        }
        for (group, (table, placement)) in &mine {
            let mut running = self.data_group(group);
            if let Some(g) = running.as_ref().filter(|g| stopped_on_race(&g.raft)) {
                self.halt_group(g).await;
                running = None;
            }
            let g = match running {
                Some(g) => g,
                None => match self.start_group(table, group).await {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::warn!(%table, %group, error = %e, "starting a table's group failed");
                        continue;
                    }
                },
            };
            self.form_group(&g, placement).await;
            if g.raft.metrics().borrow().current_leader == Some(self.node_id) {
                self.spawn_member_change(&g, placement.clone());
            }
        }
        self.drop_orphan_trees(&mine);
    }

    /// Hands a group's leadership to a follower, in the background.
    fn spawn_hand_over(self: &Arc<Self>, g: &Arc<DataGroup>) {
        if g.changing.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        let g = g.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            let released = this.hand_over(&g.raft, &g.group, deadline).await;
            tracing::info!(group = %g.group, released, "handing a group over: this node was removed");
            g.changing.store(false, Ordering::SeqCst);
        });
    }

    /// Records that this node left `group` (or forgets it); how long ago it left.
    fn left(&self, group: &str, left: bool) -> Duration {
        let Ok(mut left_at) = self.groups.left_at.lock() else {
            return Duration::ZERO;
        };
        if left {
            left_at
                .entry(group.to_string())
                .or_insert_with(Instant::now)
                .elapsed()
        } else {
            left_at.remove(group);
            Duration::ZERO
        }
    }

    async fn start_group(&self, table: &str, group: &str) -> Result<Arc<DataGroup>, ClusterError> {
        let log_store = LogStore::open(&self.db, group, self.disk.clone())?;
        let scope = Scope::Table {
            table: table.to_string(),
            group: group.to_string(),
        };
        let sm = StateMachine::open(
            &self.db,
            group,
            scope,
            self.state.clone(),
            self.cluster_id.clone(),
            self.snapshots.group(group),
        )?;
        let network = Network {
            group: group.to_string(),
            cluster_id: self.cluster_id.clone(),
            source: self.source_ip,
        };
        let config = data_raft_config("sluice").map_err(|e| ClusterError::Raft(e.to_string()))?;
        let raft = Raft::new(
            self.node_id,
            Arc::new(config),
            network,
            log_store.clone(),
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if self.is_draining() {
            raft.runtime_config().elect(false);
        }
        self.watch_storage(group, &raft);
        let snapshot_trigger = spawn_snapshot_trigger(SnapshotWatch {
            raft: raft.clone(),
            log: log_store.clone(),
            snapshots: self.snapshots.group(group),
            state: self.state.clone(),
            table: table.to_string(),
            group: group.to_string(),
        });
        let g = Arc::new(DataGroup {
            group: group.to_string(),
            table: table.to_string(),
            raft,
            log_store,
            changing: AtomicBool::new(false),
            started_at: Instant::now(),
            snapshot_trigger,
        });
        if let Ok(mut running) = self.groups.running.write() {
            running.insert(group.to_string(), g.clone());
        }
        tracing::info!(%table, %group, "started a table's group");
        Ok(g)
    }

    /// A new group is formed by its first member; the other first members form it too,
    /// with the same membership, when the first one has not reached them within
    /// `FORM_GRACE` (it may be down). A member that voted and got no entry in that time
    /// writes the first entry itself (`adopt_first_entry`).
    async fn form_group(&self, g: &DataGroup, placement: &Placement) {
        if !placement.forms(self.node_id) {
            return;
        }
        let voted_only = match g.log_store.formation() {
            Ok(Formation::Fresh) => false,
            Ok(Formation::VotedOnly) => true,
            Ok(Formation::Started) => return,
            Err(e) => {
                tracing::warn!(group = %g.group, error = %e, "reading a group's Raft state");
                return;
            }
        };
        let first = placement.forms_first(self.node_id);
        if (voted_only || !first) && g.started_at.elapsed() < FORM_GRACE {
            return;
        }
        let members: Option<BTreeMap<NodeId, Member>> = placement
            .initial
            .iter()
            .map(|id| self.member_of(*id).map(|m| (*id, m)))
            .collect();
        let Some(members) = members else {
            tracing::debug!(group = %g.group, "a first member is unknown yet; forming later");
            return;
        };
        // A first member that was down while the others formed the group comes back with
        // nothing for it, like a new one, and looks voted-only while the leader's snapshot
        // streams to it. Formed again here it would campaign against the running leader
        // every few milliseconds, each time in a higher term, and stall the group's
        // writes; adopting would restart it and the snapshot. The leader brings it in.
        if self.formed_elsewhere(g, placement).await {
            tracing::debug!(group = %g.group, "the group was formed by its other members; waiting for its leader");
            return;
        }
        if voted_only {
            self.adopt_first_entry(g, members).await;
            return;
        }
        match g.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(table = %g.table, group = %g.group, "formed a table's group");
                if first && !self.is_draining() {
                    spawn_first_election(g.raft.clone(), g.group.clone());
                }
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => {
                tracing::warn!(group = %g.group, error = %e, "forming a table's group failed")
            }
        }
    }

    /// Whether another first member of the group already holds its log (members that do
    /// not answer count as not).
    async fn formed_elsewhere(&self, g: &DataGroup, placement: &Placement) -> bool {
        let request = TableReadRequest {
            table: g.table.clone(),
            linearizable: false,
            read: TableRead::Formed,
        };
        let probes = placement
            .initial
            .iter()
            .filter(|id| **id != self.node_id)
            .filter_map(|id| self.member_of(*id))
            .map(|member| {
                let request = &request;
                async move {
                    let answer: Result<Result<TableReadReply, String>, ClusterError> = self
                        .call_group(
                            &member.addr,
                            &g.group,
                            Method::Read,
                            request,
                            FORMED_PROBE_TIMEOUT,
                        )
                        .await;
                    matches!(answer, Ok(Ok(TableReadReply::Formed(true))))
                }
            });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .any(|formed| formed)
    }

    /// Unsticks a new group whose former won this replica's vote and then went away before
    /// its first entry reached it. openraft refuses to initialize a replica that has
    /// voted, and one with no entry never campaigns, so if every other member is in the
    /// same state no one ever could: the group would take no write. The replica writes
    /// the first entry itself. It is the entry every former writes (the initial
    /// membership at log id (0, 0)), so it agrees with any log that holds it; restarted,
    /// the replica campaigns in a term above the vote it gave, and a member whose log is
    /// ahead refuses it, so no entry committed elsewhere is lost. It does not adopt while
    /// another first member answers that it holds the group's log: that member can lead.
    async fn adopt_first_entry(&self, g: &DataGroup, members: BTreeMap<NodeId, Member>) {
        tracing::warn!(table = %g.table, group = %g.group,
            "voted in a new group and got no entry in {FORM_GRACE:?}; writing its first entry here");
        self.halt_group(g).await;
        if let Err(e) = g.log_store.write_first_entry(members).await {
            tracing::warn!(group = %g.group, error = %e, "writing a new group's first entry");
        }
        if let Err(e) = self.start_group(&g.table, &g.group).await {
            tracing::warn!(table = %g.table, group = %g.group, error = %e, "restarting a table's group");
        }
    }

    /// On a group's leader: makes the group's voters the placement's members.
    fn spawn_member_change(&self, g: &Arc<DataGroup>, placement: Placement) {
        let target: BTreeSet<NodeId> = placement.members.iter().copied().collect();
        let metrics = g.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let extra_learners = membership
            .nodes()
            .any(|(id, _)| !voters.contains(id) && !target.contains(id));
        if (voters == target && !extra_learners) || target.is_empty() {
            return;
        }
        if g.changing.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut add = Vec::new();
        for id in target.iter().filter(|id| membership.get_node(id).is_none()) {
            match self.member_of(*id) {
                Some(m) => add.push((*id, m)),
                None => {
                    g.changing.store(false, Ordering::SeqCst);
                    return;
                }
            }
        }
        let g = g.clone();
        tokio::spawn(async move {
            let changed = async {
                for (id, member) in add {
                    g.raft
                        .add_learner(id, member.clone(), false)
                        .await
                        .map_err(|e| format!("adding {member} as a learner: {e}"))?;
                }
                let metrics = g.raft.metrics().borrow().clone();
                let last = metrics.last_log_index.unwrap_or(0);
                let replication = metrics.replication.unwrap_or_default();
                // Only new voters must have caught up; a current one that is down does not
                // hold the change back (the joint quorum decides).
                let lagging: Vec<NodeId> = target
                    .iter()
                    .filter(|id| **id != metrics.id && !voters.contains(id))
                    .filter(|id| {
                        replication
                            .get(id)
                            .and_then(|m| m.map(|l| l.index))
                            .is_none_or(|m| m + CAUGHT_UP_ENTRIES < last)
                    })
                    .copied()
                    .collect();
                if !lagging.is_empty() {
                    return Err(format!("waiting for {lagging:?} to catch up"));
                }
                g.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(target.clone()), false)
                    .await
                    .map_err(|e| format!("making {target:?} the voters: {e}"))?;
                Ok::<(), String>(())
            }
            .await;
            match changed {
                Ok(()) => {
                    tracing::info!(table = %g.table, group = %g.group, members = ?placement.members, "group members changed")
                }
                Err(e) => tracing::info!(group = %g.group, "{e}"),
            }
            g.changing.store(false, Ordering::SeqCst);
        });
    }

    /// Stops a group here; with `drop_data`, deletes its log and the table's replica too.
    async fn stop_group(&self, g: &DataGroup, drop_data: bool) {
        self.halt_group(g).await;
        self.drop_group_trees(&g.group);
        if drop_data {
            if let Err(e) = self.state.tables.drop_table(&g.table) {
                tracing::warn!(table = %g.table, error = %e, "deleting a table's replica");
            }
        }
        tracing::info!(table = %g.table, group = %g.group, drop_data, "stopped a table's group here");
    }

    /// Takes a group out of the running ones and stops its Raft; its state stays.
    async fn halt_group(&self, g: &DataGroup) {
        if let Ok(mut running) = self.groups.running.write() {
            running.remove(&g.group);
        }
        g.snapshot_trigger.abort();
        if let Err(e) = g.raft.shutdown().await {
            tracing::warn!(group = %g.group, error = %e, "stopping a table's group");
        }
    }

    fn drop_group_trees(&self, group: &str) {
        for part in ["log", "state", "sm"] {
            if let Err(e) = self.db.drop_tree(format!("raft/{group}/{part}")) {
                tracing::warn!(%group, error = %e, "deleting a group's raft state");
            }
        }
        if let Some(disk) = &self.disk {
            remove_payload_dir(&disk.payload_dir(group));
        }
        self.snapshots.remove_group(group);
    }

    /// Raft state of groups this node neither runs nor holds (left by a crash during a
    /// stop) is deleted.
    fn drop_orphan_trees(&self, mine: &BTreeMap<String, (String, Placement)>) {
        let orphans: BTreeSet<String> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| group_of_tree(&String::from_utf8_lossy(n)).map(str::to_string))
            .filter(|g| g != META_GROUP && !mine.contains_key(g) && self.data_group(g).is_none())
            .collect();
        for group in orphans {
            tracing::info!(%group, "deleting the raft state of a group this node does not hold");
            self.drop_group_trees(&group);
        }
        // A crash between a group's trees and its files leaves the files.
        let held_groups: BTreeSet<String> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| group_of_tree(&String::from_utf8_lossy(n)).map(str::to_string))
            .collect();
        let held_snapshots: BTreeSet<std::path::PathBuf> = held_groups
            .iter()
            .map(|g| self.snapshots.group_dir(g))
            .collect();
        match self.snapshots.group_dirs() {
            Ok(dirs) => {
                for dir in dirs.into_iter().filter(|d| !held_snapshots.contains(d)) {
                    tracing::info!(dir = %dir.display(), "deleting the snapshots of a group this node does not hold");
                    self.snapshots.remove_dir(&dir);
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the groups' snapshots"),
        }
        let Some(disk) = &self.disk else {
            return;
        };
        let held: BTreeSet<std::path::PathBuf> =
            held_groups.iter().map(|g| disk.payload_dir(g)).collect();
        match disk.payload_dirs() {
            Ok(dirs) => {
                for dir in dirs.into_iter().filter(|d| !held.contains(d)) {
                    tracing::info!(dir = %dir.display(), "deleting the block files of a group this node does not hold");
                    remove_payload_dir(&dir);
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the groups' block files"),
        }
    }

    /// A storage failure in any group stops the node, as one in `meta` does; openraft's
    /// replication race only stops the group, which the keeper starts again.
    fn watch_storage(&self, group: &str, raft: &Raft) {
        let mut metrics = raft.metrics();
        let fatal = self.fatal.clone();
        let group = group.to_string();
        tokio::spawn(async move {
            loop {
                match &metrics.borrow_and_update().running_state {
                    // Stopped on purpose: the group left this node.
                    Err(openraft::error::Fatal::Stopped) => return,
                    Err(e) if is_replication_race(e) => {
                        tracing::warn!(%group, error = %e, "a group's Raft stopped on a replication race; restarting it");
                        return;
                    }
                    Err(e) => {
                        fatal.send_replace(Some(format!("group {group}: {e}")));
                        return;
                    }
                    Ok(()) => {}
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Waits until some group's Raft stopped on a storage error (or `meta` on openraft's
    /// replication race); its error.
    pub async fn storage_failure(&self) -> String {
        let mut meta = self.raft.metrics();
        let mut groups = self.fatal.subscribe();
        loop {
            if let Err(fatal) = &meta.borrow_and_update().running_state {
                // `meta` is not restarted in place (every part of the node holds it): the
                // node restarts from its disk, which is whole.
                if is_replication_race(fatal) {
                    return format!(
                        "meta group: openraft's replication race, not a disk fault: {fatal}"
                    );
                }
                return fatal.to_string();
            }
            if let Some(fatal) = groups.borrow_and_update().clone() {
                return fatal;
            }
            tokio::select! {
                changed = meta.changed() => if changed.is_err() {
                    return "raft metrics closed".into();
                },
                _ = groups.changed() => {}
            }
        }
    }

    /// Slows writes to a table whose local replica has too many parts, and refuses them
    /// past a limit, as ClickHouse's `parts_to_delay_insert` and `parts_to_throw_insert`
    /// do: merges are behind, and more parts would make every read slower. A refused
    /// block is not lost: its consumer reads it again from the stored position.
    pub async fn parts_back_pressure(&self, table: &str) -> Result<(), ClusterError> {
        let parts = match self.state.tables.existing(table) {
            Ok(Some(store)) => store.parts().map(|p| p.len()).unwrap_or(0),
            _ => return Ok(()),
        };
        if parts > PARTS_TO_THROW_INSERT {
            return Err(ClusterError::Write(format!(
                "table {table} has {parts} parts, more than {PARTS_TO_THROW_INSERT}: merges are \
                 behind, so the block is refused (it is read again later)"
            )));
        }
        if let Some(over) = parts.checked_sub(PARTS_TO_DELAY_INSERT) {
            let delay = Duration::from_millis(10 * over as u64).min(Duration::from_secs(1));
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// A peer's proposal for a group: refused when this node does not run it.
    pub async fn propose_for_peer(
        &self,
        group: &str,
        command: Command,
    ) -> Result<(Response, u64), ProposeFailure> {
        if let Command::Block { block, .. } = &command {
            self.parts_back_pressure(&block.table)
                .await
                .map_err(|e| ProposeFailure::Failed(e.to_string()))?;
        }
        match self.raft_of(group) {
            Some(raft) => self.propose_on(&raft, command).await,
            None => Err(ProposeFailure::ForwardToLeader(None)),
        }
    }

    /// Writes a command to `table`'s group, wherever its leader runs; returns once a
    /// majority of the group has it on disk and the group's leader applied it.
    pub async fn write_to_table(
        &self,
        table: &str,
        command: Command,
    ) -> Result<Response, ClusterError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut pause = Duration::from_millis(50);
        let mut hint: Option<String> = None;
        loop {
            let placement = self.state.placements().of(table).cloned();
            let Some(placement) = placement else {
                if self.state.catalog().table(table).is_none() {
                    return Err(ClusterError::Write(format!("table {table} does not exist")));
                }
                // Created a moment ago: the meta leader has not placed it yet.
                if Instant::now() + pause > deadline {
                    return Err(ClusterError::Write(format!(
                        "table {table} was not placed on any node within {WRITE_TIMEOUT:?}"
                    )));
                }
                tokio::time::sleep(pause).await;
                continue;
            };
            let group = placement.group.clone();
            let mut targets: Vec<String> = Vec::new();
            if let Some(g) = self.data_group(&group) {
                self.parts_back_pressure(table).await?;
                match self.propose_on(&g.raft, command.clone()).await {
                    Ok((response, _)) => return Ok(response),
                    Err(ProposeFailure::Failed(reason)) => return Err(ClusterError::Write(reason)),
                    Err(ProposeFailure::ForwardToLeader(Some(leader)))
                        if leader.addr != self.member.addr =>
                    {
                        targets.push(leader.addr)
                    }
                    Err(ProposeFailure::ForwardToLeader(_)) => {}
                }
            } else {
                let known = self
                    .groups
                    .leaders
                    .lock()
                    .ok()
                    .and_then(|l| l.get(&group).cloned());
                targets.extend(hint.take().into_iter().chain(known));
                targets.extend(
                    placement
                        .members
                        .iter()
                        .filter_map(|id| self.member_of(*id))
                        .map(|m| m.addr),
                );
            }
            let mut seen = BTreeSet::new();
            targets.retain(|a| seen.insert(a.clone()));
            for addr in targets {
                let sent: Result<Result<(Response, u64), ProposeFailure>, _> = self
                    .call_group(&addr, &group, Method::Propose, &command, WRITE_TIMEOUT)
                    .await;
                match sent {
                    Ok(Ok((response, _))) => {
                        if let Ok(mut leaders) = self.groups.leaders.lock() {
                            leaders.insert(group.clone(), addr);
                        }
                        return Ok(response);
                    }
                    Ok(Err(ProposeFailure::Failed(reason))) => {
                        return Err(ClusterError::Write(reason))
                    }
                    Ok(Err(ProposeFailure::ForwardToLeader(Some(leader)))) => {
                        hint = Some(leader.addr);
                        break;
                    }
                    Ok(Err(ProposeFailure::ForwardToLeader(None))) | Err(_) => {}
                }
            }
            if Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader(WRITE_TIMEOUT));
            }
            if hint.is_none() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }

    /// Reads `table`, from this node's replica if it holds one, else from a member's.
    pub async fn read_table(
        &self,
        table: &str,
        read: TableRead,
        linearizable: bool,
    ) -> Result<TableReadReply, ClusterError> {
        let request = TableReadRequest {
            table: table.to_string(),
            linearizable,
            read: read.clone(),
        };
        let asked = self
            .ask_replicas(table, linearizable, |member, group| {
                let request = &request;
                async move {
                    let answer: Result<Result<TableReadReply, String>, _> = self
                        .call_group(&member.addr, &group, Method::Read, request, READ_TIMEOUT)
                        .await;
                    answer.map_err(|e| e.to_string())?
                }
            })
            .await?;
        match asked {
            Some(reply) => Ok(reply),
            None => self.read_local(table, read),
        }
    }

    /// Opens a scan of `table`: this node's replica if it holds one, else a stream of
    /// rows from a member's.
    pub async fn open_scan(&self, table: &str, spec: &ScanSpec) -> Result<TableScan, ClusterError> {
        let cluster_id = network::cluster_id_of(&self.cluster_id);
        let asked = self
            .ask_replicas(table, spec.linearizable, |member, group| {
                let request = ScanRequest {
                    cluster_id: cluster_id.clone(),
                    group,
                    table: table.to_string(),
                    columns: spec.columns.clone(),
                    limit: spec.limit.and_then(|l| u64::try_from(l).ok()),
                    linearizable: spec.linearizable,
                };
                async move {
                    let mut client = self.client(&member.addr).await.map_err(|e| e.to_string())?;
                    // Only the start is bounded: the rows then come as fast as the query
                    // takes them.
                    let opened = tokio::time::timeout(READ_TIMEOUT, client.scan(request))
                        .await
                        .map_err(|_| format!("no answer within {READ_TIMEOUT:?}"))?
                        .map_err(|status| status.to_string())?;
                    Ok(TableScan::Remote {
                        from: member.to_string(),
                        chunks: Box::new(opened.into_inner()),
                    })
                }
            })
            .await?;
        match asked {
            Some(scan) => Ok(scan),
            None => Ok(TableScan::Local(self.local_parts(table)?)),
        }
    }

    /// Asks the members of `table`'s group, in placement order, until one answers; `None`
    /// when the read is this node's (it runs the group, past the read barrier if asked,
    /// or the table is not placed yet and nothing is stored anywhere).
    async fn ask_replicas<T, F, Fut>(
        &self,
        table: &str,
        linearizable: bool,
        mut ask: F,
    ) -> Result<Option<T>, ClusterError>
    where
        F: FnMut(Member, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + GROUP_START_WAIT;
        loop {
            let Some(placement) = self.state.placements().of(table).cloned() else {
                if self.state.catalog().table(table).is_none() {
                    return Err(ClusterError::Write(format!("table {table} does not exist")));
                }
                return Ok(None);
            };
            if let Some(g) = self.data_group(&placement.group) {
                if linearizable {
                    self.group_read_barrier(&g).await?;
                }
                return Ok(None);
            }
            let mut failures = Vec::new();
            for id in &placement.members {
                let Some(member) = self.member_of(*id) else {
                    continue;
                };
                match ask(member.clone(), placement.group.clone()).await {
                    Ok(answer) => return Ok(Some(answer)),
                    Err(e) => failures.push(format!("{member}: {e}")),
                }
            }
            // A table placed a moment ago has no running group until its members' keepers
            // start it, within a pass: a read right after `CREATE` waits for that.
            if Instant::now() >= deadline {
                return Err(ClusterError::Raft(format!(
                    "no replica of table {table} answered: {}",
                    failures.join("; ")
                )));
            }
            tokio::time::sleep(GROUP_START_RETRY).await;
        }
    }

    /// A peer's read of a table this node holds.
    pub async fn read_for_peer(
        &self,
        group: &str,
        request: TableReadRequest,
    ) -> Result<TableReadReply, String> {
        let g = self
            .data_group(group)
            .filter(|g| g.table == request.table)
            .ok_or_else(|| {
                format!(
                    "{} holds no replica of table {} (group {group})",
                    self.member, request.table
                )
            })?;
        if let TableRead::Formed = request.read {
            let formation = g.log_store.formation().map_err(|e| e.to_string())?;
            return Ok(TableReadReply::Formed(formation == Formation::Started));
        }
        if request.linearizable {
            self.group_read_barrier(&g)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.read_local(&request.table, request.read)
            .map_err(|e| e.to_string())
    }

    /// A peer's scan of a table this node holds: the table's schema and its replica's
    /// parts, pinned, past the read barrier if asked.
    pub async fn scan_for_peer(
        &self,
        group: &str,
        table: &str,
        linearizable: bool,
    ) -> Result<(SchemaRef, Vec<PartRef>), ClusterError> {
        let g = self
            .data_group(group)
            .filter(|g| g.table == table)
            .ok_or_else(|| ClusterError::NoReplica {
                member: self.member.to_string(),
                table: table.to_string(),
                group: group.to_string(),
            })?;
        if linearizable {
            self.group_read_barrier(&g).await?;
        }
        let schema = self
            .state
            .catalog()
            .table(table)
            .map(|t| t.arrow_schema())
            .ok_or_else(|| ClusterError::Write(format!("table {table} does not exist")))?;
        Ok((schema, self.local_parts(table)?))
    }

    /// This node's replica's parts, pinned.
    fn local_parts(&self, table: &str) -> Result<Vec<PartRef>, ClusterError> {
        let store = self
            .state
            .tables
            .get(table)
            .map_err(|e| ClusterError::State(e.into()))?;
        store.parts().map_err(|e| ClusterError::State(e.into()))
    }

    fn read_local(&self, table: &str, read: TableRead) -> Result<TableReadReply, ClusterError> {
        let store = self
            .state
            .tables
            .get(table)
            .map_err(|e| ClusterError::State(e.into()))?;
        let table_err = |e: crate::table::TableError| ClusterError::State(e.into());
        Ok(match read {
            TableRead::Position(key) => {
                TableReadReply::Position(store.next_offset(&key).map_err(table_err)?)
            }
            TableRead::RowCount => TableReadReply::RowCount(store.row_count().map_err(table_err)?),
            TableRead::WriterLog => {
                TableReadReply::WriterLog(store.writer_log().map_err(table_err)?)
            }
            TableRead::Formed => {
                return Err(ClusterError::Raft(
                    "whether a group formed is a question for a replica's Raft".into(),
                ))
            }
        })
    }

    /// Waits until this node's replica of a group has applied every write the group
    /// acknowledged before the call.
    pub async fn group_read_barrier(&self, g: &DataGroup) -> Result<(), ClusterError> {
        self.barrier(&g.raft, &g.group).await
    }

    /// The number of rows of `table`, from a replica.
    pub async fn table_rows(&self, table: &str) -> Option<u64> {
        match self.read_table(table, TableRead::RowCount, false).await {
            Ok(TableReadReply::RowCount(n)) => Some(n),
            _ => None,
        }
    }

    /// This node's data groups, for `system.raft_groups`.
    pub fn group_rows(&self) -> Vec<GroupRow> {
        let mut rows: Vec<GroupRow> = self
            .running_groups()
            .iter()
            .map(|g| {
                let metrics = g.raft.metrics().borrow().clone();
                let membership = metrics.membership_config.membership().clone();
                let name = |id: &NodeId| {
                    membership
                        .get_node(id)
                        .map(|m| m.name.clone())
                        .unwrap_or_else(|| id.to_string())
                };
                let parts = self
                    .state
                    .tables
                    .get(&g.table)
                    .and_then(|t| t.parts())
                    .unwrap_or_default();
                GroupRow {
                    parts: parts.len() as u64,
                    bytes_on_disk: parts.iter().map(|p| p.bytes()).sum(),
                    group: g.group.clone(),
                    table: g.table.clone(),
                    role: super::role_name(metrics.state).to_string(),
                    leader: metrics
                        .current_leader
                        .as_ref()
                        .map(name)
                        .unwrap_or_default(),
                    term: metrics.current_term,
                    last_log_index: metrics.last_log_index.unwrap_or(0),
                    applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
                    voters: membership.voter_ids().map(|id| name(&id)).collect(),
                    rows: self.state.row_count(&g.table).unwrap_or(0),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.table.cmp(&b.table));
        rows
    }

    /// Stops every data group, for a clean shutdown.
    pub(super) async fn shutdown_groups(&self) {
        let stops = self.running_groups().into_iter().map(|g| async move {
            if let Err(e) = g.raft.shutdown().await {
                tracing::warn!(group = %g.group, error = %e, "stopping a table's group");
            }
        });
        futures::future::join_all(stops).await;
    }

    /// On a drain: this node no longer campaigns in any group it runs.
    pub(super) fn stop_campaigning_in_groups(&self) {
        for g in self.running_groups() {
            g.raft.runtime_config().elect(false);
        }
    }

    /// On a drain: hands over every group this node leads.
    pub(super) async fn hand_over_groups(&self, deadline: Instant) -> bool {
        let groups = self.running_groups();
        let handovers = groups
            .iter()
            .map(|g| self.hand_over(&g.raft, &g.group, deadline));
        futures::future::join_all(handovers)
            .await
            .into_iter()
            .all(|released| released)
    }

    /// At a leader's request: campaign now in `group` (refused while draining).
    pub async fn elect_in(&self, group: &str) -> Result<(), String> {
        if self.is_draining() {
            return Err("this node is draining".into());
        }
        let raft = self
            .raft_of(group)
            .ok_or_else(|| format!("this node does not run group {group}"))?;
        raft.trigger().elect().await.map_err(|e| e.to_string())
    }

    /// On a group's leader: the index a linearizable read must see applied.
    pub async fn read_index_in(&self, group: &str) -> Result<u64, ClusterError> {
        let raft = self
            .raft_of(group)
            .ok_or_else(|| ClusterError::Raft(format!("this node does not run group {group}")))?;
        let read = raft
            .ensure_linearizable()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        Ok(read.map(|l| l.index).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_openraft_replication_race_restarts_a_group() {
        let race = openraft::StorageIOError::<NodeId>::read_snapshot(
            None,
            openraft::AnyError::error("replication channel closed"),
        );
        assert!(is_replication_race(&openraft::error::Fatal::StorageError(
            race.into()
        )));
        let full_disk = openraft::StorageIOError::<NodeId>::write_snapshot(
            None,
            openraft::AnyError::error("No space left on device"),
        );
        assert!(!is_replication_race(&openraft::error::Fatal::StorageError(
            full_disk.into()
        )));
        let lost = openraft::StorageIOError::<NodeId>::read_snapshot(
            None,
            openraft::AnyError::error("snapshot not found"),
        );
        assert!(!is_replication_race(&openraft::error::Fatal::StorageError(
            lost.into()
        )));
        assert!(!is_replication_race(&openraft::error::Fatal::Stopped));
    }

    #[test]
    fn raft_trees_name_their_group() {
        assert_eq!(group_of_tree("raft/meta/log"), Some("meta"));
        assert_eq!(group_of_tree("raft/events.00ff/sm"), Some("events.00ff"));
        assert_eq!(group_of_tree("table/events"), None);
        let id = new_group_id("my table");
        assert!(id.starts_with("my_table."), "{id}");
        assert_ne!(id, new_group_id("my table"));
    }
}
