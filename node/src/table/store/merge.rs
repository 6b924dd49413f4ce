//! A merge step on a replica: a run of parts streamed into one sorted part, which replaces
//! the run. Merges are local to each replica: they change how rows are laid out in files,
//! never which rows there are, the positions or the window, so replicas that merged
//! differently still hold the same rows and make the same apply decisions.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::keys::part_key;
use super::TableStore;
use crate::files::{self, with_path};
use crate::table::merge_policy::MergePolicy;
use crate::table::part::{self, Part, PartMeta};
use crate::table::TableError;

/// What a merge did, for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    pub inputs: usize,
    pub output: String,
    pub rows: u64,
    pub bytes: u64,
}

impl TableStore {
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
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::table::store::test_support::{batch, from_kafka, table_t, values};

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
}
