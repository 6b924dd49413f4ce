//! Calls to other nodes' Raft service: one lazily connected client per address, typed
//! requests (`PeerCall`) addressed to a group and, where it matters, to a Raft id.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::raft::messages::PeerCall;
use crate::raft::network::{self, call, ClusterIdCell, Route, TransportError};
use crate::raft::META_GROUP;
use crate::raft_proto::raft_client::RaftClient;
use crate::topology::NodeId;

pub struct Peers {
    /// Seed peers to ask for membership (never this node's own address).
    pub seeds: Vec<String>,
    /// The address connections leave from (the node's listening address).
    source_ip: Option<IpAddr>,
    cluster_id: ClusterIdCell,
    clients: Mutex<BTreeMap<String, RaftClient<Channel>>>,
}

impl Peers {
    pub fn new(seeds: Vec<String>, source_ip: Option<IpAddr>, cluster_id: ClusterIdCell) -> Peers {
        Peers {
            seeds,
            source_ip,
            cluster_id,
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    /// The client of the Raft service at `addr`, made on first use.
    pub async fn client(&self, addr: &str) -> Result<RaftClient<Channel>, TransportError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c =
            network::client(addr, self.source_ip).map_err(|source| TransportError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// One call about the `meta` group.
    pub async fn call<R: PeerCall>(
        &self,
        addr: &str,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Reply, TransportError> {
        self.call_routed(addr, None, META_GROUP, request, timeout)
            .await
    }

    /// One call about `group`.
    pub async fn call_group<R: PeerCall>(
        &self,
        addr: &str,
        group: &str,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Reply, TransportError> {
        self.call_routed(addr, None, group, request, timeout).await
    }

    /// One call to the member `target` at `addr`: refused if another process serves that
    /// address now.
    pub async fn call_member<R: PeerCall>(
        &self,
        addr: &str,
        target: NodeId,
        group: &str,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Reply, TransportError> {
        self.call_routed(addr, Some(target), group, request, timeout)
            .await
    }

    async fn call_routed<R: PeerCall>(
        &self,
        addr: &str,
        target: Option<NodeId>,
        group: &str,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Reply, TransportError> {
        let mut client = self.client(addr).await?;
        let cluster_id = network::cluster_id_of(&self.cluster_id);
        let route = Route {
            addr,
            cluster_id: &cluster_id,
            group,
            target,
        };
        call(&mut client, &route, R::METHOD, request, Some(timeout)).await
    }
}
