//! A stored table as a DataFusion `TableProvider`: the seam between storage and SQL.
//!
//! A node that holds a replica of the table scans its parts; any other node streams the
//! rows from a member of the table's group. Either way a query holds a few batches of
//! the table at a time, never the whole of it.

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Statistics};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::ExecutionPlan;

use super::parts_scan::scan_parts;
use super::remote_scan::RemoteScan;
use super::source::TableSource;
use crate::table::TableStore;

pub struct StoredTable {
    /// The columns as queries see them.
    schema: SchemaRef,
    /// The same with what reading the parts needs after an ALTER (`TableDef::read_schema`).
    read_schema: SchemaRef,
    name: String,
    source: Arc<dyn TableSource>,
    /// `select_sequential_consistency = 1`: see every write acknowledged before the query.
    linearizable: bool,
}

impl StoredTable {
    pub fn new(
        schema: SchemaRef,
        name: &str,
        source: Arc<dyn TableSource>,
        linearizable: bool,
    ) -> StoredTable {
        let read_schema = schema;
        let schema = Arc::new(arrow::datatypes::Schema::new(
            read_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_metadata(Default::default()))
                .collect::<Vec<_>>(),
        ));
        StoredTable {
            schema,
            read_schema,
            name: name.to_string(),
            source,
            linearizable,
        }
    }

    /// This node's replica, if it holds one, after the read barrier when the query asks
    /// to see every acknowledged write.
    async fn local_for_read(&self) -> datafusion::error::Result<Option<Arc<TableStore>>> {
        let Some(store) = self.source.local_replica(&self.name) else {
            return Ok(None);
        };
        if self.linearizable {
            self.source
                .replica_barrier(&self.name)
                .await
                .map_err(DataFusionError::External)?;
        }
        Ok(Some(store))
    }

    /// The table's row count, from this node's replica or from a member of its group.
    async fn row_count(&self) -> datafusion::error::Result<u64> {
        if let Some(store) = self.local_for_read().await? {
            return store.row_count().map_err(external);
        }
        self.source
            .row_count(&self.name, self.linearizable)
            .await
            .map_err(DataFusionError::External)
    }
}

impl fmt::Debug for StoredTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTable")
            .field("table", &self.name)
            .finish()
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        let rows = self.source.local_replica(&self.name)?.row_count().ok()?;
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Exact(usize::try_from(rows).ok()?);
        Some(stats)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        // A query that reads no column (count(), `SELECT 1 FROM t`) needs only the number
        // of rows, which the table keeps with its parts: reading them for it made each
        // count() cost as much as a full scan.
        if projection.is_some_and(|p| p.is_empty()) {
            let rows = self.row_count().await?;
            let rows = usize::try_from(rows).map_err(external)?;
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            let batch = RecordBatch::try_new_with_options(schema.clone(), vec![], &options)?;
            return Ok(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                schema,
                None,
            )?);
        }
        if let Some(store) = self.local_for_read().await? {
            let parts = store.parts().map_err(external)?;
            let exec = scan_parts(
                state,
                &self.name,
                &self.read_schema,
                parts,
                projection,
                limit,
            )?;
            return Ok(exec);
        }
        let remote = RemoteScan {
            source: self.source.clone(),
            table: self.name.clone(),
            table_schema: self.read_schema.clone(),
            schema: schema.clone(),
            projection: projection
                .cloned()
                .unwrap_or_else(|| (0..self.schema.fields().len()).collect()),
            limit,
            linearizable: self.linearizable,
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(remote)],
            None,
            [],
            false,
            limit,
        )?))
    }
}
