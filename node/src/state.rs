//! The node's state machine: the catalog and the table replicas, and the one path by
//! which writes reach them.
//!
//! A write is a catalog command or a block; `apply_*` is deterministic and durable before
//! it returns. On a single node writes apply directly; in a cluster the same functions are
//! what each replica runs, in log order.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::catalog::{Catalog, CatalogCommand, CatalogError, CatalogOutcome};
use crate::table::{ApplyOutcome, Block, PositionKey, TableError, Tables};

const CATALOG_KEY: &[u8] = b"catalog";

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
    pub tables: Tables,
    /// Bumped on every catalog change; the ingest supervisor watches it.
    catalog_version: watch::Sender<u64>,
}

impl NodeState {
    pub fn open(db: sled::Db) -> Result<NodeState, StateError> {
        let meta = db.open_tree("meta")?;
        let catalog = match meta.get(CATALOG_KEY)? {
            Some(bytes) => serde_json::from_slice::<Catalog>(&bytes)
                .map_err(|e| StateError::CorruptCatalog(e.to_string()))?,
            None => Catalog::default(),
        };
        let (catalog_version, _) = watch::channel(0);
        Ok(NodeState {
            tables: Tables::new(db.clone()),
            db,
            meta,
            catalog: RwLock::new(Arc::new(catalog)),
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

    /// Applies a block to its table's replica.
    pub fn apply_block(&self, block: &Block) -> Result<ApplyOutcome, StateError> {
        let catalog = self.catalog();
        let def = catalog
            .table(&block.table)
            .ok_or_else(|| StateError::NoTable(block.table.clone()))?;
        Ok(self
            .tables
            .get(&block.table)?
            .apply(block, def.dedup_window())?)
    }

    pub fn next_offset(&self, table: &str, key: &PositionKey) -> Result<Option<i64>, StateError> {
        Ok(self.tables.get(table)?.next_offset(key)?)
    }

    pub fn row_count(&self, table: &str) -> Result<u64, StateError> {
        Ok(self.tables.get(table)?.row_count()?)
    }
}
