//! On the meta leader: which members are alive, from their heartbeats. A member silent
//! for longer than the node timeout, or draining, is not live and loses its partitions.
//!
//! Pure bookkeeping over instants given by the caller, so its rules have unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::topology::NodeId;

/// How often a member tells the leader it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Seen {
    /// When each member was last heard from.
    at: BTreeMap<NodeId, Instant>,
    /// The members that said they are draining.
    draining: BTreeSet<NodeId>,
    /// The term this node leads and since when (members get a grace period).
    leading_since: Option<(u64, Instant)>,
}

pub struct Liveness {
    /// A member silent for longer loses its partitions.
    node_timeout: Duration,
    seen: Mutex<Seen>,
}

impl Liveness {
    pub fn new(node_timeout: Duration) -> Liveness {
        Liveness {
            node_timeout,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A member's heartbeat.
    pub fn heard_from(&self, node: NodeId, draining: bool, now: Instant) {
        let mut seen = self.seen();
        seen.at.insert(node, now);
        if draining {
            seen.draining.insert(node);
        } else {
            seen.draining.remove(&node);
        }
    }

    /// The members that said they drain.
    pub fn draining(&self) -> BTreeSet<NodeId> {
        self.seen().draining.clone()
    }

    /// Whether, leading `term`, this node has heard every other voter in it (each
    /// heartbeat says whether its node drains), or has led for two heartbeats, after
    /// which a member not heard is not live. Before `live_voters` first ran in this term:
    /// no.
    pub fn knows_every_member(
        &self,
        me: NodeId,
        term: u64,
        voters: &BTreeSet<NodeId>,
        now: Instant,
    ) -> bool {
        let seen = self.seen();
        let since = match seen.leading_since {
            Some((t, at)) if t == term => at,
            _ => return false,
        };
        if now.duration_since(since) >= 2 * HEARTBEAT_INTERVAL {
            return true;
        }
        voters
            .iter()
            .filter(|id| **id != me)
            .all(|id| seen.at.get(id).is_some_and(|at| *at >= since))
    }

    /// The voters heard from within the node timeout, leading `term`; this node counts
    /// unless it drains. A leader new to its term gives every member one timeout to
    /// check in.
    pub fn live_voters(
        &self,
        me: NodeId,
        me_draining: bool,
        term: u64,
        voters: &BTreeSet<NodeId>,
        now: Instant,
    ) -> BTreeSet<NodeId> {
        let mut seen = self.seen();
        let since = match seen.leading_since {
            Some((t, at)) if t == term => at,
            _ => {
                seen.leading_since = Some((term, now));
                now
            }
        };
        voters
            .iter()
            .copied()
            .filter(|id| {
                if *id == me {
                    return !me_draining;
                }
                !seen.draining.contains(id)
                    && match seen.at.get(id) {
                        Some(at) => now.duration_since(*at) < self.node_timeout,
                        None => now.duration_since(since) < self.node_timeout,
                    }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_and_draining_members_are_not_live() {
        let live = Liveness::new(Duration::from_secs(10));
        let voters = BTreeSet::from([1, 2, 3]);
        let t0 = Instant::now();
        // A new leader gives everyone a timeout to check in, but does not know them yet.
        assert!(!live.knows_every_member(1, 5, &voters, t0));
        assert_eq!(live.live_voters(1, false, 5, &voters, t0), voters);
        assert!(!live.knows_every_member(1, 5, &voters, t0));
        live.heard_from(2, false, t0 + Duration::from_millis(100));
        live.heard_from(3, true, t0 + Duration::from_millis(200));
        assert!(live.knows_every_member(1, 5, &voters, t0 + Duration::from_millis(300)));
        let later = t0 + Duration::from_secs(11);
        // 3 drains; 2 fell silent past the timeout.
        assert_eq!(
            live.live_voters(1, false, 5, &voters, t0 + Duration::from_secs(1)),
            BTreeSet::from([1, 2])
        );
        assert_eq!(
            live.live_voters(1, false, 5, &voters, later),
            BTreeSet::from([1])
        );
        // This node draining is not live either.
        assert!(live.live_voters(1, true, 5, &voters, later).is_empty());
        // A new term starts the grace again, for a member never heard from.
        let joined = BTreeSet::from([1, 2, 3, 4]);
        assert_eq!(
            live.live_voters(1, false, 6, &joined, later),
            BTreeSet::from([1, 4])
        );
        // After two heartbeats in a term, a member not heard is not waited for.
        assert!(live.knows_every_member(1, 6, &voters, later + 2 * HEARTBEAT_INTERVAL));
    }
}
