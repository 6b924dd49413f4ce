//! A group's snapshots: building one (the state pinned while apply waits, the manifest
//! written while it goes on), installing one received from the leader, and the record
//! of the current one. A snapshot is a directory (`snapshot_data`, `snapshot_dirs`);
//! sled records only which one is current and its meta. The current snapshot's directory
//! is the only one kept: a sender reading an older one keeps the files it opened.

use std::path::{Path, PathBuf};

use openraft::{
    AnyError, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{Scope, SnapshotError, StateError, StateImage, StateMachine, APPLIED, MEMBERSHIP};
use crate::files::with_path;
use crate::raft::snapshot_data::{self, SnapshotData, SnapshotFileError};
use crate::raft::snapshot_dirs::DirGuard;
use crate::raft::{decode, Member, NodeId, StorageError, TypeConfig};

/// The current snapshot before snapshots were directories, its data inline in sled. It
/// is dropped at open: openraft builds a snapshot at start when its log was purged.
const INLINE_SNAPSHOT: &[u8] = b"snapshot";
/// The current snapshot: its meta and its directory.
const CURRENT_SNAPSHOT: &[u8] = b"current_snapshot";

/// The current snapshot, as sled records it: the meta and the directory's name, never
/// the data.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMeta<NodeId, Member>,
    dir: String,
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

fn snap_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

/// A snapshot's id: its last log id, and a nonce, so two builds at one log id (before
/// and after a restart) are never taken for one stream by a receiver.
fn snapshot_id(last: Option<LogId<NodeId>>) -> String {
    let nonce = rand::random::<u32>();
    match last {
        Some(l) => format!("{}-{}-{nonce:08x}", l.leader_id.term, l.index),
        None => format!("0-0-{nonce:08x}"),
    }
}

/// Hard-links the files of a snapshot into `to`, for an install to take them.
fn link_files(from: &Path, to: &Path, names: &[(String, u64)]) -> std::io::Result<()> {
    std::fs::create_dir(to).map_err(|e| with_path("making", to, e))?;
    for (name, _) in names {
        let source = from.join(name);
        std::fs::hard_link(&source, to.join(name)).map_err(|e| with_path("linking", &source, e))?;
    }
    Ok(())
}

impl StateMachine {
    /// Drops what an older version or a crash left: a snapshot kept inline in sled, the
    /// record of a current snapshot whose directory is gone, and the leftovers in the
    /// group's snapshot directory (of a crash, or of a failed build or install).
    pub(super) fn recover_snapshots(&self) -> Result<(), SnapshotError> {
        let group = self.group.as_str();
        let dir_err = |source| SnapshotError::Dir {
            group: group.to_string(),
            source,
        };
        let sled_err = |source| SnapshotError::Storage {
            group: group.to_string(),
            source,
        };
        if self
            .tree
            .remove(INLINE_SNAPSHOT)
            .map_err(sled_err)?
            .is_some()
        {
            tracing::info!(%group, "dropped a snapshot stored in sled; a new one is built as a directory");
        }
        let mut current: Option<SnapshotRecord> = match self.tree.get(CURRENT_SNAPSHOT) {
            Ok(Some(bytes)) => Some(decode(&bytes).map_err(|e| SnapshotError::Record {
                group: group.to_string(),
                reason: e.to_string(),
            })?),
            Ok(None) => None,
            Err(e) => return Err(sled_err(e)),
        };
        if let Some(record) = &current {
            let dir = self.snapshots.path(&record.dir);
            match snapshot_data::read_image(&dir) {
                Ok(image) => self.snapshots.set_current_files(image.files),
                Err(e) => {
                    // Lost with the disk's cache, or removed by hand. openraft builds one
                    // at start when its log was purged; a sender needs it then, not before.
                    tracing::warn!(%group, error = %e, "the current snapshot is missing or unreadable; dropping its record");
                    self.tree.remove(CURRENT_SNAPSHOT).map_err(sled_err)?;
                    current = None;
                }
            }
        }
        self.snapshots
            .open(current.as_ref().map(|r| r.dir.as_str()))
            .map_err(dir_err)?;
        Ok(())
    }

    fn record(&self) -> Result<Option<SnapshotRecord>, StorageError> {
        self.get(CURRENT_SNAPSHOT)
    }

    /// Runs a step of a snapshot on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, SnapshotError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, SnapshotError> + Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| SnapshotError::Task {
                group: self.group.clone(),
                reason: e.to_string(),
            })?
    }

    fn files_err(&self) -> impl Fn(SnapshotFileError) -> SnapshotError + Send + 'static {
        let group = self.group.clone();
        move |source| SnapshotError::Files {
            group: group.clone(),
            source,
        }
    }

    fn state_err(&self) -> impl Fn(StateError) -> SnapshotError + Send + 'static {
        let group = self.group.clone();
        move |source| SnapshotError::State {
            group: group.clone(),
            source,
        }
    }

    fn dir_err(&self) -> impl Fn(std::io::Error) -> SnapshotError + Send + 'static {
        let group = self.group.clone();
        move |source| SnapshotError::Dir {
            group: group.clone(),
            source,
        }
    }

    /// Opens a reader of the snapshot in `dir`.
    async fn open_snapshot(&self, dir: PathBuf) -> Result<SnapshotData, SnapshotError> {
        let files_err = self.files_err();
        self.blocking(move || SnapshotData::open(&dir).map_err(files_err))
            .await
    }

    /// Makes the snapshot in the group's directory `name` the current one, unless a
    /// newer one is current already (built or installed meanwhile), then removes the one
    /// it replaced. Writes made before this (the applied id after an install) are flushed
    /// with the record. Returns whether it became current; if not, `guard` removes it.
    async fn make_current(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        name: String,
        guard: DirGuard,
        files: Vec<(String, u64)>,
    ) -> Result<bool, StorageError> {
        let _current = self.snapshots.current.lock().await;
        let previous = self.record()?;
        if previous
            .as_ref()
            .is_some_and(|p| p.meta.last_log_id > meta.last_log_id)
        {
            self.tree.flush_async().await.map_err(snap_err)?;
            return Ok(false);
        }
        self.put(
            CURRENT_SNAPSHOT,
            &SnapshotRecord {
                meta: meta.clone(),
                dir: name.clone(),
            },
        )?;
        self.tree.flush_async().await.map_err(snap_err)?;
        guard.keep();
        self.snapshots.set_current_files(files);
        if let Some(previous) = previous.filter(|p| p.dir != name) {
            let snapshots = self.snapshots.clone();
            let _ = tokio::task::spawn_blocking(move || snapshots.remove(&previous.dir)).await;
        }
        Ok(true)
    }

    /// Pins the group's state into a new snapshot directory, while apply waits, then
    /// writes its manifest and syncs it, while apply goes on.
    async fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (name, dir) = self.snapshots.new_dir("snap");
        let guard = DirGuard::new(dir.clone());
        let files_err = self.files_err();
        let files = {
            let dir = dir.clone();
            self.blocking(move || snapshot_data::make_dir(&dir).map_err(files_err))
                .await
                .map_err(snap_err)?
        };
        let (applied, membership, image) = {
            let _gate = self.gate.lock().await;
            let applied: Option<LogId<NodeId>> =
                self.get::<Option<LogId<NodeId>>>(APPLIED)?.flatten();
            let membership: StoredMembership<NodeId, Member> =
                self.get(MEMBERSHIP)?.unwrap_or_default();
            let state = self.state.clone();
            let scope = self.scope.clone();
            let state_err = self.state_err();
            let image = self
                .blocking(move || {
                    match &scope {
                        Scope::Meta => state.export_meta(),
                        Scope::Table { table, .. } => state.export_table(table, &files),
                    }
                    .map_err(state_err)
                })
                .await
                .map_err(snap_err)?;
            (applied, membership, image)
        };
        let files = image.files.clone();
        let file_bytes: u64 = files.iter().map(|(_, len)| len).sum();
        {
            let dir = dir.clone();
            let files_err = self.files_err();
            self.blocking(move || snapshot_data::write_snapshot(&dir, &image).map_err(files_err))
                .await
                .map_err(snap_err)?;
        }
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: snapshot_id(applied),
        };
        // Opened before it is current, so a snapshot that cannot be read never is; and
        // before a newer one could remove it.
        let data = self.open_snapshot(dir).await.map_err(snap_err)?;
        let file_count = files.len();
        let current = self.make_current(&meta, name, guard, files).await?;
        tracing::info!(group = %self.group, snapshot = %meta.snapshot_id, files = file_count, bytes = file_bytes, current, "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }

    /// Installs a snapshot received whole: its files are synced, its directory becomes
    /// the group's, the state is replaced from it (atomically: a crash leaves the old
    /// state or the new), and it becomes the current snapshot.
    pub(super) async fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: SnapshotData,
    ) -> Result<(), StorageError> {
        let files_err = self.files_err();
        let received = self
            .blocking(move || snapshot.finish().map_err(files_err))
            .await
            .map_err(snap_err)?;
        let staged = DirGuard::new(received.dir.clone());
        let image: StateImage = received.image;
        let (name, dir) = self.snapshots.new_dir("snap");
        let _gate = self.gate.lock().await;
        {
            let (from, to) = (received.dir.clone(), dir.clone());
            let group_dir = self.snapshots.dir().to_path_buf();
            let dir_err = self.dir_err();
            self.blocking(move || {
                std::fs::rename(&from, &to)
                    .map_err(|e| with_path("renaming", &from, e))
                    .and_then(|()| crate::files::sync_dir(&group_dir))
                    .map_err(dir_err)
            })
            .await
            .map_err(snap_err)?;
        }
        staged.keep();
        let placed = DirGuard::new(dir.clone());
        let state = self.state.clone();
        let scope = self.scope.clone();
        let (_, scratch) = self.snapshots.new_dir("install");
        let state_err = self.state_err();
        let dir_err = self.dir_err();
        let files = image.files.clone();
        self.blocking(move || match &scope {
            Scope::Meta => state.import_meta(&image).map_err(state_err),
            Scope::Table { table, .. } => {
                // The table takes the files it installs: it gets links of its own, and
                // the snapshot keeps its files to send on.
                let _scratch = DirGuard::new(scratch.clone());
                link_files(&dir.join(snapshot_data::FILES), &scratch, &image.files)
                    .map_err(dir_err)?;
                state
                    .import_table(table, image, &scratch)
                    .map_err(state_err)
            }
        })
        .await
        .map_err(snap_err)?;
        self.put(APPLIED, &meta.last_log_id)?;
        self.put(MEMBERSHIP, &meta.last_membership)?;
        self.make_current(meta, name, placed, files).await?;
        Ok(())
    }

    /// A receiver of a snapshot from the leader, staged in a new directory.
    pub(super) async fn begin_receiving(&self) -> Result<Box<SnapshotData>, StorageError> {
        tracing::info!(group = %self.group, "receiving a snapshot from the leader");
        let (_, dir) = self.snapshots.new_dir("staging");
        let files_err = self.files_err();
        let data = self
            .blocking(move || SnapshotData::receive(&dir).map_err(files_err))
            .await
            .map_err(snap_err)?;
        Ok(Box::new(data))
    }

    /// The current snapshot, opened for sending.
    pub(super) async fn current_snapshot(
        &self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let _current = self.snapshots.current.lock().await;
        let Some(record) = self.record()? else {
            return Ok(None);
        };
        let data = self
            .open_snapshot(self.snapshots.path(&record.dir))
            .await
            .map_err(snap_read_err)?;
        Ok(Some(Snapshot {
            meta: record.meta,
            snapshot: Box::new(data),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build().await
    }
}
