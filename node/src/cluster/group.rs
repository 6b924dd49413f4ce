//! A table's data group as run on this node: its Raft, its log, and the tasks that
//! watch it (snapshots by bytes, storage failures), stopped with it. `DataGroups` is the
//! registry of the groups this node runs; `keeper` starts and stops them.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{role_name, Cluster};
use crate::query::source::GroupRow;
use crate::raft::log_store::LogStore;
use crate::raft::snapshot_dirs::GroupSnapshots;
use crate::raft::{Raft, META_GROUP, SNAPSHOT_LOG_BYTES};
use crate::shutdown::Tasks;
use crate::topology::NodeId;

/// How often a data group's log and snapshot are weighed against `SNAPSHOT_LOG_BYTES`.
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a stopping group's tasks may take to end.
pub(super) const GROUP_TASKS_STOP: Duration = Duration::from_secs(2);

/// A table's data group as run on this node.
pub struct DataGroup {
    pub group: String,
    pub table: String,
    pub raft: Raft,
    pub(super) log_store: LogStore,
    /// Set while this node, as leader, changes the group's members.
    pub(super) changing: AtomicBool,
    pub(super) started_at: Instant,
    /// The group's own tasks (its snapshot trigger, storage watch, member changes);
    /// stopped with the group.
    pub(super) tasks: Tasks,
}

/// The data groups this node runs.
#[derive(Default)]
pub struct DataGroups {
    running: std::sync::RwLock<BTreeMap<String, Arc<DataGroup>>>,
    /// One keeper pass at a time.
    pub(super) pass: tokio::sync::Mutex<()>,
    /// The address that last accepted a write for each group this node does not run.
    leaders: std::sync::Mutex<BTreeMap<String, String>>,
    /// When this node was taken out of each group it still runs.
    left_at: std::sync::Mutex<BTreeMap<String, Instant>>,
}

impl DataGroups {
    pub fn get(&self, group: &str) -> Option<Arc<DataGroup>> {
        self.running.read().ok().and_then(|r| r.get(group).cloned())
    }

    pub fn running(&self) -> Vec<Arc<DataGroup>> {
        self.running
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn insert(&self, g: Arc<DataGroup>) {
        if let Ok(mut running) = self.running.write() {
            running.insert(g.group.clone(), g);
        }
    }

    pub(super) fn remove(&self, group: &str) {
        if let Ok(mut running) = self.running.write() {
            running.remove(group);
        }
    }

    /// The address that last took a write for `group`.
    pub fn leader_of(&self, group: &str) -> Option<String> {
        self.leaders.lock().ok().and_then(|l| l.get(group).cloned())
    }

    pub fn remember_leader(&self, group: &str, addr: &str) {
        if let Ok(mut leaders) = self.leaders.lock() {
            leaders.insert(group.to_string(), addr.to_string());
        }
    }

    /// Records that this node left `group` (or forgets it); how long ago it left.
    pub(super) fn left(&self, group: &str, left: bool) -> Duration {
        let Ok(mut left_at) = self.left_at.lock() else {
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
}

/// What the snapshot trigger of a data group weighs.
pub(super) struct SnapshotWatch {
    pub(super) raft: Raft,
    pub(super) log: LogStore,
    pub(super) snapshots: Arc<GroupSnapshots>,
    pub(super) state: Arc<crate::state::NodeState>,
    pub(super) table: String,
    pub(super) group: String,
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
pub(super) async fn snapshot_trigger(watch: SnapshotWatch) -> Result<(), std::convert::Infallible> {
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
            return Ok(());
        }
        let in_log = applied.map_or(0, |applied| watch.log.block_bytes(snapshot, applied));
        let only_pinned = watch.only_pinned(&mut seen_parts);
        if in_log > SNAPSHOT_LOG_BYTES || only_pinned > SNAPSHOT_LOG_BYTES {
            tracing::debug!(group = %watch.group, in_log, only_pinned, "asking for a snapshot: over budget");
            // A build in progress makes this a no-op; an error means the Raft stopped.
            if watch.raft.trigger().snapshot().await.is_err() {
                return Ok(());
            }
        }
        // A tick, not a wait for new metrics: merges change what a snapshot pins on a
        // table that takes no writes.
        tokio::time::sleep(SNAPSHOT_CHECK_INTERVAL).await;
        if metrics.has_changed().is_err() {
            return Ok(());
        }
    }
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
pub(super) fn remove_payload_dir(dir: &std::path::Path) {
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

pub(super) fn stopped_on_race(raft: &Raft) -> bool {
    matches!(&raft.metrics().borrow().running_state, Err(e) if is_replication_race(e))
}

/// The group a Raft tree of this node belongs to (`raft/<group>/<part>`).
pub(super) fn group_of_tree(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("raft/")?;
    let (group, _) = rest.rsplit_once('/')?;
    Some(group)
}

/// A storage failure in any group stops the node, as one in `meta` does; openraft's
/// replication race only stops the group, which the keeper starts again.
pub(super) async fn watch_storage(
    raft: Raft,
    group: String,
    fatal: tokio::sync::watch::Sender<Option<String>>,
) -> Result<(), std::convert::Infallible> {
    let mut metrics = raft.metrics();
    loop {
        match &metrics.borrow_and_update().running_state {
            // Stopped on purpose: the group left this node.
            Err(openraft::error::Fatal::Stopped) => return Ok(()),
            Err(e) if is_replication_race(e) => {
                tracing::warn!(%group, error = %e, "a group's Raft stopped on a replication race; restarting it");
                return Ok(());
            }
            Err(e) => {
                fatal.send_replace(Some(format!("group {group}: {e}")));
                return Ok(());
            }
            Ok(()) => {}
        }
        if metrics.changed().await.is_err() {
            return Ok(());
        }
    }
}

impl Cluster {
    /// The data group `group`, if this node runs it.
    pub fn data_group(&self, group: &str) -> Option<Arc<DataGroup>> {
        self.groups.get(group)
    }

    /// The Raft of `group` (`meta` or a data group), if this node runs it.
    pub fn raft_of(&self, group: &str) -> Option<Raft> {
        if group == META_GROUP {
            return Some(self.raft.clone());
        }
        self.data_group(group).map(|g| g.raft.clone())
    }

    /// The group of `table` if this node runs it.
    pub fn hosted_group_of(&self, table: &str) -> Option<Arc<DataGroup>> {
        let placements = self.state.placements();
        let group = &placements.of(table)?.group;
        self.data_group(group)
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

    /// This node's data groups, for `system.raft_groups`.
    pub fn group_rows(&self) -> Vec<GroupRow> {
        let mut rows: Vec<GroupRow> = self
            .groups
            .running()
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
                    role: role_name(metrics.state).to_string(),
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
        let stops = self.groups.running().into_iter().map(|g| async move {
            g.tasks.stop(GROUP_TASKS_STOP).await;
            if let Err(e) = g.raft.shutdown().await {
                tracing::warn!(group = %g.group, error = %e, "stopping a table's group");
            }
        });
        futures::future::join_all(stops).await;
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
}
