//! What ingestion asks of the coordinator (`ingest::Replica`): whether this node runs a
//! partition's consumer, at which epoch, and the fenced write path of its blocks.

use super::Cluster;
use crate::ingest::{Replica, ReplicaError};
use crate::raft::messages::{TableRead, TableReadReply};
use crate::raft::Fence;
use crate::table::{ApplyOutcome, Block, PositionKey};
use crate::topology::{ConsumerKey, Slot};

fn cluster_error(table: &str, e: super::ClusterError) -> ReplicaError {
    ReplicaError::Cluster {
        table: table.to_string(),
        source: Box::new(e),
    }
}

#[async_trait::async_trait]
impl Replica for Cluster {
    fn assigned_epoch(&self, key: &ConsumerKey) -> Option<u64> {
        if self.is_removed() {
            return None;
        }
        self.state
            .assignments()
            .owner(&Slot::of(key))
            .filter(|o| o.node == self.node_id)
            .map(|o| o.epoch)
    }

    async fn stored_offset(
        &self,
        table: &str,
        key: &PositionKey,
    ) -> Result<Option<i64>, ReplicaError> {
        match self
            .read_table(table, TableRead::Position(key.clone()), true)
            .await
        {
            Ok(TableReadReply::Position(offset)) => Ok(offset),
            Ok(other) => Err(cluster_error(
                table,
                super::ClusterError::UnexpectedReply {
                    group: table.to_string(),
                    asked: "stored position",
                    reply: format!("{other:?}"),
                },
            )),
            Err(e) => Err(cluster_error(table, e)),
        }
    }

    async fn write_block(
        &self,
        key: &ConsumerKey,
        epoch: u64,
        block: Block,
    ) -> Result<ApplyOutcome, ReplicaError> {
        // The table fences a stale epoch once a newer one wrote; a consumer that already
        // knows it lost its partition stops before that.
        let current = self.assigned_epoch(key);
        if current != Some(epoch) {
            return Err(ReplicaError::NotAssigned {
                slot: Slot::of(key),
                epoch,
                current,
            });
        }
        let fence = Fence {
            slot: Slot::of(key),
            node: self.node_id,
            epoch,
        };
        let table = block.table.clone();
        Cluster::write_block(self, block, Some(fence))
            .await
            .map_err(|e| cluster_error(&table, e))
    }
}
