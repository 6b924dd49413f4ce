//! Blocks stored before parts (a sled value per block, inline or naming a file of Arrow
//! IPC), and legacy blocks still in old Raft log entries: converted into parts, once, in
//! sequence order.

use std::borrow::Cow;

use super::keys::{part_key, LEGACY_BLOCK};
use super::{write_durably, TableStore};
use crate::files::with_path;
use crate::table::block;
use crate::table::part::{self, Part, PartMeta};
use crate::table::TableError;

/// A legacy block's value when its bytes are in a file: this, then the file's content
/// hash. An inline value is an Arrow IPC stream, which never starts so.
pub(super) const IN_FILE: &[u8] = b"\0file:";

/// The file hash a legacy block's value names, if its bytes are in a file.
pub(super) fn file_hash(value: &[u8]) -> Option<&[u8]> {
    value
        .strip_prefix(IN_FILE)
        .filter(|hash| hash.len() == blake3::OUT_LEN)
}

pub(super) fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl TableStore {
    /// A block's rows as a part file's bytes: the block's own bytes when it is a part
    /// already; a legacy block (Arrow IPC, from a log written before parts) is sorted and
    /// encoded here.
    pub(super) fn part_bytes<'a>(
        &self,
        data: &'a [u8],
        order_by: &[String],
    ) -> Result<Cow<'a, [u8]>, TableError> {
        if part::is_parquet(data) {
            return Ok(Cow::Borrowed(data));
        }
        let (schema, batches) = block::decode(data, None).map_err(|e| self.corrupt(e))?;
        let batch =
            arrow::compute::concat_batches(&schema, &batches).map_err(|e| self.corrupt(e))?;
        part::encode(&batch, order_by)
            .map(Cow::Owned)
            .map_err(|e| self.corrupt(e))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::store::keys::{seq_key, NEXT_SEQ, ROWS};
    use crate::table::store::test_support::{batch, files_in, from_kafka, values};
    use crate::table::store::Tables;
    use crate::table::Block;

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
}
