//! Applying a block to a replica: the apply decision on the stored state, then one atomic
//! sled batch (the new part's record, position, window, epochs, counters, writer log
//! entry), so a crash leaves either all of a block or none of it, and never rows without
//! the position that covers them.

use super::keys::{
    epoch_key, hash_key, part_key, position_key, read_u64, replay_key, seq_key, window_key,
    NEXT_SEQ, ROWS, WRITER_LOG,
};
use super::{write_durably, TableStore};
use crate::table::apply::{decide, Decision, Epochs};
use crate::table::block::{Block, PositionKey};
use crate::table::part::{Part, PartMeta};
use crate::table::TableError;

/// What applying a block did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ApplyOutcome {
    Stored { seq: Option<u64>, rows: u64 },
    Skipped(Decision),
}

/// Who wrote a block: the consumer's node, the Kafka table it read through and its
/// assignment epoch there, and the Raft log index of the write (the same on every replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub node: u64,
    pub kafka_table: String,
    pub epoch: u64,
    pub log_index: u64,
}

/// An applied block from a Kafka partition and its writer, kept for audits: fencing is
/// right when, per partition, epochs never go back, each epoch has one node, and offset
/// ranges follow each other without gap or overlap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriterLogEntry {
    pub log_index: u64,
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub rows: u64,
    pub node: u64,
    pub epoch: u64,
}

impl TableStore {
    /// Applies a block: decides, then writes everything in one atomic batch. No flush here:
    /// a block is acknowledged once its Raft entry is flushed, and after a crash the log
    /// applies it again (sled recovers a prefix of its writes, and a repeated block is a
    /// no-op), so one fsync per write is enough.
    pub fn apply(
        &self,
        block: &Block,
        order_by: &[String],
        dedup_window: u64,
        writer: Option<Writer>,
    ) -> Result<ApplyOutcome, TableError> {
        let _guard = self.lock_apply()?;
        let storage = |e| TableError::storage(&self.name, e);
        let next_offset = match &block.source {
            Some(range) => self.next_offset(&range.position_key())?,
            None => None,
        };
        let seen_at = if block.rows > 0 && dedup_window > 0 {
            self.tree
                .get(hash_key(&block.hash))
                .map_err(storage)?
                .map(|v| read_u64(Some(v)))
        } else {
            None
        };
        // A copy stored before the partition was rewound is what the rewind asked to read
        // again, not a duplicate.
        let seen_at = match (seen_at, &block.source) {
            (Some(seq), Some(range)) => {
                let replay_from = self
                    .tree
                    .get(replay_key(&range.position_key()))
                    .map_err(storage)?
                    .map(|v| read_u64(Some(v)));
                seen_at.filter(|_| replay_from.is_none_or(|from| seq >= from))
            }
            (seen_at, _) => seen_at,
        };
        let epoch_at = match (&block.source, &writer) {
            (Some(range), Some(w)) => Some(epoch_key(&range.position_key(), &w.kafka_table)),
            _ => None,
        };
        let highest_epoch = match &epoch_at {
            Some(key) => self
                .tree
                .get(key)
                .map_err(storage)?
                .map(|v| read_u64(Some(v))),
            None => None,
        };
        let epochs = Epochs {
            writer: writer.as_ref().map(|w| w.epoch),
            highest: highest_epoch,
        };
        let decision = decide(block, next_offset, seen_at, epochs);
        if decision != Decision::Apply {
            return Ok(ApplyOutcome::Skipped(decision));
        }
        let mut batch = sled::Batch::default();
        let mut stored = None;
        if block.rows > 0 {
            let seq = read_u64(self.tree.get(NEXT_SEQ).map_err(storage)?);
            let bytes = self.part_bytes(&block.data, order_by)?;
            let meta = PartMeta {
                first: seq,
                last: seq,
                level: 0,
                rows: block.rows,
                bytes: bytes.len() as u64,
            };
            write_durably(&self.dir, &meta.file_name(), &bytes).map_err(|e| self.file_err(e))?;
            batch.insert(part_key(seq), self.encode_meta(&meta)?);
            batch.insert(NEXT_SEQ, &(seq + 1).to_be_bytes());
            let rows = self.row_count()? + block.rows;
            batch.insert(ROWS, &rows.to_be_bytes());
            if dedup_window > 0 {
                batch.insert(hash_key(&block.hash), &seq.to_be_bytes());
                batch.insert(window_key(seq), &block.hash);
                if let Some(evicted) = seq.checked_sub(dedup_window) {
                    if let Some(old) = self.tree.get(window_key(evicted)).map_err(storage)? {
                        batch.remove(window_key(evicted));
                        batch.remove([b"h/".as_slice(), old.as_ref()].concat());
                    }
                }
            }
            stored = Some(meta);
        }
        if let Some(range) = &block.source {
            batch.insert(
                position_key(&range.position_key()),
                &(range.last_offset + 1).to_be_bytes(),
            );
            if let Some(w) = writer {
                if let Some(key) = epoch_at {
                    let highest = highest_epoch.map_or(w.epoch, |h| h.max(w.epoch));
                    batch.insert(key, &highest.to_be_bytes());
                }
                let entry = WriterLogEntry {
                    log_index: w.log_index,
                    source: range.source.clone(),
                    topic: range.topic.clone(),
                    partition: range.partition,
                    first_offset: range.first_offset,
                    last_offset: range.last_offset,
                    rows: block.rows,
                    node: w.node,
                    epoch: w.epoch,
                };
                let bytes = serde_json::to_vec(&entry).map_err(|e| self.corrupt(e))?;
                batch.insert(seq_key(WRITER_LOG, w.log_index), bytes);
            }
        }
        self.tree.apply_batch(batch).map_err(storage)?;
        let seq = stored.as_ref().map(|m| m.first);
        if let Some(meta) = stored {
            self.lock_parts()?
                .insert(meta.first, Part::new(meta, &self.dir));
        }
        Ok(ApplyOutcome::Stored {
            seq,
            rows: block.rows,
        })
    }

    /// Moves a source partition's stored position to `next_offset` on purpose (a rewind
    /// or a skip ahead), and returns the position it replaces. Writers of that partition
    /// through `kafka_table` at an epoch below `fence_epoch` are refused from now on: a
    /// consumer still running from before the rewind must not move the position back.
    /// Blocks stored so far may be stored again: a replayed block is not a duplicate.
    pub fn set_position(
        &self,
        key: &PositionKey,
        kafka_table: &str,
        next_offset: i64,
        fence_epoch: u64,
    ) -> Result<Option<i64>, TableError> {
        let _guard = self.lock_apply()?;
        let storage = |e| TableError::storage(&self.name, e);
        let previous = self.next_offset(key)?;
        let epoch_at = epoch_key(key, kafka_table);
        let highest = self
            .tree
            .get(&epoch_at)
            .map_err(storage)?
            .map(|v| read_u64(Some(v)));
        let next_seq = read_u64(self.tree.get(NEXT_SEQ).map_err(storage)?);
        let mut batch = sled::Batch::default();
        batch.insert(position_key(key), &next_offset.to_be_bytes());
        batch.insert(
            epoch_at,
            &highest
                .map_or(fence_epoch, |h| h.max(fence_epoch))
                .to_be_bytes(),
        );
        batch.insert(replay_key(key), &next_seq.to_be_bytes());
        self.tree.apply_batch(batch).map_err(storage)?;
        Ok(previous)
    }

    /// The writer log, in log order.
    pub fn writer_log(&self) -> Result<Vec<WriterLogEntry>, TableError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(WRITER_LOG) {
            let (_, bytes) = item.map_err(|e| self.storage(e))?;
            out.push(
                serde_json::from_slice(&bytes)
                    .map_err(|e| self.corrupt(format!("writer log entry: {e}")))?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::store::test_support::{batch, from_kafka, table_t};

    #[test]
    fn a_block_is_applied_once() {
        let (_dir, t) = table_t();
        let b = from_kafka(0, 2, vec![1, 2, 3]);
        assert!(matches!(
            t.apply(&b, &[], 100, None).expect("apply"),
            ApplyOutcome::Stored { rows: 3, .. }
        ));
        assert!(matches!(
            t.apply(&b, &[], 100, None).expect("apply"),
            ApplyOutcome::Skipped(Decision::AlreadyApplied { next_offset: 3 })
        ));
        // A rewound consumer that cuts its blocks differently is refused, not duplicated.
        assert!(matches!(
            t.apply(&from_kafka(1, 5, vec![2, 3, 4, 5, 6]), &[], 100, None)
                .expect("apply"),
            ApplyOutcome::Skipped(Decision::Overlap { next_offset: 3 })
        ));
        assert_eq!(t.row_count().expect("rows"), 3);
        let key = b.source.as_ref().expect("source").position_key();
        assert_eq!(t.next_offset(&key).expect("offset"), Some(3));
        // An empty block still advances the position.
        t.apply(&from_kafka(3, 4, vec![]), &[], 100, None)
            .expect("apply");
        assert_eq!(t.next_offset(&key).expect("offset"), Some(5));
        let rows: usize = t
            .scan(None)
            .expect("scan")
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 3);
    }

    #[test]
    fn a_rewound_partition_stores_its_blocks_again_and_fences_older_writers() {
        let (_dir, t) = table_t();
        let writer = |epoch, log_index| {
            Some(Writer {
                node: 1,
                kafka_table: "queue".into(),
                epoch,
                log_index,
            })
        };
        let first = from_kafka(0, 2, vec![1, 2, 3]);
        t.apply(&first, &[], 100, writer(10, 11)).expect("apply");
        t.apply(&from_kafka(3, 4, vec![4, 5]), &[], 100, writer(10, 12))
            .expect("apply");
        let key = first.source.as_ref().expect("source").position_key();
        assert_eq!(
            t.set_position(&key, "queue", 0, 30).expect("rewind"),
            Some(5)
        );
        assert_eq!(t.next_offset(&key).expect("offset"), Some(0));
        // The consumer from before the rewind is refused, even where the offsets fit.
        assert_eq!(
            t.apply(&from_kafka(0, 2, vec![1, 2, 3]), &[], 100, writer(10, 31))
                .expect("apply"),
            ApplyOutcome::Skipped(Decision::StaleEpoch {
                epoch: 10,
                highest: 30
            })
        );
        // The next consumer replays the same block: stored again, not a duplicate.
        assert!(matches!(
            t.apply(&first, &[], 100, writer(40, 41)).expect("apply"),
            ApplyOutcome::Stored { rows: 3, .. }
        ));
        assert_eq!(t.row_count().expect("rows"), 8);
        // A second rewind replays what the first one stored again, too.
        t.set_position(&key, "queue", 0, 40).expect("rewind");
        let seq_before = t.row_count().expect("rows");
        assert!(matches!(
            t.apply(&first, &[], 100, writer(50, 51)).expect("apply"),
            ApplyOutcome::Stored { .. }
        ));
        assert_eq!(t.row_count().expect("rows"), seq_before + 3);
        // Skipping ahead: what lies before the new position is already applied.
        t.set_position(&key, "queue", 100, 60).expect("skip");
        assert_eq!(
            t.apply(&from_kafka(50, 60, vec![9]), &[], 100, writer(60, 61))
                .expect("apply"),
            ApplyOutcome::Skipped(Decision::AlreadyApplied { next_offset: 100 })
        );
    }

    #[test]
    fn a_writer_of_an_older_epoch_is_fenced_by_the_table_itself() {
        let (_dir, t) = table_t();
        let writer = |node, epoch, log_index| {
            Some(Writer {
                node,
                kafka_table: "queue".into(),
                epoch,
                log_index,
            })
        };
        t.apply(
            &from_kafka(0, 2, vec![1, 2, 3]),
            &[],
            100,
            writer(1, 10, 11),
        )
        .expect("apply");
        // The partition moves to node 2 at epoch 20, which writes first.
        t.apply(&from_kafka(3, 4, vec![4, 5]), &[], 100, writer(2, 20, 21))
            .expect("apply");
        // Node 1 wakes up and writes what follows: refused although the offsets fit.
        assert_eq!(
            t.apply(&from_kafka(5, 6, vec![6, 7]), &[], 100, writer(1, 10, 22))
                .expect("apply"),
            ApplyOutcome::Skipped(Decision::StaleEpoch {
                epoch: 10,
                highest: 20
            })
        );
        assert!(matches!(
            t.apply(&from_kafka(5, 6, vec![6, 7]), &[], 100, writer(2, 20, 23))
                .expect("apply"),
            ApplyOutcome::Stored { rows: 2, .. }
        ));
        // The view created again over another Kafka table: its epochs are a line of their own.
        let other_queue = Writer {
            node: 3,
            kafka_table: "queue2".into(),
            epoch: 5,
            log_index: 24,
        };
        assert!(matches!(
            t.apply(&from_kafka(7, 7, vec![8]), &[], 100, Some(other_queue))
                .expect("apply"),
            ApplyOutcome::Stored { rows: 1, .. }
        ));
        assert_eq!(t.row_count().expect("rows"), 8);
        let epochs: Vec<u64> = t
            .writer_log()
            .expect("writer log")
            .iter()
            .map(|e| e.epoch)
            .collect();
        assert_eq!(epochs, vec![10, 20, 20, 5]);
    }

    #[test]
    fn direct_blocks_dedup_within_the_window() {
        let (_dir, t) = table_t();
        let a = Block::new("t", None, &batch(vec![1]), &[]).expect("block");
        let b = Block::new("t", None, &batch(vec![2]), &[]).expect("block");
        let c = Block::new("t", None, &batch(vec![3]), &[]).expect("block");
        t.apply(&a, &[], 2, None).expect("apply");
        assert!(matches!(
            t.apply(&a, &[], 2, None).expect("apply"),
            ApplyOutcome::Skipped(Decision::Duplicate { .. })
        ));
        t.apply(&b, &[], 2, None).expect("apply");
        t.apply(&c, &[], 2, None).expect("apply");
        // `a` has left the window of two: it is new again.
        assert!(matches!(
            t.apply(&a, &[], 2, None).expect("apply"),
            ApplyOutcome::Stored { .. }
        ));
        assert_eq!(t.row_count().expect("rows"), 4);
    }
}
