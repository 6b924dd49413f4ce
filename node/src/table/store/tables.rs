//! All table replicas of a node: opening them once, finding the ones on disk, dropping
//! them, and removing the part files of tables dropped by a crash midway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::keys::dir_name;
use super::TableStore;
use crate::files;
use crate::table::TableError;

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
    use crate::table::store::test_support::{batch, from_kafka, reopen};

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
}
