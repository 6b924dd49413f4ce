//! The coordinator: this node as a member of its cluster. `Cluster` holds the parts, each
//! in its own file with the state it owns; the files that do a job over several parts
//! are `impl Cluster` blocks named for that job.
//!
//! | file            | job                                                              |
//! |-----------------|------------------------------------------------------------------|
//! | `peers`         | typed calls to other nodes' Raft service                         |
//! | `phase`         | member, removed, draining, handing over: one value, watched      |
//! | `liveness`      | on the meta leader: who is alive, from heartbeats (pure)         |
//! | `membership`    | forming, joining, leaving; heartbeats; this node's view          |
//! | `propose`       | the one propose-or-forward path, for `meta` and every data group |
//! | `drain`         | a clean stop: partitions and leadership move first               |
//! | `assigner`      | on the meta leader: partitions to live voters, tables to groups  |
//! | `assignment`, `placement` | the pure plans the assigner proposes                   |
//! | `group`         | a table's data group as run here, its watchers, `system.raft_groups` |
//! | `keeper`        | starts, forms, changes and stops the groups placed on this node  |
//! | `reads`         | reads and scans of a table, wherever a replica is; read barriers |
//! | `peer_service`, `replica` | what the Raft service and ingestion call (their traits) |
//!
//! A node's Raft id is drawn at random the first time its data dir is used, so a node
//! whose data dir was wiped comes back as a new member (and never votes twice under an
//! old identity); its name (a pod name) is what people see. Must not import `admin`,
//! `server` or the generated admin protocol: they are above it.

mod assigner;
pub mod assignment;
mod drain;
mod error;
mod group;
mod keeper;
mod liveness;
mod membership;
mod peer_service;
mod peers;
mod phase;
pub mod placement;
mod propose;
mod reads;
mod replica;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use rand::Rng as _;

use crate::ingest::client::KafkaClientDefaults;
use crate::raft::disk_sync::DiskSync;
use crate::raft::log_store::LogStore;
use crate::raft::messages::NodeInfo;
use crate::raft::network::{self, ClusterIdCell, Network};
use crate::raft::snapshot_dirs::SnapshotDirs;
use crate::raft::state_machine::{Scope, StateMachine};
use crate::raft::{raft_config, Raft, META_GROUP};
use crate::shutdown::Tasks;
use crate::state::NodeState;
use crate::topology::{Member, NodeId};

pub use drain::DrainOutcome;
pub use error::{ClusterError, MembershipError};
pub use group::DataGroup;
pub use membership::{ClusterView, InitOutcome, MemberStatus};
pub use phase::Phase;

/// How long a write or a read barrier waits for a leader before it fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

const IDENTITY_TREE: &str = "node";
const RAFT_ID_KEY: &[u8] = b"raft_id";

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

/// What opening a group's Raft needs: the node's sled, its durable-write helper and the
/// groups' snapshot directories.
struct GroupStorage {
    db: sled::Db,
    disk: Option<Arc<DiskSync>>,
    snapshots: Arc<SnapshotDirs>,
}

/// Which group to open, for whom.
struct OpenGroup<'a> {
    node_id: NodeId,
    group: &'a str,
    scope: Scope,
    state: &'a Arc<NodeState>,
    cluster_id: &'a ClusterIdCell,
    source_ip: Option<IpAddr>,
}

impl GroupStorage {
    /// Opens a group's Raft (`meta` or a table's) on this node's storage: its log, its
    /// state machine and its transport. The one place a group is opened.
    async fn open_raft(
        &self,
        open: OpenGroup<'_>,
        config: openraft::Config,
    ) -> Result<(Raft, LogStore), ClusterError> {
        let group = open.group;
        let log_store = LogStore::open(&self.db, group, self.disk.clone())?;
        let sm = StateMachine::open(
            &self.db,
            group,
            open.scope,
            open.state.clone(),
            open.cluster_id.clone(),
            self.snapshots.group(group),
        )?;
        let network = Network {
            group: group.to_string(),
            cluster_id: open.cluster_id.clone(),
            source: open.source_ip,
        };
        let raft = Raft::new(
            open.node_id,
            Arc::new(config),
            network,
            log_store.clone(),
            sm,
        )
        .await
        .map_err(|source| ClusterError::StartRaft {
            group: group.to_string(),
            source: Box::new(source),
        })?;
        Ok((raft, log_store))
    }
}

pub struct Cluster {
    pub node_id: NodeId,
    pub member: Member,
    /// The `meta` group's Raft: the catalog, the membership, the assignment, placements.
    pub raft: Raft,
    pub state: Arc<NodeState>,
    pub cluster_id: ClusterIdCell,
    log_store: LogStore,
    /// This node's identity in its data dir: its Raft id, whether it ever joined.
    identity: sled::Tree,
    /// Membership changes one at a time: each is computed from the one before.
    membership_lock: tokio::sync::Mutex<()>,
    peers: peers::Peers,
    liveness: liveness::Liveness,
    phase: phase::NodePhase,
    proposals: propose::Proposals,
    /// Node-wide Kafka client properties, for partition discovery.
    kafka: Arc<KafkaClientDefaults>,
    storage: GroupStorage,
    /// The tables' data groups this node runs.
    groups: group::DataGroups,
    /// Set when a data group's Raft stopped on a storage error.
    fatal: tokio::sync::watch::Sender<Option<String>>,
    /// The coordinator's loops; the groups' own tasks are its children.
    tasks: Tasks,
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

impl Cluster {
    /// Opens this node's Raft state and starts its `meta` group; its loops start with
    /// `start_background`.
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
            Some(dir) => Some(DiskSync::open(dir).map_err(ClusterError::DiskSync)?),
            None => None,
        };
        let identity = db.open_tree(IDENTITY_TREE)?;
        let node_id = match identity.get(RAFT_ID_KEY)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| ClusterError::NodeIdUnreadable)?,
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
        let storage = GroupStorage {
            db: db.clone(),
            disk,
            snapshots,
        };
        let config = raft_config("sluice").map_err(|source| ClusterError::RaftConfig {
            group: META_GROUP.into(),
            source,
        })?;
        let (raft, log_store) = storage
            .open_raft(
                OpenGroup {
                    node_id,
                    group: META_GROUP,
                    scope: Scope::Meta,
                    state: &state,
                    cluster_id: &cluster_id,
                    source_ip,
                },
                config,
            )
            .await?;
        let seeds = peers
            .into_iter()
            .filter(|p| !p.is_empty() && *p != member.addr)
            .collect();
        Ok(Arc::new(Cluster {
            node_id,
            member,
            raft,
            state,
            peers: peers::Peers::new(seeds, source_ip, cluster_id.clone()),
            cluster_id,
            log_store,
            identity,
            membership_lock: tokio::sync::Mutex::new(()),
            liveness: liveness::Liveness::new(node_timeout),
            phase: phase::NodePhase::default(),
            proposals: propose::Proposals::default(),
            kafka,
            storage,
            groups: group::DataGroups::default(),
            fatal: tokio::sync::watch::channel(None).0,
            tasks: Tasks::new("cluster"),
        }))
    }

    /// Starts the coordinator's loops, owned by it and stopped by `shutdown`: asking to
    /// join, heartbeats, the meta leader's assigner, and the keeper of data groups.
    pub fn start_background(self: &Arc<Self>) {
        let this = self.clone();
        self.tasks
            .spawn("join", async move { this.join_loop().await });
        let this = self.clone();
        self.tasks
            .spawn("heartbeats", async move { this.heartbeat_loop().await });
        let this = self.clone();
        self.tasks
            .spawn("assigner", async move { this.assigner_loop().await });
        let this = self.clone();
        self.tasks
            .spawn("group keeper", async move { this.keeper_loop().await });
    }

    /// The addresses this node asks to let it in (its seed peers).
    pub fn seeds(&self) -> &[String] {
        &self.peers.seeds
    }

    pub fn source_ip(&self) -> Option<IpAddr> {
        self.peers.source_ip()
    }

    pub fn cluster_id(&self) -> Option<String> {
        Some(network::cluster_id_of(&self.cluster_id)).filter(|id| !id.is_empty())
    }

    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    pub async fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.node_id,
            member: self.member.clone(),
            cluster_id: self.cluster_id(),
            initialized: self.is_initialized().await,
            leader: self.leader().map(|(_, member)| member),
        }
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// The meta leader's Raft id and address, as this node knows them.
    fn leader(&self) -> Option<(NodeId, Member)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|m| (leader, m.clone()))
    }

    /// A cluster member's name and address, from the meta group's membership.
    fn member_of(&self, id: NodeId) -> Option<Member> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// The voters: the nodes consumers are assigned to.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        let metrics = self.raft.metrics().borrow().clone();
        let voters = metrics.membership_config.membership().voter_ids().collect();
        voters
    }

    /// Every other member, from the meta group's membership.
    pub fn other_members(&self) -> Vec<(NodeId, Member)> {
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

    /// Whether the leader said this node is no longer a member.
    pub fn is_removed(&self) -> bool {
        self.phase.is_removed()
    }

    pub fn is_draining(&self) -> bool {
        self.phase.is_draining()
    }

    /// This node's phase, and its changes.
    pub fn phase(&self) -> tokio::sync::watch::Receiver<Phase> {
        self.phase.watch()
    }

    /// Stops the coordinator's loops, every data group and the meta group's Raft, for a
    /// clean shutdown; waits at most `timeout` for the loops.
    pub async fn shutdown(&self, timeout: Duration) {
        self.tasks.stop(timeout).await;
        self.shutdown_groups().await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping raft");
        }
    }
}
