//! A clean stop: before the process ends, its partitions move to the other live members
//! and every group it leads is handed to an up-to-date follower, so the cluster does not
//! wait out a node timeout or an election timeout for it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Cluster;
use crate::raft::messages::{ElectRequest, PeerError};
use crate::raft::{Raft, META_GROUP};
use crate::shutdown::SHUTDOWN_OVERRAN;
use crate::topology::NodeId;

/// How often a drain looks again whether its partitions moved.
const DRAIN_POLL: Duration = Duration::from_millis(200);
/// How long a follower asked to take over has to win, before another is asked.
const HANDOVER_WAIT: Duration = Duration::from_secs(3);
const ELECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a drain achieved before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    pub partitions_moved: bool,
    pub leadership_released: bool,
}

impl Cluster {
    /// Prepares this node to stop, once its consumers have stopped: the leader moves its
    /// partitions to the other live members at once (not after the node timeout), and if
    /// it leads, an up-to-date follower is asked to take over. Waits at most `timeout`.
    pub async fn drain(&self, timeout: Duration) -> DrainOutcome {
        let deadline = Instant::now() + timeout;
        let removed = DrainOutcome {
            partitions_moved: true,
            leadership_released: true,
        };
        if self.is_removed() {
            // Removed (a scale-down): the cluster went on without this node already.
            self.phase.start_drain();
            return removed;
        }
        self.phase.start_drain();
        // A draining node must not win the election that moves leadership away from it.
        self.raft.runtime_config().elect(false);
        self.stop_campaigning_in_groups();
        let mut partitions_moved = false;
        let mut member = self.beat().await;
        while Instant::now() < deadline {
            if member == Some(false) {
                return removed;
            }
            let owned = self
                .state
                .assignments()
                .slots
                .iter()
                .any(|(_, o)| o.node == self.node_id);
            if !owned {
                partitions_moved = true;
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
            member = self.beat().await;
        }
        self.phase.hand_over(true);
        if let Err(waiting) = self.proposals_answered(Duration::from_secs(2)).await {
            tracing::info!(waiting, "handing over with client writes still waiting");
        }
        let meta_released = self.hand_over(&self.raft, META_GROUP, deadline).await;
        let groups_released = self.hand_over_groups(deadline).await;
        // A leader that could not hand over (alone, say) takes writes again.
        self.phase.hand_over(false);
        let leadership_released = meta_released && groups_released;
        tracing::info!(partitions_moved, leadership_released, "drained");
        DrainOutcome {
            partitions_moved,
            leadership_released,
        }
    }

    /// Waits up to `timeout` for the client writes proposed on this node to be answered
    /// (committed, or dropped by a new leader), before the gRPC server closes; false, and
    /// an overrun in the log, if some still wait.
    pub async fn settle_proposals(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        match self.proposals_answered(timeout).await {
            Ok(0) => true,
            Ok(writes) => {
                tracing::info!(writes, after = ?started.elapsed(), "client writes answered before closing");
                true
            }
            Err(waiting) => {
                tracing::warn!(waiting, after = ?timeout, "{SHUTDOWN_OVERRAN}: client writes still wait in raft");
                false
            }
        }
    }

    /// Waits up to `timeout` until no client write waits in this node's Raft: how many
    /// were waited for, or how many still wait.
    async fn proposals_answered(&self, timeout: Duration) -> Result<usize, usize> {
        let deadline = Instant::now() + timeout;
        let mut waited_for = 0;
        loop {
            let waiting = self.proposals.waiting();
            if waiting == 0 {
                return Ok(waited_for);
            }
            waited_for = waited_for.max(waiting);
            if Instant::now() >= deadline {
                return Err(waiting);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// On a drain: this node no longer campaigns in any group it runs.
    fn stop_campaigning_in_groups(&self) {
        for g in self.groups.running() {
            g.raft.runtime_config().elect(false);
        }
    }

    /// On a drain: hands over every group this node leads.
    async fn hand_over_groups(&self, deadline: Instant) -> bool {
        let groups = self.groups.running();
        let handovers = groups
            .iter()
            .map(|g| self.hand_over(&g.raft, &g.group, deadline));
        futures::future::join_all(handovers)
            .await
            .into_iter()
            .all(|released| released)
    }

    /// Asks the follower with the longest log to start an election, until another node
    /// leads or `deadline` passes; true once this node does not lead (or is the only
    /// voter). The follower wins because this leader votes for it (its log is as long)
    /// and this node no longer campaigns.
    pub(super) async fn hand_over(&self, raft: &Raft, group: &str, deadline: Instant) -> bool {
        let leads = || raft.metrics().borrow().current_leader == Some(self.node_id);
        while leads() && Instant::now() < deadline {
            let metrics = raft.metrics().borrow().clone();
            let draining = self.liveness.draining();
            let voters: BTreeSet<NodeId> =
                metrics.membership_config.membership().voter_ids().collect();
            let candidate = metrics
                .replication
                .iter()
                .flatten()
                .filter(|(id, _)| {
                    **id != self.node_id && voters.contains(id) && !draining.contains(id)
                })
                .max_by_key(|(_, matched)| matched.map(|l| l.index))
                .and_then(|(id, _)| {
                    metrics
                        .membership_config
                        .membership()
                        .get_node(id)
                        .map(|m| (*id, m.clone()))
                });
            let Some((id, member)) = candidate else {
                // Alone, there is nobody to hand over to and nothing to wait for.
                let alone = voters.len() <= 1;
                tracing::info!(%group, alone, "no follower to hand leadership to");
                return alone;
            };
            let asked = self
                .peers
                .call_member(&member.addr, id, group, &ElectRequest, ELECT_TIMEOUT)
                .await;
            match asked {
                Ok(Ok(())) => tracing::info!(%group, to = %member, "handing leadership over"),
                Ok(Err(PeerError { message, .. })) => {
                    tracing::info!(%group, to = %member, error = %message, "handing leadership over failed")
                }
                Err(e) => {
                    tracing::info!(%group, to = %member, error = %e, "handing leadership over failed")
                }
            }
            let until = (Instant::now() + HANDOVER_WAIT).min(deadline);
            let mut metrics = raft.metrics();
            // Wakes as soon as leadership moves, not on a poll.
            while leads() && Instant::now() < until {
                let left = until.saturating_duration_since(Instant::now());
                if !matches!(
                    tokio::time::timeout(left, metrics.changed()).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
        }
        !leads()
    }
}
