//! The Raft log and vote of one group, on sled.
//!
//! Entries are keyed by index (big-endian, so sled's order is log order). Appends and the
//! vote are made durable (`DiskSync`) before openraft is told they are done: Raft may only
//! count a vote or an entry that survives a crash or a power loss. An error there (EIO,
//! ENOSPC) fails the write, openraft stops, and the node exits instead of acknowledging
//! what the disk may have dropped.

// openraft's storage traits fix the error type, a large one; boxing it is not ours to do.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::disk_sync::DiskSync;
use super::{decode, encode, NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    state: sled::Tree,
    /// The node's sled made durable after each write; none for an in-memory test store.
    disk: Option<Arc<DiskSync>>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    /// `disk` is shared by every group of the node: they share its sled.
    pub fn open(
        db: &sled::Db,
        group: &str,
        disk: Option<Arc<DiskSync>>,
    ) -> Result<LogStore, sled::Error> {
        Ok(LogStore {
            log: db.open_tree(format!("raft/{group}/log"))?,
            state: db.open_tree(format!("raft/{group}/state"))?,
            disk,
        })
    }

    async fn flush(&self, tree: &sled::Tree) -> Result<(), std::io::Error> {
        match &self.disk {
            Some(disk) => disk.sync(tree).await.map(|_| ()),
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
        Ok(self.state.get(VOTE)?.is_some() || !self.log.is_empty())
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
        let mut out = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (key, value) = item.map_err(read_err)?;
            let index = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX);
            if !range.contains(&index) {
                break;
            }
            out.push(decode(&value).map_err(read_err)?);
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
        self.flush(&state)
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
        for entry in entries {
            let bytes = encode(&entry).map_err(write_err)?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        let log = self.log.clone();
        match self.flush(&log).await {
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
        let mut batch = sled::Batch::default();
        for item in self.log.range(log_id.index.to_be_bytes()..) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        let log = self.log.clone();
        self.flush(&log).await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.put(LAST_PURGED, &log_id)?;
        let state = self.state.clone();
        self.flush(&state).await.map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=log_id.index.to_be_bytes()) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}
