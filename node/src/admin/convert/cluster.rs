//! The cluster's state as the admin API carries it, both ways: this node's consumers,
//! dead letters and Raft view into replies, and what a peer replied back into the rows of the system
//! tables that ask every member.

use std::collections::BTreeMap;

use crate::cluster::{ClusterView, DrainOutcome, InitOutcome};
use crate::dead_letters::DeadLetter;
use crate::proto;
use crate::proto::{
    ClusterMember, ClusterStatusResponse, ConsumerException, DrainResponse, InitializeResponse,
    PartitionAssignment, PartitionConsumer, TablePlacement,
};
use crate::query::source::ReplicaRow;
use crate::sql;
use crate::topology::{Assignments, ConsumerKey, ConsumerSnapshot, Member, NodeId, Placements};

/// A consumer of this node, `node_id`, as `system.kafka_consumers` shows it.
pub fn consumer_to_proto(
    node_id: &str,
    key: ConsumerKey,
    s: ConsumerSnapshot,
) -> PartitionConsumer {
    PartitionConsumer {
        database: sql::DEFAULT_DATABASE.into(),
        consumer_id: key.consumer_id(node_id),
        node: node_id.to_string(),
        table: key.table,
        topic: key.topic,
        partition: key.partition,
        current_offset: s.current_offset,
        exceptions: s
            .exceptions
            .into_iter()
            .map(|(time_unix, text)| ConsumerException { time_unix, text })
            .collect(),
        last_poll_time_unix: s.last_poll_time,
        num_messages_read: s.num_messages_read,
        last_commit_time_unix: s.last_commit_time,
        num_commits: s.num_commits,
        is_currently_used: s.is_currently_used,
        num_skipped_messages: s.num_skipped_messages,
        num_rows_written: s.num_rows_written,
        num_restarts: s.num_restarts,
        num_errors: s.num_errors,
        high_watermark: s.high_watermark,
        stored_offset: s.stored_offset,
        messages_per_second: s.messages_per_second,
        rows_per_second: s.rows_per_second,
    }
}

/// One of this node's dead letters, for a peer gathering `system.dead_letter_queue`.
pub fn dead_letter_to_proto(l: DeadLetter) -> proto::DeadLetter {
    proto::DeadLetter {
        table: l.table,
        topic: l.topic,
        partition: l.partition,
        offset: l.offset,
        key: l.key,
        raw_message: l.raw_message,
        error: l.error,
        event_time_us: l.event_time_us,
    }
}

/// A dead letter as a peer reported it.
pub fn dead_letter_from_proto(l: proto::DeadLetter) -> DeadLetter {
    DeadLetter {
        table: l.table,
        topic: l.topic,
        partition: l.partition,
        offset: l.offset,
        key: l.key,
        raw_message: l.raw_message,
        error: l.error,
        event_time_us: l.event_time_us,
    }
}

/// A consumer as a peer reported it: its key and status. The node is left out: the
/// caller knows it as the peer it asked.
pub fn consumer_from_proto(c: PartitionConsumer) -> (ConsumerKey, ConsumerSnapshot) {
    let key = ConsumerKey {
        table: c.table,
        topic: c.topic,
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
        high_watermark: c.high_watermark,
        stored_offset: c.stored_offset,
        messages_per_second: c.messages_per_second,
        rows_per_second: c.rows_per_second,
    };
    (key, snapshot)
}

pub fn initialize_response(outcome: InitOutcome) -> InitializeResponse {
    match outcome {
        InitOutcome::Initialized(id) => InitializeResponse {
            message: format!("initialized cluster {id}"),
            cluster_id: id,
            created: true,
        },
        InitOutcome::AlreadyInitialized(id) => InitializeResponse {
            message: format!("already initialized: cluster {id}"),
            cluster_id: id,
            created: false,
        },
    }
}

/// What a drain did, with a message that says what is left when it could not do all.
pub fn drain_response(consumers_stopped: usize, outcome: &DrainOutcome) -> DrainResponse {
    let mut message = format!("drained: {consumers_stopped} consumers stopped");
    message.push_str(if outcome.partitions_moved {
        ", it owns no partition"
    } else {
        ", it still owns partitions (no quorum to reassign them)"
    });
    message.push_str(if outcome.leadership_released {
        ", it does not lead"
    } else {
        ", it still leads (no follower took over in time)"
    });
    DrainResponse {
        consumers_stopped: u32::try_from(consumers_stopped).unwrap_or(u32::MAX),
        partitions_moved: outcome.partitions_moved,
        leadership_released: outcome.leadership_released,
        message,
    }
}

/// This node's view of the cluster, with the replicated assignment and placements; a
/// placement names its members by name where the view knows them, by id otherwise.
pub fn cluster_status(
    view: ClusterView,
    assignments: &Assignments,
    placements: &Placements,
) -> ClusterStatusResponse {
    let assignments = assignments
        .slots
        .iter()
        .map(|(slot, owner)| PartitionAssignment {
            table: slot.table.clone(),
            topic: slot.topic.clone(),
            partition: slot.partition,
            node_id: owner.node,
            epoch: owner.epoch,
        })
        .collect();
    let names: BTreeMap<NodeId, String> = view
        .members
        .iter()
        .map(|m| (m.node_id, m.member.name.clone()))
        .collect();
    let placements = placements
        .tables
        .iter()
        .map(|(table, p)| TablePlacement {
            table: table.clone(),
            group: p.group.clone(),
            nodes: p
                .members
                .iter()
                .map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_string()))
                .collect(),
            generation: p.generation,
        })
        .collect();
    ClusterStatusResponse {
        assignments,
        placements,
        cluster_id: view.cluster_id.unwrap_or_default(),
        node_id: view.node_id,
        name: view.member.name,
        role: view.role,
        term: view.term,
        last_log_index: view.last_log_index,
        applied_index: view.applied_index,
        leader_id: view.leader.unwrap_or(0),
        in_quorum: view.in_quorum,
        members: view
            .members
            .into_iter()
            .map(|m| ClusterMember {
                node_id: m.node_id,
                name: m.member.name,
                address: m.member.addr,
                voter: m.voter,
                leader: m.is_leader,
                matched_index: m.matched_index.unwrap_or(0),
                has_matched_index: m.matched_index.is_some(),
            })
            .collect(),
    }
}

/// Member `id`'s row of `system.replicas` from the status it replied with. It leads if it
/// names itself leader; the lag needs the leader's row, so the caller fills it in.
pub fn replica_from_status(id: NodeId, member: &Member, s: ClusterStatusResponse) -> ReplicaRow {
    ReplicaRow {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MemberStatus;
    use crate::topology::{Owner, Placement, Slot};

    #[test]
    fn a_consumer_comes_back_from_its_proto_as_it_went() {
        let key = ConsumerKey {
            table: "queue".into(),
            topic: "t".into(),
            partition: 3,
        };
        let snapshot = ConsumerSnapshot {
            current_offset: 42,
            exceptions: vec![(1_700_000_000, "broken".into())],
            last_poll_time: 1_700_000_001,
            num_messages_read: 10,
            last_commit_time: 1_700_000_002,
            num_commits: 2,
            is_currently_used: true,
            num_skipped_messages: 1,
            num_rows_written: 9,
            num_restarts: 4,
            num_errors: 5,
            high_watermark: Some(60),
            stored_offset: Some(42),
            messages_per_second: 12.5,
            rows_per_second: 11.0,
        };
        let proto = consumer_to_proto("n1", key.clone(), snapshot.clone());
        assert_eq!(proto.consumer_id, "n1/queue/t/3");
        assert_eq!(
            (proto.node.as_str(), proto.database.as_str()),
            ("n1", "default")
        );
        assert_eq!(
            (proto.current_offset, proto.exceptions[0].text.as_str()),
            (42, "broken")
        );
        assert_eq!(consumer_from_proto(proto), (key, snapshot));
    }

    fn member(id: u64, leader: bool) -> MemberStatus {
        MemberStatus {
            node_id: id,
            member: Member {
                name: format!("n{id}"),
                addr: format!("h{id}:1"),
            },
            voter: true,
            is_leader: leader,
            matched_index: (id == 1).then_some(9),
        }
    }

    #[test]
    fn cluster_status_names_placed_members_it_knows() {
        let view = ClusterView {
            cluster_id: Some("c".into()),
            node_id: 1,
            member: member(1, true).member,
            role: "Leader".into(),
            term: 3,
            last_log_index: 9,
            applied_index: 9,
            leader: Some(1),
            members: vec![member(1, true), member(2, false)],
            in_quorum: true,
        };
        let assignments = Assignments {
            slots: vec![(
                Slot {
                    table: "queue".into(),
                    topic: "t".into(),
                    partition: 0,
                },
                Owner { node: 2, epoch: 5 },
            )],
        };
        let placements = Placements {
            tables: [(
                "events".to_string(),
                Placement {
                    group: "g-1".into(),
                    members: vec![1, 2, 7],
                    initial: vec![1],
                    generation: 1,
                },
            )]
            .into(),
        };
        let status = cluster_status(view, &assignments, &placements);
        assert_eq!(status.placements[0].nodes, ["n1", "n2", "7"]);
        assert_eq!(
            (
                status.placements[0].group.as_str(),
                status.cluster_id.as_str()
            ),
            ("g-1", "c")
        );
        assert_eq!(
            (status.assignments[0].node_id, status.assignments[0].epoch),
            (2, 5)
        );
        assert_eq!((status.leader_id, status.name.as_str()), (1, "n1"));
        let matched: Vec<(u64, bool)> = status
            .members
            .iter()
            .map(|m| (m.matched_index, m.has_matched_index))
            .collect();
        assert_eq!(matched, [(9, true), (0, false)]);

        // The same reply, read back by a member that asked node 1.
        let row = replica_from_status(1, &member(1, true).member, status);
        assert_eq!(
            (row.node.as_str(), row.address.as_str(), row.role.as_str()),
            ("n1", "h1:1", "Leader")
        );
        assert!(row.is_leader);
        assert_eq!(
            (row.term, row.last_log_index, row.applied_index, row.lag),
            (Some(3), Some(9), Some(9), None)
        );
    }

    #[test]
    fn init_and_drain_replies_say_what_happened() {
        let created = initialize_response(InitOutcome::Initialized("c".into()));
        assert_eq!(
            (created.message.as_str(), created.created),
            ("initialized cluster c", true)
        );
        let again = initialize_response(InitOutcome::AlreadyInitialized("c".into()));
        assert_eq!(
            (again.message.as_str(), again.created),
            ("already initialized: cluster c", false)
        );
        let r = drain_response(
            3,
            &DrainOutcome {
                partitions_moved: true,
                leadership_released: false,
            },
        );
        assert_eq!(
            r.message,
            "drained: 3 consumers stopped, it owns no partition, it still leads (no follower took over in time)"
        );
        assert_eq!((r.consumers_stopped, r.partitions_moved), (3, true));
    }
}
