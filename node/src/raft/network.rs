//! The client side of the Raft transport: openraft's `RaftNetwork` over tonic.
//!
//! A connection is made lazily and re-made after a failure; a peer that cannot be reached
//! is reported as `Unreachable`, so openraft backs off instead of spinning.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::{decode, encode, Member, NodeId, TypeConfig};
use crate::raft_proto::raft_client::RaftClient;
use crate::raft_proto::RaftRequest;

/// Largest Raft message: a snapshot chunk or a batch of blocks.
pub const RAFT_MESSAGE_MAX: usize = 256 * 1024 * 1024;

/// The cluster id this node belongs to; empty until it is known. Shared by every client
/// and the server, so a node learns it once.
pub type ClusterIdCell = Arc<RwLock<String>>;

pub fn cluster_id_of(cell: &ClusterIdCell) -> String {
    match cell.read() {
        Ok(id) => id.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// A lazily connected client of a peer's Raft service. `source` is the local address its
/// connections leave from: the node's own listening address, so peers (and firewall
/// rules) see a node by one address even on a host with several.
pub fn client(
    addr: &str,
    source: Option<IpAddr>,
) -> Result<RaftClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .local_address(source)
        .connect_lazy();
    Ok(RaftClient::new(channel)
        .max_decoding_message_size(RAFT_MESSAGE_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_MAX))
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("peer {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("peer {addr}: {status}")]
    Status { addr: String, status: tonic::Status },
    #[error("peer {addr}: undecodable message: {reason}")]
    Codec { addr: String, reason: String },
}

/// Where a call goes: a peer's address, and whom it is for there.
pub struct Route<'a> {
    pub addr: &'a str,
    pub cluster_id: &'a str,
    pub group: &'a str,
    /// The Raft id the message is for, when it is a Raft message.
    pub target: Option<NodeId>,
}

/// One call of the Raft service: encode, send, decode.
pub async fn call<Req, Resp>(
    client: &mut RaftClient<Channel>,
    route: &Route<'_>,
    method: Method,
    request: &Req,
    timeout: Option<Duration>,
) -> Result<Resp, TransportError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let addr = route.addr;
    let payload = encode(request).map_err(|e| TransportError::Codec {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    let mut req = tonic::Request::new(RaftRequest {
        cluster_id: route.cluster_id.to_string(),
        group: route.group.to_string(),
        payload,
        target: route.target.unwrap_or(0),
    });
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    let reply = match method {
        Method::AppendEntries => client.append_entries(req).await,
        Method::Vote => client.vote(req).await,
        Method::InstallSnapshot => client.install_snapshot(req).await,
        Method::Propose => client.propose(req).await,
        Method::Join => client.join(req).await,
        Method::Leave => client.leave(req).await,
        Method::Heartbeat => client.heartbeat(req).await,
        Method::Info => client.info(req).await,
        Method::ReadIndex => client.read_index(req).await,
        Method::Elect => client.elect(req).await,
        Method::Read => client.read(req).await,
    }
    .map_err(|status| TransportError::Status {
        addr: addr.to_string(),
        status,
    })?
    .into_inner();
    decode(&reply.payload).map_err(|e| TransportError::Codec {
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

#[derive(Debug, Clone, Copy)]
pub enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Propose,
    Join,
    Leave,
    Heartbeat,
    Info,
    ReadIndex,
    Elect,
    Read,
}

/// Makes connections to peers for one Raft group.
#[derive(Clone)]
pub struct Network {
    pub group: String,
    pub cluster_id: ClusterIdCell,
    pub source: Option<IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            group: self.group.clone(),
            cluster_id: self.cluster_id.clone(),
            source: self.source,
            client: None,
        }
    }
}

pub struct Connection {
    target: NodeId,
    addr: String,
    group: String,
    cluster_id: ClusterIdCell,
    source: Option<IpAddr>,
    client: Option<RaftClient<Channel>>,
}

impl Connection {
    async fn send<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Some(c) => c,
            None => {
                let c = client(&self.addr, self.source)
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
                self.client.insert(c)
            }
        };
        let cluster_id = cluster_id_of(&self.cluster_id);
        let route = Route {
            addr: &self.addr,
            cluster_id: &cluster_id,
            group: &self.group,
            target: Some(self.target),
        };
        let result: Result<Result<Resp, RaftError<NodeId, E>>, TransportError> =
            call(client, &route, method, request, Some(option.hard_ttl())).await;
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e @ TransportError::Codec { .. }) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(e) => {
                // Reconnect next time: the peer may have restarted on the same address.
                self.client = None;
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.send(Method::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.send(Method::Vote, &rpc, &option).await
    }
}
