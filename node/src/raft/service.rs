//! The server side of the Raft transport: decodes a peer's message, checks that it comes
//! from this node's cluster and names a group this node runs, and hands it to that
//! group's openraft, to the cluster's membership logic, or to a table read or scan.

use std::pin::Pin;
use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use futures::{Stream, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::network::cluster_id_of;
use super::{decode, encode, Command, Raft, TypeConfig, META_GROUP};
use crate::cluster::groups::TableReadRequest;
use crate::cluster::{Cluster, ClusterError, JoinRequest};
use crate::query::remote_scan::{self, RemoteScanError};
use crate::raft_proto::raft_server::Raft as RaftRpc;
use crate::raft_proto::{RaftReply, RaftRequest, ScanChunk, ScanRequest};

pub struct RaftService {
    pub cluster: Arc<Cluster>,
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
                self.cluster.member
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
        if target != 0 && target != self.cluster.node_id {
            return Err(Status::failed_precondition(format!(
                "message for raft node {target}, but this is node {}: the address changed hands",
                self.cluster.node_id
            )));
        }
        let ours = cluster_id_of(&self.cluster.cluster_id);
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

fn cluster_status(e: ClusterError) -> Status {
    match e {
        ClusterError::NoReplica { .. } => Status::not_found(e.to_string()),
        _ => Status::unavailable(e.to_string()),
    }
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
        reply(&self.cluster.propose_for_peer(&group, command).await)
    }

    async fn join(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let join: JoinRequest = self.accept(request)?;
        let result: Result<String, String> =
            self.cluster.join(join).await.map_err(|e| e.to_string());
        reply(&result)
    }

    async fn leave(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let who: String = self.accept(request)?;
        let result: Result<String, String> =
            self.cluster.leave(who).await.map_err(|e| e.to_string());
        reply(&result)
    }

    async fn heartbeat(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let beat: crate::cluster::Heartbeat = self.accept(request)?;
        reply(&self.cluster.heard_from(beat))
    }

    async fn elect(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (group, ()): (String, ()) = self.accept_any(request)?;
        let result: Result<(), String> = self.cluster.elect_in(&group).await;
        reply(&result)
    }

    async fn read_index(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let (group, ()): (String, ()) = self.accept_any(request)?;
        let result: Result<u64, String> = self
            .cluster
            .read_index_in(&group)
            .await
            .map_err(|e| e.to_string());
        reply(&result)
    }

    async fn read(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let (group, read): (String, TableReadRequest) = self.accept_any(request)?;
        reply(&self.cluster.read_for_peer(&group, read).await)
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanStream>, Status> {
        let request = request.into_inner();
        self.check_sender(0, &request.cluster_id)?;
        let limit = request
            .limit
            .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
        let (schema, parts) = self
            .cluster
            .scan_for_peer(&request.group, &request.table, request.linearizable)
            .await
            .map_err(cluster_status)?;
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
        let _: () = self.accept(request)?;
        reply(&self.cluster.info().await)
    }
}
