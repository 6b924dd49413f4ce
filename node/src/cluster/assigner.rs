//! On the meta leader: keeps the partition assignment balanced over the live voters, and
//! places every stored table on its replicas. Proposes a new assignment when a member
//! joins, leaves or falls silent, or partitions appear. The plans are pure
//! (`assignment::rebalance`, `placement::plan`); this file does their I/O.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{assignment, placement, Cluster, ClusterError};
use crate::ingest::discovery::{discover, PartitionCounts};
use crate::raft::Command;
use crate::topology::{NodeId, Slot};

/// How often the leader looks at liveness and partitions.
const ASSIGN_INTERVAL: Duration = Duration::from_secs(1);
/// How often the leader asks Kafka for partition counts.
const METADATA_INTERVAL: Duration = Duration::from_secs(10);

impl Cluster {
    pub(super) async fn assigner_loop(&self) -> Result<(), ClusterError> {
        let mut partitions = PartitionCounts::new();
        let mut metadata_at: Option<Instant> = None;
        let mut catalog_seen = 0u64;
        let mut changes = self.state.watch_catalog();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ASSIGN_INTERVAL) => {}
                _ = changes.changed() => {}
            }
            if !self.is_leader() {
                metadata_at = None;
                continue;
            }
            let version = *changes.borrow();
            if metadata_at.is_none_or(|t| t.elapsed() > METADATA_INTERVAL)
                || version != catalog_seen
            {
                partitions = self.partition_counts(&partitions).await;
                metadata_at = Some(Instant::now());
                catalog_seen = version;
            }
            let slots = self.slots(&partitions);
            let live = self.live_voters();
            if !self.knows_every_member() {
                // A new leader has not heard every member yet: a draining one would
                // look live and be handed partitions back.
                continue;
            }
            self.place_tables().await;
            let current = self.state.assignments().nodes();
            let next = assignment::rebalance(&current, &slots, &live);
            if next != current {
                tracing::info!(live = ?live, slots = slots.len(), "proposing a new partition assignment");
                let owners = next.into_iter().collect();
                if let Err(e) = self.write(Command::Assign { owners }).await {
                    tracing::warn!(error = %e, "proposing the assignment failed");
                }
            }
        }
    }

    /// Partition counts from Kafka; a topic that cannot be read keeps its last count.
    async fn partition_counts(&self, known: &PartitionCounts) -> PartitionCounts {
        let catalog = self.state.catalog();
        let mut out = PartitionCounts::new();
        for (key, found) in discover(&self.kafka, &catalog).await {
            match found {
                Ok(n) => {
                    out.insert(key, n);
                }
                Err(error) => {
                    tracing::debug!(table = %key.0, topic = %key.1, %error, "partition discovery failed");
                    if let Some(n) = known.get(&key) {
                        out.insert(key, *n);
                    }
                }
            }
        }
        out
    }

    /// Every partition of every attached Kafka table that feeds a view, each partition of a
    /// shared group's topic once, for the table of the group that reads it.
    fn slots(&self, partitions: &PartitionCounts) -> BTreeSet<Slot> {
        let catalog = self.state.catalog();
        let shares = catalog.group_shares();
        let mut out = BTreeSet::new();
        for (table, settings) in catalog.consuming_kafka_tables() {
            for topic in &settings.topic_list {
                let count = partitions
                    .get(&(table.name.clone(), topic.clone()))
                    .copied()
                    .unwrap_or(0);
                for partition in (0..count).filter(|p| shares.reads(&table.name, topic, *p)) {
                    out.insert(Slot {
                        table: table.name.clone(),
                        topic: topic.clone(),
                        partition,
                    });
                }
            }
        }
        out
    }

    /// On the leader: the voters heard from within the node timeout.
    fn live_voters(&self) -> BTreeSet<NodeId> {
        let term = self.raft.metrics().borrow().current_term;
        self.liveness.live_voters(
            self.node_id,
            self.is_draining(),
            term,
            &self.voters(),
            Instant::now(),
        )
    }

    /// On the leader: whether it heard every member since it leads (see `Liveness`).
    fn knows_every_member(&self) -> bool {
        let term = self.raft.metrics().borrow().current_term;
        self.liveness
            .knows_every_member(self.node_id, term, &self.voters(), Instant::now())
    }

    /// On the meta leader: proposes a placement for every stored table that has none or
    /// whose members must change.
    pub async fn place_tables(&self) {
        let catalog = self.state.catalog();
        let wanted: Vec<placement::Wanted<'_>> = catalog
            .tables
            .values()
            .filter_map(|t| {
                t.replicas().map(|replicas| placement::Wanted {
                    table: &t.name,
                    replicas,
                })
            })
            .collect();
        let changes = placement::plan(
            &self.state.placements(),
            &wanted,
            &self.voters(),
            &self.live_voters(),
            super::group::new_group_id,
        );
        for (table, placement) in changes {
            tracing::info!(%table, group = %placement.group, members = ?placement.members, generation = placement.generation, "placing a table");
            let placed = self
                .write(Command::Place {
                    table: table.clone(),
                    placement: Some(placement),
                })
                .await;
            if let Err(e) = placed {
                tracing::warn!(%table, error = %e, "proposing a placement failed");
            }
        }
    }
}
