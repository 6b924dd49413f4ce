//! Where a node keeps its Raft snapshots: a directory per group under one root
//! (`{data_dir}/raft-snapshots/g-{group}/`), holding the group's current snapshot and any
//! being built, received or installed.
//!
//! The current snapshot is the directory the group's state machine records in sled; any
//! other one is left by a crash or a failed step, and is removed the first time this
//! process opens the group. A group opened again in the same process (its Raft restarted)
//! does not sweep: a build of its previous Raft may still be writing there.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::files::{self, with_path};

/// The snapshot directories of every group of this node.
pub struct SnapshotDirs {
    root: PathBuf,
    groups: Mutex<BTreeMap<String, Arc<GroupSnapshots>>>,
}

/// One group's snapshot directory.
pub struct GroupSnapshots {
    dir: PathBuf,
    /// Held while the current snapshot changes and while a reader of it is opened, so a
    /// reader never opens a directory a newer snapshot is removing.
    pub current: tokio::sync::Mutex<()>,
    /// The files of the current snapshot, by name and length.
    files: Mutex<Vec<(String, u64)>>,
    swept: AtomicBool,
}

/// A directory removed when dropped, unless kept: a build or an install that failed
/// half-way leaves nothing behind.
pub struct DirGuard(Option<PathBuf>);

impl DirGuard {
    pub fn new(dir: PathBuf) -> DirGuard {
        DirGuard(Some(dir))
    }

    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            remove_logged(&dir);
        }
    }
}

fn remove_logged(dir: &Path) {
    if let Err(e) = files::remove_dir(dir) {
        tracing::warn!(error = %e, "removing a snapshot directory");
    }
}

impl SnapshotDirs {
    pub fn new(root: PathBuf) -> Arc<SnapshotDirs> {
        Arc::new(SnapshotDirs {
            root,
            groups: Mutex::default(),
        })
    }

    /// A group's snapshot directory, the same one each time the group is opened in this
    /// process.
    pub fn group(&self, group: &str) -> Arc<GroupSnapshots> {
        let mut groups = match self.groups.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        groups
            .entry(group.to_string())
            .or_insert_with(|| {
                Arc::new(GroupSnapshots {
                    dir: self.group_dir(group),
                    current: tokio::sync::Mutex::new(()),
                    files: Mutex::default(),
                    swept: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Deletes a group's snapshots, once its Raft stopped and its state is deleted. A send
    /// in flight keeps the files it opened.
    pub fn remove_group(&self, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.remove(group);
        }
        remove_logged(&self.group_dir(group));
    }

    /// A group's directory; see `files::group_dir_name`.
    pub fn group_dir(&self, group: &str) -> PathBuf {
        self.root.join(files::group_dir_name(group))
    }

    /// The group directories there are.
    pub fn group_dirs(&self) -> io::Result<Vec<PathBuf>> {
        match std::fs::read_dir(&self.root) {
            Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(with_path("listing", &self.root, e)),
        }
    }

    /// Removes a directory `group_dirs` listed.
    pub fn remove_dir(&self, dir: &Path) {
        remove_logged(dir);
    }
}

impl GroupSnapshots {
    /// A new directory's name and path, `{kind}-{random}`; not made yet.
    pub fn new_dir(&self, kind: &str) -> (String, PathBuf) {
        let name = format!("{kind}-{:016x}", rand::random::<u64>());
        let path = self.dir.join(&name);
        (name, path)
    }

    /// The path of a directory by the name `new_dir` gave it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The group's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the group's directory, and, the first time in this process, removes every
    /// directory in it but `current`. Blocking.
    pub fn open(&self, current: Option<&str>) -> io::Result<()> {
        files::make_dir_durably(&self.dir)?;
        if self.swept.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        for entry in std::fs::read_dir(&self.dir).map_err(|e| with_path("listing", &self.dir, e))? {
            let entry = entry.map_err(|e| with_path("listing", &self.dir, e))?;
            if Some(entry.file_name().to_string_lossy().as_ref()) == current {
                continue;
            }
            let path = entry.path();
            tracing::info!(dir = %path.display(), "removing a snapshot directory left from before");
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                files::remove_dir(&path)?;
            } else {
                files::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Notes the files of the snapshot that just became current.
    pub fn set_current_files(&self, files: Vec<(String, u64)>) {
        match self.files.lock() {
            Ok(mut f) => *f = files,
            Err(poisoned) => *poisoned.into_inner() = files,
        }
    }

    /// The bytes of the current snapshot's files that `held` (the file names of the
    /// table's own parts) does not name: disk the snapshot alone keeps, once merges
    /// replaced those parts.
    pub fn bytes_only_pinned(&self, held: &std::collections::HashSet<String>) -> u64 {
        let files = match self.files.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        files
            .iter()
            .filter(|(name, _)| !held.contains(name))
            .map(|(_, len)| len)
            .sum()
    }

    /// Removes one of the group's directories; a failure is logged (it is only space).
    pub fn remove(&self, name: &str) {
        remove_logged(&self.path(name));
    }
}
