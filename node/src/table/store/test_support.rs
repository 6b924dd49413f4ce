//! Blocks, tables and readers shared by the store's tests.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};

use super::{TableStore, Tables};
use crate::table::block::SourceRange;
use crate::table::Block;

pub(super) fn batch(values: Vec<u32>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::UInt32, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(UInt32Array::from(values))]).expect("batch")
}

pub(super) fn from_kafka(first: i64, last: i64, values: Vec<u32>) -> Block {
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
pub(super) fn table_t() -> (tempfile::TempDir, Arc<TableStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path().join("sled")).expect("sled");
    let t = Tables::new(db, dir.path().join("blocks"))
        .get("t")
        .expect("table");
    (dir, t)
}

/// Opens sled again where a closed `Db` was: its flusher thread holds the directory's
/// lock until it wakes (every 500 ms) and sees the `Db` gone.
pub(super) fn reopen(path: &Path) -> sled::Db {
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

pub(super) fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// The rows of a replica, in part order.
pub(super) fn values(t: &TableStore) -> Vec<u32> {
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
