//! Membership of the `meta` group: forming a cluster once, joining (learner first, then
//! voter), leaving, and the heartbeats by which members tell the leader they are alive
//! and the leader tells a removed node so. Also this node's view of the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use rand::Rng as _;

use super::liveness::HEARTBEAT_INTERVAL;
use super::{role_name, Cluster, ClusterError, MembershipError, WRITE_TIMEOUT};
use crate::raft::messages::{
    Heartbeat, HeartbeatReply, InfoRequest, JoinRequest, LeaveRequest, NodeInfo,
};
use crate::raft::{Command, META_GROUP};
use crate::topology::{Member, NodeId};

/// How often a node that is not a member yet asks its peers to let it in.
const JOIN_INTERVAL: Duration = Duration::from_secs(2);
/// How long a seed peer may take to say whether it belongs to a cluster.
const INFO_TIMEOUT: Duration = Duration::from_secs(2);
/// Set once this node has been a voter: from then on it never asks to join again (a
/// removed member stays out; a wiped one has a new identity and joins anew).
const JOINED_KEY: &[u8] = b"joined";

/// The outcome of `Initialize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Initialized(String),
    AlreadyInitialized(String),
}

/// One member as seen from this node.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub member: Member,
    pub voter: bool,
    pub is_leader: bool,
    /// Log index the leader knows this member holds (on the leader only).
    pub matched_index: Option<u64>,
}

/// This node's Raft view.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster_id: Option<String>,
    pub node_id: NodeId,
    pub member: Member,
    pub role: String,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub leader: Option<NodeId>,
    pub members: Vec<MemberStatus>,
    pub in_quorum: bool,
}

fn change_failed(
    step: &'static str,
    member: impl ToString,
) -> impl FnOnce(RaftError<NodeId, openraft::error::ClientWriteError<NodeId, Member>>) -> MembershipError
{
    let member = member.to_string();
    move |source| MembershipError::Change {
        step,
        member,
        source: Box::new(source),
    }
}

impl Cluster {
    /// Forms a new cluster with this node as its only member, exactly once: a node that has
    /// Raft state, or whose peers belong to a cluster, never does.
    pub async fn initialize(&self) -> Result<InitOutcome, ClusterError> {
        if self.is_initialized().await || self.log_store.has_state()? {
            return Ok(InitOutcome::AlreadyInitialized(
                self.cluster_id().unwrap_or_else(|| "(joining)".into()),
            ));
        }
        for peer in &self.peers.seeds {
            if let Ok(info) = self.peers.call(peer, &InfoRequest, INFO_TIMEOUT).await {
                if info.initialized {
                    return Ok(InitOutcome::AlreadyInitialized(
                        info.cluster_id.unwrap_or_else(|| "(forming)".into()),
                    ));
                }
            }
        }
        let members = BTreeMap::from([(self.node_id, self.member.clone())]);
        match self.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                return Ok(InitOutcome::AlreadyInitialized(
                    self.cluster_id().unwrap_or_else(|| "(forming)".into()),
                ))
            }
            Err(e) => return Err(ClusterError::Initialize(Box::new(e))),
        }
        let cluster_id = format!(
            "{:016x}{:016x}",
            rand::rng().random::<u64>(),
            rand::rng().random::<u64>()
        );
        self.write(Command::InitCluster {
            cluster_id: cluster_id.clone(),
        })
        .await?;
        tracing::info!(%cluster_id, "initialized a new cluster");
        Ok(InitOutcome::Initialized(
            self.cluster_id().unwrap_or(cluster_id),
        ))
    }

    /// What the node at `addr` says about itself.
    pub async fn info_of(&self, addr: &str) -> Result<NodeInfo, ClusterError> {
        Ok(self.peers.call(addr, &InfoRequest, INFO_TIMEOUT).await?)
    }

    /// The meta leader's address, to forward a membership change to; an error when
    /// there is none, or when this node is leader in name only (leadership moving).
    fn leader_to_forward_to(&self) -> Result<Member, MembershipError> {
        let (_, leader) = self.leader().ok_or(MembershipError::NoLeaderYet)?;
        if leader.addr == self.member.addr {
            return Err(MembershipError::LeadershipChanging);
        }
        Ok(leader)
    }

    /// On the leader: makes a node a voter (learner first, so it catches up before it
    /// counts). A member of the same name under another id is a former incarnation whose
    /// data dir was lost: it is replaced. Elsewhere: forwarded to the leader.
    pub async fn join(&self, request: JoinRequest) -> Result<String, ClusterError> {
        if !self.is_leader() {
            let leader = self.leader_to_forward_to()?;
            return self
                .peers
                .call(&leader.addr, &request, WRITE_TIMEOUT)
                .await?
                .map_err(|source| ClusterError::Remote {
                    peer: leader.to_string(),
                    source,
                });
        }
        let _one_at_a_time = self.membership_lock.lock().await;
        if self.voters().contains(&request.node_id) {
            return Ok(format!("{} is already a member", request.member));
        }
        self.raft
            .add_learner(request.node_id, request.member.clone(), true)
            .await
            .map_err(change_failed("adding as a learner", &request.member))?;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let replaced: BTreeSet<NodeId> = membership
            .nodes()
            .filter(|(id, m)| **id != request.node_id && m.name == request.member.name)
            .map(|(id, _)| *id)
            .collect();
        let change = if replaced.is_empty() {
            ChangeMembers::AddVoterIds(BTreeSet::from([request.node_id]))
        } else {
            let mut next: BTreeSet<NodeId> = membership.voter_ids().collect();
            next.retain(|id| !replaced.contains(id));
            next.insert(request.node_id);
            ChangeMembers::ReplaceAllVoters(next)
        };
        // retain = false drops the replaced former selves; other learners are not touched
        // by an AddVoterIds.
        self.raft
            .change_membership(change, replaced.is_empty())
            .await
            .map_err(change_failed("promoting", &request.member))?;
        if !replaced.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(replaced.clone()), false)
                .await
                .map_err(change_failed("dropping the former", &request.member))?;
        }
        tracing::info!(member = %request.member, id = request.node_id, ?replaced, "member joined");
        Ok(format!("{} joined", request.member))
    }

    /// On the leader: takes a member (by name, id or address) out of the cluster.
    pub async fn leave(&self, request: LeaveRequest) -> Result<String, ClusterError> {
        if !self.is_leader() {
            let (_, leader) = self.leader().ok_or(MembershipError::NoLeaderYet)?;
            return self
                .peers
                .call(&leader.addr, &request, WRITE_TIMEOUT)
                .await?
                .map_err(|source| ClusterError::Remote {
                    peer: leader.to_string(),
                    source,
                });
        }
        let who = request.who;
        let _one_at_a_time = self.membership_lock.lock().await;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let ids: BTreeSet<NodeId> = membership
            .nodes()
            .filter(|(id, m)| m.name == who || id.to_string() == who || m.addr == who)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Err(MembershipError::NoSuchMember { who }.into());
        }
        if !membership.voter_ids().any(|id| !ids.contains(&id)) {
            return Err(MembershipError::LastVoter { who }.into());
        }
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
            .await
            .map_err(change_failed("removing", &who))?;
        // A learner is not a voter: RemoveVoters leaves it; take it out too.
        let still: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| ids.contains(id))
            .collect();
        if !still.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(still), false)
                .await
                .map_err(change_failed("removing", &who))?;
        }
        tracing::info!(%who, "member removed");
        Ok(format!("{who} removed"))
    }

    /// Remembers, in the data dir, that this node was let in: a removed node never asks
    /// again.
    fn record_joined(&self) {
        if let Err(e) = self
            .identity
            .insert(JOINED_KEY, b"1")
            .and_then(|_| self.identity.flush())
        {
            tracing::warn!(error = %e, "recording that this node joined");
        }
    }

    /// Until this node is a member, asks its peers to let it in.
    pub(super) async fn join_loop(&self) -> Result<(), ClusterError> {
        loop {
            if self.voters().contains(&self.node_id) {
                self.record_joined();
                return Ok(());
            }
            if self.identity.get(JOINED_KEY)?.is_some() {
                tracing::info!(
                    "this node was a member and was removed; it does not ask to join again"
                );
                return Ok(());
            }
            if self.ask_to_join().await {
                return Ok(());
            }
            tokio::time::sleep(JOIN_INTERVAL).await;
        }
    }

    /// Asks the first seed that belongs to an initialized cluster to let this node in;
    /// whether it did.
    async fn ask_to_join(&self) -> bool {
        for peer in &self.peers.seeds {
            let Ok(info) = self.peers.call(peer, &InfoRequest, INFO_TIMEOUT).await else {
                continue;
            };
            if !info.initialized {
                continue;
            }
            let request = JoinRequest {
                node_id: self.node_id,
                member: self.member.clone(),
            };
            match self.peers.call(peer, &request, WRITE_TIMEOUT).await {
                Ok(Ok(message)) => {
                    // Recorded at once: removed before the loop's next turn, the node
                    // must not ask again.
                    self.record_joined();
                    tracing::info!(%peer, %message, "joined the cluster");
                    return true;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "join refused; retrying"),
                Err(e) => tracing::debug!(%peer, error = %e, "join failed; retrying"),
            }
            return false;
        }
        false
    }

    /// This node's view of the cluster.
    pub fn view(&self) -> ClusterView {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let replication = metrics.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, m)| MemberStatus {
                node_id: *id,
                member: m.clone(),
                voter: voters.contains(id),
                is_leader: metrics.current_leader == Some(*id),
                matched_index: replication.get(id).and_then(|l| l.map(|l| l.index)),
            })
            .collect();
        let in_quorum = match metrics.state {
            ServerState::Leader => metrics.millis_since_quorum_ack.is_some_and(|ms| ms < 5_000),
            ServerState::Follower | ServerState::Learner => {
                metrics.current_leader.is_some() && !self.is_removed()
            }
            _ => false,
        };
        ClusterView {
            cluster_id: self.cluster_id(),
            node_id: self.node_id,
            member: self.member.clone(),
            role: role_name(metrics.state).to_string(),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            leader: metrics.current_leader,
            members,
            in_quorum,
        }
    }

    /// On the leader: a member's heartbeat; tells a node that is no longer a member so.
    pub fn heard_from(&self, beat: Heartbeat) -> HeartbeatReply {
        // Only a leader's membership is authoritative: a node that lost leadership, or a
        // new process at a former leader's address, must not tell a member it was removed.
        let member = !self.is_leader() || self.member_of(beat.node).is_some();
        self.liveness
            .heard_from(beat.node, beat.draining, Instant::now());
        HeartbeatReply { member }
    }

    /// Every node tells the leader it is alive, once a second.
    pub(super) async fn heartbeat_loop(&self) -> Result<(), ClusterError> {
        loop {
            tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            self.beat().await;
        }
    }

    /// One heartbeat; whether the leader counts this node a member (none: no leader
    /// answered).
    pub(super) async fn beat(&self) -> Option<bool> {
        if self.is_leader() {
            // A leader is a member by definition.
            self.set_member(true);
            return Some(true);
        }
        let (leader_id, leader) = self.leader()?;
        let beat = Heartbeat {
            node: self.node_id,
            draining: self.is_draining(),
        };
        // Addressed to the leader's Raft id: another process now at its address refuses.
        let sent = self
            .peers
            .call_member(
                &leader.addr,
                leader_id,
                META_GROUP,
                &beat,
                HEARTBEAT_INTERVAL,
            )
            .await;
        match sent {
            Ok(reply) => {
                self.set_member(reply.member);
                Some(reply.member)
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat to the leader failed");
                None
            }
        }
    }

    fn set_member(&self, member: bool) {
        if self.phase.set_member(member) {
            if member {
                tracing::info!("this node is a member again");
            } else {
                tracing::warn!("this node was removed from the cluster: its consumers stop and it reports not ready");
            }
            // The supervisor re-reads what it may run.
            self.state.notify();
        }
    }
}
