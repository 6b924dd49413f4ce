//! The keeper of data groups, on every node: starts the groups placed on it, forms a new
//! group with its first members, stops (and deletes) the groups it no longer holds, and,
//! where this node leads a group, moves the group's members to its placement: learners
//! first, then voters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::ChangeMembers;

use super::group::{
    group_of_tree, remove_payload_dir, snapshot_trigger, stopped_on_race, watch_storage, DataGroup,
    SnapshotWatch, GROUP_TASKS_STOP,
};
use super::{Cluster, ClusterError, OpenGroup};
use crate::raft::log_store::Formation;
use crate::raft::messages::{TableRead, TableReadReply, TableReadRequest};
use crate::raft::state_machine::Scope;
use crate::raft::{data_raft_config, Raft, META_GROUP};
use crate::topology::{Member, NodeId, Placement};

/// How often the keeper looks at the placements without being woken.
const KEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A learner this close to the leader's log is made a voter.
const CAUGHT_UP_ENTRIES: u64 = 64;
/// How long a node taken out of a group keeps its replica running while the group's leader
/// moves the members: the group may need this node's vote to commit the change.
const LEAVE_GRACE: Duration = Duration::from_secs(60);
/// How long a member about to form a group waits for each other first member to say
/// whether it already holds the group's log.
const FORMED_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the other first members of a new group leave forming it to the first one.
/// Formed by all at once, each voted for itself and no one won until an election timeout
/// (1 to 2 s) passed; they step in only when the first member has not reached them.
pub(super) const FORM_GRACE: Duration = Duration::from_secs(5);
/// How often the first member of a new group campaigns again while it has no leader: its
/// first votes often reach members whose keeper has not started the group yet, and
/// openraft would otherwise wait a whole election timeout before asking again.
const FIRST_ELECTION_RETRY: Duration = Duration::from_millis(150);
/// How long a removed node tries to hand a group it leads over.
const REMOVED_HANDOVER: Duration = Duration::from_secs(10);

/// Campaigns again every `FIRST_ELECTION_RETRY` until the new group has a leader, for at
/// most an election timeout; only the first member campaigns this early, so the retries
/// cannot split the vote.
async fn first_election(raft: Raft, group: String) -> Result<(), std::convert::Infallible> {
    {
        let give_up = Instant::now() + Duration::from_millis(raft.config().election_timeout_max);
        while Instant::now() < give_up {
            tokio::time::sleep(FIRST_ELECTION_RETRY).await;
            if raft.metrics().borrow().current_leader.is_some() {
                return Ok(());
            }
            if let Err(e) = raft.trigger().elect().await {
                tracing::debug!(%group, error = %e, "campaigning in a new group failed");
                return Ok(());
            }
        }
    }
    Ok(())
}

impl Cluster {
    /// Runs the keeper: a pass whenever the meta state changes, and once a second.
    pub(super) async fn keeper_loop(self: Arc<Self>) -> Result<(), ClusterError> {
        let mut changes = self.state.watch_catalog();
        loop {
            self.keep_groups().await;
            tokio::select! {
                _ = tokio::time::sleep(KEEP_INTERVAL) => {}
                _ = changes.changed() => {}
            }
        }
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
        for g in self.groups.running() {
            if mine.contains_key(&g.group) {
                self.groups.left(&g.group, false);
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
                if voter && self.groups.left(&g.group, true) < LEAVE_GRACE {
                    continue;
                }
            }
            let holds_table = placements
                .of(&g.table)
                .is_some_and(|p| p.holds(self.node_id));
            self.groups.left(&g.group, false);
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
        let group = g.clone();
        g.tasks.spawn("hand over", async move {
            let deadline = Instant::now() + REMOVED_HANDOVER;
            let released = this.hand_over(&group.raft, &group.group, deadline).await;
            tracing::info!(group = %group.group, released, "handing a group over: this node was removed");
            group.changing.store(false, Ordering::SeqCst);
            Ok::<(), std::convert::Infallible>(())
        });
    }

    async fn start_group(&self, table: &str, group: &str) -> Result<Arc<DataGroup>, ClusterError> {
        let scope = Scope::Table {
            table: table.to_string(),
            group: group.to_string(),
        };
        let config = data_raft_config("sluice").map_err(|source| ClusterError::RaftConfig {
            group: group.to_string(),
            source,
        })?;
        let (raft, log_store) = self
            .storage
            .open_raft(
                OpenGroup {
                    node_id: self.node_id,
                    group,
                    scope,
                    state: &self.state,
                    cluster_id: &self.cluster_id,
                    source_ip: self.source_ip(),
                },
                config,
            )
            .await?;
        let storage = &self.storage;
        if self.is_draining() {
            raft.runtime_config().elect(false);
        }
        let tasks = self.tasks.child("data group");
        tasks.spawn(
            "storage watch",
            watch_storage(raft.clone(), group.to_string(), self.fatal.clone()),
        );
        tasks.spawn(
            "snapshot trigger",
            snapshot_trigger(SnapshotWatch {
                raft: raft.clone(),
                log: log_store.clone(),
                snapshots: storage.snapshots.group(group),
                state: self.state.clone(),
                table: table.to_string(),
                group: group.to_string(),
            }),
        );
        let g = Arc::new(DataGroup {
            group: group.to_string(),
            table: table.to_string(),
            raft,
            log_store,
            changing: AtomicBool::new(false),
            started_at: Instant::now(),
            tasks,
        });
        self.groups.insert(g.clone());
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
                    g.tasks.spawn(
                        "first election",
                        first_election(g.raft.clone(), g.group.clone()),
                    );
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
                    let answer = self
                        .peers
                        .call_group(&member.addr, &g.group, request, FORMED_PROBE_TIMEOUT)
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
        let group = g.clone();
        g.tasks.spawn("member change", async move {
            let g = group;
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
            Ok::<(), std::convert::Infallible>(())
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
        self.groups.remove(&g.group);
        g.tasks.stop(GROUP_TASKS_STOP).await;
        if let Err(e) = g.raft.shutdown().await {
            tracing::warn!(group = %g.group, error = %e, "stopping a table's group");
        }
    }

    fn drop_group_trees(&self, group: &str) {
        for part in ["log", "state", "sm"] {
            if let Err(e) = self.storage.db.drop_tree(format!("raft/{group}/{part}")) {
                tracing::warn!(%group, error = %e, "deleting a group's raft state");
            }
        }
        if let Some(disk) = &self.storage.disk {
            remove_payload_dir(&disk.payload_dir(group));
        }
        self.storage.snapshots.remove_group(group);
    }

    /// Raft state of groups this node neither runs nor holds (left by a crash during a
    /// stop) is deleted.
    fn drop_orphan_trees(&self, mine: &BTreeMap<String, (String, Placement)>) {
        let orphans: BTreeSet<String> = self
            .storage
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
            .storage
            .db
            .tree_names()
            .iter()
            .filter_map(|n| group_of_tree(&String::from_utf8_lossy(n)).map(str::to_string))
            .collect();
        let held_snapshots: BTreeSet<std::path::PathBuf> = held_groups
            .iter()
            .map(|g| self.storage.snapshots.group_dir(g))
            .collect();
        match self.storage.snapshots.group_dirs() {
            Ok(dirs) => {
                for dir in dirs.into_iter().filter(|d| !held_snapshots.contains(d)) {
                    tracing::info!(dir = %dir.display(), "deleting the snapshots of a group this node does not hold");
                    self.storage.snapshots.remove_dir(&dir);
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the groups' snapshots"),
        }
        let Some(disk) = &self.storage.disk else {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::group::new_group_id;

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
