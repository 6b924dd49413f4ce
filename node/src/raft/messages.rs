//! The peer protocol beside Raft's own messages: what a node asks another (join, leave,
//! heartbeat, propose, read a table) and what it answers, each request typed with its
//! reply (`PeerCall`), so a caller cannot decode an answer as the wrong type.
//!
//! Errors travel typed too (`PeerError`): the caller tells "ask the leader" and "ask
//! again later" from "give up" by its kind, not by parsing text.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::network::Method;
use super::{Command, Response};
use crate::table::{PositionKey, WriterLogEntry};
use crate::topology::{Member, NodeId};

/// A request of the peer protocol, with the method that carries it and its reply.
pub trait PeerCall: Serialize {
    type Reply: DeserializeOwned;
    const METHOD: Method;
}

/// What kind of failure a peer answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerErrorKind {
    /// The peer cannot decide now (no leader, leadership moving): ask again later.
    Unavailable,
    /// The peer does not run what was asked of it (a group, a replica): ask another.
    NotHere,
    /// What was asked names nothing that exists (a member, a table).
    NotFound,
    /// The request cannot succeed as asked (the last voter, a draining node).
    Refused,
    /// The peer failed to do it (a Raft or storage error).
    Failed,
}

/// A peer's answer when it did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct PeerError {
    pub kind: PeerErrorKind,
    pub message: String,
}

impl PeerError {
    pub fn new(kind: PeerErrorKind, message: impl std::fmt::Display) -> PeerError {
        PeerError {
            kind,
            message: message.to_string(),
        }
    }

    /// Whether another member, or the same one later, may answer.
    pub fn retry_elsewhere(&self) -> bool {
        matches!(
            self.kind,
            PeerErrorKind::Unavailable | PeerErrorKind::NotHere
        )
    }
}

/// Why a proposal did not apply on the node it was sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// Not the group's leader (or not running the group): the leader, if one is known.
    #[error("not the leader{}", .0.as_ref().map(|m| format!("; the leader is {m}")).unwrap_or_default())]
    ForwardToLeader(Option<Member>),
    /// The table's replica has more parts than writes may add to: merges are behind.
    #[error("table {table} has {parts} parts, more than {limit}: merges are behind, so the block is refused (it is read again later)")]
    TooManyParts {
        table: String,
        parts: usize,
        limit: usize,
    },
    /// The group's Raft stopped (a storage fault, or the group is leaving this node).
    #[error("group {group} stopped: {reason}")]
    Stopped { group: String, reason: String },
}

impl PeerCall for Command {
    type Reply = Result<(Response, u64), ProposeError>;
    const METHOD: Method = Method::Propose;
}

/// A node asks to become a member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub member: Member,
}

impl PeerCall for JoinRequest {
    type Reply = Result<String, PeerError>;
    const METHOD: Method = Method::Join;
}

/// Takes a member out of the cluster, by name, id or address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveRequest {
    pub who: String,
}

impl PeerCall for LeaveRequest {
    type Reply = Result<String, PeerError>;
    const METHOD: Method = Method::Leave;
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

impl PeerCall for Heartbeat {
    type Reply = HeartbeatReply;
    const METHOD: Method = Method::Heartbeat;
}

/// Asks what a node says about itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct InfoRequest;

/// What a node says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub member: Member,
    pub cluster_id: Option<String>,
    pub initialized: bool,
    pub leader: Option<Member>,
}

impl PeerCall for InfoRequest {
    type Reply = NodeInfo;
    const METHOD: Method = Method::Info;
}

/// Asks a group's leader for the index a linearizable read must see applied.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReadIndexRequest;

impl PeerCall for ReadIndexRequest {
    type Reply = Result<u64, PeerError>;
    const METHOD: Method = Method::ReadIndex;
}

/// Asks a node to campaign now in a group (a leader handing over).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ElectRequest;

impl PeerCall for ElectRequest {
    type Reply = Result<(), PeerError>;
    const METHOD: Method = Method::Elect;
}

/// A read of a table's replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TableRead {
    /// The stored next offset of a source partition.
    Position(PositionKey),
    RowCount,
    WriterLog,
    /// Whether the replica holds (or held) entries of its group.
    Formed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReadRequest {
    pub table: String,
    /// Read what every write acknowledged before the read holds.
    pub linearizable: bool,
    pub read: TableRead,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TableReadReply {
    Position(Option<i64>),
    RowCount(u64),
    WriterLog(Vec<WriterLogEntry>),
    Formed(bool),
}

impl PeerCall for TableReadRequest {
    type Reply = Result<TableReadReply, PeerError>;
    const METHOD: Method = Method::Read;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{decode, encode};

    #[test]
    fn errors_keep_their_kind_over_the_wire() {
        let sent: Result<String, PeerError> = Err(PeerError::new(
            PeerErrorKind::Unavailable,
            "no leader is known yet; retry",
        ));
        let bytes = encode(&sent).expect("encodes");
        let back: Result<String, PeerError> = decode(&bytes).expect("decodes");
        let error = back.expect_err("an error");
        assert!(error.retry_elsewhere());
        assert_eq!(error.to_string(), "no leader is known yet; retry");
        assert!(!PeerError::new(PeerErrorKind::Refused, "last voter").retry_elsewhere());

        let refused: <Command as PeerCall>::Reply = Err(ProposeError::TooManyParts {
            table: "t".into(),
            parts: 301,
            limit: 300,
        });
        let back: <Command as PeerCall>::Reply =
            decode(&encode(&refused).expect("encodes")).expect("decodes");
        assert_eq!(back, refused);
    }
}
