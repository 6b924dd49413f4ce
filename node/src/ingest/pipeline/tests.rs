//! The writer's decisions over one decoded block, with a replica that answers as told:
//! which views get which rows, what a view's position becomes, and which answer ends the
//! consumer. No Kafka: the block is decoded from messages made here, and a write path
//! that needs no broker (no view pushes to Kafka) is used.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::catalog::{ChType, Column, Engine, HandleErrorMode, KafkaSettings, MergeTreeSettings};
use crate::ingest::ReplicaError;
use crate::table::{ApplyOutcome, Decision};
use crate::topology::Slot;

/// Answers writes from a script, then stores whatever comes; keeps what it was sent.
#[derive(Default)]
struct ScriptedReplica {
    answers: Mutex<VecDeque<Result<ApplyOutcome, ReplicaError>>>,
    written: Mutex<Vec<(u64, Block)>>,
}

impl ScriptedReplica {
    fn answering(answers: Vec<Result<ApplyOutcome, ReplicaError>>) -> Arc<ScriptedReplica> {
        Arc::new(ScriptedReplica {
            answers: Mutex::new(answers.into()),
            written: Mutex::default(),
        })
    }

    /// Each block written: (view, first offset, last offset, rows, epoch).
    fn written(&self) -> Vec<(String, i64, i64, u64, u64)> {
        self.written
            .lock()
            .expect("lock")
            .iter()
            .map(|(epoch, b)| {
                let range = b
                    .source
                    .clone()
                    .expect("a block read from Kafka has a source");
                (
                    range.source,
                    range.first_offset,
                    range.last_offset,
                    b.rows,
                    *epoch,
                )
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Replica for ScriptedReplica {
    fn assigned_epoch(&self, _key: &ConsumerKey) -> Option<u64> {
        Some(EPOCH)
    }

    async fn stored_offset(
        &self,
        _table: &str,
        _key: &PositionKey,
    ) -> Result<Option<i64>, ReplicaError> {
        Ok(None)
    }

    async fn write_block(
        &self,
        _key: &ConsumerKey,
        epoch: u64,
        block: Block,
    ) -> Result<ApplyOutcome, ReplicaError> {
        let rows = block.rows;
        self.written.lock().expect("lock").push((epoch, block));
        let scripted = self.answers.lock().expect("lock").pop_front();
        scripted.unwrap_or(Ok(ApplyOutcome::Stored { seq: None, rows }))
    }
}

const EPOCH: u64 = 7;

fn source() -> TableDef {
    TableDef {
        name: "queue".into(),
        columns: vec![Column {
            name: "a".into(),
            ty: ChType::UInt32,
        }],
        engine: Engine::Kafka(Box::new(KafkaSettings::for_tests())),
        detached: false,
        layout: Default::default(),
    }
}

fn target() -> TableDef {
    TableDef {
        name: "events".into(),
        columns: vec![
            Column {
                name: "a".into(),
                ty: ChType::UInt32,
            },
            Column {
                name: "_offset".into(),
                ty: ChType::UInt64,
            },
        ],
        engine: Engine::MergeTree {
            engine_name: "MergeTree".into(),
            order_by: vec!["a".into()],
            settings: MergeTreeSettings::default(),
        },
        detached: false,
        layout: Default::default(),
    }
}

fn view(name: &str, query: &str) -> ViewDef {
    ViewDef {
        name: name.into(),
        source: "queue".into(),
        target: "events".into(),
        original_query: query.into(),
        query: query.into(),
        output_columns: vec!["a".into(), "_offset".into()],
    }
}

fn key() -> ConsumerKey {
    ConsumerKey {
        table: "queue".into(),
        topic: "t".into(),
        partition: 0,
    }
}

/// A job over `views` writing through `replica`; its node state (an empty catalog, so no
/// view pushes to Kafka) lives in `dir`.
fn job(dir: &std::path::Path, replica: Arc<ScriptedReplica>, views: &[&str]) -> PartitionJob {
    let db = sled::Config::new()
        .path(dir.join("sled"))
        .open()
        .expect("sled");
    let state = NodeState::open(db, dir.join("table-parts")).expect("state");
    let kafka = Arc::new(KafkaClientDefaults::default());
    PartitionJob {
        key: key(),
        node_id: "n1".into(),
        table: source(),
        views: views
            .iter()
            .map(|name| (view(name, "SELECT a, _offset FROM queue"), target()))
            .collect(),
        state: Arc::new(state),
        replica,
        epoch: EPOCH,
        status: Arc::default(),
        kafka: kafka.clone(),
        sink: Arc::new(KafkaSink::new(kafka)),
    }
}

/// Offsets `first..=last` decoded, one row per message (`a` is the offset).
fn cut(first: i64, last: i64) -> CutBlock {
    let messages: Vec<RawMessage> = (first..=last)
        .map(|offset| RawMessage {
            payload: Some(Bytes::from(format!("{{\"a\":{offset}}}"))),
            key: None,
            offset,
            timestamp_ms: None,
            headers: Vec::new(),
        })
        .collect();
    let decoded = decode_block(&source(), "t", 0, &messages).expect("decoded");
    CutBlock {
        first_offset: first,
        last_offset: last,
        count: messages.len(),
        decoded,
        fate: verdict::BrokenFate::default(),
        dead_letters: Vec::new(),
        decode_time: Duration::ZERO,
    }
}

fn positions(job: &PartitionJob, next: &[Option<i64>]) -> Vec<ViewPosition> {
    job.views
        .iter()
        .zip(next)
        .map(|((view, target), next)| ViewPosition {
            view: view.clone(),
            target: target.clone(),
            next_offset: *next,
        })
        .collect()
}

fn next_offsets(positions: &[ViewPosition]) -> Vec<Option<i64>> {
    positions.iter().map(|p| p.next_offset).collect()
}

#[tokio::test]
async fn each_view_gets_the_rows_it_still_needs() {
    let dir = tempfile::tempdir().expect("dir");
    let replica = ScriptedReplica::answering(vec![]);
    let job = job(dir.path(), replica.clone(), &["new", "partway", "ahead"]);
    let mut at = positions(&job, &[None, Some(12), Some(20)]);
    let rows = job
        .write_views(&mut at, &cut(10, 14))
        .await
        .expect("written");
    assert_eq!(
        replica.written(),
        [
            ("new".to_string(), 10, 14, 5, EPOCH),
            ("partway".to_string(), 12, 14, 3, EPOCH),
        ],
        "a view ahead of the block gets nothing"
    );
    assert_eq!(rows, 8);
    assert_eq!(next_offsets(&at), [Some(15), Some(15), Some(20)]);
}

#[tokio::test]
async fn a_view_at_the_last_offset_gets_one_row() {
    let dir = tempfile::tempdir().expect("dir");
    let replica = ScriptedReplica::answering(vec![]);
    let job = job(dir.path(), replica.clone(), &["v"]);
    let mut at = positions(&job, &[Some(14)]);
    assert_eq!(
        job.write_views(&mut at, &cut(10, 14))
            .await
            .expect("written"),
        1
    );
    assert_eq!(replica.written(), [("v".to_string(), 14, 14, 1, EPOCH)]);
    assert_eq!(next_offsets(&at), [Some(15)]);
}

#[tokio::test]
async fn a_replica_that_is_not_assigned_fails_the_block_and_keeps_the_position() {
    let dir = tempfile::tempdir().expect("dir");
    let refusal = ReplicaError::NotAssigned {
        slot: Slot {
            table: "queue".into(),
            topic: "t".into(),
            partition: 0,
        },
        epoch: EPOCH,
        current: Some(EPOCH + 1),
    };
    let replica = ScriptedReplica::answering(vec![Err(refusal)]);
    let job = job(dir.path(), replica.clone(), &["first", "second"]);
    let mut at = positions(&job, &[Some(10), Some(10)]);
    match job.write_views(&mut at, &cut(10, 14)).await {
        Err(IngestError::Replica {
            key: k,
            source: ReplicaError::NotAssigned { epoch, current, .. },
        }) => {
            assert_eq!(*k, key());
            assert_eq!((epoch, current), (EPOCH, Some(EPOCH + 1)));
        }
        other => panic!("expected a NotAssigned refusal, got {other:?}"),
    }
    assert_eq!(next_offsets(&at), [Some(10), Some(10)], "nothing moved");
    assert_eq!(replica.written().len(), 1, "the second view was not tried");
}

#[tokio::test]
async fn a_refusal_keeps_what_earlier_views_stored() {
    let dir = tempfile::tempdir().expect("dir");
    let no_leader = ReplicaError::Cluster {
        table: "events".into(),
        source: "no leader".into(),
    };
    let stored = ApplyOutcome::Stored {
        seq: Some(1),
        rows: 5,
    };
    let replica = ScriptedReplica::answering(vec![Ok(stored), Err(no_leader)]);
    let job = job(dir.path(), replica.clone(), &["first", "second"]);
    let mut at = positions(&job, &[None, None]);
    let failed = job.write_views(&mut at, &cut(10, 14)).await;
    assert!(
        matches!(
            failed,
            Err(IngestError::Replica {
                source: ReplicaError::Cluster { .. },
                ..
            })
        ),
        "{failed:?}"
    );
    assert_eq!(next_offsets(&at), [Some(15), None]);
}

#[tokio::test]
async fn a_block_the_table_holds_moves_the_position_and_counts_no_rows() {
    let dir = tempfile::tempdir().expect("dir");
    let held = ApplyOutcome::Skipped(Decision::AlreadyApplied { next_offset: 15 });
    let replica = ScriptedReplica::answering(vec![Ok(held)]);
    let job = job(dir.path(), replica.clone(), &["v"]);
    let mut at = positions(&job, &[None]);
    assert_eq!(
        job.write_views(&mut at, &cut(10, 14))
            .await
            .expect("skipped"),
        0
    );
    assert_eq!(next_offsets(&at), [Some(15)]);
}

#[tokio::test]
async fn an_overlap_names_the_view_and_keeps_its_position() {
    let dir = tempfile::tempdir().expect("dir");
    let overlap = ApplyOutcome::Skipped(Decision::Overlap { next_offset: 12 });
    let replica = ScriptedReplica::answering(vec![Ok(overlap)]);
    let job = job(dir.path(), replica.clone(), &["v"]);
    let mut at = positions(&job, &[Some(10)]);
    match job.write_views(&mut at, &cut(10, 14)).await {
        Err(IngestError::StalePosition {
            view, next_offset, ..
        }) => assert_eq!((view.as_str(), next_offset), ("v", 12)),
        other => panic!("expected StalePosition, got {other:?}"),
    }
    assert_eq!(next_offsets(&at), [Some(10)]);
}

#[tokio::test]
async fn a_failing_view_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("dir");
    let replica = ScriptedReplica::answering(vec![]);
    let mut job = job(dir.path(), replica.clone(), &[]);
    job.views = vec![(view("broken", "SELECT no_such_column FROM queue"), target())];
    let mut at = positions(&job, &[None]);
    match job.write_views(&mut at, &cut(10, 14)).await {
        Err(IngestError::View { view, reason, .. }) => {
            assert_eq!(view, "broken");
            assert!(reason.contains("no_such_column"), "{reason}");
        }
        other => panic!("expected a view error, got {other:?}"),
    }
    assert!(replica.written().is_empty());
    assert_eq!(next_offsets(&at), [None]);
}

/// Offsets `first..=last`, the ones in `bad` not JSON.
fn messages(first: i64, last: i64, bad: &[i64]) -> Vec<RawMessage> {
    (first..=last)
        .map(|offset| RawMessage {
            payload: Some(Bytes::from(if bad.contains(&offset) {
                format!("{{broken {offset}")
            } else {
                format!("{{\"a\":{offset}}}")
            })),
            key: Some(Bytes::from(format!("k{offset}"))),
            offset,
            timestamp_ms: None,
            headers: Vec::new(),
        })
        .collect()
}

fn with_mode(job: &mut PartitionJob, mode: HandleErrorMode, allowed: u64) {
    if let Engine::Kafka(settings) = &mut job.table.engine {
        settings.handle_error_mode = mode;
        settings.skip_broken_messages = allowed;
    }
}

#[tokio::test]
async fn dead_letters_are_recorded_once_per_message_and_only_where_a_view_needs_them() {
    let dir = tempfile::tempdir().expect("dir");
    let replica = ScriptedReplica::answering(vec![]);
    let mut job = job(dir.path(), replica.clone(), &["v"]);
    with_mode(&mut job, HandleErrorMode::DeadLetterQueue, 1);
    let settings = job.settings().expect("kafka").clone();
    let cut = job
        .decode(&settings, messages(10, 16, &[11, 13, 15]))
        .await
        .expect("decoded");
    // The first broken message is within the allowance: skipped, in no queue.
    assert_eq!(cut.fate.skipped, 1);
    assert_eq!(cut.fate.without_row(), 3);
    let offsets = |letters: &[DeadLetter]| letters.iter().map(|l| l.offset).collect::<Vec<_>>();
    assert_eq!(offsets(&cut.dead_letters), [13, 15]);
    assert_eq!(cut.dead_letters[0].raw_message, b"{broken 13");
    assert_eq!(cut.dead_letters[0].key, b"k13");
    assert!(!cut.dead_letters[0].error.is_empty());
    assert_eq!(cut.decoded.batch.num_rows(), 4);

    // A view that stored up to 14 needs only the letter at 15.
    job.record_dead_letters(&positions(&job, &[Some(15)]), &cut)
        .await
        .expect("recorded");
    assert_eq!(
        offsets(&job.state.dead_letters.letters().expect("read")),
        [15]
    );
    // The block written again from the start writes over, never twice.
    for _ in 0..2 {
        job.record_dead_letters(&positions(&job, &[None]), &cut)
            .await
            .expect("recorded");
    }
    let mut stored = offsets(&job.state.dead_letters.letters().expect("read"));
    stored.sort_unstable();
    assert_eq!(stored, [13, 15]);
}

#[tokio::test]
async fn past_the_allowance_the_default_mode_stops_at_the_message() {
    let dir = tempfile::tempdir().expect("dir");
    let mut job = job(dir.path(), ScriptedReplica::answering(vec![]), &["v"]);
    with_mode(&mut job, HandleErrorMode::Default, 1);
    let settings = job.settings().expect("kafka").clone();
    match job.decode(&settings, messages(10, 16, &[11, 13])).await {
        Err(IngestError::BrokenMessages { offset, key: k, .. }) => {
            assert_eq!(offset, 13);
            assert_eq!(
                (k.topic.as_str(), k.partition),
                (key().topic.as_str(), key().partition)
            );
        }
        Err(other) => panic!("expected BrokenMessages, got {other}"),
        Ok(_) => panic!("expected BrokenMessages, got a block"),
    }
}

#[tokio::test]
async fn stream_mode_rows_carry_the_message_and_its_error() {
    let dir = tempfile::tempdir().expect("dir");
    let mut job = job(dir.path(), ScriptedReplica::answering(vec![]), &["v"]);
    with_mode(&mut job, HandleErrorMode::Stream, 0);
    let settings = job.settings().expect("kafka").clone();
    let cut = job
        .decode(&settings, messages(10, 12, &[11]))
        .await
        .expect("decoded");
    assert_eq!(cut.fate.streamed, 1);
    assert!(cut.dead_letters.is_empty());
    let batch = &cut.decoded.batch;
    assert_eq!(batch.num_rows(), 3);
    let column = |name: &str| {
        arrow::array::AsArray::as_string::<i32>(batch.column_by_name(name).expect(name).as_ref())
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(column("_raw_message"), ["", "{broken 11", ""]);
    let errors = column("_error");
    assert!(errors[0].is_empty() && errors[2].is_empty(), "{errors:?}");
    assert!(!errors[1].is_empty());
    let a = batch.column_by_name("a").expect("a");
    let a: Vec<u32> =
        arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt32Type>(a.as_ref())
            .values()
            .to_vec();
    assert_eq!(a, [10, 0, 12], "the broken message's row holds defaults");
}
