//! The server side of the Raft transport: decodes a peer's message, checks that it comes
//! from this node's cluster and names a group this node runs, and hands it to that
//! group's openraft or to the coordinator (`PeerHandler`, which `cluster` implements:
//! this layer calls up into it through the trait and never imports it).

use std::pin::Pin;
use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use futures::{Stream, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::messages::{
    Heartbeat, HeartbeatReply, JoinRequest, LeaveRequest, NodeInfo, PeerError, PeerErrorKind,
    ProposeError, TableReadReply, TableReadRequest,
};
use super::{decode, encode, Command, Raft, Response as Applied, TypeConfig, META_GROUP};
use crate::query::remote_scan::{self, RemoteScanError};
use crate::raft_proto::raft_server::Raft as RaftRpc;
use crate::raft_proto::{RaftReply, RaftRequest, ScanChunk, ScanRequest};
use crate::table::PartRef;
use crate::topology::{Member, NodeId};

/// What a peer's messages need of this node's coordinator.
#[tonic::async_trait]
pub trait PeerHandler: Send + Sync + 'static {
    fn node_id(&self) -> NodeId;
    fn member(&self) -> &Member;
    /// This node's cluster id; empty until it is known.
    fn cluster_id(&self) -> String;
    /// The Raft of `group` (`meta` or a table's), if this node runs it.
    fn raft_of(&self, group: &str) -> Option<Raft>;
    /// A peer's proposal for `group`.
    async fn propose(&self, group: &str, command: Command) -> Result<(Applied, u64), ProposeError>;
    async fn join(&self, request: JoinRequest) -> Result<String, PeerError>;
    async fn leave(&self, request: LeaveRequest) -> Result<String, PeerError>;
    fn heartbeat(&self, beat: Heartbeat) -> HeartbeatReply;
    /// Campaign now in `group`, at its leader's request.
    async fn elect(&self, group: &str) -> Result<(), PeerError>;
    /// On `group`'s leader: the index a linearizable read must see applied.
    async fn read_index(&self, group: &str) -> Result<u64, PeerError>;
    async fn read(
        &self,
        group: &str,
        request: TableReadRequest,
    ) -> Result<TableReadReply, PeerError>;
    /// A table's schema and this replica's parts, pinned, past the read barrier if asked.
    async fn scan_parts(
        &self,
        group: &str,
        table: &str,
        linearizable: bool,
    ) -> Result<(arrow::datatypes::SchemaRef, Vec<PartRef>), PeerError>;
    async fn info(&self) -> NodeInfo;
}

pub struct RaftService {
    pub cluster: Arc<dyn PeerHandler>,
    /// Where a peer's scan reads this node's parts: the queries' object store and memory.
    pub query_runtime: Arc<RuntimeEnv>,
}

impl RaftService {
    /// A message for the `meta` group only.
    fn accept<T: DeserializeOwned>(&self, request: Request<RaftRequest>) -> Result<T, Status> {
        let (group, payload) = self.accept_any(request)?;
        if group != META_GROUP {
            return Err(Status::invalid_argument(format!(
                "this call is for the meta group, not {group}"
            )));
        }
        Ok(payload)
    }

    /// A Raft message for a group this node runs, and that group's Raft.
    fn accept_raft<T: DeserializeOwned>(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<(Raft, T), Status> {
        let (group, payload) = self.accept_any(request)?;
        match self.cluster.raft_of(&group) {
            Some(raft) => Ok((raft, payload)),
            None => Err(Status::not_found(format!(
                "{} does not run raft group {group}",
                self.cluster.member()
            ))),
        }
    }

    /// Refuses peers of another cluster; returns the group and the decoded payload.
    fn accept_any<T: DeserializeOwned>(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<(String, T), Status> {
        let request = request.into_inner();
        self.check_sender(request.target, &request.cluster_id)?;
        let payload = decode(&request.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
        Ok((request.group, payload))
    }

    /// Refuses a message for another Raft id, or from a peer of another cluster.
    fn check_sender(&self, target: u64, cluster_id: &str) -> Result<(), Status> {
        let me = self.cluster.node_id();
        if target != 0 && target != me {
            return Err(Status::failed_precondition(format!(
                "message for raft node {target}, but this is node {me}: the address changed hands"
            )));
        }
        let ours = self.cluster.cluster_id();
        if !ours.is_empty() && !cluster_id.is_empty() && ours != cluster_id {
            return Err(Status::failed_precondition(format!(
                "this node belongs to cluster {ours}, the sender to cluster {cluster_id}"
            )));
        }
        Ok(())
    }
}

fn scan_status(e: RemoteScanError) -> Status {
    match e {
        RemoteScanError::NoColumn { .. } | RemoteScanError::NoColumns { .. } => {
            Status::invalid_argument(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

/// The gRPC status of an error of this kind; the one mapping, for peers and clients.
pub fn status_of(kind: PeerErrorKind, message: String) -> Status {
    match kind {
        PeerErrorKind::NotHere | PeerErrorKind::NotFound => Status::not_found(message),
        PeerErrorKind::Unavailable => Status::unavailable(message),
        PeerErrorKind::Refused => Status::failed_precondition(message),
        PeerErrorKind::Failed => Status::internal(message),
    }
}

fn peer_status(e: PeerError) -> Status {
    status_of(e.kind, e.message)
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftReply>, Status> {
    let payload = encode(value).map_err(|e| Status::internal(format!("encoding a reply: {e}")))?;
    Ok(Response::new(RaftReply { payload }))
}

type ScanStream = Pin<Box<dyn Stream<Item = Result<ScanChunk, Status>> + Send>>;

#[tonic::async_trait]
impl RaftRpc for RaftService {
    type ScanStream = ScanStream;

    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (raft, rpc): (_, openraft::raft::AppendEntriesRequest<TypeConfig>) =
            self.accept_raft(request)?;
        reply(&raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (raft, rpc): (_, openraft::raft::VoteRequest<super::NodeId>) =
            self.accept_raft(request)?;
        reply(&raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (raft, rpc): (_, openraft::raft::InstallSnapshotRequest<TypeConfig>) =
            self.accept_raft(request)?;
        reply(&raft.install_snapshot(rpc).await)
    }

    async fn propose(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (group, command): (String, Command) = self.accept_any(request)?;
        reply(&self.cluster.propose(&group, command).await)
    }

    async fn join(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let join: JoinRequest = self.accept(request)?;
        reply(&self.cluster.join(join).await)
    }

    async fn leave(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let leave: LeaveRequest = self.accept(request)?;
        reply(&self.cluster.leave(leave).await)
    }

    async fn heartbeat(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let beat: Heartbeat = self.accept(request)?;
        reply(&self.cluster.heartbeat(beat))
    }

    async fn elect(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (group, super::messages::ElectRequest): (String, _) = self.accept_any(request)?;
        reply(&self.cluster.elect(&group).await)
    }

    async fn read_index(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (group, super::messages::ReadIndexRequest): (String, _) = self.accept_any(request)?;
        reply(&self.cluster.read_index(&group).await)
    }

    async fn read(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (group, read): (String, TableReadRequest) = self.accept_any(request)?;
        reply(&self.cluster.read(&group, read).await)
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanStream>, Status> {
        let request = request.into_inner();
        self.check_sender(0, &request.cluster_id)?;
        let limit = request
            .limit
            .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
        let (schema, parts) = self
            .cluster
            .scan_parts(&request.group, &request.table, request.linearizable)
            .await
            .map_err(peer_status)?;
        let table = &request.table;
        let projection =
            remote_scan::projection_of(table, &schema, &request.columns).map_err(scan_status)?;
        let projected = Arc::new(
            schema
                .project(&projection)
                .map_err(|e| Status::internal(format!("table {table}: {e}")))?,
        );
        let batches = remote_scan::read_parts(
            self.query_runtime.clone(),
            table,
            schema,
            parts,
            &projection,
            limit,
        )
        .map_err(scan_status)?;
        let chunks =
            remote_scan::encode_chunks(table, projected, batches, remote_scan::CHUNK_BYTES)
                .map_err(scan_status)?;
        Ok(Response::new(Box::pin(chunks.map_err(scan_status))))
    }

    async fn info(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let super::messages::InfoRequest = self.accept(request)?;
        reply(&self.cluster.info().await)
    }
}
