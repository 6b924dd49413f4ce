//! A replica's image for a Raft snapshot: its records, small, and the names of the part
//! files they refer to, which travel beside it as files and are never held in memory.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableImage {
    /// Every record of the replica: part list, positions, dedup window, epochs, writer log.
    #[serde(with = "crate::state::image_pairs")]
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The part files the records name, in order: file name (no directory) and length.
    pub files: Vec<(String, u64)>,
}
