//! A replica as a Raft snapshot's image: pinned (its records read and its part files
//! hard-linked, under the apply lock) to be sent, and installed from one received, in one
//! atomic batch. Must not import `raft`: the snapshot's files are the caller's business.

use std::path::Path;

use super::keys::LEGACY_BLOCK;
#[cfg(test)]
use super::write_durably;
use super::TableStore;
use crate::files::{self, with_path};
use crate::table::image::TableImage;
use crate::table::TableError;

/// A part's bytes inside an in-memory image (`export`): `f/` and the part's file name.
#[cfg(test)]
const IMAGE_FILE: &[u8] = b"f/";

/// A table's stored keys and values.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

impl TableStore {
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
}

#[cfg(test)]
mod tests {
    use crate::table::part::PartMeta;
    use crate::table::store::keys::part_key;
    use crate::table::store::test_support::{batch, files_in, from_kafka, values};
    use crate::table::store::Tables;
    use crate::table::{MergePolicy, PositionKey};

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
}
