//! The cluster: this node's identity, forming and joining a cluster, membership, the write
//! path through Raft (forwarded to the leader), where each partition consumer runs
//! (`assignment`), and where each table lives (`placement`, run by `groups`).
//!
//! A node's Raft id is drawn at random the first time its data dir is used, so a node
//! whose data dir was wiped comes back as a new member (and never votes twice under an
//! old identity); its name (a pod name) is what people see.

pub mod assignment;
pub mod groups;
pub mod placement;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::catalog::{CatalogCommand, CatalogError, CatalogOutcome};
use crate::ingest::client::KafkaClientDefaults;
use crate::ingest::status::{ConsumerKey, ConsumerSnapshot};
use crate::ingest::supervisor::partition_count;
use crate::proto::admin_client::AdminClient;
use crate::proto::{ClusterStatusRequest, ConsumerStatusRequest};
use crate::query::system_tables::{NodeConsumer, ReplicaRow};
use crate::raft::disk_sync::DiskSync;
use crate::raft::log_store::LogStore;
use crate::raft::network::{self, call, ClusterIdCell, Method, Network, Route};
use crate::raft::snapshot_dirs::SnapshotDirs;
use crate::raft::state_machine::{Scope, StateMachine};
use crate::raft::{raft_config, Command, Fence, Member, NodeId, Raft, Response, META_GROUP};
use crate::raft_proto::raft_client::RaftClient;
use crate::state::NodeState;
use crate::table::{ApplyOutcome, Block, PositionKey};
use assignment::Slot;

/// How long a write waits for a leader before it fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a node that is not a member yet asks its peers to let it in.
const JOIN_INTERVAL: Duration = Duration::from_secs(2);

/// How often a member tells the leader it is alive.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How often the leader looks at liveness and partitions.
const ASSIGN_INTERVAL: Duration = Duration::from_secs(1);
/// How often the leader asks Kafka for partition counts.
const METADATA_INTERVAL: Duration = Duration::from_secs(10);

const IDENTITY_TREE: &str = "node";
const RAFT_ID_KEY: &[u8] = b"raft_id";
/// Set once this node has been a voter: from then on it never asks to join again (a
/// removed member stays out; a wiped one has a new identity and joins anew).
const JOINED_KEY: &[u8] = b"joined";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("state: {0}")]
    State(#[from] crate::state::StateError),
    #[error("raft: {0}")]
    Raft(String),
    #[error(
        "no leader answered within {0:?}; is a majority of the cluster up? (see `sluice status`)"
    )]
    NoLeader(Duration),
    #[error("write refused: {0}")]
    Write(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("this node is not part of an initialized cluster yet: run `sluice init` on one node, or start it with --bootstrap")]
    NotInitialized,
    #[error("{0}")]
    Membership(String),
    /// Boxed: it names a group, a directory and a file, and would make every
    /// `ClusterError` that large.
    #[error(transparent)]
    Snapshot(Box<crate::raft::state_machine::SnapshotError>),
    #[error("no directory for Raft snapshots was given")]
    NoSnapshotDir,
    #[error("{member} holds no replica of table {table} (group {group})")]
    NoReplica {
        member: String,
        table: String,
        group: String,
    },
}

impl From<crate::raft::state_machine::SnapshotError> for ClusterError {
    fn from(e: crate::raft::state_machine::SnapshotError) -> ClusterError {
        ClusterError::Snapshot(Box::new(e))
    }
}

/// Why a proposal did not apply here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ProposeFailure {
    /// Not the leader; the leader if one is known.
    ForwardToLeader(Option<Member>),
    Failed(String),
}

/// A node asks to become a member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub member: Member,
}

/// What a node says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub member: Member,
    pub cluster_id: Option<String>,
    pub initialized: bool,
    pub leader: Option<Member>,
}

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

pub struct Cluster {
    pub node_id: NodeId,
    pub member: Member,
    pub peers: Vec<String>,
    pub raft: Raft,
    pub state: Arc<NodeState>,
    pub cluster_id: ClusterIdCell,
    log_store: LogStore,
    identity: sled::Tree,
    /// Membership changes one at a time: each is computed from the one before.
    membership_lock: Mutex<()>,
    clients: Mutex<BTreeMap<String, RaftClient<Channel>>>,
    /// A member silent for longer loses its partitions.
    node_timeout: Duration,
    /// On the leader: when each member was last heard from.
    last_seen: std::sync::Mutex<BTreeMap<NodeId, Instant>>,
    /// On the leader: the term it leads and since when (members get a grace period).
    leading_since: std::sync::Mutex<Option<(u64, Instant)>>,
    /// Node-wide Kafka client properties, for partition discovery.
    kafka: Arc<KafkaClientDefaults>,
    /// Set by a drain: this node takes no partitions and does not seek leadership.
    draining: std::sync::atomic::AtomicBool,
    /// On the leader: the members that said they are draining.
    draining_members: std::sync::Mutex<BTreeSet<NodeId>>,
    source_ip: Option<IpAddr>,
    /// Set when the leader says this node is no longer a member (removed by a scale-down):
    /// it stops its consumers and reports not ready. It stays up until it is stopped.
    removed: std::sync::atomic::AtomicBool,
    /// Client writes waiting in this node's Raft. A shutdown lets them finish before it
    /// closes the gRPC server: a write proposed here just before a leadership handover
    /// learns its fate only from the new leader's next append, which arrives over gRPC.
    proposals_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Set while a drain hands leadership over: a leader then takes no new client writes,
    /// so none lands in its log after the follower it hands over to was chosen (that
    /// follower, its log now shorter, could not win, and the write would wait for a
    /// leader until the node stops).
    handing_over: std::sync::atomic::AtomicBool,
    db: sled::Db,
    disk: Option<Arc<DiskSync>>,
    /// Every group's Raft snapshots.
    snapshots: Arc<SnapshotDirs>,
    /// The tables' data groups this node runs.
    groups: groups::DataGroups,
    /// Set when a data group's Raft stopped on a storage error.
    fatal: tokio::sync::watch::Sender<Option<String>>,
}

/// A Raft role as people read it.
fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Counts one client write in flight for as long as it lives.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A member's periodic word to the leader.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: NodeId,
    pub draining: bool,
}

/// The leader's answer to a heartbeat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// False once the sender was removed from the cluster: it must stop working.
    pub member: bool,
}

/// What a drain achieved before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    pub partitions_moved: bool,
    pub leadership_released: bool,
}

/// How a node takes part in its cluster (from its configuration).
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Seed peers to ask for membership.
    pub peers: Vec<String>,
    /// A member silent for longer loses its partitions.
    pub node_timeout: Duration,
    /// Node-wide Kafka client properties, for partition discovery.
    pub kafka: Arc<KafkaClientDefaults>,
    /// The address connections to peers leave from (the node's listening address).
    pub source_ip: Option<IpAddr>,
    /// sled's directory, made durable after every Raft log write (none in unit tests).
    pub sled_dir: Option<std::path::PathBuf>,
    /// Where Raft snapshots go, a directory per group; on the filesystem of the tables'
    /// parts, which snapshots hard-link. Required.
    pub snapshot_dir: Option<std::path::PathBuf>,
}

impl Cluster {
    /// Opens this node's Raft state and starts its `meta` group.
    pub async fn start(
        db: &sled::Db,
        state: Arc<NodeState>,
        member: Member,
        options: ClusterOptions,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let ClusterOptions {
            peers,
            node_timeout,
            kafka,
            source_ip,
            sled_dir,
            snapshot_dir,
        } = options;
        let snapshots = SnapshotDirs::new(snapshot_dir.ok_or(ClusterError::NoSnapshotDir)?);
        let disk = match &sled_dir {
            Some(dir) => Some(DiskSync::open(dir).map_err(|e| {
                ClusterError::Raft(format!("opening storage for durable writes: {e}"))
            })?),
            None => None,
        };
        let identity = db.open_tree(IDENTITY_TREE)?;
        let node_id = match identity.get(RAFT_ID_KEY)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| ClusterError::Raft("stored node id is unreadable".into()))?,
            None => {
                let id = rand::rng().random_range(1..u64::MAX / 2);
                identity.insert(RAFT_ID_KEY, &id.to_be_bytes())?;
                identity.flush()?;
                id
            }
        };
        let cluster_id: ClusterIdCell = Arc::new(std::sync::RwLock::new(
            state.cluster_id()?.unwrap_or_default(),
        ));
        let log_store = LogStore::open(db, META_GROUP, disk.clone())?;
        let sm = StateMachine::open(
            db,
            META_GROUP,
            Scope::Meta,
            state.clone(),
            cluster_id.clone(),
            snapshots.group(META_GROUP),
        )?;
        let network = Network {
            group: META_GROUP.to_string(),
            cluster_id: cluster_id.clone(),
            source: source_ip,
        };
        let config = raft_config("sluice").map_err(|e| ClusterError::Raft(e.to_string()))?;
        let raft = Raft::new(node_id, Arc::new(config), network, log_store.clone(), sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let peers = peers
            .into_iter()
            .filter(|p| !p.is_empty() && *p != member.addr)
            .collect();
        Ok(Arc::new(Cluster {
            node_id,
            member,
            peers,
            raft,
            state,
            cluster_id,
            log_store,
            identity,
            membership_lock: Mutex::new(()),
            clients: Mutex::new(BTreeMap::new()),
            node_timeout,
            last_seen: std::sync::Mutex::new(BTreeMap::new()),
            leading_since: std::sync::Mutex::new(None),
            kafka,
            draining: std::sync::atomic::AtomicBool::new(false),
            proposals_in_flight: Arc::default(),
            handing_over: std::sync::atomic::AtomicBool::new(false),
            draining_members: std::sync::Mutex::new(BTreeSet::new()),
            source_ip,
            removed: std::sync::atomic::AtomicBool::new(false),
            db: db.clone(),
            disk,
            snapshots,
            groups: groups::DataGroups::default(),
            fatal: tokio::sync::watch::channel(None).0,
        }))
    }

    pub fn cluster_id(&self) -> Option<String> {
        Some(network::cluster_id_of(&self.cluster_id)).filter(|id| !id.is_empty())
    }

    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    async fn client(&self, addr: &str) -> Result<RaftClient<Channel>, ClusterError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = network::client(addr, self.source_ip)
            .map_err(|e| ClusterError::Raft(format!("peer {addr}: {e}")))?;
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// One call to a peer's Raft service.
    pub async fn call_peer<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        self.call_routed(addr, None, META_GROUP, method, request, timeout)
            .await
    }

    /// One call about `group` to a peer's Raft service.
    pub async fn call_group<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        group: &str,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        self.call_routed(addr, None, group, method, request, timeout)
            .await
    }

    /// One call to the member `target` at `addr` (refused if another node serves it now).
    async fn call_peer_at<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        target: NodeId,
        group: &str,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        self.call_routed(addr, Some(target), group, method, request, timeout)
            .await
    }

    async fn call_routed<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        target: Option<NodeId>,
        group: &str,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        let mut client = self.client(addr).await?;
        let cluster_id = network::cluster_id_of(&self.cluster_id);
        let route = Route {
            addr,
            cluster_id: &cluster_id,
            group,
            target,
        };
        call(&mut client, &route, method, request, Some(timeout))
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))
    }

    pub async fn info(&self) -> NodeInfo {
        let leader = self.leader_member();
        NodeInfo {
            node_id: self.node_id,
            member: self.member.clone(),
            cluster_id: self.cluster_id(),
            initialized: self.is_initialized().await,
            leader,
        }
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// The leader's Raft id and address, as this node knows them.
    fn leader(&self) -> Option<(NodeId, Member)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|m| (leader, m.clone()))
    }

    fn leader_member(&self) -> Option<Member> {
        self.leader().map(|(_, member)| member)
    }

    /// Forms a new cluster with this node as its only member, exactly once: a node that has
    /// Raft state, or whose peers belong to a cluster, never does.
    pub async fn initialize(&self) -> Result<InitOutcome, ClusterError> {
        if self.is_initialized().await || self.log_store.has_state()? {
            return Ok(InitOutcome::AlreadyInitialized(
                self.cluster_id().unwrap_or_else(|| "(joining)".into()),
            ));
        }
        for peer in &self.peers {
            let info: Result<NodeInfo, _> = self
                .call_peer(peer, Method::Info, &(), Duration::from_secs(2))
                .await;
            if let Ok(info) = info {
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
            Err(e) => return Err(ClusterError::Raft(e.to_string())),
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

    /// Applies a command through Raft on the leader, wherever that is; returns once a
    /// majority has it and both the leader and this node applied it, so the writer reads
    /// its own write here (a view created right after its target table finds it).
    pub async fn write(&self, command: Command) -> Result<Response, ClusterError> {
        let (response, index) = self.write_at(command).await?;
        if let Err(e) = self
            .raft
            .wait(Some(WRITE_TIMEOUT))
            .applied_index_at_least(Some(index), "read your write")
            .await
        {
            tracing::warn!(index, error = %e, "this node did not apply its own write in time");
        }
        Ok(response)
    }

    async fn write_at(&self, command: Command) -> Result<(Response, u64), ClusterError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut pause = Duration::from_millis(50);
        loop {
            let failure = match self.propose_local(command.clone()).await {
                Ok(written) => return Ok(written),
                Err(f) => f,
            };
            match failure {
                ProposeFailure::Failed(reason) => return Err(ClusterError::Write(reason)),
                ProposeFailure::ForwardToLeader(Some(leader))
                    if leader.addr != self.member.addr =>
                {
                    let forwarded: Result<Result<(Response, u64), ProposeFailure>, _> = self
                        .call_peer(&leader.addr, Method::Propose, &command, WRITE_TIMEOUT)
                        .await;
                    match forwarded {
                        Ok(Ok(written)) => return Ok(written),
                        Ok(Err(ProposeFailure::Failed(reason))) => {
                            return Err(ClusterError::Write(reason))
                        }
                        Ok(Err(ProposeFailure::ForwardToLeader(_))) | Err(_) => {}
                    }
                }
                ProposeFailure::ForwardToLeader(_) => {
                    if !self.is_initialized().await {
                        return Err(ClusterError::NotInitialized);
                    }
                }
            }
            if Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader(WRITE_TIMEOUT));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Proposes on this node; succeeds only on the leader, with the entry's log index.
    pub async fn propose_local(&self, command: Command) -> Result<(Response, u64), ProposeFailure> {
        self.propose_on(&self.raft, command).await
    }

    /// Proposes on this node's replica of a group (`meta` or a table's), counted in flight;
    /// succeeds only on the group's leader.
    pub async fn propose_on(
        &self,
        raft: &Raft,
        command: Command,
    ) -> Result<(Response, u64), ProposeFailure> {
        if self.refuses_writes(raft) {
            return Err(ProposeFailure::ForwardToLeader(None));
        }
        let _in_flight = InFlight::new(&self.proposals_in_flight);
        match raft.client_write(command).await {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeFailure::ForwardToLeader(f.leader_node))
            }
            Err(e) => Err(ProposeFailure::Failed(e.to_string())),
        }
    }

    /// Whether this node, leading `raft`'s group, is handing it over.
    fn refuses_writes(&self, raft: &Raft) -> bool {
        self.handing_over.load(std::sync::atomic::Ordering::SeqCst)
            && raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    pub async fn write_catalog(
        &self,
        command: CatalogCommand,
    ) -> Result<CatalogOutcome, ClusterError> {
        match self.write(Command::Catalog(command)).await? {
            Response::Catalog(result) => Ok(result?),
            other => Err(ClusterError::Write(format!("unexpected reply {other:?}"))),
        }
    }

    /// Writes a block through its table's data group.
    pub async fn write_block(
        &self,
        block: Block,
        fence: Option<Fence>,
    ) -> Result<ApplyOutcome, ClusterError> {
        let table = block.table.clone();
        match self
            .write_to_table(&table, Command::Block { block, fence })
            .await?
        {
            Response::Block(result) => result.map_err(ClusterError::Write),
            other => Err(ClusterError::Write(format!("unexpected reply {other:?}"))),
        }
    }

    /// On the leader: makes a node a voter (learner first, so it catches up before it
    /// counts). A member of the same name under another id is a former incarnation whose
    /// data dir was lost: it is replaced. Elsewhere: forwarded to the leader.
    pub async fn join(&self, request: JoinRequest) -> Result<String, ClusterError> {
        if !self.is_leader() {
            let leader = self
                .leader_member()
                .ok_or_else(|| ClusterError::Membership("no leader is known yet; retry".into()))?;
            if leader.addr == self.member.addr {
                return Err(ClusterError::Membership(
                    "leadership is changing; retry".into(),
                ));
            }
            let reply: Result<String, String> = self
                .call_peer(&leader.addr, Method::Join, &request, WRITE_TIMEOUT)
                .await?;
            return reply.map_err(ClusterError::Membership);
        }
        let _one_at_a_time = self.membership_lock.lock().await;
        let voters: BTreeSet<NodeId> = self.voters();
        if voters.contains(&request.node_id) {
            return Ok(format!("{} is already a member", request.member));
        }
        self.raft
            .add_learner(request.node_id, request.member.clone(), true)
            .await
            .map_err(|e| {
                ClusterError::Membership(format!("adding {} as a learner: {e}", request.member))
            })?;
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
            .map_err(|e| ClusterError::Membership(format!("promoting {}: {e}", request.member)))?;
        if !replaced.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(replaced.clone()), false)
                .await
                .map_err(|e| {
                    ClusterError::Membership(format!("dropping the former {}: {e}", request.member))
                })?;
        }
        tracing::info!(member = %request.member, id = request.node_id, ?replaced, "member joined");
        Ok(format!("{} joined", request.member))
    }

    /// On the leader: takes a member (by name or id) out of the cluster.
    pub async fn leave(&self, who: String) -> Result<String, ClusterError> {
        if !self.is_leader() {
            let leader = self
                .leader_member()
                .ok_or_else(|| ClusterError::Membership("no leader is known yet; retry".into()))?;
            let reply: Result<String, String> = self
                .call_peer(&leader.addr, Method::Leave, &who, WRITE_TIMEOUT)
                .await?;
            return reply.map_err(ClusterError::Membership);
        }
        let _one_at_a_time = self.membership_lock.lock().await;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let ids: BTreeSet<NodeId> = membership
            .nodes()
            .filter(|(id, m)| m.name == who || id.to_string() == who || m.addr == who)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Err(ClusterError::Membership(format!(
                "no member is named {who}"
            )));
        }
        let voters: BTreeSet<NodeId> = membership
            .voter_ids()
            .filter(|id| !ids.contains(id))
            .collect();
        if voters.is_empty() {
            return Err(ClusterError::Membership(format!(
                "{who} is the last voter; a cluster cannot remove its last member"
            )));
        }
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
            .await
            .map_err(|e| ClusterError::Membership(format!("removing {who}: {e}")))?;
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
                .map_err(|e| ClusterError::Membership(format!("removing {who}: {e}")))?;
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
    pub fn spawn_join_loop(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if this.voters().contains(&this.node_id) {
                    this.record_joined();
                    return;
                }
                if this.identity.get(JOINED_KEY).ok().flatten().is_some() {
                    tracing::info!(
                        "this node was a member and was removed; it does not ask to join again"
                    );
                    return;
                }
                for peer in &this.peers {
                    let info: Result<NodeInfo, _> = this
                        .call_peer(peer, Method::Info, &(), Duration::from_secs(2))
                        .await;
                    let Ok(info) = info else { continue };
                    if !info.initialized {
                        continue;
                    }
                    let request = JoinRequest {
                        node_id: this.node_id,
                        member: this.member.clone(),
                    };
                    let reply: Result<Result<String, String>, _> = this
                        .call_peer(peer, Method::Join, &request, WRITE_TIMEOUT)
                        .await;
                    match reply {
                        Ok(Ok(message)) => {
                            // Recorded at once: removed before this loop's next turn, the
                            // node must not ask again.
                            this.record_joined();
                            tracing::info!(%peer, %message, "joined the cluster");
                            return;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "join refused; retrying"),
                        Err(e) => tracing::debug!(%peer, error = %e, "join failed; retrying"),
                    }
                    break;
                }
                tokio::time::sleep(JOIN_INTERVAL).await;
            }
        });
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
        let role = role_name(metrics.state);
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
            role: role.to_string(),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
            leader: metrics.current_leader,
            members,
            in_quorum,
        }
    }

    /// The voters: the nodes consumers are assigned to.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics().borrow().clone();
        let voters = metrics.membership_config.membership().voter_ids().collect();
        voters
    }

    /// On the leader: a member's heartbeat; tells a node that is no longer a member so.
    pub fn heard_from(&self, beat: Heartbeat) -> HeartbeatReply {
        // Only a leader's membership is authoritative: a node that lost leadership, or a
        // new process at a former leader's address, must not tell a member it was removed.
        let member = !self.is_leader()
            || self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&beat.node)
                .is_some();
        if let Ok(mut seen) = self.last_seen.lock() {
            seen.insert(beat.node, Instant::now());
        }
        if let Ok(mut draining) = self.draining_members.lock() {
            if beat.draining {
                draining.insert(beat.node);
            } else {
                draining.remove(&beat.node);
            }
        }
        HeartbeatReply { member }
    }

    /// Whether the leader said this node is no longer a member.
    pub fn is_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// On the leader: whether it has heard every other voter in its current term (each
    /// heartbeat says whether its node drains), or has led for two heartbeats, after which
    /// a member not heard is not live. Before `live_voters` first ran in this term: no.
    fn knows_every_member(&self) -> bool {
        let term = self.raft.metrics().borrow().current_term;
        let since = match self.leading_since.lock().map(|g| *g) {
            Ok(Some((t, at))) if t == term => at,
            _ => return false,
        };
        if since.elapsed() >= 2 * HEARTBEAT_INTERVAL {
            return true;
        }
        let voters = self.voters();
        let seen = self.last_seen.lock().ok();
        voters
            .into_iter()
            .filter(|id| *id != self.node_id)
            .all(|id| {
                seen.as_ref()
                    .and_then(|s| s.get(&id))
                    .is_some_and(|at| *at >= since)
            })
    }

    /// On the leader: the voters that were heard from within the node timeout. A leader
    /// new to its term gives every member one timeout to check in.
    fn live_voters(&self) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics().borrow().clone();
        let now = Instant::now();
        let since = match self.leading_since.lock() {
            Ok(mut guard) => match *guard {
                Some((term, at)) if term == metrics.current_term => at,
                _ => {
                    *guard = Some((metrics.current_term, now));
                    now
                }
            },
            Err(_) => now,
        };
        let seen = self.last_seen.lock().map(|s| s.clone()).unwrap_or_default();
        let draining = self
            .draining_members
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        self.voters()
            .into_iter()
            .filter(|id| {
                if *id == self.node_id {
                    return !self.is_draining();
                }
                !draining.contains(id)
                    && match seen.get(id) {
                        Some(at) => now.duration_since(*at) < self.node_timeout,
                        None => now.duration_since(since) < self.node_timeout,
                    }
            })
            .collect()
    }

    /// Every node tells the leader it is alive, once a second.
    pub fn spawn_heartbeats(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                this.beat().await;
            }
        });
    }

    async fn beat(&self) {
        if self.is_leader() {
            // A leader is a member by definition.
            self.set_removed(false);
            return;
        }
        let Some((leader_id, leader)) = self.leader() else {
            return;
        };
        let beat = Heartbeat {
            node: self.node_id,
            draining: self.is_draining(),
        };
        // Addressed to the leader's Raft id: another process now at its address refuses.
        let sent: Result<HeartbeatReply, _> = self
            .call_peer_at(
                &leader.addr,
                leader_id,
                META_GROUP,
                Method::Heartbeat,
                &beat,
                HEARTBEAT_INTERVAL,
            )
            .await;
        match sent {
            Ok(reply) => self.set_removed(!reply.member),
            Err(e) => tracing::debug!(error = %e, "heartbeat to the leader failed"),
        }
    }

    fn set_removed(&self, removed: bool) {
        let was_removed = self
            .removed
            .swap(removed, std::sync::atomic::Ordering::SeqCst);
        if was_removed != removed {
            if removed {
                tracing::warn!("this node was removed from the cluster: its consumers stop and it reports not ready");
            } else {
                tracing::info!("this node is a member again");
            }
            // The supervisor re-reads what it may run.
            self.state.notify();
        }
    }

    /// Prepares this node to stop, once its consumers have stopped: the leader moves its
    /// partitions to the other live members at once (not after the node timeout), and if
    /// it leads, an up-to-date follower is asked to take over. Waits at most `timeout`.
    pub async fn drain(&self, timeout: Duration) -> DrainOutcome {
        let deadline = Instant::now() + timeout;
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // A draining node must not win the election that moves leadership away from it.
        self.raft.runtime_config().elect(false);
        self.stop_campaigning_in_groups();
        self.beat().await;
        let mut partitions_moved = false;
        while Instant::now() < deadline {
            if self.is_removed() {
                // Removed (a scale-down): the cluster went on without this node already.
                return DrainOutcome {
                    partitions_moved: true,
                    leadership_released: true,
                };
            }
            let owned = self
                .state
                .assignments()
                .slots
                .iter()
                .any(|(_, o)| o.node == self.node_id);
            if !owned {
                partitions_moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.beat().await;
        }
        self.handing_over
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(waiting) = self.proposals_answered(Duration::from_secs(2)).await {
            tracing::info!(waiting, "handing over with client writes still waiting");
        }
        let meta_released = self.hand_over(&self.raft, META_GROUP, deadline).await;
        let groups_released = self.hand_over_groups(deadline).await;
        // A leader that could not hand over (alone, say) takes writes again.
        self.handing_over
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let leadership_released = meta_released && groups_released;
        tracing::info!(partitions_moved, leadership_released, "drained");
        DrainOutcome {
            partitions_moved,
            leadership_released,
        }
    }

    /// Waits up to `timeout` for the client writes proposed on this node to be answered
    /// (committed, or dropped by a new leader), before the gRPC server closes; false, and
    /// an overrun in the log, if some still wait.
    pub async fn settle_proposals(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        match self.proposals_answered(timeout).await {
            Ok(0) => true,
            Ok(writes) => {
                tracing::info!(writes, after = ?started.elapsed(), "client writes answered before closing");
                true
            }
            Err(waiting) => {
                tracing::warn!(waiting, after = ?timeout, "{}: client writes still wait in raft", crate::server::SHUTDOWN_OVERRAN);
                false
            }
        }
    }

    /// Waits up to `timeout` until no client write waits in this node's Raft: how many
    /// were waited for, or how many still wait.
    async fn proposals_answered(&self, timeout: Duration) -> Result<usize, usize> {
        let deadline = Instant::now() + timeout;
        let mut waited_for = 0;
        loop {
            let waiting = self
                .proposals_in_flight
                .load(std::sync::atomic::Ordering::SeqCst);
            if waiting == 0 {
                return Ok(waited_for);
            }
            waited_for = waited_for.max(waiting);
            if Instant::now() >= deadline {
                return Err(waiting);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the follower with the longest log to start an election, until another node
    /// leads or `deadline` passes; true once this node does not lead (or is the only
    /// voter). The follower wins because this leader votes for it (its log is as long)
    /// and this node no longer campaigns.
    async fn hand_over(&self, raft: &Raft, group: &str, deadline: Instant) -> bool {
        let leads = || raft.metrics().borrow().current_leader == Some(self.node_id);
        while leads() && Instant::now() < deadline {
            let metrics = raft.metrics().borrow().clone();
            let draining = self
                .draining_members
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default();
            let voters: BTreeSet<NodeId> =
                metrics.membership_config.membership().voter_ids().collect();
            let candidate = metrics
                .replication
                .iter()
                .flatten()
                .filter(|(id, _)| {
                    **id != self.node_id && voters.contains(id) && !draining.contains(id)
                })
                .max_by_key(|(_, matched)| matched.map(|l| l.index))
                .and_then(|(id, _)| {
                    metrics
                        .membership_config
                        .membership()
                        .get_node(id)
                        .map(|m| (*id, m.clone()))
                });
            let Some((id, member)) = candidate else {
                // Alone, there is nobody to hand over to and nothing to wait for.
                let alone = voters.len() <= 1;
                tracing::info!(%group, alone, "no follower to hand leadership to");
                return alone;
            };
            let asked: Result<(), String> = self
                .call_peer_at(
                    &member.addr,
                    id,
                    group,
                    Method::Elect,
                    &(),
                    Duration::from_secs(2),
                )
                .await
                .map_err(|e| e.to_string())
                .and_then(|answer: Result<(), String>| answer);
            match asked {
                Ok(()) => tracing::info!(%group, to = %member, "handing leadership over"),
                Err(e) => {
                    tracing::info!(%group, to = %member, error = %e, "handing leadership over failed")
                }
            }
            let until = (Instant::now() + Duration::from_secs(3)).min(deadline);
            while leads() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        !leads()
    }

    /// On the leader: keeps the partition assignment balanced over the live voters, and
    /// proposes a new one when a member joins, leaves or falls silent, or partitions appear.
    pub fn spawn_assigner(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut partitions: BTreeMap<(String, String), i32> = BTreeMap::new();
            let mut metadata_at: Option<Instant> = None;
            let mut catalog_seen = 0u64;
            let mut changes = this.state.watch_catalog();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(ASSIGN_INTERVAL) => {}
                    _ = changes.changed() => {}
                }
                if !this.is_leader() {
                    metadata_at = None;
                    continue;
                }
                let version = *changes.borrow();
                if metadata_at.is_none_or(|t| t.elapsed() > METADATA_INTERVAL)
                    || version != catalog_seen
                {
                    partitions = this.discover_partitions(&partitions).await;
                    metadata_at = Some(Instant::now());
                    catalog_seen = version;
                }
                let slots = this.slots(&partitions);
                let live = this.live_voters();
                if !this.knows_every_member() {
                    // A new leader has not heard every member yet: a draining one would
                    // look live and be handed partitions back.
                    continue;
                }
                this.place_tables().await;
                let current = this.state.assignments().nodes();
                let next = assignment::rebalance(&current, &slots, &live);
                if next != current {
                    tracing::info!(live = ?live, slots = slots.len(), "proposing a new partition assignment");
                    let owners = next.into_iter().collect();
                    if let Err(e) = this.write(Command::Assign { owners }).await {
                        tracing::warn!(error = %e, "proposing the assignment failed");
                    }
                }
            }
        });
    }

    /// Every partition of every attached Kafka table that feeds a view.
    fn slots(&self, partitions: &BTreeMap<(String, String), i32>) -> BTreeSet<Slot> {
        let catalog = self.state.catalog();
        let mut out = BTreeSet::new();
        for (table, settings) in catalog.consuming_kafka_tables() {
            for topic in &settings.topic_list {
                let count = partitions
                    .get(&(table.name.clone(), topic.clone()))
                    .copied()
                    .unwrap_or(0);
                for partition in 0..count {
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

    /// Partition counts from Kafka; a topic that cannot be read keeps its last count.
    async fn discover_partitions(
        &self,
        known: &BTreeMap<(String, String), i32>,
    ) -> BTreeMap<(String, String), i32> {
        let catalog = self.state.catalog();
        let mut out = BTreeMap::new();
        // Only what `slots` assigns: a table without views has no consumers to place.
        for (table, settings) in catalog.consuming_kafka_tables() {
            for topic in &settings.topic_list {
                let key = (table.name.clone(), topic.clone());
                let (k, s, t) = (self.kafka.clone(), settings.clone(), topic.clone());
                let found = tokio::task::spawn_blocking(move || partition_count(&k, &s, &t))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
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
        }
        out
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
                    let asked: Result<Result<u64, String>, _> = self
                        .call_group(
                            &leader.addr,
                            group,
                            Method::ReadIndex,
                            &(),
                            Duration::from_secs(5),
                        )
                        .await;
                    if let Ok(Ok(i)) = asked {
                        break i;
                    }
                }
                None => {}
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NoLeader(WRITE_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        raft.wait(Some(WRITE_TIMEOUT))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|e| ClusterError::Raft(format!("catching up to the leader: {e}")))?;
        Ok(())
    }

    /// An admin client of another member, with short timeouts: a dead member must not
    /// stall a query about the cluster.
    async fn admin_client(&self, addr: &str) -> Result<AdminClient<Channel>, String> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
            .local_address(self.source_ip);
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        Ok(AdminClient::new(channel).max_decoding_message_size(crate::server::GRPC_MESSAGE_MAX))
    }

    fn other_members(&self) -> Vec<(NodeId, Member)> {
        let metrics = self.raft.metrics().borrow().clone();
        let members: Vec<(NodeId, Member)> = metrics
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        members
    }

    /// The consumers of every member that answers, for `system.kafka_consumers`.
    pub async fn consumers_everywhere(
        &self,
        local: Vec<(ConsumerKey, ConsumerSnapshot)>,
    ) -> Vec<NodeConsumer> {
        let mut out: Vec<NodeConsumer> = local
            .into_iter()
            .map(|(k, s)| (self.member.name.clone(), k, s))
            .collect();
        let asks = self
            .other_members()
            .into_iter()
            .map(|(_, member)| async move {
                let mut client = self.admin_client(&member.addr).await.ok()?;
                let reply = client
                    .consumer_status(ConsumerStatusRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                Some((member.name, reply.consumers))
            });
        for (node, consumers) in futures::future::join_all(asks).await.into_iter().flatten() {
            for c in consumers {
                let key = ConsumerKey {
                    table: c.table.clone(),
                    topic: c.topic.clone(),
                    partition: c.partition,
                };
                let snapshot = ConsumerSnapshot {
                    current_offset: c.current_offset,
                    exceptions: c
                        .exceptions
                        .into_iter()
                        .map(|e| (e.time_unix, e.text))
                        .collect(),
                    last_poll_time: c.last_poll_time_unix,
                    num_messages_read: c.num_messages_read,
                    last_commit_time: c.last_commit_time_unix,
                    num_commits: c.num_commits,
                    is_currently_used: c.is_currently_used,
                    num_skipped_messages: c.num_skipped_messages,
                    num_rows_written: c.num_rows_written,
                    num_restarts: c.num_restarts,
                    num_errors: c.num_errors,
                };
                out.push((node.clone(), key, snapshot));
            }
        }
        out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        out
    }

    /// Every member with its Raft position as it reports it, for `system.replicas`.
    pub async fn replica_rows(&self) -> Vec<ReplicaRow> {
        let me = self.view();
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
            .other_members()
            .into_iter()
            .map(|(id, member)| async move {
                let answer = async {
                    let mut client = self.admin_client(&member.addr).await?;
                    client
                        .cluster_status(ClusterStatusRequest {})
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| s.message().to_string())
                }
                .await;
                match answer {
                    Ok(s) => ReplicaRow {
                        node_id: id,
                        node: member.name.clone(),
                        address: member.addr.clone(),
                        role: s.role,
                        is_leader: s.leader_id == id,
                        term: Some(s.term),
                        last_log_index: Some(s.last_log_index),
                        applied_index: Some(s.applied_index),
                        lag: None,
                        error: String::new(),
                    },
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

    /// Hands leadership over and stops Raft, for a clean shutdown.
    pub async fn shutdown(&self) {
        self.shutdown_groups().await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping raft");
        }
    }
}

#[async_trait::async_trait]
impl crate::ingest::Replica for Cluster {
    fn assigned_epoch(&self, key: &ConsumerKey) -> Option<u64> {
        if self.is_removed() {
            return None;
        }
        self.state
            .assignments()
            .owner(&Slot::of(key))
            .filter(|o| o.node == self.node_id)
            .map(|o| o.epoch)
    }

    async fn stored_offset(&self, table: &str, key: &PositionKey) -> Result<Option<i64>, String> {
        match self
            .read_table(table, groups::TableRead::Position(key.clone()), true)
            .await
        {
            Ok(groups::TableReadReply::Position(offset)) => Ok(offset),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn write_block(
        &self,
        key: &ConsumerKey,
        epoch: u64,
        block: Block,
    ) -> Result<ApplyOutcome, String> {
        // The table fences a stale epoch once a newer one wrote; a consumer that already
        // knows it lost its partition stops before that.
        let current = self.assigned_epoch(key);
        if current != Some(epoch) {
            return Err(format!(
                "fenced: {} was given to this node at epoch {epoch} and is {} now",
                Slot::of(key),
                current.map_or("another node's".to_string(), |e| format!("at epoch {e}"))
            ));
        }
        let fence = Fence {
            slot: Slot::of(key),
            node: self.node_id,
            epoch,
        };
        Cluster::write_block(self, block, Some(fence))
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::ChType;
    use crate::catalog::{Column, Engine, MergeTreeSettings, TableDef};
    use crate::ingest::Replica;
    use crate::table::{Decision, SourceRange};
    use arrow::array::{RecordBatch, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn block(first: i64, last: i64) -> Block {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::UInt32, false)]));
        let values: Vec<u32> = (first..=last).map(|v| v as u32).collect();
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(UInt32Array::from(values))]).expect("batch");
        Block::new(
            "t",
            Some(SourceRange {
                source: "mv".into(),
                topic: "topic".into(),
                partition: 0,
                first_offset: first,
                last_offset: last,
            }),
            &batch,
            &[],
        )
        .expect("block")
    }

    async fn one_node(dir: &std::path::Path) -> Arc<Cluster> {
        let (cluster, _) = one_node_placed(dir).await;
        // What every node's keeper does in a running node.
        cluster.keep_groups().await;
        let group = cluster.hosted_group_of("t").expect("t is placed here");
        group
            .raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(cluster.node_id, "the group forms")
            .await
            .expect("group leader");
        cluster
    }

    /// A one-node cluster with table `t` placed on it, its group not started yet, and the
    /// node's sled; `dir` is laid out as a data dir.
    async fn one_node_placed(dir: &std::path::Path) -> (Arc<Cluster>, sled::Db) {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .open()
            .expect("sled");
        let state = Arc::new(NodeState::open(db.clone(), dir.join("table-parts")).expect("state"));
        let member = Member {
            name: "solo".into(),
            addr: "127.0.0.1:1".into(),
        };
        let options = ClusterOptions {
            node_timeout: Duration::from_secs(10),
            snapshot_dir: Some(dir.join("raft-snapshots")),
            ..Default::default()
        };
        let cluster = Cluster::start(&db, state, member, options)
            .await
            .expect("cluster");
        let created = cluster.initialize().await.expect("initialize");
        assert!(matches!(created, InitOutcome::Initialized(_)));
        // Once is enough: the second time is a no-op success.
        let again = cluster.initialize().await.expect("initialize again");
        assert!(matches!(again, InitOutcome::AlreadyInitialized(_)));
        cluster
            .write_catalog(CatalogCommand::CreateTable {
                def: TableDef {
                    name: "t".into(),
                    columns: vec![Column {
                        name: "a".into(),
                        ty: ChType::UInt32,
                    }],
                    engine: Engine::MergeTree {
                        engine_name: "MergeTree".into(),
                        order_by: vec!["a".into()],
                        settings: MergeTreeSettings::default(),
                    },
                    detached: false,
                },
                if_not_exists: false,
            })
            .await
            .expect("create table");
        // What the meta leader's assigner does in a running node.
        cluster.place_tables().await;
        (cluster, db)
    }

    /// A read right after `CREATE`, before any keeper started the table's group, waits for
    /// the group instead of failing because no member runs it yet.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_right_after_create_waits_for_the_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cluster, _db) = one_node_placed(dir.path()).await;
        assert!(cluster.hosted_group_of("t").is_none());
        let keeper = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            keeper.keep_groups().await;
        });
        let read = cluster
            .read_table("t", groups::TableRead::RowCount, true)
            .await
            .expect("read");
        assert!(
            matches!(read, groups::TableReadReply::RowCount(0)),
            "{read:?}"
        );
    }

    /// The first member of a new group won this replica's vote and went away before its
    /// first entry came: the replica writes that entry itself after the grace and forms
    /// the group (alone here, as the group's only member).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_only_voted_forms_its_group_after_the_grace() {
        use openraft::storage::RaftLogStorage as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let (cluster, db) = one_node_placed(dir.path()).await;
        let group = cluster
            .state
            .placements()
            .of("t")
            .expect("t is placed")
            .group
            .clone();
        let mut store = crate::raft::log_store::LogStore::open(&db, &group, None).expect("store");
        store
            .save_vote(&openraft::Vote::new(1, cluster.node_id + 1))
            .await
            .expect("vote");

        cluster.keep_groups().await;
        let g = cluster.hosted_group_of("t").expect("t is placed here");
        assert_eq!(g.raft.metrics().borrow().current_leader, None);
        assert!(g.log_store.voted_without_entries().expect("state"));

        tokio::time::sleep(groups::FORM_GRACE).await;
        cluster.keep_groups().await;
        let g = cluster.hosted_group_of("t").expect("restarted here");
        g.raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(cluster.node_id, "the group forms")
            .await
            .expect("group leader");
        assert!(g.raft.metrics().borrow().current_term >= 2);
        assert!(!g.log_store.voted_without_entries().expect("state"));
        cluster.write_block(block(0, 9), None).await.expect("write");
        assert_eq!(cluster.state.row_count("t").expect("count"), 10);
        cluster.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_block_twice_or_rewound_is_applied_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = one_node(dir.path()).await;
        let first = cluster.write_block(block(0, 9), None).await.expect("write");
        assert_eq!(
            first,
            ApplyOutcome::Stored {
                seq: Some(0),
                rows: 10
            }
        );
        let again = cluster.write_block(block(0, 9), None).await.expect("write");
        assert_eq!(
            again,
            ApplyOutcome::Skipped(Decision::AlreadyApplied { next_offset: 10 })
        );
        // A consumer rewound to an older offset re-reads a range that straddles the stored
        // position: refused, so it re-reads from there; nothing is stored twice.
        let rewound = cluster
            .write_block(block(5, 14), None)
            .await
            .expect("write");
        assert_eq!(
            rewound,
            ApplyOutcome::Skipped(Decision::Overlap { next_offset: 10 })
        );
        cluster
            .write_block(block(10, 14), None)
            .await
            .expect("write");
        assert_eq!(cluster.state.row_count("t").expect("count"), 15);
        cluster.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_epoch_is_fenced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = one_node(dir.path()).await;
        let key = ConsumerKey {
            table: "q".into(),
            topic: "topic".into(),
            partition: 0,
        };
        let slot = Slot::of(&key);
        cluster
            .write(Command::Assign {
                owners: vec![(slot.clone(), cluster.node_id)],
            })
            .await
            .expect("assign");
        let epoch = cluster.assigned_epoch(&key).expect("assigned here");
        Replica::write_block(&*cluster, &key, epoch, block(0, 4))
            .await
            .expect("the owner writes");
        // The partition moves to another node: the old owner's next block is refused.
        cluster
            .write(Command::Assign {
                owners: vec![(slot, cluster.node_id + 1)],
            })
            .await
            .expect("reassign");
        assert_eq!(cluster.assigned_epoch(&key), None);
        let refused = Replica::write_block(&*cluster, &key, epoch, block(5, 9)).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("fenced")),
            "{refused:?}"
        );
        assert_eq!(cluster.state.row_count("t").expect("count"), 5);
        cluster.shutdown().await;
    }
}
