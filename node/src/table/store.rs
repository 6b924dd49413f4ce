//! A table's replica: parts on disk, and on sled the part list, the dedup window and the
//! per-partition positions.
//!
//! The only sled code for tables. One apply is one atomic sled batch (the new part's
//! record, position, window, counters), so a crash leaves either all of a block or none
//! of it, and never rows without the position that covers them. A part's file is synced,
//! renamed into place and its directory synced before the batch that names it is
//! written, so a record never names a file that a crash could lose or cut short. Files no
//! record names (a crash between the two, a merge cut short, a replaced or dropped table)
//! are removed when the table is opened.
//!
//! Merges are local to each replica (see `merge_step`): they change how rows are laid out
//! in files, never which rows there are, the positions or the window, so replicas that
//! merged differently still hold the same rows and make the same apply decisions.
//!
//! Blocks stored before parts (a sled value per block, inline or naming a file of Arrow
//! IPC) are converted once, in sequence order, by `migrate_legacy`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::datatypes::SchemaRef;

use super::apply::{decide, Decision, Epochs};
use super::block::{self, Block, BlockHash, PositionKey};
use super::image::TableImage;
use super::merge_policy::MergePolicy;
use super::part::{self, Part, PartMeta, PartRef};
use super::TableError;
use crate::files::{self, with_path};

const NEXT_SEQ: &[u8] = b"m/next_seq";
/// Prefix of the writer log: one entry per applied block from a Kafka partition.
const WRITER_LOG: &[u8] = b"l/";
const ROWS: &[u8] = b"m/rows";
/// Prefix of the part list: `p/` and the part's first block sequence number.
const PART: &[u8] = b"p/";
/// Prefix of blocks stored before parts.
const LEGACY_BLOCK: &[u8] = b"b/";
/// A legacy block's value when its bytes are in a file: this, then the file's content
/// hash. An inline value is an Arrow IPC stream, which never starts so.
const IN_FILE: &[u8] = b"\0file:";
/// A part's bytes inside an in-memory image (`export`): `f/` and the part's file name.
#[cfg(test)]
const IMAGE_FILE: &[u8] = b"f/";

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

/// What a merge did, for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    pub inputs: usize,
    pub output: String,
    pub rows: u64,
    pub bytes: u64,
}

pub struct TableStore {
    name: String,
    tree: sled::Tree,
    /// Applies, merge commits and snapshot installs are serialized per table: each reads
    /// state its batch then writes.
    apply_lock: Mutex<()>,
    /// The table's directory of part files.
    dir: PathBuf,
    /// The part list as sled holds it, by first block sequence number, with the handles
    /// that pin the files.
    parts: Mutex<BTreeMap<u64, PartRef>>,
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

/// The file hash a legacy block's value names, if its bytes are in a file.
fn file_hash(value: &[u8]) -> Option<&[u8]> {
    value
        .strip_prefix(IN_FILE)
        .filter(|hash| hash.len() == blake3::OUT_LEN)
}

fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A table's stored keys and values.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn seq_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn part_key(first: u64) -> Vec<u8> {
    seq_key(PART, first)
}

fn window_key(seq: u64) -> Vec<u8> {
    seq_key(b"w/", seq)
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

/// Writes a file durably under its final name: written as `.partial`, synced, renamed,
/// and the directory synced, so a file under its final name is always whole.
fn write_durably(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let path = dir.join(name);
    let partial = dir.join(format!("{name}.partial"));
    std::fs::File::create(&partial)
        .and_then(|mut f| {
            f.write_all(data)?;
            f.sync_data()
        })
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| with_path("writing", &partial, e))?;
    files::sync_dir(dir)
}

impl TableStore {
    /// `root`: where the tables' directories of part files are.
    pub fn open(db: &sled::Db, name: &str, root: &Path) -> Result<TableStore, TableError> {
        let tree = db
            .open_tree(format!("table/{name}"))
            .map_err(|e| TableError::storage(name, e))?;
        let store = TableStore {
            name: name.to_string(),
            tree,
            apply_lock: Mutex::new(()),
            dir: root.join(dir_name(name)),
            parts: Mutex::new(BTreeMap::new()),
        };
        files::make_dir_durably(&store.dir).map_err(|e| store.file_err(e))?;
        let parts = store.load_parts()?;
        *store.lock_parts()? = parts;
        store.remove_unnamed_files()?;
        Ok(store)
    }

    fn file_err(&self, source: std::io::Error) -> TableError {
        TableError::File {
            table: self.name.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> TableError {
        TableError::Corrupt {
            table: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn storage(&self, e: sled::Error) -> TableError {
        TableError::storage(&self.name, e)
    }

    fn lock_apply(&self) -> Result<MutexGuard<'_, ()>, TableError> {
        self.apply_lock
            .lock()
            .map_err(|_| TableError::Poisoned(self.name.clone()))
    }

    fn lock_parts(&self) -> Result<MutexGuard<'_, BTreeMap<u64, PartRef>>, TableError> {
        self.parts
            .lock()
            .map_err(|_| TableError::Poisoned(self.name.clone()))
    }

    fn decode_meta(&self, bytes: &[u8]) -> Result<PartMeta, TableError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(format!("part record: {e}")))
    }

    fn encode_meta(&self, meta: &PartMeta) -> Result<Vec<u8>, TableError> {
        serde_json::to_vec(meta).map_err(|e| self.corrupt(format!("part record: {e}")))
    }

    /// The part list as sled holds it.
    fn load_parts(&self) -> Result<BTreeMap<u64, PartRef>, TableError> {
        let mut parts = BTreeMap::new();
        for item in self.tree.scan_prefix(PART) {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            let meta = self.decode_meta(&v)?;
            parts.insert(meta.first, Part::new(meta, &self.dir));
        }
        Ok(parts)
    }

    /// Removes the files no record names: parts of no record, `.partial` files, legacy
    /// block files that no legacy record names.
    fn remove_unnamed_files(&self) -> Result<(), TableError> {
        let mut named: std::collections::HashSet<String> = self
            .lock_parts()?
            .values()
            .map(|p| p.meta().file_name())
            .collect();
        for item in self.tree.scan_prefix(LEGACY_BLOCK) {
            let (_, value) = item.map_err(|e| self.storage(e))?;
            if let Some(hash) = file_hash(&value) {
                named.insert(hex(hash));
            }
        }
        let dir = &self.dir;
        let entries =
            std::fs::read_dir(dir).map_err(|e| self.file_err(with_path("listing", dir, e)))?;
        for item in entries {
            let path = item
                .map_err(|e| self.file_err(with_path("listing", dir, e)))?
                .path();
            let is_named = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| named.contains(n));
            if !is_named {
                if path.is_dir() {
                    files::remove_dir(&path).map_err(|e| self.file_err(e))?;
                } else {
                    files::remove_file(&path).map_err(|e| self.file_err(e))?;
                }
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory of the table's part files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored next offset of a source partition.
    pub fn next_offset(&self, key: &PositionKey) -> Result<Option<i64>, TableError> {
        let v = self
            .tree
            .get(position_key(key))
            .map_err(|e| self.storage(e))?;
        Ok(v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    pub fn row_count(&self) -> Result<u64, TableError> {
        Ok(read_u64(self.tree.get(ROWS).map_err(|e| self.storage(e))?))
    }

    /// The replica's current parts, in order, pinned: their files stay while a handle
    /// lives, whatever merges or snapshot installs do meanwhile.
    pub fn parts(&self) -> Result<Vec<PartRef>, TableError> {
        Ok(self.lock_parts()?.values().cloned().collect())
    }

    /// A block's rows as a part file's bytes: the block's own bytes when it is a part
    /// already; a legacy block (Arrow IPC, from a log written before parts) is sorted and
    /// encoded here.
    fn part_bytes<'a>(
        &self,
        data: &'a [u8],
        order_by: &[String],
    ) -> Result<std::borrow::Cow<'a, [u8]>, TableError> {
        if part::is_parquet(data) {
            return Ok(std::borrow::Cow::Borrowed(data));
        }
        let (schema, batches) = block::decode(data, None).map_err(|e| self.corrupt(e))?;
        let batch =
            arrow::compute::concat_batches(&schema, &batches).map_err(|e| self.corrupt(e))?;
        part::encode(&batch, order_by)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| self.corrupt(e))
    }

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

    /// One merge, if the policy finds parts worth merging: the run it picks is streamed
    /// into one sorted part, which then replaces the run in one sled batch, flushed before
    /// the inputs' files may go (a crash before that keeps the inputs and drops the
    /// output, which no record names). Applies go on meanwhile; only the commit holds
    /// the apply lock. One merge at a time per table: the caller runs one merger.
    pub fn merge_step(
        &self,
        schema: &SchemaRef,
        order_by: &[String],
        policy: &MergePolicy,
    ) -> Result<Option<MergeReport>, TableError> {
        let parts = self.parts()?;
        let metas: Vec<PartMeta> = parts.iter().map(|p| p.meta().clone()).collect();
        let Some(run) = policy.select(&metas) else {
            return Ok(None);
        };
        let inputs = &parts[run];
        let (Some(head), Some(tail)) = (inputs.first(), inputs.last()) else {
            return Ok(None);
        };
        let mut meta = PartMeta {
            first: head.meta().first,
            last: tail.meta().last,
            level: inputs.iter().map(|p| p.level()).max().unwrap_or(0) + 1,
            rows: inputs.iter().map(|p| p.rows()).sum(),
            bytes: 0,
        };
        let name = meta.file_name();
        let partial = self.dir.join(format!("{name}.partial"));
        let path = self.dir.join(&name);
        let written = (|| {
            let mut file = std::fs::File::create(&partial)
                .map_err(|e| self.file_err(with_path("creating", &partial, e)))?;
            let rows = part::merge(inputs, schema, order_by, &mut file)
                .map_err(|e| self.corrupt(format!("merging into {name}: {e}")))?;
            if rows != meta.rows {
                return Err(self.corrupt(format!(
                    "merging into {name}: {rows} rows out of {} in",
                    meta.rows
                )));
            }
            file.sync_data()
                .map_err(|e| self.file_err(with_path("syncing", &partial, e)))?;
            let bytes = file
                .metadata()
                .map_err(|e| self.file_err(with_path("reading", &partial, e)))?
                .len();
            std::fs::rename(&partial, &path)
                .map_err(|e| self.file_err(with_path("renaming", &partial, e)))?;
            files::sync_dir(&self.dir).map_err(|e| self.file_err(e))?;
            Ok(bytes)
        })();
        meta.bytes = match written {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = files::remove_file(&partial);
                return Err(e);
            }
        };
        let _guard = self.lock_apply()?;
        let mut current = self.lock_parts()?;
        // A snapshot installed meanwhile replaced the part list: the inputs may be gone.
        let still_there = inputs.iter().all(|p| {
            current
                .get(&p.meta().first)
                .is_some_and(|c| Arc::ptr_eq(c, p))
        });
        if !still_there {
            drop(current);
            files::remove_file(&path).map_err(|e| self.file_err(e))?;
            return Ok(None);
        }
        let mut batch = sled::Batch::default();
        for p in inputs {
            batch.remove(part_key(p.meta().first));
        }
        batch.insert(part_key(meta.first), self.encode_meta(&meta)?);
        self.tree.apply_batch(batch).map_err(|e| self.storage(e))?;
        self.tree.flush().map_err(|e| self.storage(e))?;
        for p in inputs {
            current.remove(&p.meta().first);
            p.retire();
        }
        let report = MergeReport {
            inputs: inputs.len(),
            output: meta.name(),
            rows: meta.rows,
            bytes: meta.bytes,
        };
        current.insert(meta.first, Part::new(meta, &self.dir));
        Ok(Some(report))
    }

    /// Converts blocks stored before parts into parts, one batch per block, in sequence
    /// order; a crash midway leaves the rest for the next open. Returns how many.
    pub fn migrate_legacy(&self, order_by: &[String]) -> Result<usize, TableError> {
        let _guard = self.lock_apply()?;
        let mut converted = 0;
        for item in self.tree.scan_prefix(LEGACY_BLOCK) {
            let (key, value) = item.map_err(|e| self.storage(e))?;
            let seq = key
                .get(LEGACY_BLOCK.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| self.corrupt("a legacy block key without a sequence number"))?;
            let data = match file_hash(&value) {
                Some(hash) => {
                    let path = self.dir.join(hex(hash));
                    std::fs::read(&path)
                        .map_err(|e| self.file_err(with_path("reading", &path, e)))?
                }
                None => value.to_vec(),
            };
            let bytes = self.part_bytes(&data, order_by)?;
            let rows = part::decode(&bytes)
                .map_err(|e| self.corrupt(e))?
                .iter()
                .map(|b| b.num_rows() as u64)
                .sum();
            let meta = PartMeta {
                first: seq,
                last: seq,
                level: 0,
                rows,
                bytes: bytes.len() as u64,
            };
            write_durably(&self.dir, &meta.file_name(), &bytes).map_err(|e| self.file_err(e))?;
            let mut batch = sled::Batch::default();
            batch.remove(key);
            batch.insert(part_key(seq), self.encode_meta(&meta)?);
            self.tree.apply_batch(batch).map_err(|e| self.storage(e))?;
            self.lock_parts()?.insert(seq, Part::new(meta, &self.dir));
            converted += 1;
        }
        if converted > 0 {
            self.tree.flush().map_err(|e| self.storage(e))?;
            self.remove_unnamed_files()?;
        }
        Ok(converted)
    }

    /// Pins the replica for a snapshot: under the apply lock, reads every record and
    /// hard-links every part file into `dir` (empty, on the same filesystem). No row is
    /// copied; the links keep the files whatever merges do after.
    pub fn pin_image(&self, dir: &Path) -> Result<TableImage, TableError> {
        let _guard = self.lock_apply()?;
        let mut pairs = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            if k.starts_with(LEGACY_BLOCK) {
                return Err(self.corrupt("legacy blocks not converted to parts yet"));
            }
            pairs.push((k.to_vec(), v.to_vec()));
        }
        let mut files_out = Vec::new();
        for part in self.lock_parts()?.values() {
            let name = part.meta().file_name();
            let link = dir.join(&name);
            std::fs::hard_link(part.path(), &link)
                .map_err(|e| self.file_err(with_path("linking", &link, e)))?;
            files_out.push((name, part.bytes()));
        }
        files::sync_dir(dir).map_err(|e| self.file_err(e))?;
        Ok(TableImage {
            pairs,
            files: files_out,
        })
    }

    /// Replaces the replica by an image whose files are all in `dir`: moves them into the
    /// table's directory, then replaces every record in one atomic batch, so a crash leaves
    /// the old replica or the new one (moved files no record names are removed at open).
    /// The old parts' files go once no reader holds them.
    pub fn install_image(&self, image: &TableImage, dir: &Path) -> Result<(), TableError> {
        let _guard = self.lock_apply()?;
        for (name, len) in &image.files {
            let from = dir.join(name);
            let size = std::fs::metadata(&from)
                .map_err(|e| self.file_err(with_path("reading", &from, e)))?
                .len();
            if size != *len {
                return Err(self.corrupt(format!(
                    "snapshot part {name} has {size} bytes, its image says {len}"
                )));
            }
            let to = self.dir.join(name);
            std::fs::rename(&from, &to)
                .map_err(|e| self.file_err(with_path("moving", &from, e)))?;
        }
        files::sync_dir(&self.dir).map_err(|e| self.file_err(e))?;
        self.replace_records(&image.pairs)
    }

    /// Replaces every record by `pairs` in one atomic batch, flushed, and the part list
    /// with it; parts no longer named are retired.
    fn replace_records(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), TableError> {
        let keep: std::collections::HashSet<&[u8]> =
            pairs.iter().map(|(k, _)| k.as_slice()).collect();
        let mut batch = sled::Batch::default();
        for item in self.tree.iter().keys() {
            let k = item.map_err(|e| self.storage(e))?;
            if !keep.contains(k.as_ref()) {
                batch.remove(k);
            }
        }
        for (k, v) in pairs {
            batch.insert(k.as_slice(), v.as_slice());
        }
        self.tree.apply_batch(batch).map_err(|e| self.storage(e))?;
        self.tree.flush().map_err(|e| self.storage(e))?;
        let next = self.load_parts()?;
        let mut current = self.lock_parts()?;
        let names: std::collections::HashSet<String> =
            next.values().map(|p| p.name().to_string()).collect();
        for old in current.values() {
            if !names.contains(old.name()) {
                old.retire();
            }
        }
        *current = next;
        Ok(())
    }

    /// Everything stored, with every part file's bytes, in memory: an image for tests;
    /// snapshots use `pin_image`, which copies nothing.
    #[cfg(test)]
    pub fn export(&self) -> Result<Pairs, TableError> {
        let dir = tempfile::tempdir_in(&self.dir).map_err(|e| self.file_err(e))?;
        let image = self.pin_image(dir.path())?;
        let mut pairs = image.pairs;
        for (name, _) in &image.files {
            let path = dir.path().join(name);
            let bytes =
                std::fs::read(&path).map_err(|e| self.file_err(with_path("reading", &path, e)))?;
            pairs.push(([IMAGE_FILE, name.as_bytes()].concat(), bytes));
        }
        Ok(pairs)
    }

    /// Replaces everything stored by an `export`'s pairs.
    #[cfg(test)]
    pub fn replace_all(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), TableError> {
        let dir = tempfile::tempdir_in(&self.dir).map_err(|e| self.file_err(e))?;
        let mut image = TableImage::default();
        for (k, v) in pairs {
            match k.strip_prefix(IMAGE_FILE) {
                Some(name) => {
                    let name = String::from_utf8_lossy(name).into_owned();
                    write_durably(dir.path(), &name, v).map_err(|e| self.file_err(e))?;
                    image.files.push((name, v.len() as u64));
                }
                None => image.pairs.push((k.clone(), v.clone())),
            }
        }
        self.install_image(&image, dir.path())
    }

    /// Every row, decoded with the given projection, part after part.
    #[cfg(test)]
    pub fn scan(
        &self,
        projection: Option<Vec<usize>>,
    ) -> Result<Vec<arrow::array::RecordBatch>, TableError> {
        let mut out = Vec::new();
        for part in self.parts()? {
            for batch in part::read_file(part.path()).map_err(|e| self.corrupt(e))? {
                let batch = batch.map_err(|e| self.corrupt(e))?;
                out.push(match &projection {
                    Some(p) => batch.project(p).map_err(|e| self.corrupt(e))?,
                    None => batch,
                });
            }
        }
        Ok(out)
    }
}

/// All table replicas of a node.
pub struct Tables {
    db: sled::Db,
    open: Mutex<BTreeMap<String, Arc<TableStore>>>,
    /// The root of the tables' directories of part files.
    root: PathBuf,
}

impl Tables {
    /// `root`: where the tables' part files go. Directories of tables that no longer exist
    /// (a crash during a drop) are removed.
    pub fn new(db: sled::Db, root: PathBuf) -> Tables {
        remove_dropped_tables(&db, &root);
        Tables {
            db,
            open: Mutex::new(Default::default()),
            root,
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
        let t = Arc::new(TableStore::open(&self.db, name, &self.root)?);
        open.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// The replica of a table if this node has one on disk, without making one.
    pub fn existing(&self, name: &str) -> Result<Option<Arc<TableStore>>, TableError> {
        // An open replica answers without listing sled's trees: writes ask here per block
        // (back-pressure), the merger per pass.
        let open = self
            .open
            .lock()
            .map_err(|_| TableError::Poisoned(name.to_string()))?
            .get(name)
            .cloned();
        if open.is_some() {
            return Ok(open);
        }
        let has_tree = self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == format!("table/{name}").as_bytes());
        if !has_tree {
            return Ok(None);
        }
        self.get(name).map(Some)
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
        remove_dir(&self.root.join(dir_name(name)));
        Ok(())
    }
}

/// Removes the part directories of tables that have no tree: left by a crash between
/// a drop's two steps. Failures are logged; the files are only space.
fn remove_dropped_tables(db: &sled::Db, root: &Path) {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(dir = %root.display(), error = %e, "listing the tables' part files");
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
        tracing::warn!(error = %e, "removing a table's part files");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::block::SourceRange;
    use arrow::array::RecordBatch;
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
            &[],
        )
        .expect("block")
    }

    /// Table `t` in a fresh store; the directory lives as long as the returned guard.
    fn table_t() -> (tempfile::TempDir, Arc<TableStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("sled")).expect("sled");
        let t = Tables::new(db, dir.path().join("blocks"))
            .get("t")
            .expect("table");
        (dir, t)
    }

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
        let files = dir.path().join("blocks");
        {
            let db = sled::open(dir.path().join("sled")).expect("sled");
            let tables = Tables::new(db, files.clone());
            tables
                .get("t")
                .expect("t")
                .apply(&from_kafka(0, 0, vec![7]), &[], 10, None)
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
    fn parts_are_files_named_in_sled_and_images_carry_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("sled")).expect("sled");
        let root = dir.path().join("blocks");
        let tables = Tables::new(db.clone(), root.clone());
        let t = tables.get("t").expect("t");
        for (i, values) in [vec![1, 2], vec![3], vec![4, 5, 6]].into_iter().enumerate() {
            let at = i64::try_from(i).unwrap_or_default() * 10;
            t.apply(&from_kafka(at, at + 9, values), &[], 10, None)
                .expect("apply");
        }
        let table_dir = root.join("t-t");
        assert_eq!(files_in(&table_dir), 3);
        // sled names the parts; it does not hold their bytes.
        let stored = db.open_tree("table/t").expect("tree").get(part_key(0));
        let meta: PartMeta =
            serde_json::from_slice(&stored.expect("get").expect("part record")).expect("meta");
        assert_eq!((meta.first, meta.level, meta.rows), (0, 0, 2));

        // A pinned image links the parts and carries the records; installed elsewhere it
        // holds the same rows, and the linked files survive the source's merge.
        let pinned = tempfile::tempdir_in(dir.path()).expect("tempdir");
        let image = t.pin_image(pinned.path()).expect("pin");
        assert_eq!(image.files.len(), 3);
        let merged = t
            .merge_step(
                &batch(vec![]).schema(),
                &["a".to_string()],
                &MergePolicy {
                    fan_in: 3,
                    ..MergePolicy::default()
                },
            )
            .expect("merge")
            .expect("a merge");
        assert_eq!((merged.inputs, merged.rows), (3, 6));
        assert_eq!(files_in(&table_dir), 1);
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let other = Tables::new(
            sled::open(elsewhere.path().join("sled")).expect("sled"),
            elsewhere.path().join("blocks"),
        )
        .get("t")
        .expect("t");
        other
            .apply(&from_kafka(0, 0, vec![9]), &[], 10, None)
            .expect("apply");
        other.install_image(&image, pinned.path()).expect("install");
        assert_eq!(values(&other), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(other.row_count().expect("rows"), 6);
        assert_eq!(files_in(&elsewhere.path().join("blocks").join("t-t")), 3);
        let key = PositionKey {
            source: "mv".into(),
            topic: "topic".into(),
            partition: 2,
        };
        assert_eq!(other.next_offset(&key).expect("offset"), Some(30));

        // An in-memory image of the merged table installs over it too.
        other
            .replace_all(&t.export().expect("export"))
            .expect("install");
        assert_eq!(values(&other), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(other.parts().expect("parts").len(), 1);

        // Files no record names (a crash between a file and its record) are removed at
        // open; so is the directory of a table with no tree (a crash during a drop).
        std::fs::write(table_dir.join("00ff"), b"left").expect("write");
        std::fs::create_dir_all(root.join("t-gone")).expect("mkdir");
        drop(t);
        drop(tables);
        let tables = Tables::new(db, root.clone());
        let t = tables.get("t").expect("t");
        assert_eq!(files_in(&table_dir), 1);
        assert!(!root.join("t-gone").exists());
        assert_eq!(values(&t), vec![1, 2, 3, 4, 5, 6]);
    }

    /// The rows of a replica, in part order.
    fn values(t: &TableStore) -> Vec<u32> {
        t.scan(None)
            .expect("scan")
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("u32")
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn a_part_in_use_outlives_its_merge() {
        let (_dir, t) = table_t();
        for i in 0..4 {
            t.apply(
                &from_kafka(i, i, vec![u32::try_from(i).unwrap_or(0)]),
                &[],
                10,
                None,
            )
            .expect("apply");
        }
        let reading = t.parts().expect("parts");
        let policy = MergePolicy {
            fan_in: 4,
            ..MergePolicy::default()
        };
        t.merge_step(&batch(vec![]).schema(), &["a".to_string()], &policy)
            .expect("merge")
            .expect("a merge");
        assert!(reading.iter().all(|p| p.path().exists()));
        let paths: Vec<PathBuf> = reading.iter().map(|p| p.path().to_path_buf()).collect();
        drop(reading);
        assert!(paths.iter().all(|p| !p.exists()));
        assert_eq!(values(&t), vec![0, 1, 2, 3]);
        // Nothing left to merge.
        assert_eq!(
            t.merge_step(&batch(vec![]).schema(), &["a".to_string()], &policy)
                .expect("merge"),
            None
        );
    }

    #[test]
    fn blocks_stored_before_parts_become_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("sled")).expect("sled");
        let root = dir.path().join("blocks");
        // As stored before parts: one block inline in sled, one in a file named by its hash.
        let tree = db.open_tree("table/t").expect("tree");
        let inline = block::encode_ipc(&batch(vec![3, 1])).expect("ipc");
        let in_file = block::encode_ipc(&batch(vec![2])).expect("ipc");
        let hash = blake3::hash(&in_file);
        std::fs::create_dir_all(root.join("t-t")).expect("mkdir");
        std::fs::write(root.join("t-t").join(hex(hash.as_bytes())), &in_file).expect("write");
        tree.insert(seq_key(LEGACY_BLOCK, 0), inline)
            .expect("insert");
        tree.insert(
            seq_key(LEGACY_BLOCK, 1),
            [IN_FILE, hash.as_bytes()].concat(),
        )
        .expect("insert");
        tree.insert(NEXT_SEQ, &2u64.to_be_bytes()).expect("insert");
        tree.insert(ROWS, &3u64.to_be_bytes()).expect("insert");
        let t = Tables::new(db, root.clone()).get("t").expect("t");
        assert_eq!(t.migrate_legacy(&["a".to_string()]).expect("migrate"), 2);
        assert_eq!(values(&t), vec![1, 3, 2]);
        assert_eq!(files_in(&root.join("t-t")), 2);
        // A legacy block arriving from an old log entry is stored as a part too.
        let legacy = Block {
            data: block::encode_ipc(&batch(vec![6, 5])).expect("ipc").into(),
            ..from_kafka(0, 1, vec![6, 5])
        };
        t.apply(&legacy, &["a".to_string()], 10, None)
            .expect("apply");
        assert_eq!(values(&t), vec![1, 3, 2, 5, 6]);
        assert_eq!(t.migrate_legacy(&[]).expect("migrate"), 0);
    }

    #[test]
    fn table_names_make_distinct_directories() {
        assert_eq!(dir_name("events"), "t-events");
        assert_ne!(dir_name("a b"), dir_name("a_b"));
        assert_eq!(dir_name(".."), "t-%2e%2e");
        assert_eq!(dir_name("a/b"), "t-a%2fb");
    }
}
