//! Which node runs the consumer of each (Kafka table, topic, partition), with an epoch.
//!
//! The meta leader computes an assignment (`cluster::assignment`) and proposes it; every
//! member applies it and stamps each slot whose owner changed with the log index of that
//! entry, its epoch. A block is accepted only from its slot's current owner at the current
//! epoch, so a paused or partitioned node that wakes up believing it still owns a
//! partition is fenced off.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ConsumerKey, NodeId};

/// A partition of a topic read by a Kafka table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub table: String,
    pub topic: String,
    pub partition: i32,
}

impl Slot {
    pub fn of(key: &ConsumerKey) -> Slot {
        Slot {
            table: key.table.clone(),
            topic: key.topic.clone(),
            partition: key.partition,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.table, self.topic, self.partition)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub node: NodeId,
    pub epoch: u64,
}

/// The replicated assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    pub slots: Vec<(Slot, Owner)>,
}

impl Assignments {
    pub fn owner(&self, slot: &Slot) -> Option<Owner> {
        self.slots
            .binary_search_by(|(s, _)| s.cmp(slot))
            .ok()
            .and_then(|i| self.slots.get(i))
            .map(|(_, o)| *o)
    }

    pub fn nodes(&self) -> BTreeMap<Slot, NodeId> {
        self.slots
            .iter()
            .map(|(s, o)| (s.clone(), o.node))
            .collect()
    }

    /// The assignment after an `Assign` entry at log index `epoch`: unchanged owners keep
    /// their epoch, new or moved slots take this one.
    pub fn next(&self, owners: &BTreeMap<Slot, NodeId>, epoch: u64) -> Assignments {
        let slots = owners
            .iter()
            .map(|(slot, node)| {
                let owner = match self.owner(slot) {
                    Some(o) if o.node == *node => o,
                    _ => Owner { node: *node, epoch },
                };
                (slot.clone(), owner)
            })
            .collect();
        Assignments { slots }
    }
}
