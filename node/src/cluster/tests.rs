//! The coordinator on one node, end to end through its Raft groups: forming, placing,
//! writing blocks (deduplicated and fenced), and a group formed after a lost vote.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::catalog::types::ChType;
use crate::catalog::CatalogCommand;
use crate::catalog::{Column, Engine, MergeTreeSettings, TableDef};
use crate::ingest::{Replica, ReplicaError};
use crate::raft::messages::{TableRead, TableReadReply};
use crate::raft::Command;
use crate::table::{ApplyOutcome, Block};
use crate::table::{Decision, SourceRange};
use crate::topology::{ConsumerKey, Slot};
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
                layout: Default::default(),
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
        .read_table("t", TableRead::RowCount, true)
        .await
        .expect("read");
    assert!(matches!(read, TableReadReply::RowCount(0)), "{read:?}");
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

    tokio::time::sleep(keeper::FORM_GRACE).await;
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
    cluster.shutdown(Duration::from_secs(5)).await;
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
    cluster.shutdown(Duration::from_secs(5)).await;
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
        matches!(refused, Err(ReplicaError::NotAssigned { epoch: e, current: None, .. }) if e == epoch),
        "{refused:?}"
    );
    assert_eq!(cluster.state.row_count("t").expect("count"), 5);
    cluster.shutdown(Duration::from_secs(5)).await;
}
