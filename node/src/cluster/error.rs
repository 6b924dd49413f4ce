//! The coordinator's errors: each names what it is about (a group, a table, a member), and
//! `kind` sorts them for callers and for the wire (`PeerErrorKind`): ask again or
//! elsewhere, not found, refused, failed.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};

use crate::catalog::CatalogError;
use crate::raft::messages::{PeerError, PeerErrorKind, ProposeError};
use crate::raft::network::TransportError;
use crate::raft::state_machine::SnapshotError;
use crate::raft::BlockRefused;
use crate::state::StateError;
use crate::table::TableError;
use crate::topology::{Member, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("table {table}: {source}")]
    Table {
        table: String,
        #[source]
        source: TableError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("opening storage for durable writes: {0}")]
    DiskSync(#[source] std::io::Error),
    #[error("the stored node id is unreadable")]
    NodeIdUnreadable,
    #[error("group {group}: invalid Raft settings: {source}")]
    RaftConfig {
        group: String,
        #[source]
        source: Box<openraft::ConfigError>,
    },
    #[error("group {group}: starting Raft: {source}")]
    StartRaft {
        group: String,
        #[source]
        source: Box<Fatal<NodeId>>,
    },
    #[error("initializing the cluster: {0}")]
    Initialize(#[source] Box<RaftError<NodeId, InitializeError<NodeId, Member>>>),
    #[error("group {group}: {source}")]
    ReadIndex {
        group: String,
        #[source]
        source: Box<RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>>,
    },
    #[error("group {group}: catching up to the leader: {source}")]
    CatchUp {
        group: String,
        #[source]
        source: openraft::metrics::WaitError,
    },
    #[error("no leader of group {group} answered within {waited:?}; is a majority of its members up? (see `sluice status`)")]
    NoLeader { group: String, waited: Duration },
    #[error("this node is not part of an initialized cluster yet: run `sluice init` on one node, or start it with --bootstrap")]
    NotInitialized,
    #[error("table {table} does not exist")]
    NoTable { table: String },
    #[error("table {table} was not placed on any node within {waited:?}")]
    NotPlaced { table: String, waited: Duration },
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error(transparent)]
    BlockRefused(#[from] BlockRefused),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{peer} answered: {source}")]
    Remote {
        peer: String,
        #[source]
        source: PeerError,
    },
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// Boxed: it names a group, a directory and a file, and would make every
    /// `ClusterError` that large.
    #[error(transparent)]
    Snapshot(Box<SnapshotError>),
    #[error("no directory for Raft snapshots was given")]
    NoSnapshotDir,
    #[error("{member} holds no replica of table {table} (group {group})")]
    NoReplica {
        member: String,
        table: String,
        group: String,
    },
    #[error("no replica of table {table} answered: {}", .failures.iter().map(|(m, e)| format!("{m}: {e}")).collect::<Vec<_>>().join("; "))]
    NoReplicaAnswered {
        table: String,
        failures: Vec<(Member, ClusterError)>,
    },
    #[error("{member} does not run group {group}")]
    NotInGroup { member: String, group: String },
    #[error("{member} is draining: it takes no leadership")]
    Draining { member: String },
    #[error("group {group} answered a {asked} with {reply}")]
    UnexpectedReply {
        group: String,
        asked: &'static str,
        reply: String,
    },
}

/// Why a membership change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("no leader is known yet; retry")]
    NoLeaderYet,
    #[error("leadership is changing; retry")]
    LeadershipChanging,
    #[error("no member is named {who}")]
    NoSuchMember { who: String },
    #[error("{who} is the last voter; a cluster cannot remove its last member")]
    LastVoter { who: String },
    #[error("{step} {member}: {source}")]
    Change {
        step: &'static str,
        member: String,
        #[source]
        source: Box<RaftError<NodeId, ClientWriteError<NodeId, Member>>>,
    },
}

impl From<SnapshotError> for ClusterError {
    fn from(e: SnapshotError) -> ClusterError {
        ClusterError::Snapshot(Box::new(e))
    }
}

impl ClusterError {
    pub fn table(table: &str, source: TableError) -> ClusterError {
        ClusterError::Table {
            table: table.to_string(),
            source,
        }
    }

    /// What a caller may do about it.
    pub fn kind(&self) -> PeerErrorKind {
        use ClusterError as E;
        match self {
            E::NoLeader { .. }
            | E::NotInitialized
            | E::NotPlaced { .. }
            | E::Transport(_)
            | E::NoReplicaAnswered { .. }
            | E::CatchUp { .. }
            | E::ReadIndex { .. } => PeerErrorKind::Unavailable,
            E::Propose(ProposeError::ForwardToLeader(_) | ProposeError::TooManyParts { .. }) => {
                PeerErrorKind::Unavailable
            }
            E::NoReplica { .. } | E::NotInGroup { .. } => PeerErrorKind::NotHere,
            E::NoTable { .. } | E::BlockRefused(BlockRefused::TableGone { .. }) => {
                PeerErrorKind::NotFound
            }
            E::Membership(m) => match m {
                MembershipError::NoLeaderYet | MembershipError::LeadershipChanging => {
                    PeerErrorKind::Unavailable
                }
                MembershipError::NoSuchMember { .. } => PeerErrorKind::NotFound,
                MembershipError::LastVoter { .. } => PeerErrorKind::Refused,
                MembershipError::Change { .. } => PeerErrorKind::Failed,
            },
            E::Remote { source, .. } => source.kind,
            E::Draining { .. } | E::BlockRefused(_) | E::Catalog(_) => PeerErrorKind::Refused,
            E::Storage(_)
            | E::State(_)
            | E::Table { .. }
            | E::DiskSync(_)
            | E::NodeIdUnreadable
            | E::RaftConfig { .. }
            | E::StartRaft { .. }
            | E::Initialize(_)
            | E::Propose(ProposeError::Stopped { .. })
            | E::Snapshot(_)
            | E::NoSnapshotDir
            | E::UnexpectedReply { .. } => PeerErrorKind::Failed,
        }
    }

    /// Whether asking again, or another member, may succeed.
    pub fn retry_elsewhere(&self) -> bool {
        matches!(
            self.kind(),
            PeerErrorKind::Unavailable | PeerErrorKind::NotHere
        )
    }

    /// The catalog's error inside, if this is one.
    pub fn catalog(&self) -> Option<&CatalogError> {
        match self {
            ClusterError::Catalog(e) => Some(e),
            ClusterError::State(StateError::Catalog(e)) => Some(e),
            _ => None,
        }
    }

    /// As a peer answers it.
    pub fn to_peer(&self) -> PeerError {
        PeerError::new(self.kind(), self)
    }
}
