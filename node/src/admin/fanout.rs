//! The `system.*` tables that ask every member (`query::source::ClusterTables`): each
//! member's consumers, dead letters and Raft position, over the members' admin API with short
//! timeouts, so a dead member shows as unreachable instead of stalling the query.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use super::convert;
use super::GRPC_MESSAGE_MAX;
use crate::cluster::Cluster;
use crate::dead_letters::DeadLetter;
use crate::ingest::status::ConsumerRegistry;
use crate::proto::admin_client::AdminClient;
use crate::proto::{ClusterStatusRequest, ConsumerStatusRequest, DeadLettersRequest};
use crate::query::source::{ClusterTables, GroupRow, NodeConsumer, ReplicaRow};

pub struct Fanout {
    pub cluster: Arc<Cluster>,
    /// This node's consumers.
    pub consumers: Arc<ConsumerRegistry>,
}

/// An admin client of another member, with short timeouts: a dead member must not
/// stall a query about the cluster.
async fn admin_client(
    source_ip: Option<IpAddr>,
    addr: &str,
) -> Result<AdminClient<Channel>, tonic::transport::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .local_address(source_ip);
    let channel = endpoint.connect().await?;
    Ok(AdminClient::new(channel).max_decoding_message_size(GRPC_MESSAGE_MAX))
}

#[async_trait::async_trait]
impl ClusterTables for Fanout {
    fn node_name(&self) -> String {
        self.cluster.member.name.clone()
    }

    /// The consumers of every member that answers, for `system.kafka_consumers`.
    async fn consumers(&self) -> Vec<NodeConsumer> {
        let mut out: Vec<NodeConsumer> = self
            .consumers
            .snapshot()
            .into_iter()
            .map(|(k, s)| (self.cluster.member.name.clone(), k, s))
            .collect();
        let source_ip = self.cluster.source_ip();
        let asks = self
            .cluster
            .other_members()
            .into_iter()
            .map(|(_, member)| async move {
                let mut client = admin_client(source_ip, &member.addr).await.ok()?;
                let reply = client
                    .consumer_status(ConsumerStatusRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                Some((member.name, reply.consumers))
            });
        for (node, consumers) in futures::future::join_all(asks).await.into_iter().flatten() {
            for c in consumers {
                let (key, snapshot) = convert::consumer_from_proto(c);
                out.push((node.clone(), key, snapshot));
            }
        }
        out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        out
    }

    /// The dead letters of every member that answers, for `system.dead_letter_queue`. A
    /// member that does not answer is left out, as in `system.kafka_consumers`.
    async fn dead_letters(&self) -> Vec<(String, DeadLetter)> {
        let me = self.cluster.member.name.clone();
        let mut out: Vec<(String, DeadLetter)> = match self.cluster.state.dead_letters.letters() {
            Ok(letters) => letters.into_iter().map(|l| (me.clone(), l)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading this node's dead letters");
                Vec::new()
            }
        };
        let source_ip = self.cluster.source_ip();
        let asks = self
            .cluster
            .other_members()
            .into_iter()
            .map(|(_, member)| async move {
                let mut client = admin_client(source_ip, &member.addr).await.ok()?;
                let reply = client
                    .dead_letters(DeadLettersRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                Some((member.name, reply.letters))
            });
        for (node, letters) in futures::future::join_all(asks).await.into_iter().flatten() {
            out.extend(
                letters
                    .into_iter()
                    .map(|l| (node.clone(), convert::dead_letter_from_proto(l))),
            );
        }
        out
    }

    /// Every member with its Raft position as it reports it, for `system.replicas`.
    async fn replicas(&self) -> Vec<ReplicaRow> {
        let me = self.cluster.view();
        let source_ip = self.cluster.source_ip();
        let mut rows = vec![ReplicaRow {
            node_id: me.node_id,
            node: me.member.name.clone(),
            address: me.member.addr.clone(),
            role: me.role.clone(),
            is_leader: me.leader == Some(me.node_id),
            term: Some(me.term),
            last_log_index: Some(me.last_log_index),
            applied_index: Some(me.applied_index),
            lag: None,
            error: String::new(),
        }];
        let asks = self
            .cluster
            .other_members()
            .into_iter()
            .map(|(id, member)| async move {
                let answer = async {
                    let mut client = admin_client(source_ip, &member.addr)
                        .await
                        .map_err(|e| e.to_string())?;
                    client
                        .cluster_status(ClusterStatusRequest {})
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| s.message().to_string())
                }
                .await;
                match answer {
                    Ok(s) => convert::replica_from_status(id, &member, s),
                    Err(error) => ReplicaRow {
                        node_id: id,
                        node: member.name.clone(),
                        address: member.addr.clone(),
                        role: "unreachable".into(),
                        error,
                        ..ReplicaRow::default()
                    },
                }
            });
        rows.extend(futures::future::join_all(asks).await);
        // Lag: how many entries a member has yet to apply of what the leader holds.
        let leader_last = rows
            .iter()
            .find(|r| r.is_leader)
            .and_then(|r| r.last_log_index);
        for r in &mut rows {
            r.lag = match (leader_last, r.applied_index) {
                (Some(l), Some(a)) => Some(l.saturating_sub(a)),
                _ => None,
            };
        }
        rows.sort_by_key(|r| r.node.clone());
        rows
    }

    fn raft_groups(&self) -> Vec<GroupRow> {
        self.cluster.group_rows()
    }
}
