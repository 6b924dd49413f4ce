//! Replicated table storage: parts (sorted Parquet files) and their merges, the dedup
//! window, per-partition source positions, snapshot images, and reads for queries.
//!
//! Must not import `raft`, `actix` or `rdkafka`: the replication layer calls `apply` with
//! blocks in log order, and apply depends only on the block and the stored state.

pub mod apply;
pub mod block;
pub mod image;
pub mod merge_policy;
pub mod part;
pub mod store;

pub use apply::Decision;
pub use block::{Block, PositionKey, SourceRange};
pub use image::{image_pairs, TableImage};
pub use merge_policy::MergePolicy;
pub use part::{Part, PartRef};
pub use store::{ApplyOutcome, MergeReport, TableStore, Tables, Writer, WriterLogEntry};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table}: storage: {source}")]
    Storage {
        table: String,
        #[source]
        source: sled::Error,
    },
    #[error("table {table}: stored block is unreadable: {reason}")]
    Corrupt { table: String, reason: String },
    #[error("table {0}: a writer panicked while holding its lock")]
    Poisoned(String),
    #[error("table {table}: block file: {source}")]
    File {
        table: String,
        #[source]
        source: std::io::Error,
    },
}

impl TableError {
    pub fn storage(table: &str, source: sled::Error) -> TableError {
        TableError::Storage {
            table: table.to_string(),
            source,
        }
    }
}
