//! The node's replicated state, and the one path by which writes reach it: the catalog,
//! the partition assignment and the placement of tables (the `meta` group's), and this
//! node's replicas of tables (each its table's group's).
//!
//! A write is a catalog command, an assignment, a placement or a block; `apply_*` is
//! deterministic and durable before it returns: the same functions are what every replica
//! runs, in its group's log order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::catalog::{Catalog, CatalogCommand, CatalogError, CatalogOutcome};
use crate::dead_letters::{DeadLetterError, DeadLetterQueue, DEFAULT_MAX_LETTERS};
use crate::table::{ApplyOutcome, Block, TableError, TableImage, Tables, Writer};
use crate::topology::{Assignments, NodeId, Placement, Placements, Slot};

const CATALOG_KEY: &[u8] = b"catalog";
const CLUSTER_ID_KEY: &[u8] = b"cluster_id";
const ASSIGNMENTS_KEY: &[u8] = b"assignments";
const PLACEMENTS_KEY: &[u8] = b"placements";
const META_TREE: &str = "meta";
const TABLE_TREE_PREFIX: &str = "table/";

/// The replicated state as plain data, for snapshots: sled's keys and values, and the
/// files they name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateImage {
    pub trees: Vec<ImageTree>,
    /// The files the trees name (a table's parts), in order: file name and length in
    /// bytes. A snapshot carries them after the image; the `meta` group has none.
    #[serde(default)]
    pub files: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageTree {
    pub name: String,
    #[serde(with = "crate::table::image_pairs")]
    pub pairs: Vec<KeyValue>,
}

pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Keys and values as byte strings, not arrays of numbers.
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
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
    #[error("state lock poisoned")]
    Poisoned,
}

fn image_of(name: &str, tree: &sled::Tree) -> Result<ImageTree, StateError> {
    let mut pairs = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        pairs.push((k.to_vec(), v.to_vec()));
    }
    Ok(ImageTree {
        name: name.to_string(),
        pairs,
    })
}

/// The one tree an image must hold.
fn only_tree<'a>(image: &'a StateImage, name: &str) -> Result<&'a ImageTree, StateError> {
    match image.trees.as_slice() {
        [tree] if tree.name == name => Ok(tree),
        _ => Err(StateError::CorruptCatalog(format!(
            "snapshot should hold tree {name} alone, holds {:?}",
            image.trees.iter().map(|t| &t.name).collect::<Vec<_>>()
        ))),
    }
}

/// Replaces a tree's content in one atomic batch: a crash leaves the old content or the
/// new, never a mix.
fn replace_tree(tree: &sled::Tree, image: &ImageTree) -> Result<(), StateError> {
    let kept: std::collections::HashSet<&[u8]> =
        image.pairs.iter().map(|(k, _)| k.as_slice()).collect();
    let mut batch = sled::Batch::default();
    for key in tree.iter().keys() {
        let key = key?;
        if !kept.contains(key.as_ref()) {
            batch.remove(key);
        }
    }
    for (k, v) in &image.pairs {
        batch.insert(k.as_slice(), v.as_slice());
    }
    tree.apply_batch(batch)?;
    Ok(())
}

pub struct NodeState {
    db: sled::Db,
    meta: sled::Tree,
    catalog: RwLock<Arc<Catalog>>,
    assignments: RwLock<Arc<Assignments>>,
    placements: RwLock<Arc<Placements>>,
    pub tables: Tables,
    /// Not replicated: this node's own log of messages that did not parse.
    pub dead_letters: DeadLetterQueue,
    /// Bumped on every catalog change; the ingest supervisor watches it.
    catalog_version: watch::Sender<u64>,
    /// Not replicated: the named collections of this node's config file, set at start.
    config_collections: RwLock<Arc<ConfigCollections>>,
}

pub use crate::catalog::named_collections::ConfigCollections;

fn load<T: serde::de::DeserializeOwned + Default>(
    meta: &sled::Tree,
    key: &[u8],
) -> Result<T, StateError> {
    match meta.get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            StateError::CorruptCatalog(format!("{}: {e}", String::from_utf8_lossy(key)))
        }),
        None => Ok(T::default()),
    }
}

impl NodeState {
    /// `table_files`: where tables keep their part files. Blocks of tables stored before
    /// parts are converted to parts here, once.
    pub fn open(db: sled::Db, table_files: PathBuf) -> Result<NodeState, StateError> {
        let meta = db.open_tree(META_TREE)?;
        let catalog = match meta.get(CATALOG_KEY)? {
            Some(bytes) => serde_json::from_slice::<Catalog>(&bytes)
                .map_err(|e| StateError::CorruptCatalog(e.to_string()))?,
            None => Catalog::default(),
        };
        let assignments = load(&meta, ASSIGNMENTS_KEY)?;
        let placements = load(&meta, PLACEMENTS_KEY)?;
        let (catalog_version, _) = watch::channel(0);
        let tables = Tables::new(db.clone(), table_files);
        let dead_letters = DeadLetterQueue::open(&db, DEFAULT_MAX_LETTERS)?;
        for def in catalog.tables.values() {
            if def.kafka().is_some() {
                continue;
            }
            if let Some(store) = tables.existing(&def.name)? {
                let converted = store.migrate_legacy(&def.order_by())?;
                if converted > 0 {
                    tracing::info!(table = %def.name, blocks = converted, "converted stored blocks to parts");
                }
            }
        }
        Ok(NodeState {
            tables,
            dead_letters,
            db,
            meta,
            catalog: RwLock::new(Arc::new(catalog)),
            assignments: RwLock::new(Arc::new(assignments)),
            placements: RwLock::new(Arc::new(placements)),
            catalog_version,
            config_collections: RwLock::new(Arc::default()),
        })
    }

    /// Sets the config file's named collections (at start, before serving).
    pub fn set_config_collections(&self, collections: ConfigCollections) {
        match self.config_collections.write() {
            Ok(mut guard) => *guard = Arc::new(collections),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(collections),
        }
    }

    pub fn config_collections(&self) -> Arc<ConfigCollections> {
        match self.config_collections.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
            // A dropped table loses its data and its group; one created under a dropped
            // table's name starts empty, in a group of its own.
            let replaced = match cmd {
                CatalogCommand::DropTable { name, .. } => Some(name.as_str()),
                CatalogCommand::CreateTable { def, .. } => Some(def.name.as_str()),
                _ => None,
            };
            if let Some(name) = replaced {
                self.tables.drop_table(name)?;
                self.set_placement(name, None)?;
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
        Ok(self.tables.get(&block.table)?.apply(
            block,
            &def.order_by(),
            def.dedup_window(),
            writer,
        )?)
    }

    /// Moves a source partition's stored position in `table` (see `TableStore::set_position`).
    pub fn set_position(
        &self,
        table: &str,
        key: &crate::table::PositionKey,
        kafka_table: &str,
        next_offset: i64,
        fence_epoch: u64,
    ) -> Result<Option<i64>, StateError> {
        if self.catalog().table(table).is_none() {
            return Err(StateError::NoTable(table.to_string()));
        }
        Ok(self
            .tables
            .get(table)?
            .set_position(key, kafka_table, next_offset, fence_epoch)?)
    }

    /// Wakes whoever watches the catalog (the ingest supervisor) without a catalog change,
    /// e.g. when the cluster's membership changed.
    pub fn notify(&self) {
        self.catalog_version.send_modify(|v| *v += 1);
    }

    /// The state of the `meta` group (catalog, cluster id, assignment, placements) as
    /// key/value pairs: the content of its Raft snapshots.
    pub fn export_meta(&self) -> Result<StateImage, StateError> {
        Ok(StateImage {
            trees: vec![image_of(META_TREE, &self.meta)?],
            files: Vec::new(),
        })
    }

    /// Replaces the `meta` group's state by an image (a snapshot from its leader).
    pub fn import_meta(&self, image: &StateImage) -> Result<(), StateError> {
        let mut guard = self.catalog.write().map_err(|_| StateError::Poisoned)?;
        let tree = only_tree(image, META_TREE)?;
        if !image.files.is_empty() {
            return Err(StateError::CorruptCatalog(format!(
                "a snapshot of the meta group names {} files; it has none",
                image.files.len()
            )));
        }
        replace_tree(&self.meta, tree)?;
        self.db.flush()?;
        let catalog = match self.meta.get(CATALOG_KEY)? {
            Some(bytes) => serde_json::from_slice::<Catalog>(&bytes)
                .map_err(|e| StateError::CorruptCatalog(e.to_string()))?,
            None => Catalog::default(),
        };
        *guard = Arc::new(catalog);
        let assignments = load(&self.meta, ASSIGNMENTS_KEY)?;
        match self.assignments.write() {
            Ok(mut a) => *a = Arc::new(assignments),
            Err(_) => return Err(StateError::Poisoned),
        }
        let placements = load(&self.meta, PLACEMENTS_KEY)?;
        match self.placements.write() {
            Ok(mut p) => *p = Arc::new(placements),
            Err(_) => return Err(StateError::Poisoned),
        }
        self.catalog_version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Pins one table's replica for a snapshot of its data group: its sled pairs (part
    /// list, positions, dedup window, epochs, writer log), and its part files hard-linked
    /// into `dir` (empty, on the same filesystem). No rows are copied.
    pub fn export_table(&self, table: &str, dir: &Path) -> Result<StateImage, StateError> {
        let image = self.tables.get(table)?.pin_image(dir)?;
        Ok(StateImage {
            trees: vec![ImageTree {
                name: format!("{TABLE_TREE_PREFIX}{table}"),
                pairs: image.pairs,
            }],
            files: image.files,
        })
    }

    /// Replaces one table's replica by an image (a snapshot from its group's leader) whose
    /// files are all in `dir`; the table takes them from there. The switch is atomic.
    pub fn import_table(
        &self,
        table: &str,
        image: StateImage,
        dir: &Path,
    ) -> Result<(), StateError> {
        let name = format!("{TABLE_TREE_PREFIX}{table}");
        only_tree(&image, &name)?;
        let StateImage { trees, files } = image;
        let pairs = trees
            .into_iter()
            .next()
            .map(|t| t.pairs)
            .unwrap_or_default();
        let store = self.tables.get(table)?;
        store.install_image(&TableImage { pairs, files }, dir)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every table's placement.
    pub fn placements(&self) -> Arc<Placements> {
        match self.placements.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies a `Place` entry: a table's placement, or none once it is gone.
    pub fn set_placement(&self, table: &str, next: Option<&Placement>) -> Result<(), StateError> {
        let mut guard = self.placements.write().map_err(|_| StateError::Poisoned)?;
        let mut placements = Placements::clone(&guard);
        match next {
            Some(p) => {
                placements.tables.insert(table.to_string(), p.clone());
            }
            None => {
                if placements.tables.remove(table).is_none() {
                    return Ok(());
                }
            }
        }
        let bytes = serde_json::to_vec(&placements)
            .map_err(|e| StateError::CorruptCatalog(e.to_string()))?;
        self.meta.insert(PLACEMENTS_KEY, bytes)?;
        self.db.flush()?;
        *guard = Arc::new(placements);
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

    pub fn row_count(&self, table: &str) -> Result<u64, StateError> {
        Ok(self.tables.get(table)?.row_count()?)
    }
}
