//! The Raft log and vote of one group, on sled.
//!
//! Entries are keyed by index (big-endian, so sled's order is log order). Appends and the
//! vote are made durable (`DiskSync`) before openraft is told they are done: Raft may only
//! count a vote or an entry that survives a crash or a power loss. An error there (EIO,
//! ENOSPC) fails the write, openraft stops, and the node exits instead of acknowledging
//! what the disk may have dropped.
//!
//! A block's bytes go to a file of their own, one per entry, named by its index, in a
//! directory per group; the entry in sled keeps the rest. Kept in sled, a block would be
//! written again and again: sled keeps up to 16 entries in a leaf and rewrites the whole
//! leaf, blocks and all, at every tenth change to it, and on a read that finds it
//! fragmented. The files are synced with the append, removed after a truncation or a
//! purge is stored, and any left by a crash between the two are removed at open.
//!
//! The newest entries are also kept in memory, for the reads that follow an append at
//! once: the leader's replication to each follower and every member's apply read each
//! entry back. From sled that is a blob-file read and a decode per entry per reader, and
//! sled may rewrite the entry's whole leaf, blocks and all, when a read finds its page
//! fragmented.

// openraft's storage traits fix the error type, a large one; boxing it is not ours to do.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, Membership, OptionalSend, RaftLogReader, StorageIOError,
    Vote,
};

use super::disk_sync::DiskSync;
use super::{decode, encode, Command, Member, NodeId, StorageError, TypeConfig};
use crate::files::{self, with_path};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// How much of the newest entries is kept in memory: about 64 blocks of the default
/// size, more than a follower that keeps up or apply lags behind.
const RECENT_BYTES: usize = 32 * 1024 * 1024;

/// The newest entries by index, contiguous, up to `RECENT_BYTES` of blocks.
#[derive(Default)]
struct Recent {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    bytes: usize,
}

/// An entry's size as counted against `RECENT_BYTES`: its block's bytes, which clones of
/// the entry share, and a little for the rest.
fn weight(entry: &Entry<TypeConfig>) -> usize {
    512 + payload_of(entry).map_or(0, Bytes::len)
}

impl Recent {
    /// Adds entries just appended, dropping the oldest kept ones beyond the bound. An
    /// append that does not follow the kept entries starts over, so they stay contiguous.
    fn append(&mut self, appended: Vec<Entry<TypeConfig>>) {
        for entry in appended {
            let index = entry.log_id.index;
            if self
                .entries
                .last_key_value()
                .is_some_and(|(last, _)| index != last + 1)
            {
                self.clear();
            }
            self.bytes += weight(&entry);
            self.entries.insert(index, entry);
        }
        while self.bytes > RECENT_BYTES {
            match self.entries.pop_first() {
                Some((_, old)) => self.bytes -= weight(&old),
                None => break,
            }
        }
    }

    /// Entries `start..end`, when all of them are kept.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        if start >= end {
            return Some(Vec::new());
        }
        let (first, _) = self.entries.first_key_value()?;
        let (last, _) = self.entries.last_key_value()?;
        if start < *first || end > last + 1 {
            return None;
        }
        Some(
            self.entries
                .range(start..end)
                .map(|(_, e)| e.clone())
                .collect(),
        )
    }

    /// Forgets entries at and after `index` (a truncation).
    fn remove_from(&mut self, index: u64) {
        let removed = self.entries.split_off(&index);
        self.bytes -= removed.values().map(weight).sum::<usize>();
    }

    /// Forgets entries up to and including `index` (a purge).
    fn remove_through(&mut self, index: u64) {
        let kept = self.entries.split_off(&index.saturating_add(1));
        let removed = std::mem::replace(&mut self.entries, kept);
        self.bytes -= removed.values().map(weight).sum::<usize>();
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// How long a purge waits for the state machine to apply what it purges.
const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    /// The state machine's tree of the same group: a purge waits for its applied index.
    sm: sled::Tree,
    state: sled::Tree,
    /// The node's sled made durable after each write; none for an in-memory test store.
    disk: Option<Arc<DiskSync>>,
    /// Shared by the store and its readers.
    recent: Arc<Mutex<Recent>>,
    /// The group's directory of block bytes; none for an in-memory test store, whose
    /// blocks stay in the entries. Entries written before there was one keep their
    /// blocks too, and read as they are.
    payloads: Option<PathBuf>,
    /// The block bytes of each entry held that has a block, by index: what the snapshot
    /// policy weighs (`block_bytes`).
    block_sizes: Arc<Mutex<BTreeMap<u64, u64>>>,
}

/// The block bytes an entry carries, if any.
fn payload_of(entry: &Entry<TypeConfig>) -> Option<&Bytes> {
    match &entry.payload {
        EntryPayload::Normal(Command::Block { block, .. }) if !block.data.is_empty() => {
            Some(&block.data)
        }
        _ => None,
    }
}

/// The entry as sled keeps it when its block's bytes are in a file: all but those.
fn without_payload(entry: &Entry<TypeConfig>) -> Entry<TypeConfig> {
    let mut stored = entry.clone();
    if let EntryPayload::Normal(Command::Block { block, .. }) = &mut stored.payload {
        block.data = Bytes::new();
    }
    stored
}

fn payload_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}"))
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// How far a replica got in forming its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formation {
    /// No vote and no entry: it may form the group.
    Fresh,
    /// It voted and holds no entry, and never held one.
    VotedOnly,
    /// It holds entries, or held them.
    Started,
}

impl LogStore {
    /// `disk` is shared by every group of the node: they share its sled.
    pub fn open(
        db: &sled::Db,
        group: &str,
        disk: Option<Arc<DiskSync>>,
    ) -> Result<LogStore, sled::Error> {
        let payloads = disk.as_ref().map(|d| d.payload_dir(group));
        let store = LogStore {
            sm: db.open_tree(super::state_machine::sm_tree_name(group))?,
            log: db.open_tree(format!("raft/{group}/log"))?,
            state: db.open_tree(format!("raft/{group}/state"))?,
            disk,
            recent: Arc::default(),
            payloads,
            block_sizes: Arc::default(),
        };
        if let Some(dir) = &store.payloads {
            store
                .open_payloads(dir)
                .map_err(|e| sled::Error::Io(with_path("preparing", dir, e)))?;
        }
        Ok(store)
    }

    /// Waits until the state machine has applied `index`. openraft 0.9 purges the log up to
    /// a snapshot it is installing while the state machine is still installing it; a crash
    /// between the two left a purged log and a state machine that never got the snapshot,
    /// which openraft refuses at start (its purge_upto <= committed check). A purge that
    /// follows a snapshot this node built finds the index applied already.
    async fn wait_for_applied(&self, index: u64) -> Result<(), StorageError> {
        let deadline = std::time::Instant::now() + PURGE_WAIT;
        loop {
            if super::state_machine::applied_index(&self.sm)
                .map_err(read_err)?
                .is_some_and(|applied| applied >= index)
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(write_err(std::io::Error::other(format!(
                    "purging the log up to {index}: the state machine has not applied it after {PURGE_WAIT:?}"
                ))));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Makes the group's payload directory, durably, and removes the files of entries
    /// sled no longer holds: left by a crash after a truncation or a purge was stored
    /// and before its files were removed.
    fn open_payloads(&self, dir: &Path) -> std::io::Result<()> {
        files::make_dir_durably(dir)?;
        for item in std::fs::read_dir(dir)? {
            let path = item?.path();
            let index = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok());
            let held = match index {
                Some(i) => self
                    .log
                    .contains_key(i.to_be_bytes())
                    .map_err(std::io::Error::other)?,
                None => false,
            };
            match index.filter(|_| held) {
                Some(i) => {
                    let len = std::fs::metadata(&path)
                        .map_err(|e| with_path("reading", &path, e))?
                        .len();
                    self.block_sizes().insert(i, len);
                }
                None => files::remove_file(&path)?,
            }
        }
        Ok(())
    }

    /// Puts back the block bytes of an entry read from sled, from its file.
    fn fill_payload(&self, entry: &mut Entry<TypeConfig>) -> Result<(), StorageError> {
        let (Some(dir), EntryPayload::Normal(Command::Block { block, .. })) =
            (&self.payloads, &mut entry.payload)
        else {
            return Ok(());
        };
        // Only a block with no rows has no bytes of its own.
        if block.rows == 0 || !block.data.is_empty() {
            return Ok(());
        }
        let path = payload_path(dir, entry.log_id.index);
        let data = std::fs::read(&path).map_err(|e| read_err(with_path("reading", &path, e)))?;
        block.data = Bytes::from(data);
        Ok(())
    }

    /// Removes the payload files of entries sled no longer holds.
    fn remove_payloads(&self, indexes: &[u64]) -> Result<(), StorageError> {
        let Some(dir) = &self.payloads else {
            return Ok(());
        };
        for index in indexes {
            files::remove_file(&payload_path(dir, *index)).map_err(write_err)?;
        }
        Ok(())
    }

    /// The bytes of the blocks of entries `after + 1 ..= through` this log holds: what a
    /// snapshot at `through` would let it drop. Entries appended before this process
    /// started count only when their blocks are in files.
    pub fn block_bytes(&self, after: Option<u64>, through: u64) -> u64 {
        let from = after.map_or(0, |a| a.saturating_add(1));
        if from > through {
            return 0;
        }
        self.block_sizes()
            .range(from..=through)
            .map(|(_, len)| len)
            .sum()
    }

    /// A poisoned lock only means a panic elsewhere while it was held; each change to
    /// the map completes before anything that could panic.
    fn block_sizes(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        match self.block_sizes.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A poisoned lock only means a panic elsewhere while it was held; each change to
    /// `Recent` completes before anything that could panic.
    fn recent(&self) -> MutexGuard<'_, Recent> {
        match self.recent.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Makes `tree` durable, and with it `files` written outside sled.
    async fn flush(&self, tree: &sled::Tree, files: Vec<PathBuf>) -> Result<(), std::io::Error> {
        match &self.disk {
            Some(disk) => disk.sync_with_files(tree, files).await.map(|_| ()),
            None => tree
                .flush_async()
                .await
                .map(|_| ())
                .map_err(std::io::Error::other),
        }
    }

    /// Whether this group ever held a vote or an entry here: such a node must never
    /// initialize a cluster.
    pub fn has_state(&self) -> Result<bool, sled::Error> {
        Ok(self.formation()? != Formation::Fresh)
    }

    /// Whether this replica has voted in its group and holds no entry, and never held
    /// one: a member that formed the group asked for its vote and its first entries
    /// never came.
    pub fn voted_without_entries(&self) -> Result<bool, sled::Error> {
        Ok(self.formation()? == Formation::VotedOnly)
    }

    /// How far this replica got in forming its group, from one read of its state.
    pub fn formation(&self) -> Result<Formation, sled::Error> {
        if !self.log.is_empty() {
            return Ok(Formation::Started);
        }
        if self.state.get(VOTE)?.is_none() {
            return Ok(Formation::Fresh);
        }
        Ok(if self.state.get(LAST_PURGED)?.is_some() {
            Formation::Started
        } else {
            Formation::VotedOnly
        })
    }

    /// Writes a new group's first entry as `Raft::initialize` makes it: the membership of
    /// `members`, at log id (0, 0). Only while no Raft runs on this store, which reads
    /// its log when it starts.
    pub async fn write_first_entry(
        &self,
        members: BTreeMap<NodeId, Member>,
    ) -> Result<(), StorageError> {
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::default(),
            payload: EntryPayload::Membership(Membership::from(members)),
        };
        let bytes = encode(&entry).map_err(write_err)?;
        self.log
            .insert(0u64.to_be_bytes(), bytes)
            .map_err(write_err)?;
        self.flush(&self.log, Vec::new()).await.map_err(write_err)
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.state.get(key).map_err(read_err)? {
            Some(bytes) => decode(&bytes).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    fn put<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(write_err)?;
        self.state.insert(key, bytes).map_err(write_err)?;
        Ok(())
    }
}

fn index_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(kept) = end.and_then(|end| self.recent().get(start, end)) {
            return Ok(kept);
        }
        let mut out = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (key, value) = item.map_err(read_err)?;
            let index = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX);
            if !range.contains(&index) {
                break;
            }
            let mut entry = decode(&value).map_err(read_err)?;
            self.fill_payload(&mut entry)?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get(LAST_PURGED)?;
        let last = match self.log.last().map_err(read_err)? {
            Some((_, value)) => Some(
                decode::<Entry<TypeConfig>>(&value)
                    .map_err(read_err)?
                    .log_id,
            ),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put(VOTE, vote)?;
        let state = self.state.clone();
        self.flush(&state, Vec::new())
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.put(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        let mut appended = Vec::new();
        let mut files = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let stored = match (&self.payloads, payload_of(&entry)) {
                (Some(dir), Some(data)) => {
                    let path = payload_path(dir, index);
                    std::fs::write(&path, data)
                        .map_err(|e| write_err(with_path("writing", &path, e)))?;
                    files.push(path);
                    encode(&without_payload(&entry))
                }
                _ => encode(&entry),
            }
            .map_err(write_err)?;
            batch.insert(&index.to_be_bytes(), stored);
            appended.push(entry);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        {
            let mut sizes = self.block_sizes();
            for entry in &appended {
                let index = entry.log_id.index;
                match payload_of(entry) {
                    Some(data) => sizes.insert(index, data.len() as u64),
                    // Replaces a truncated entry that had a block.
                    None => sizes.remove(&index),
                };
            }
        }
        self.recent().append(appended);
        let log = self.log.clone();
        match self.flush(&log, files).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.recent().remove_from(log_id.index);
        self.block_sizes().split_off(&log_id.index);
        let mut batch = sled::Batch::default();
        let mut removed = Vec::new();
        for item in self.log.range(log_id.index.to_be_bytes()..) {
            let (key, _) = item.map_err(read_err)?;
            removed.extend(index_of(&key));
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        let log = self.log.clone();
        self.flush(&log, Vec::new()).await.map_err(write_err)?;
        self.remove_payloads(&removed)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.wait_for_applied(log_id.index).await?;
        self.recent().remove_through(log_id.index);
        {
            let mut sizes = self.block_sizes();
            let kept = sizes.split_off(&log_id.index.saturating_add(1));
            *sizes = kept;
        }
        self.put(LAST_PURGED, &log_id)?;
        let state = self.state.clone();
        self.flush(&state, Vec::new()).await.map_err(write_err)?;
        let mut batch = sled::Batch::default();
        let mut removed = Vec::new();
        for item in self.log.range(..=log_id.index.to_be_bytes()) {
            let (key, _) = item.map_err(read_err)?;
            removed.extend(index_of(&key));
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        // Entries up to the purged id are never read again, even where sled has not
        // stored their removal yet.
        self.remove_payloads(&removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Block;
    use openraft::storage::RaftLogStorageExt;
    use openraft::CommittedLeaderId;

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn block_entry(term: u64, index: u64, size: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Command::Block {
                block: Block {
                    table: "t".into(),
                    source: None,
                    rows: 1,
                    hash: [index as u8; 32],
                    data: vec![term as u8; size].into(),
                },
                fence: None,
            }),
        }
    }

    /// The kept entries, and what sled alone holds (a store that has appended nothing
    /// keeps nothing), must read the same for every range.
    async fn assert_reads_agree(
        store: &mut LogStore,
        sled_only: &mut LogStore,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<(), StorageError> {
        for range in ranges {
            let kept = store.try_get_log_entries(range.clone()).await?;
            let stored = sled_only.try_get_log_entries(range.clone()).await?;
            assert_eq!(kept, stored, "{range:?}");
        }
        Ok(())
    }

    fn payload_files(dir: &Path) -> Result<Vec<u64>, std::io::Error> {
        let mut found = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().parse().unwrap_or(u64::MAX)))
            .collect::<Result<Vec<u64>, _>>()?;
        found.sort();
        Ok(found)
    }

    #[tokio::test]
    async fn kept_entries_read_as_sled_and_the_files_hold_them(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let sled_dir = dir.path().join("sled");
        let db = sled::open(&sled_dir)?;
        let disk = DiskSync::open(&sled_dir)?;
        let mut store = LogStore::open(&db, "g.00ff", Some(disk.clone()))?;
        let mut sled_only = LogStore::open(&db, "g.00ff", Some(disk.clone()))?;
        let payloads = disk.payload_dir("g.00ff");

        // More than RECENT_BYTES: the oldest are read from sled and their files.
        store
            .blocking_append((1..=40).map(|i| block_entry(1, i, 1 << 20)))
            .await?;
        let first_kept = store.recent().entries.first_key_value().map(|(i, _)| *i);
        assert!(first_kept.is_some_and(|i| i > 1), "{first_kept:?}");
        assert_eq!(store.try_get_log_entries(1..41).await?.len(), 40);
        assert_reads_agree(
            &mut store,
            &mut sled_only,
            &[1..41, 30..41, 38..40, 5..6, 40..40, 39..45],
        )
        .await?;
        assert_eq!(payload_files(&payloads)?, (1..=40).collect::<Vec<_>>());
        // sled holds the entries without their blocks.
        let stored = db.open_tree("raft/g.00ff/log")?.get(1u64.to_be_bytes())?;
        assert!(stored.is_some_and(|v| v.len() < 1024));

        // A new leader's entries replace a truncated tail; a block with no rows has no
        // file.
        store.truncate(log_id(1, 35)).await?;
        let mut empty = block_entry(2, 36, 0);
        if let EntryPayload::Normal(Command::Block { block, .. }) = &mut empty.payload {
            block.rows = 0;
        }
        store
            .blocking_append([block_entry(2, 35, 10), empty])
            .await?;
        assert_reads_agree(&mut store, &mut sled_only, &[30..37, 35..37, 36..37]).await?;
        assert_eq!(store.try_get_log_entries(30..100).await?.len(), 7);
        assert_eq!(payload_files(&payloads)?, (1..=35).collect::<Vec<_>>());

        mark_applied(&db, "g.00ff", 32)?;
        store.purge(log_id(1, 32)).await?;
        assert_eq!(
            store.recent().entries.first_key_value().map(|(i, _)| *i),
            Some(33)
        );
        assert_reads_agree(&mut store, &mut sled_only, &[33..37, 1..37]).await?;
        assert_eq!(payload_files(&payloads)?, vec![33, 34, 35]);

        // Files a crash left behind (of entries gone from sled) are removed at open.
        std::fs::write(payload_path(&payloads, 7), b"left")?;
        std::fs::write(payload_path(&payloads, 99), b"left")?;
        let mut reopened = LogStore::open(&db, "g.00ff", Some(disk.clone()))?;
        assert_eq!(payload_files(&payloads)?, vec![33, 34, 35]);
        assert_reads_agree(&mut reopened, &mut sled_only, &[33..37, 34..36]).await?;
        Ok(())
    }

    /// Records in the group's state machine tree that it applied through `index`.
    fn mark_applied(
        db: &sled::Db,
        group: &str,
        index: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let sm = db.open_tree(crate::raft::state_machine::sm_tree_name(group))?;
        sm.insert(b"applied", encode(&Some(log_id(1, index)))?)?;
        Ok(())
    }

    /// A purge waits for the state machine to have applied what it purges: openraft purges
    /// up to a snapshot it is still installing, and a crash then left a purged log ahead of
    /// the state machine.
    #[tokio::test]
    async fn a_purge_waits_for_the_state_machine() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = sled::open(dir.path())?;
        let mut store = LogStore::open(&db, "g", None)?;
        store
            .blocking_append((1..=5).map(|i| block_entry(1, i, 10)))
            .await?;
        let mut purging = store.clone();
        let purge = tokio::spawn(async move { purging.purge(log_id(1, 4)).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !purge.is_finished(),
            "the purge waits while 4 is not applied"
        );
        assert_eq!(store.get_log_state().await?.last_purged_log_id, None);
        mark_applied(&db, "g", 4)?;
        purge.await??;
        assert_eq!(
            store.get_log_state().await?.last_purged_log_id,
            Some(log_id(1, 4))
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_log_weighs_the_blocks_a_snapshot_would_let_go(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let sled_dir = dir.path().join("sled");
        let db = sled::open(&sled_dir)?;
        let disk = DiskSync::open(&sled_dir)?;
        let mut store = LogStore::open(&db, "g", Some(disk.clone()))?;
        store
            .blocking_append((1..=10).map(|i| block_entry(1, i, 1000 * i as usize)))
            .await?;
        assert_eq!(store.block_bytes(None, 10), 55_000);
        assert_eq!(store.block_bytes(Some(4), 6), 11_000);
        assert_eq!(store.block_bytes(Some(10), 10), 0);
        // A new leader's entries replace a truncated tail; a purge forgets the head.
        store.truncate(log_id(1, 9)).await?;
        store.blocking_append([block_entry(2, 9, 1)]).await?;
        mark_applied(&db, "g", 2)?;
        store.purge(log_id(1, 2)).await?;
        assert_eq!(store.block_bytes(None, 100), 55_000 - 19_000 - 3_000 + 1);
        // After a restart, the blocks' files tell.
        let reopened = LogStore::open(&db, "g", Some(disk))?;
        assert_eq!(reopened.block_bytes(None, 100), 33_001);
        Ok(())
    }

    #[tokio::test]
    async fn a_store_without_a_disk_keeps_blocks_in_sled() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let db = sled::open(dir.path())?;
        let mut store = LogStore::open(&db, "g", None)?;
        store.blocking_append([block_entry(1, 1, 4096)]).await?;
        let stored = db.open_tree("raft/g/log")?.get(1u64.to_be_bytes())?;
        assert!(stored.is_some_and(|v| v.len() > 4096));
        let mut fresh = LogStore::open(&db, "g", None)?;
        assert_reads_agree(&mut store, &mut fresh, &[1..2, 0..2]).await?;
        Ok(())
    }
}
