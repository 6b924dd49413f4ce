//! Where this node is in its life as a member, as one value behind a watch channel: the
//! supervisor, the health service and the keeper all read it, and wait on its changes.
//!
//! Draining is one-way (a drain ends with the process); removal can be undone (a node
//! added back is a member again), but never ends a drain.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A member (or one on its way in): takes partitions, campaigns, serves.
    Member,
    /// The leader said this node is no longer a member (a scale-down): it stops its
    /// consumers and reports not ready, and stays up until it is stopped.
    Removed,
    /// Stopping: it takes no partitions and does not seek leadership.
    Draining,
    /// Stopping, and handing the groups it leads over: as leader it takes no new client
    /// write, so none lands in its log after the follower it hands over to was chosen
    /// (that follower, its log now shorter, could not win, and the write would wait for
    /// a leader until the node stops).
    HandingOver,
}

pub struct NodePhase(watch::Sender<Phase>);

impl Default for NodePhase {
    fn default() -> NodePhase {
        NodePhase(watch::channel(Phase::Member).0)
    }
}

impl NodePhase {
    pub fn get(&self) -> Phase {
        *self.0.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.0.subscribe()
    }

    pub fn is_removed(&self) -> bool {
        self.get() == Phase::Removed
    }

    pub fn is_draining(&self) -> bool {
        matches!(self.get(), Phase::Draining | Phase::HandingOver)
    }

    pub fn is_handing_over(&self) -> bool {
        self.get() == Phase::HandingOver
    }

    /// What the leader said of this node's membership; whether the phase changed.
    pub fn set_member(&self, member: bool) -> bool {
        self.0.send_if_modified(|phase| {
            let next = match (*phase, member) {
                (Phase::Member, false) => Phase::Removed,
                (Phase::Removed, true) => Phase::Member,
                _ => return false,
            };
            *phase = next;
            true
        })
    }

    /// A drain starts.
    pub fn start_drain(&self) {
        self.0.send_replace(Phase::Draining);
    }

    /// While draining: whether leaders here refuse client writes.
    pub fn hand_over(&self, handing_over: bool) {
        self.0.send_if_modified(|phase| {
            let next = match (*phase, handing_over) {
                (Phase::Draining, true) => Phase::HandingOver,
                (Phase::HandingOver, false) => Phase::Draining,
                _ => return false,
            };
            *phase = next;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_comes_and_goes_but_a_drain_stays() {
        let phase = NodePhase::default();
        let seen = phase.watch();
        assert!(phase.set_member(false));
        assert!(phase.is_removed());
        assert!(seen.has_changed().unwrap_or(false));
        assert!(!phase.set_member(false), "no change, no wake-up");
        assert!(phase.set_member(true));
        assert_eq!(phase.get(), Phase::Member);

        phase.start_drain();
        assert!(phase.is_draining());
        // Removed while draining: the drain goes on, and a member again stays draining.
        assert!(!phase.set_member(false));
        assert!(!phase.set_member(true));
        phase.hand_over(true);
        assert!(phase.is_handing_over() && phase.is_draining());
        phase.hand_over(false);
        assert_eq!(phase.get(), Phase::Draining);
        // Handing over is only part of a drain.
        let member = NodePhase::default();
        member.hand_over(true);
        assert_eq!(member.get(), Phase::Member);
    }
}
