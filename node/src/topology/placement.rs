//! Which nodes hold each table: its Raft data group and that group's members.
//!
//! The meta leader plans placements and proposes them; every node applies them and runs
//! the data groups it is a member of. A table is placed on `replicas` voters (its setting;
//! by default min(3, voters)), the least loaded first. Placement is sticky: members stay
//! while they are members of the cluster; only a removed member is replaced, and a table
//! that wants more replicas than it has gains them as voters join.
//!
//! A group is formed once, by its first members (`initial`), each calling openraft's
//! `initialize` with the same membership, which openraft allows. After any change
//! (`generation` > 0) nobody initializes again: new members wait to be added by the
//! group's leader, so a member that lost its log can never start a second group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::NodeId;

/// Where a table lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The Raft group of the table's blocks; new for every table created, so a table
    /// created again under a dropped table's name never meets the old group's log.
    pub group: String,
    /// The members of the group: the voters it should have.
    pub members: Vec<NodeId>,
    /// The members the group was formed with.
    pub initial: Vec<NodeId>,
    /// How often the members changed since the group was formed.
    pub generation: u64,
}

impl Placement {
    pub fn holds(&self, node: NodeId) -> bool {
        self.members.contains(&node)
    }

    /// Whether `node` forms the group when it has no Raft state for it.
    pub fn forms(&self, node: NodeId) -> bool {
        self.generation == 0 && self.initial.contains(&node)
    }

    /// Whether `node` forms the group at once; the other first members wait for it.
    pub fn forms_first(&self, node: NodeId) -> bool {
        self.generation == 0 && self.initial.first() == Some(&node)
    }
}

/// Every table's placement, replicated through the meta group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placements {
    pub tables: BTreeMap<String, Placement>,
}

impl Placements {
    pub fn of(&self, table: &str) -> Option<&Placement> {
        self.tables.get(table)
    }

    /// The table whose group is `group`.
    pub fn table_of_group(&self, group: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|(_, p)| p.group == group)
            .map(|(t, _)| t.as_str())
    }
}
