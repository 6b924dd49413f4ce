//! Reads of a table wherever a replica is: this node's if it runs the table's group
//! (past the group's read barrier when the read must see every acknowledged write), else
//! a member's, asked in placement order. Also what a peer's read or scan of this node's
//! replica does, and the `TableSource` queries read through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;

use super::{Cluster, ClusterError, DataGroup, WRITE_TIMEOUT};
use crate::query::source::{ScanSpec, SourceError, TableScan, TableSource};
use crate::raft::log_store::Formation;
use crate::raft::messages::{ReadIndexRequest, TableRead, TableReadReply, TableReadRequest};
use crate::raft::network::TransportError;
use crate::raft::{Raft, META_GROUP};
use crate::raft_proto::ScanRequest;
use crate::table::{PartRef, TableStore, WriterLogEntry};
use crate::topology::Member;

/// How long a read from another node's replica may take; for a scan, how long the
/// replica may take to start streaming.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read waits for some member to run a table's group (one placed a moment ago
/// starts within a keeper pass), and how often it asks again meanwhile.
const GROUP_START_WAIT: Duration = Duration::from_secs(3);
const GROUP_START_RETRY: Duration = Duration::from_millis(50);
/// How long a group's leader may take to give a read index.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a read barrier asks again for a leader.
const BARRIER_RETRY: Duration = Duration::from_millis(100);

impl Cluster {
    /// Reads `table`, from this node's replica if it holds one, else from a member's.
    pub async fn read_table(
        &self,
        table: &str,
        read: TableRead,
        linearizable: bool,
    ) -> Result<TableReadReply, ClusterError> {
        let request = TableReadRequest {
            table: table.to_string(),
            linearizable,
            read: read.clone(),
        };
        let asked = self
            .ask_replicas(table, linearizable, |member, group| {
                let request = &request;
                async move {
                    self.peers
                        .call_group(&member.addr, &group, request, READ_TIMEOUT)
                        .await?
                        .map_err(|source| ClusterError::Remote {
                            peer: member.to_string(),
                            source,
                        })
                }
            })
            .await?;
        match asked {
            Some(reply) => Ok(reply),
            None => self.read_local(table, read),
        }
    }

    /// Opens a scan of `table`: this node's replica if it holds one, else a stream of
    /// rows from a member's.
    pub async fn open_scan(&self, table: &str, spec: &ScanSpec) -> Result<TableScan, ClusterError> {
        let cluster_id = crate::raft::network::cluster_id_of(&self.cluster_id);
        let asked = self
            .ask_replicas(table, spec.linearizable, |member, group| {
                let request = ScanRequest {
                    cluster_id: cluster_id.clone(),
                    group,
                    table: table.to_string(),
                    columns: spec.columns.clone(),
                    limit: spec.limit.and_then(|l| u64::try_from(l).ok()),
                    linearizable: spec.linearizable,
                };
                async move {
                    let mut client = self.peers.client(&member.addr).await?;
                    // Only the start is bounded: the rows then come as fast as the query
                    // takes them.
                    let status = |status| TransportError::Status {
                        addr: member.addr.clone(),
                        status,
                    };
                    let opened = tokio::time::timeout(READ_TIMEOUT, client.scan(request))
                        .await
                        .map_err(|_| {
                            status(tonic::Status::deadline_exceeded(format!(
                                "no answer within {READ_TIMEOUT:?}"
                            )))
                        })?
                        .map_err(status)?;
                    Ok(TableScan::Remote {
                        from: member.to_string(),
                        chunks: Box::new(opened.into_inner()),
                    })
                }
            })
            .await?;
        match asked {
            Some(scan) => Ok(scan),
            None => Ok(TableScan::Local(self.local_parts(table)?)),
        }
    }

    /// Asks the members of `table`'s group, in placement order, until one answers; `None`
    /// when the read is this node's (it runs the group, past the read barrier if asked,
    /// or the table is not placed yet and nothing is stored anywhere).
    async fn ask_replicas<T, F, Fut>(
        &self,
        table: &str,
        linearizable: bool,
        mut ask: F,
    ) -> Result<Option<T>, ClusterError>
    where
        F: FnMut(Member, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterError>>,
    {
        let deadline = Instant::now() + GROUP_START_WAIT;
        loop {
            let Some(placement) = self.state.placements().of(table).cloned() else {
                if self.state.catalog().table(table).is_none() {
                    return Err(ClusterError::NoTable {
                        table: table.to_string(),
                    });
                }
                return Ok(None);
            };
            if let Some(g) = self.data_group(&placement.group) {
                if linearizable {
                    self.group_read_barrier(&g).await?;
                }
                return Ok(None);
            }
            let mut failures = Vec::new();
            for id in &placement.members {
                let Some(member) = self.member_of(*id) else {
                    continue;
                };
                match ask(member.clone(), placement.group.clone()).await {
                    Ok(answer) => return Ok(Some(answer)),
                    Err(e) => failures.push((member, e)),
                }
            }
            // A table placed a moment ago has no running group until its members' keepers
            // start it, within a pass: a read right after `CREATE` waits for that.
            if Instant::now() >= deadline {
                return Err(ClusterError::NoReplicaAnswered {
                    table: table.to_string(),
                    failures,
                });
            }
            tokio::time::sleep(GROUP_START_RETRY).await;
        }
    }

    /// The number of rows of `table`, from a replica; none when no replica answers.
    pub async fn table_rows(&self, table: &str) -> Option<u64> {
        match self.read_table(table, TableRead::RowCount, false).await {
            Ok(TableReadReply::RowCount(n)) => Some(n),
            _ => None,
        }
    }

    /// A peer's read of a table this node holds.
    pub async fn read_for_peer(
        &self,
        group: &str,
        request: TableReadRequest,
    ) -> Result<TableReadReply, ClusterError> {
        let g = self
            .data_group(group)
            .filter(|g| g.table == request.table)
            .ok_or_else(|| ClusterError::NoReplica {
                member: self.member.to_string(),
                table: request.table.clone(),
                group: group.to_string(),
            })?;
        if let TableRead::Formed = request.read {
            let formation = g.log_store.formation()?;
            return Ok(TableReadReply::Formed(formation == Formation::Started));
        }
        if request.linearizable {
            self.group_read_barrier(&g).await?;
        }
        self.read_local(&request.table, request.read)
    }

    /// A peer's scan of a table this node holds: the table's schema and its replica's
    /// parts, pinned, past the read barrier if asked.
    pub async fn scan_for_peer(
        &self,
        group: &str,
        table: &str,
        linearizable: bool,
    ) -> Result<(SchemaRef, Vec<PartRef>), ClusterError> {
        let g = self
            .data_group(group)
            .filter(|g| g.table == table)
            .ok_or_else(|| ClusterError::NoReplica {
                member: self.member.to_string(),
                table: table.to_string(),
                group: group.to_string(),
            })?;
        if linearizable {
            self.group_read_barrier(&g).await?;
        }
        let schema = self
            .state
            .catalog()
            .table(table)
            .map(|t| t.read_schema())
            .ok_or_else(|| ClusterError::NoTable {
                table: table.to_string(),
            })?;
        Ok((schema, self.local_parts(table)?))
    }

    /// This node's replica's parts, pinned.
    fn local_parts(&self, table: &str) -> Result<Vec<PartRef>, ClusterError> {
        let store = self
            .state
            .tables
            .get(table)
            .map_err(|e| ClusterError::table(table, e))?;
        store.parts().map_err(|e| ClusterError::table(table, e))
    }

    fn read_local(&self, table: &str, read: TableRead) -> Result<TableReadReply, ClusterError> {
        let store = self
            .state
            .tables
            .get(table)
            .map_err(|e| ClusterError::table(table, e))?;
        let table_err = |e| ClusterError::table(table, e);
        Ok(match read {
            TableRead::Position(key) => {
                TableReadReply::Position(store.next_offset(&key).map_err(table_err)?)
            }
            TableRead::RowCount => TableReadReply::RowCount(store.row_count().map_err(table_err)?),
            TableRead::WriterLog => {
                TableReadReply::WriterLog(store.writer_log().map_err(table_err)?)
            }
            // A replica's Raft answers it (`read_for_peer`), never its table.
            TableRead::Formed => TableReadReply::Formed(false),
        })
    }

    /// Waits until this node's replica of a group has applied every write the group
    /// acknowledged before the call.
    pub async fn group_read_barrier(&self, g: &DataGroup) -> Result<(), ClusterError> {
        self.barrier(&g.raft, &g.group).await
    }

    /// Waits until this node has applied every write committed before the call, so a
    /// local read that follows sees them (`select_sequential_consistency = 1`).
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        self.barrier(&self.raft, META_GROUP).await
    }

    /// Waits until this node's replica of `group` (run by `raft`) has applied every write
    /// the group committed before the call.
    async fn barrier(&self, raft: &Raft, group: &str) -> Result<(), ClusterError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let index = loop {
            let metrics = raft.metrics().borrow().clone();
            let leader = metrics.current_leader.and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|m| (id, m.clone()))
            });
            match leader {
                Some((id, _)) if id == self.node_id => {
                    if let Ok(i) = self.read_index_in(group).await {
                        break i;
                    }
                }
                Some((_, leader)) => {
                    let asked = self
                        .peers
                        .call_group(&leader.addr, group, &ReadIndexRequest, READ_INDEX_TIMEOUT)
                        .await;
                    if let Ok(Ok(i)) = asked {
                        break i;
                    }
                }
                None => {}
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NoLeader {
                    group: group.to_string(),
                    waited: WRITE_TIMEOUT,
                });
            }
            tokio::time::sleep(BARRIER_RETRY).await;
        };
        raft.wait(Some(WRITE_TIMEOUT))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|source| ClusterError::CatchUp {
                group: group.to_string(),
                source,
            })?;
        Ok(())
    }

    /// On a group's leader: the index a linearizable read must see applied.
    pub async fn read_index_in(&self, group: &str) -> Result<u64, ClusterError> {
        let raft = self
            .raft_of(group)
            .ok_or_else(|| ClusterError::NotInGroup {
                member: self.member.to_string(),
                group: group.to_string(),
            })?;
        let read = raft
            .ensure_linearizable()
            .await
            .map_err(|source| ClusterError::ReadIndex {
                group: group.to_string(),
                source: Box::new(source),
            })?;
        Ok(read.map(|l| l.index).unwrap_or(0))
    }
}

#[async_trait::async_trait]
impl TableSource for Cluster {
    fn local_replica(&self, table: &str) -> Option<Arc<TableStore>> {
        self.hosted_group_of(table)?;
        self.state.tables.get(table).ok()
    }

    async fn replica_barrier(&self, table: &str) -> Result<(), SourceError> {
        if let Some(g) = self.hosted_group_of(table) {
            self.group_read_barrier(&g).await?;
        }
        Ok(())
    }

    async fn catalog_barrier(&self) -> Result<(), SourceError> {
        Ok(self.read_barrier().await?)
    }

    async fn row_count(&self, table: &str, linearizable: bool) -> Result<u64, SourceError> {
        match self
            .read_table(table, TableRead::RowCount, linearizable)
            .await?
        {
            TableReadReply::RowCount(rows) => Ok(rows),
            other => Err(unexpected(table, "row count", &other).into()),
        }
    }

    async fn writer_log(&self, table: &str) -> Result<Vec<WriterLogEntry>, SourceError> {
        match self.read_table(table, TableRead::WriterLog, false).await? {
            TableReadReply::WriterLog(log) => Ok(log),
            other => Err(unexpected(table, "writer log", &other).into()),
        }
    }

    async fn open_scan(&self, table: &str, spec: &ScanSpec) -> Result<TableScan, SourceError> {
        Ok(Cluster::open_scan(self, table, spec).await?)
    }
}

fn unexpected(table: &str, asked: &'static str, reply: &TableReadReply) -> ClusterError {
    ClusterError::UnexpectedReply {
        group: table.to_string(),
        asked,
        reply: format!("{reply:?}"),
    }
}
