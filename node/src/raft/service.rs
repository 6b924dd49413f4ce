//! The server side of the Raft transport: decodes a peer's message, checks that it comes
//! from this node's cluster and names a group this node runs, and hands it to that
//! group's openraft, to the cluster's membership logic, or to a table read.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::network::cluster_id_of;
use super::{decode, encode, Command, Raft, TypeConfig, META_GROUP};
use crate::cluster::groups::TableReadRequest;
use crate::cluster::{Cluster, JoinRequest};
use crate::raft_proto::raft_server::Raft as RaftRpc;
use crate::raft_proto::{RaftReply, RaftRequest};

pub struct RaftService {
    pub cluster: Arc<Cluster>,
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
        if request.target != 0 && request.target != self.cluster.node_id {
            return Err(Status::failed_precondition(format!(
                "message for raft node {}, but this is node {}: the address changed hands",
                request.target, self.cluster.node_id
            )));
        }
        let ours = cluster_id_of(&self.cluster.cluster_id);
        if !ours.is_empty() && !request.cluster_id.is_empty() && ours != request.cluster_id {
            return Err(Status::failed_precondition(format!(
                "this node belongs to cluster {ours}, the sender to cluster {}",
                request.cluster_id
            )));
        }
        let payload = decode(&request.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
        Ok((request.group, payload))
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftReply>, Status> {
    let payload = encode(value).map_err(|e| Status::internal(format!("encoding a reply: {e}")))?;
    Ok(Response::new(RaftReply { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
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

    async fn info(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let _: () = self.accept(request)?;
        reply(&self.cluster.info().await)
    }
}
