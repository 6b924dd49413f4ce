//! What queries need of the rest of the node, as traits: where a stored table's rows are
//! (`TableSource`, implemented by `cluster`), and what the cluster's members report for
//! the `system.*` tables (`ClusterTables`, implemented by `admin`). Query never imports
//! those modules; they call down into it.

use std::sync::Arc;

use crate::dead_letters::DeadLetter;
use crate::raft_proto::ScanChunk;
use crate::table::{PartRef, TableStore, WriterLogEntry};

pub use super::system_tables::{GroupRow, NodeConsumer, ReplicaRow};

/// The error of a read the cluster could not serve; the implementor's own typed error.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// What a scan of a table reads.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    /// The columns, in the order the scan yields them; at least one.
    pub columns: Vec<String>,
    pub limit: Option<usize>,
    /// See every write acknowledged before the scan.
    pub linearizable: bool,
}

/// Where a scan of a table reads from.
pub enum TableScan {
    /// This node's replica: its parts, pinned, past the read barrier if asked.
    Local(Vec<PartRef>),
    /// A member's replica, streaming the rows as the chunks of one Arrow IPC stream.
    Remote {
        from: String,
        chunks: Box<tonic::Streaming<ScanChunk>>,
    },
}

/// Where a stored table's rows are: this node's replica, or a member's.
#[async_trait::async_trait]
pub trait TableSource: Send + Sync {
    /// This node's replica of `table`, if it runs the table's group.
    fn local_replica(&self, table: &str) -> Option<Arc<TableStore>>;
    /// Waits until this node's replica of `table` applied every write its group
    /// acknowledged before the call.
    async fn replica_barrier(&self, table: &str) -> Result<(), SourceError>;
    /// Waits until this node applied every catalog write committed before the call.
    async fn catalog_barrier(&self) -> Result<(), SourceError>;
    /// The table's row count, from a replica.
    async fn row_count(&self, table: &str, linearizable: bool) -> Result<u64, SourceError>;
    /// The table's writer log, from a replica.
    async fn writer_log(&self, table: &str) -> Result<Vec<WriterLogEntry>, SourceError>;
    /// Opens a scan: this node's replica if it holds one, else a member's.
    async fn open_scan(&self, table: &str, spec: &ScanSpec) -> Result<TableScan, SourceError>;
}

/// What the cluster's members report, for the `system.*` tables that ask every member.
#[async_trait::async_trait]
pub trait ClusterTables: Send + Sync {
    /// This node's name, as the members know it.
    fn node_name(&self) -> String;
    /// Every member's consumers (those that answer), for `system.kafka_consumers`.
    async fn consumers(&self) -> Vec<NodeConsumer>;
    /// Every member's dead letters (those that answer), with the member's name, for
    /// `system.dead_letter_queue`.
    async fn dead_letters(&self) -> Vec<(String, DeadLetter)>;
    /// Every member with its Raft position, for `system.replicas`.
    async fn replicas(&self) -> Vec<ReplicaRow>;
    /// This node's data groups, for `system.raft_groups`.
    fn raft_groups(&self) -> Vec<GroupRow>;
}
