//! A table's replica on sled: blocks, the dedup window, and per-partition positions.
//!
//! The only sled code for tables. One apply is one atomic sled batch (rows, position,
//! window, counters), so a crash leaves either all of a block or none of it, and never
//! rows without the position that covers them.
//!
//! A block's bytes go to a file of their own, named by their content hash, in a directory
//! per table; the batch records the hash. Kept in sled, a block would be written again
//! and again: sled keeps up to 16 values in a leaf and rewrites the whole leaf, blocks
//! and all, at every tenth change to it. A file is synced, renamed to its hash and its
//! directory synced before the batch that names it is written, so a record never names a
//! file that a crash could lose or cut short. Files no record names (a crash between the two, a replaced or dropped table) are
//! removed when the table is opened or replaced. Blocks stored before there were files
//! stay in sled and read as they are.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::apply::{decide, Decision, Epochs};
use super::block::{self, Block, BlockHash, PositionKey};
use super::TableError;
use crate::files::{self, with_path};

const NEXT_SEQ: &[u8] = b"m/next_seq";
/// Prefix of the writer log: one entry per applied block from a Kafka partition.
const WRITER_LOG: &[u8] = b"l/";
const ROWS: &[u8] = b"m/rows";
/// A stored block's value when its bytes are in a file: this, then the file's content
/// hash. An inline value is an Arrow IPC stream, which never starts so.
const IN_FILE: &[u8] = b"\0file:";

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
    /// The table's directory of block files; none keeps blocks in sled (unit tests).
    files: Option<PathBuf>,
}

/// A table's directory name: its name, with every byte but letters, digits, `_` and `-`
/// written as `%xx`, so two tables never share one and no name leaves the root.
fn dir_name(table: &str) -> String {
    let mut out = String::from("t-");
    for b in table.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The file hash a stored value names, if its bytes are in a file.
fn file_hash(value: &[u8]) -> Option<&[u8]> {
    value
        .strip_prefix(IN_FILE)
        .filter(|hash| hash.len() == blake3::OUT_LEN)
}

fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A table's stored keys and values, as a snapshot carries them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A stored block's bytes: the value itself, or its file's content.
enum StoredBytes {
    Inline(sled::IVec),
    File(Vec<u8>),
}

impl AsRef<[u8]> for StoredBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            StoredBytes::Inline(v) => v.as_ref(),
            StoredBytes::File(v) => v.as_slice(),
        }
    }
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
    /// `files`: the root of the tables' block directories; none keeps blocks in sled.
    pub fn open(db: &sled::Db, name: &str, files: Option<&Path>) -> Result<TableStore, TableError> {
        let tree = db
            .open_tree(format!("table/{name}"))
            .map_err(|e| TableError::storage(name, e))?;
        let store = TableStore {
            name: name.to_string(),
            tree,
            apply_lock: Mutex::new(()),
            files: files.map(|root| root.join(dir_name(name))),
        };
        if let Some(dir) = &store.files {
            files::make_dir_durably(dir).map_err(|e| store.file_err(e))?;
            store.remove_unnamed_files()?;
        }
        Ok(store)
    }

    fn file_err(&self, source: std::io::Error) -> TableError {
        TableError::File {
            table: self.name.clone(),
            source,
        }
    }

    /// Writes a block's bytes to their file, durably, and returns the value that names it;
    /// without a directory, the bytes themselves. A file is written under a temporary
    /// name and renamed, so one under its hash is always whole: a block whose file is
    /// there already (the same bytes stored before) is not written again, and a query
    /// reading it never sees it half written.
    fn store_bytes(&self, data: &[u8]) -> Result<Vec<u8>, TableError> {
        let Some(dir) = &self.files else {
            return Ok(data.to_vec());
        };
        let hash = blake3::hash(data);
        let name = hex(hash.as_bytes());
        let path = dir.join(&name);
        if !path.exists() {
            let partial = dir.join(format!("{name}.partial"));
            std::fs::File::create(&partial)
                .and_then(|mut f| {
                    f.write_all(data)?;
                    f.sync_data()
                })
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| self.file_err(with_path("writing", &partial, e)))?;
            files::sync_dir(dir).map_err(|e| self.file_err(e))?;
        }
        Ok([IN_FILE, hash.as_bytes()].concat())
    }

    /// A stored value's block bytes.
    fn stored_bytes(&self, value: sled::IVec) -> Result<StoredBytes, TableError> {
        let Some(hash) = file_hash(&value) else {
            return Ok(StoredBytes::Inline(value));
        };
        let dir = self.files.as_ref().ok_or_else(|| TableError::Corrupt {
            table: self.name.clone(),
            reason: "a block is in a file, and this store has no block files".into(),
        })?;
        let path = dir.join(hex(hash));
        std::fs::read(&path)
            .map(StoredBytes::File)
            .map_err(|e| self.file_err(with_path("reading", &path, e)))
    }

    /// Removes the block files no stored value names.
    fn remove_unnamed_files(&self) -> Result<(), TableError> {
        let Some(dir) = &self.files else {
            return Ok(());
        };
        let mut files = std::fs::read_dir(dir)
            .map_err(|e| self.file_err(with_path("listing", dir, e)))?
            .peekable();
        if files.peek().is_none() {
            return Ok(());
        }
        let mut named = std::collections::HashSet::new();
        for item in self.tree.scan_prefix(b"b/") {
            let (_, value) = item.map_err(|e| TableError::storage(&self.name, e))?;
            if let Some(hash) = file_hash(&value) {
                named.insert(hex(hash));
            }
        }
        for item in files {
            let path = item
                .map_err(|e| self.file_err(with_path("listing", dir, e)))?
                .path();
            let is_named = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| named.contains(n));
            if !is_named {
                files::remove_file(&path).map_err(|e| self.file_err(e))?;
            }
        }
        Ok(())
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
            batch.insert(block_key(seq), self.store_bytes(&block.data)?);
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

    /// Everything stored, as key/value pairs with every block's bytes in its value: a
    /// snapshot's content, the same whether a block is in a file or in sled.
    pub fn export(&self) -> Result<Pairs, TableError> {
        let _guard = self
            .apply_lock
            .lock()
            .map_err(|_| TableError::Poisoned(self.name.clone()))?;
        let mut pairs = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| TableError::storage(&self.name, e))?;
            let v = if k.starts_with(b"b/") {
                self.stored_bytes(v)?.as_ref().to_vec()
            } else {
                v.to_vec()
            };
            pairs.push((k.to_vec(), v));
        }
        Ok(pairs)
    }

    /// Replaces everything stored by `pairs` (a snapshot's content, from `export`),
    /// atomically with respect to applies. The new blocks' files are written before the
    /// records change, and the old ones removed after.
    pub fn replace_all(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), TableError> {
        let _guard = self
            .apply_lock
            .lock()
            .map_err(|_| TableError::Poisoned(self.name.clone()))?;
        let storage = |e| TableError::storage(&self.name, e);
        let mut batch = sled::Batch::default();
        for (k, v) in pairs {
            if k.starts_with(b"b/") {
                batch.insert(k.as_slice(), self.store_bytes(v)?);
            } else {
                batch.insert(k.as_slice(), v.as_slice());
            }
        }
        self.tree.clear().map_err(storage)?;
        self.tree.apply_batch(batch).map_err(storage)?;
        if self.files.is_some() {
            self.tree.flush().map_err(storage)?;
            self.remove_unnamed_files()?;
        }
        Ok(())
    }

    /// Every stored block as stored (Arrow IPC, compressed), in apply order: what a node
    /// that holds no replica of the table is sent to answer a query.
    pub fn raw_blocks(&self) -> Result<Vec<Vec<u8>>, TableError> {
        self.tree
            .scan_prefix(b"b/")
            .map(|item| {
                let (_, value) = item.map_err(|e| TableError::storage(&self.name, e))?;
                Ok(self.stored_bytes(value)?.as_ref().to_vec())
            })
            .collect()
    }

    /// Every stored block, decoded with the given projection, in apply order.
    pub fn scan(&self, projection: Option<Vec<usize>>) -> Result<Vec<RecordBatch>, TableError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"b/") {
            let (_, value) = item.map_err(|e| TableError::storage(&self.name, e))?;
            let data = self.stored_bytes(value)?;
            let (_, batches) = block::decode(data.as_ref(), projection.clone()).map_err(|e| {
                TableError::Corrupt {
                    table: self.name.clone(),
                    reason: e.to_string(),
                }
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
            Some((_, value)) => Ok(Some(
                block::decode(self.stored_bytes(value)?.as_ref(), None)
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
    /// The root of the tables' block directories; none keeps blocks in sled.
    files: Option<PathBuf>,
}

impl Tables {
    /// `files`: where the tables' block files go; none keeps blocks in sled. Directories
    /// of tables that no longer exist (a crash during a drop) are removed.
    pub fn new(db: sled::Db, files: Option<PathBuf>) -> Tables {
        if let Some(root) = &files {
            remove_dropped_tables(&db, root);
        }
        Tables {
            db,
            open: Mutex::new(Default::default()),
            files,
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
        let t = Arc::new(TableStore::open(&self.db, name, self.files.as_deref())?);
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
        if let Some(root) = &self.files {
            remove_dir(&root.join(dir_name(name)));
        }
        Ok(())
    }
}

/// Removes the block directories of tables that have no tree: left by a crash between
/// a drop's two steps. Failures are logged; the files are only space.
fn remove_dropped_tables(db: &sled::Db, root: &Path) {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(dir = %root.display(), error = %e, "listing the tables' block files");
            return;
        }
    };
    let held: std::collections::HashSet<String> = db
        .tree_names()
        .iter()
        .filter_map(|n| {
            std::str::from_utf8(n)
                .ok()?
                .strip_prefix("table/")
                .map(dir_name)
        })
        .collect();
    for entry in entries.flatten() {
        if !held.contains(&entry.file_name().to_string_lossy().into_owned()) {
            remove_dir(&entry.path());
        }
    }
}

fn remove_dir(dir: &Path) {
    if let Err(e) = files::remove_dir(dir) {
        tracing::warn!(error = %e, "removing a table's block files");
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
        let db = sled::open(dir.path().join("sled")).expect("sled");
        let t = Tables::new(db, Some(dir.path().join("blocks")))
            .get("t")
            .expect("table");
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

    /// Opens sled again where a closed `Db` was: its flusher thread holds the directory's
    /// lock until it wakes (every 500 ms) and sees the `Db` gone.
    fn reopen(path: &Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match sled::open(path) {
                Ok(db) => return db,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "sled still locked");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("reopening sled: {e}"),
            }
        }
    }

    #[test]
    fn survives_reopen_and_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Some(dir.path().join("blocks"));
        {
            let db = sled::open(dir.path().join("sled")).expect("sled");
            let tables = Tables::new(db, files.clone());
            tables
                .get("t")
                .expect("t")
                .apply(&from_kafka(0, 0, vec![7]), 10, None)
                .expect("apply");
        }
        let db = reopen(&dir.path().join("sled"));
        let tables = Tables::new(db, files);
        assert_eq!(tables.get("t").expect("t").row_count().expect("rows"), 1);
        assert_eq!(
            tables.get("t").expect("t").scan(None).expect("scan"),
            vec![batch(vec![7])]
        );
        tables.drop_table("t").expect("drop");
        assert!(!dir.path().join("blocks").join("t-t").exists());
        assert_eq!(tables.get("t").expect("t").row_count().expect("rows"), 0);
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    }

    #[test]
    fn blocks_are_files_named_in_sled_and_snapshots_carry_their_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("sled")).expect("sled");
        let root = dir.path().join("blocks");
        let tables = Tables::new(db.clone(), Some(root.clone()));
        let t = tables.get("t").expect("t");
        for (i, values) in [vec![1, 2], vec![3], vec![4, 5, 6]].into_iter().enumerate() {
            let at = i64::try_from(i).unwrap_or_default() * 10;
            t.apply(&from_kafka(at, at + 9, values), 10, None)
                .expect("apply");
        }
        let table_dir = root.join("t-t");
        assert_eq!(files_in(&table_dir), 3);
        // sled names the files; it does not hold the bytes.
        let stored = db.open_tree("table/t").expect("tree").get(block_key(0));
        assert!(stored
            .expect("get")
            .is_some_and(|v| file_hash(&v).is_some()));

        // A snapshot holds the bytes themselves, and installs the same rows elsewhere,
        // in files or in sled.
        let pairs = t.export().expect("export");
        assert!(pairs
            .iter()
            .all(|(k, v)| !k.starts_with(b"b/") || file_hash(v).is_none()));
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let other_db = sled::open(elsewhere.path()).expect("sled");
        for files in [Some(elsewhere.path().join("blocks")), None] {
            let copy = Tables::new(other_db.clone(), files).get("t").expect("t");
            copy.replace_all(&pairs).expect("install");
            assert_eq!(copy.scan(None).expect("scan"), t.scan(None).expect("scan"));
            assert_eq!(
                copy.raw_blocks().expect("raw"),
                t.raw_blocks().expect("raw")
            );
            assert_eq!(copy.row_count().expect("rows"), 6);
        }

        // Installing a snapshot over the table removes the files of its old blocks.
        let small = tempfile::tempdir().expect("tempdir");
        let small_db = sled::open(small.path()).expect("sled");
        let one = Tables::new(small_db, None).get("t").expect("t");
        one.apply(&from_kafka(0, 0, vec![9]), 10, None)
            .expect("apply");
        t.replace_all(&one.export().expect("export"))
            .expect("install");
        assert_eq!(files_in(&table_dir), 1);
        assert_eq!(t.scan(None).expect("scan"), vec![batch(vec![9])]);

        // Files no record names (a crash between a file and its record) are removed at
        // open; so is the directory of a table with no tree (a crash during a drop).
        std::fs::write(table_dir.join("00ff"), b"left").expect("write");
        std::fs::create_dir_all(root.join("t-gone")).expect("mkdir");
        drop(t);
        drop(tables);
        let tables = Tables::new(db, Some(root.clone()));
        let t = tables.get("t").expect("t");
        assert_eq!(files_in(&table_dir), 1);
        assert!(!root.join("t-gone").exists());
        assert_eq!(t.scan(None).expect("scan"), vec![batch(vec![9])]);
    }

    #[test]
    fn blocks_stored_in_sled_before_read_as_they_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("sled")).expect("sled");
        Tables::new(db.clone(), None)
            .get("t")
            .expect("t")
            .apply(&from_kafka(0, 0, vec![1]), 10, None)
            .expect("apply");
        let t = Tables::new(db, Some(dir.path().join("blocks")))
            .get("t")
            .expect("t");
        t.apply(&from_kafka(1, 1, vec![2]), 10, None)
            .expect("apply");
        assert_eq!(
            t.scan(None).expect("scan"),
            vec![batch(vec![1]), batch(vec![2])]
        );
        assert_eq!(files_in(&dir.path().join("blocks").join("t-t")), 1);
    }

    #[test]
    fn table_names_make_distinct_directories() {
        assert_eq!(dir_name("events"), "t-events");
        assert_ne!(dir_name("a b"), dir_name("a_b"));
        assert_eq!(dir_name(".."), "t-%2e%2e");
        assert_eq!(dir_name("a/b"), "t-a%2fb");
    }
}
