//! A table's replica: parts on disk, and on sled the part list, the dedup window and the
//! per-partition positions. This module holds the replica itself (opening it, its locks,
//! its part list and reads of its counters); each way of changing it is a module below.
//!
//! The only sled code for tables. A part's file is synced, renamed into place and its
//! directory synced before the batch that names it is written, so a record never names a
//! file that a crash could lose or cut short. Files no record names (a crash between the
//! two, a merge cut short, a replaced or dropped table) are removed when the table is
//! opened.

mod keys;
mod legacy;
mod merge;
mod snapshot;
mod tables;
#[cfg(test)]
mod test_support;
mod write;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::block::PositionKey;
use super::part::{Part, PartMeta, PartRef};
use super::TableError;
use crate::files::{self, with_path};
use keys::{dir_name, position_key, read_u64, LEGACY_BLOCK, PART, ROWS};

pub use merge::MergeReport;
pub use snapshot::Pairs;
pub use tables::Tables;
pub use write::{ApplyOutcome, Writer, WriterLogEntry};

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
            if let Some(hash) = legacy::file_hash(&value) {
                named.insert(legacy::hex(hash));
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

    /// Every row, decoded with the given projection, part after part.
    #[cfg(test)]
    pub fn scan(
        &self,
        projection: Option<Vec<usize>>,
    ) -> Result<Vec<arrow::array::RecordBatch>, TableError> {
        let mut out = Vec::new();
        for part in self.parts()? {
            for batch in super::part::read_file(part.path()).map_err(|e| self.corrupt(e))? {
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
