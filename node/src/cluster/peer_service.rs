//! What the Raft service hands to the coordinator (`raft::service::PeerHandler`): a
//! peer's proposals, membership requests, heartbeats, reads and scans, answered with
//! typed errors whose kind tells the peer whether to ask again or elsewhere.

use arrow::datatypes::SchemaRef;

use super::Cluster;
use crate::raft::messages::{
    Heartbeat, HeartbeatReply, JoinRequest, LeaveRequest, NodeInfo, PeerError, PeerErrorKind,
    ProposeError, TableReadReply, TableReadRequest,
};
use crate::raft::network::cluster_id_of;
use crate::raft::service::PeerHandler;
use crate::raft::{Command, Raft, Response};
use crate::table::PartRef;
use crate::topology::{Member, NodeId};

#[tonic::async_trait]
impl PeerHandler for Cluster {
    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn member(&self) -> &Member {
        &self.member
    }

    fn cluster_id(&self) -> String {
        cluster_id_of(&self.cluster_id)
    }

    fn raft_of(&self, group: &str) -> Option<Raft> {
        Cluster::raft_of(self, group)
    }

    async fn propose(
        &self,
        group: &str,
        command: Command,
    ) -> Result<(Response, u64), ProposeError> {
        self.propose_for_peer(group, command).await
    }

    async fn join(&self, request: JoinRequest) -> Result<String, PeerError> {
        Cluster::join(self, request).await.map_err(|e| e.to_peer())
    }

    async fn leave(&self, request: LeaveRequest) -> Result<String, PeerError> {
        Cluster::leave(self, request).await.map_err(|e| e.to_peer())
    }

    fn heartbeat(&self, beat: Heartbeat) -> HeartbeatReply {
        self.heard_from(beat)
    }

    /// At a leader's request: campaign now in `group` (refused while draining).
    async fn elect(&self, group: &str) -> Result<(), PeerError> {
        if self.is_draining() {
            return Err(PeerError::new(
                PeerErrorKind::Refused,
                format!("{} is draining", self.member),
            ));
        }
        let raft = Cluster::raft_of(self, group).ok_or_else(|| {
            PeerError::new(
                PeerErrorKind::NotHere,
                format!("{} does not run group {group}", self.member),
            )
        })?;
        raft.trigger()
            .elect()
            .await
            .map_err(|e| PeerError::new(PeerErrorKind::Failed, format!("group {group}: {e}")))
    }

    async fn read_index(&self, group: &str) -> Result<u64, PeerError> {
        self.read_index_in(group).await.map_err(|e| e.to_peer())
    }

    async fn read(
        &self,
        group: &str,
        request: TableReadRequest,
    ) -> Result<TableReadReply, PeerError> {
        self.read_for_peer(group, request)
            .await
            .map_err(|e| e.to_peer())
    }

    async fn scan_parts(
        &self,
        group: &str,
        table: &str,
        linearizable: bool,
    ) -> Result<(SchemaRef, Vec<PartRef>), PeerError> {
        self.scan_for_peer(group, table, linearizable)
            .await
            .map_err(|e| e.to_peer())
    }

    async fn info(&self) -> NodeInfo {
        Cluster::info(self).await
    }
}
