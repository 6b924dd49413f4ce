//! The ground floor: the ids and replicated records every layer above shares — who a
//! node is, which node runs each partition consumer, where each table lives.
//!
//! Plain data and pure queries only: imports nothing of the crate, so `raft`, `state`,
//! `query`, `ingest` and `cluster` can all name these without importing each other.

mod assignment;
mod consumer;
mod placement;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use assignment::{Assignments, Owner, Slot};
pub use consumer::{lag, resume_position, ConsumerKey, ConsumerSnapshot};
pub use placement::{Placement, Placements};

/// A node's Raft id: drawn at random the first time its data dir is used.
pub type NodeId = u64;

/// A member as the others see it: its name (stable across restarts, e.g. a pod name) and
/// the gRPC address it serves on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}
