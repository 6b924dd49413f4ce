//! A table's replica on sled: blocks, the dedup window, and per-partition positions.
//!
//! The only sled code for tables. One apply is one atomic sled batch (rows, position,
//! window, counters), so a crash leaves either all of a block or none of it, and never
//! rows without the position that covers them.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::apply::{decide, Decision, Epochs};
use super::block::{self, Block, BlockHash, PositionKey};
use super::TableError;

const NEXT_SEQ: &[u8] = b"m/next_seq";
/// Prefix of the writer log: one entry per applied block from a Kafka partition.
const WRITER_LOG: &[u8] = b"l/";
const ROWS: &[u8] = b"m/rows";

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

pub struct TableStore {
    name: String,
    tree: sled::Tree,
    /// Applies are serialized per table: the decision reads state the batch then writes.
    apply_lock: Mutex<()>,
}

fn block_key(seq: u64) -> Vec<u8> {
    let mut k = b"b/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn window_key(seq: u64) -> Vec<u8> {
    let mut k = b"w/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn hash_key(hash: &BlockHash) -> Vec<u8> {
    let mut k = b"h/".to_vec();
    k.extend_from_slice(hash);
    k
}

fn position_key(p: &PositionKey) -> Vec<u8> {
    let mut k = b"o/".to_vec();
    k.extend_from_slice(p.source.as_bytes());
    k.push(0);
    k.extend_from_slice(p.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&p.partition.to_be_bytes());
    k
}

/// The highest assignment epoch that wrote to a source partition through a Kafka table.
/// Epochs are comparable only within one Kafka table's partition: a view created again
/// over another Kafka table starts a line of its own.
fn epoch_key(p: &PositionKey, kafka_table: &str) -> Vec<u8> {
    let mut k = position_key(p);
    k[0] = b'e';
    k.push(0);
    k.extend_from_slice(kafka_table.as_bytes());
    k
}

fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl TableStore {
    pub fn open(db: &sled::Db, name: &str) -> Result<TableStore, TableError> {
        let tree = db
            .open_tree(format!("table/{name}"))
            .map_err(|e| TableError::storage(name, e))?;
        Ok(TableStore {
            name: name.to_string(),
            tree,
            apply_lock: Mutex::new(()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stored next offset of a source partition.
    pub fn next_offset(&self, key: &PositionKey) -> Result<Option<i64>, TableError> {
        let v = self
            .tree
            .get(position_key(key))
            .map_err(|e| TableError::storage(&self.name, e))?;
        Ok(v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    pub fn row_count(&self) -> Result<u64, TableError> {
        Ok(read_u64(
            self.tree
                .get(ROWS)
                .map_err(|e| TableError::storage(&self.name, e))?,
        ))
    }

    /// Applies a block: decides, then writes everything in one atomic batch. No flush here:
    /// a block is acknowledged once its Raft entry is flushed, and after a crash the log
    /// applies it again (sled recovers a prefix of its writes, and a repeated block is a
    /// no-op), so one fsync per write is enough.
    pub fn apply(
        &self,
        block: &Block,
        dedup_window: u64,
        writer: Option<Writer>,
    ) -> Result<ApplyOutcome, TableError> {
        let _guard = self
            .apply_lock
            .lock()
            .map_err(|_| TableError::Poisoned(self.name.clone()))?;
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
        let mut stored_seq = None;
        if block.rows > 0 {
            let seq = read_u64(self.tree.get(NEXT_SEQ).map_err(storage)?);
            batch.insert(block_key(seq), block.data.as_ref());
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
            stored_seq = Some(seq);
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
                let bytes = serde_json::to_vec(&entry).map_err(|e| TableError::Corrupt {
                    table: self.name.clone(),
                    reason: e.to_string(),
                })?;
                let mut key = WRITER_LOG.to_vec();
                key.extend_from_slice(&w.log_index.to_be_bytes());
                batch.insert(key, bytes);
            }
        }
        self.tree.apply_batch(batch).map_err(storage)?;
        Ok(ApplyOutcome::Stored {
            seq: stored_seq,
            rows: block.rows,
        })
    }

    /// The writer log, in log order.
    pub fn writer_log(&self) -> Result<Vec<WriterLogEntry>, TableError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(WRITER_LOG) {
            let (_, bytes) = item.map_err(|e| TableError::storage(&self.name, e))?;
            out.push(
                serde_json::from_slice(&bytes).map_err(|e| TableError::Corrupt {
                    table: self.name.clone(),
                    reason: format!("writer log entry: {e}"),
                })?,
            );
        }
        Ok(out)
    }

    /// Replaces everything stored by `pairs` (a snapshot's content), atomically with
    /// respect to applies.
    pub fn replace_all(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), TableError> {
        let _guard = self
            .apply_lock
            .lock()
            .map_err(|_| TableError::Poisoned(self.name.clone()))?;
        let storage = |e| TableError::storage(&self.name, e);
        self.tree.clear().map_err(storage)?;
        let mut batch = sled::Batch::default();
        for (k, v) in pairs {
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.tree.apply_batch(batch).map_err(storage)?;
        Ok(())
    }

    /// Every stored block as stored (Arrow IPC, compressed), in apply order: what a node
    /// that holds no replica of the table is sent to answer a query.
    pub fn raw_blocks(&self) -> Result<Vec<Vec<u8>>, TableError> {
        self.tree
            .scan_prefix(b"b/")
            .map(|item| {
                item.map(|(_, data)| data.to_vec())
                    .map_err(|e| TableError::storage(&self.name, e))
            })
            .collect()
    }

    /// Every stored block, decoded with the given projection, in apply order.
    pub fn scan(&self, projection: Option<Vec<usize>>) -> Result<Vec<RecordBatch>, TableError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"b/") {
            let (_, data) = item.map_err(|e| TableError::storage(&self.name, e))?;
            let (_, batches) =
                block::decode(&data, projection.clone()).map_err(|e| TableError::Corrupt {
                    table: self.name.clone(),
                    reason: e.to_string(),
                })?;
            out.extend(batches);
        }
        Ok(out)
    }

    /// Schema check helper for tests and diagnostics.
    pub fn first_block_schema(&self) -> Result<Option<SchemaRef>, TableError> {
        match self
            .tree
            .scan_prefix(b"b/")
            .next()
            .transpose()
            .map_err(|e| TableError::storage(&self.name, e))?
        {
            Some((_, data)) => Ok(Some(
                block::decode(&data, None)
                    .map_err(|e| TableError::Corrupt {
                        table: self.name.clone(),
                        reason: e.to_string(),
                    })?
                    .0,
            )),
            None => Ok(None),
        }
    }
}

/// All table replicas of a node.
pub struct Tables {
    db: sled::Db,
    open: Mutex<std::collections::BTreeMap<String, Arc<TableStore>>>,
}

impl Tables {
    pub fn new(db: sled::Db) -> Tables {
        Tables {
            db,
            open: Mutex::new(Default::default()),
        }
    }

    pub fn get(&self, name: &str) -> Result<Arc<TableStore>, TableError> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| TableError::Poisoned(name.to_string()))?;
        if let Some(t) = open.get(name) {
            return Ok(t.clone());
        }
        let t = Arc::new(TableStore::open(&self.db, name)?);
        open.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// Forgets open handles, before the trees underneath are replaced by a snapshot.
    pub fn forget_all(&self) -> Result<(), TableError> {
        self.open
            .lock()
            .map_err(|_| TableError::Poisoned("*".to_string()))?
            .clear();
        Ok(())
    }

    /// Removes a table's data for good.
    pub fn drop_table(&self, name: &str) -> Result<(), TableError> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| TableError::Poisoned(name.to_string()))?;
        open.remove(name);
        self.db
            .drop_tree(format!("table/{name}"))
            .map_err(|e| TableError::storage(name, e))?;
        self.db.flush().map_err(|e| TableError::storage(name, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::block::SourceRange;
    use arrow::array::UInt32Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(values: Vec<u32>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::UInt32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(UInt32Array::from(values))]).expect("batch")
    }

    fn from_kafka(first: i64, last: i64, values: Vec<u32>) -> Block {
        Block::new(
            "t",
            Some(SourceRange {
                source: "mv".into(),
                topic: "topic".into(),
                partition: 2,
                first_offset: first,
                last_offset: last,
            }),
            &batch(values),
        )
        .expect("block")
    }

    /// Table `t` in a fresh store; the directory lives as long as the returned guard.
    fn table_t() -> (tempfile::TempDir, Arc<TableStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let t = Tables::new(db).get("t").expect("table");
        (dir, t)
    }

    #[test]
    fn a_block_is_applied_once() {
        let (_dir, t) = table_t();
        let b = from_kafka(0, 2, vec![1, 2, 3]);
        assert!(matches!(
            t.apply(&b, 100, None).expect("apply"),
            ApplyOutcome::Stored { rows: 3, .. }
        ));
        assert!(matches!(
            t.apply(&b, 100, None).expect("apply"),
            ApplyOutcome::Skipped(Decision::AlreadyApplied { next_offset: 3 })
        ));
        // A rewound consumer that cuts its blocks differently is refused, not duplicated.
        assert!(matches!(
            t.apply(&from_kafka(1, 5, vec![2, 3, 4, 5, 6]), 100, None)
                .expect("apply"),
            ApplyOutcome::Skipped(Decision::Overlap { next_offset: 3 })
        ));
        assert_eq!(t.row_count().expect("rows"), 3);
        let key = b.source.as_ref().expect("source").position_key();
        assert_eq!(t.next_offset(&key).expect("offset"), Some(3));
        // An empty block still advances the position.
        t.apply(&from_kafka(3, 4, vec![]), 100, None)
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
        t.apply(&from_kafka(0, 2, vec![1, 2, 3]), 100, writer(1, 10, 11))
            .expect("apply");
        // The partition moves to node 2 at epoch 20, which writes first.
        t.apply(&from_kafka(3, 4, vec![4, 5]), 100, writer(2, 20, 21))
            .expect("apply");
        // Node 1 wakes up and writes what follows: refused although the offsets fit.
        assert_eq!(
            t.apply(&from_kafka(5, 6, vec![6, 7]), 100, writer(1, 10, 22))
                .expect("apply"),
            ApplyOutcome::Skipped(Decision::StaleEpoch {
                epoch: 10,
                highest: 20
            })
        );
        assert!(matches!(
            t.apply(&from_kafka(5, 6, vec![6, 7]), 100, writer(2, 20, 23))
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
            t.apply(&from_kafka(7, 7, vec![8]), 100, Some(other_queue))
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
        let a = Block::new("t", None, &batch(vec![1])).expect("block");
        let b = Block::new("t", None, &batch(vec![2])).expect("block");
        let c = Block::new("t", None, &batch(vec![3])).expect("block");
        t.apply(&a, 2, None).expect("apply");
        assert!(matches!(
            t.apply(&a, 2, None).expect("apply"),
            ApplyOutcome::Skipped(Decision::Duplicate { .. })
        ));
        t.apply(&b, 2, None).expect("apply");
        t.apply(&c, 2, None).expect("apply");
        // `a` has left the window of two: it is new again.
        assert!(matches!(
            t.apply(&a, 2, None).expect("apply"),
            ApplyOutcome::Stored { .. }
        ));
        assert_eq!(t.row_count().expect("rows"), 4);
    }

    #[test]
    fn survives_reopen_and_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(dir.path()).expect("sled");
            let tables = Tables::new(db);
            tables
                .get("t")
                .expect("t")
                .apply(&from_kafka(0, 0, vec![7]), 10, None)
                .expect("apply");
        }
        let db = sled::open(dir.path()).expect("sled");
        let tables = Tables::new(db);
        assert_eq!(tables.get("t").expect("t").row_count().expect("rows"), 1);
        tables.drop_table("t").expect("drop");
        assert_eq!(tables.get("t").expect("t").row_count().expect("rows"), 0);
    }
}
