//! The node's state machine: the catalog and the table replicas, and the one path by
//! which writes reach them.
//!
//! A write is a catalog command or a block; `apply_*` is deterministic and durable before
//! it returns. On a single node writes apply directly; in a cluster the same functions are
//! what each replica runs, in log order.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::catalog::{Catalog, CatalogCommand, CatalogError, CatalogOutcome};
use crate::cluster::assignment::{Assignments, Slot};
use crate::raft::NodeId;
use crate::table::{ApplyOutcome, Block, PositionKey, TableError, Tables, Writer, WriterLogEntry};

const CATALOG_KEY: &[u8] = b"catalog";
const CLUSTER_ID_KEY: &[u8] = b"cluster_id";
const ASSIGNMENTS_KEY: &[u8] = b"assignments";
const META_TREE: &str = "meta";
const TABLE_TREE_PREFIX: &str = "table/";

/// The replicated state as plain data, for snapshots.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StateImage {
    pub trees: Vec<ImageTree>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ImageTree {
    pub name: String,
    #[serde(with = "image_pairs")]
    pub pairs: Vec<KeyValue>,
}

pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Keys and values as byte strings, not arrays of numbers.
mod image_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::ByteBuf;

    use super::KeyValue;

    pub fn serialize<S: Serializer>(pairs: &[(Vec<u8>, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let wire: Vec<(&serde_bytes::Bytes, &serde_bytes::Bytes)> = pairs
            .iter()
            .map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v)))
            .collect();
        wire.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyValue>, D::Error> {
        let wire: Vec<(ByteBuf, ByteBuf)> = Vec::deserialize(d)?;
        Ok(wire
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
            .collect())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("stored catalog is unreadable: {0}")]
    CorruptCatalog(String),
    #[error("table {0} does not exist")]
    NoTable(String),
    #[error("state lock poisoned")]
    Poisoned,
}

pub struct NodeState {
    db: sled::Db,
    meta: sled::Tree,
    catalog: RwLock<Arc<Catalog>>,
    assignments: RwLock<Arc<Assignments>>,
    pub tables: Tables,
    /// Bumped on every catalog change; the ingest supervisor watches it.
    catalog_version: watch::Sender<u64>,
}

fn load_assignments(meta: &sled::Tree) -> Result<Assignments, StateError> {
    match meta.get(ASSIGNMENTS_KEY)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StateError::CorruptCatalog(format!("assignments: {e}"))),
        None => Ok(Assignments::default()),
    }
}

impl NodeState {
    pub fn open(db: sled::Db) -> Result<NodeState, StateError> {
        let meta = db.open_tree(META_TREE)?;
        let catalog = match meta.get(CATALOG_KEY)? {
            Some(bytes) => serde_json::from_slice::<Catalog>(&bytes)
                .map_err(|e| StateError::CorruptCatalog(e.to_string()))?,
            None => Catalog::default(),
        };
        let assignments = load_assignments(&meta)?;
        let (catalog_version, _) = watch::channel(0);
        Ok(NodeState {
            tables: Tables::new(db.clone()),
            db,
            meta,
            catalog: RwLock::new(Arc::new(catalog)),
            assignments: RwLock::new(Arc::new(assignments)),
            catalog_version,
        })
    }

    /// A consistent snapshot of the catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn watch_catalog(&self) -> watch::Receiver<u64> {
        self.catalog_version.subscribe()
    }

    /// Applies a catalog command; on error nothing changed.
    pub fn apply_catalog(&self, cmd: &CatalogCommand) -> Result<CatalogOutcome, StateError> {
        let mut guard = self.catalog.write().map_err(|_| StateError::Poisoned)?;
        let mut next = Catalog::clone(&guard);
        let outcome = next.apply(cmd)?;
        if outcome == CatalogOutcome::Changed {
            let bytes =
                serde_json::to_vec(&next).map_err(|e| StateError::CorruptCatalog(e.to_string()))?;
            if let CatalogCommand::DropTable { name, .. } = cmd {
                self.tables.drop_table(name)?;
            }
            if let CatalogCommand::CreateTable { def, .. } = cmd {
                // A table created under a dropped table's name starts empty.
                self.tables.drop_table(&def.name)?;
            }
            self.meta.insert(CATALOG_KEY, bytes)?;
            self.db.flush()?;
            *guard = Arc::new(next);
            self.catalog_version.send_modify(|v| *v += 1);
        }
        Ok(outcome)
    }

    /// Applies a block to its table's replica; `writer` is recorded in its writer log.
    pub fn apply_block(
        &self,
        block: &Block,
        writer: Option<Writer>,
    ) -> Result<ApplyOutcome, StateError> {
        let catalog = self.catalog();
        let def = catalog
            .table(&block.table)
            .ok_or_else(|| StateError::NoTable(block.table.clone()))?;
        Ok(self
            .tables
            .get(&block.table)?
            .apply(block, def.dedup_window(), writer)?)
    }

    /// Wakes whoever watches the catalog (the ingest supervisor) without a catalog change,
    /// e.g. when the cluster's membership changed.
    pub fn notify(&self) {
        self.catalog_version.send_modify(|v| *v += 1);
    }

    /// Every tree of the replicated state (catalog and tables) as key/value pairs: the
    /// content of a Raft snapshot.
    pub fn export(&self) -> Result<StateImage, StateError> {
        let mut trees = Vec::new();
        for name in self.replicated_trees()? {
            let tree = self.db.open_tree(&name)?;
            let mut pairs = Vec::new();
            for item in tree.iter() {
                let (k, v) = item?;
                pairs.push((k.to_vec(), v.to_vec()));
            }
            trees.push(ImageTree { name, pairs });
        }
        Ok(StateImage { trees })
    }

    /// Replaces the whole replicated state by an image (a snapshot from the leader).
    pub fn import(&self, image: &StateImage) -> Result<(), StateError> {
        let mut guard = self.catalog.write().map_err(|_| StateError::Poisoned)?;
        self.tables.forget_all()?;
        for name in self.replicated_trees()? {
            if name == META_TREE {
                self.meta.clear()?;
            } else {
                self.db.drop_tree(&name)?;
            }
        }
        for tree in &image.trees {
            if tree.name != META_TREE && !tree.name.starts_with(TABLE_TREE_PREFIX) {
                return Err(StateError::CorruptCatalog(format!(
                    "snapshot holds unexpected tree {}",
                    tree.name
                )));
            }
            let target = self.db.open_tree(&tree.name)?;
            let mut batch = sled::Batch::default();
            for (k, v) in &tree.pairs {
                batch.insert(k.as_slice(), v.as_slice());
            }
            target.apply_batch(batch)?;
        }
        self.db.flush()?;
        let catalog = match self.meta.get(CATALOG_KEY)? {
            Some(bytes) => serde_json::from_slice::<Catalog>(&bytes)
                .map_err(|e| StateError::CorruptCatalog(e.to_string()))?,
            None => Catalog::default(),
        };
        *guard = Arc::new(catalog);
        let assignments = load_assignments(&self.meta)?;
        match self.assignments.write() {
            Ok(mut a) => *a = Arc::new(assignments),
            Err(_) => return Err(StateError::Poisoned),
        }
        self.catalog_version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// The replicated partition assignment.
    pub fn assignments(&self) -> Arc<Assignments> {
        match self.assignments.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies an `Assign` entry at log index `epoch`.
    pub fn apply_assign(&self, owners: &[(Slot, NodeId)], epoch: u64) -> Result<(), StateError> {
        let mut guard = self.assignments.write().map_err(|_| StateError::Poisoned)?;
        let owners: BTreeMap<Slot, NodeId> = owners.iter().cloned().collect();
        let next = guard.next(&owners, epoch);
        let bytes =
            serde_json::to_vec(&next).map_err(|e| StateError::CorruptCatalog(e.to_string()))?;
        self.meta.insert(ASSIGNMENTS_KEY, bytes)?;
        self.db.flush()?;
        *guard = Arc::new(next);
        self.catalog_version.send_modify(|v| *v += 1);
        Ok(())
    }

    fn replicated_trees(&self) -> Result<Vec<String>, StateError> {
        let mut names = Vec::new();
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if name == META_TREE || name.starts_with(TABLE_TREE_PREFIX) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The cluster id this state belongs to, once the cluster's first entry was applied.
    pub fn cluster_id(&self) -> Result<Option<String>, StateError> {
        Ok(self
            .meta
            .get(CLUSTER_ID_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_cluster_id(&self, id: &str) -> Result<(), StateError> {
        self.meta.insert(CLUSTER_ID_KEY, id.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn next_offset(&self, table: &str, key: &PositionKey) -> Result<Option<i64>, StateError> {
        Ok(self.tables.get(table)?.next_offset(key)?)
    }

    pub fn writer_log(&self, table: &str) -> Result<Vec<WriterLogEntry>, StateError> {
        Ok(self.tables.get(table)?.writer_log()?)
    }

    pub fn row_count(&self, table: &str) -> Result<u64, StateError> {
        Ok(self.tables.get(table)?.row_count()?)
    }
}
