//! SELECTs over stored tables and `system.*` tables, through Apache DataFusion; and the
//! materialized views run over each ingested block.
//!
//! Queries read this node's replica of a table, or a member's when this node holds none.
//! Must not import `rdkafka` or `actix`.

#[cfg(test)]
mod altered_parts;
pub mod display;
pub mod functions;
pub mod named_collections;
pub mod parts_scan;
pub mod provider;
pub mod remote_scan;
pub mod rewrite;
pub mod source;
pub mod system_tables;
pub mod views;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use sqlparser::ast::Statement as SqlStatement;

use crate::catalog::Engine;
use crate::sql::DEFAULT_DATABASE;
use crate::state::NodeState;
use source::{ClusterTables, SourceError, TableSource};

const CATALOG_NAME: &str = "sluice";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("{0}")]
    Function(#[from] functions::FunctionError),
    #[error("view {view}: {reason}")]
    View { view: String, reason: String },
    #[error("table {0} is a Kafka table: reading it directly would consume its messages; query the target table of a materialized view instead")]
    KafkaTable(String),
    #[error("table {0} does not exist")]
    NoTable(String),
    #[error("{0}")]
    Internal(String),
    /// The cluster could not serve a read (no replica answered, no leader).
    #[error("{what}: {source}")]
    Cluster {
        what: String,
        #[source]
        source: SourceError,
    },
}

/// DataFusion settings for Sluice: identifiers are case-sensitive, as in ClickHouse.
pub fn session_config(partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_DATABASE)
        .with_target_partitions(partitions)
        .with_information_schema(false);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    config
}

/// What every query of this node runs with: the local filesystem its parts are read
/// from, and one memory pool of `memory_limit_bytes` shared by all its running queries.
/// A query that needs more than its share spills its sorts and aggregations to disk, or
/// fails with DataFusion's "Resources exhausted" error; the node goes on.
pub fn query_runtime(memory_limit_bytes: usize) -> Result<Arc<RuntimeEnv>, QueryError> {
    // Names the largest consumers in the error of a query that ran out.
    let top = NonZeroUsize::MIN.saturating_add(4);
    let pool = TrackConsumersPool::new(FairSpillPool::new(memory_limit_bytes), top);
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()?)
}

/// A query's answer.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

pub struct QueryEngine {
    state: Arc<NodeState>,
    tables: Arc<dyn TableSource>,
    cluster: Arc<dyn ClusterTables>,
    runtime: Arc<RuntimeEnv>,
}

impl QueryEngine {
    pub fn new(
        state: Arc<NodeState>,
        tables: Arc<dyn TableSource>,
        cluster: Arc<dyn ClusterTables>,
        runtime: Arc<RuntimeEnv>,
    ) -> QueryEngine {
        QueryEngine {
            state,
            tables,
            cluster,
            runtime,
        }
    }

    pub async fn execute(&self, mut statement: SqlStatement) -> Result<QueryResult, QueryError> {
        let dotted: BTreeSet<String> = system_tables::dotted_columns().into_iter().collect();
        let settings = rewrite::rewrite_query(&mut statement, &dotted);
        functions::prepare(&mut statement)?;
        let linearizable = settings.iter().any(|s| {
            s.key.to_string() == "select_sequential_consistency" && s.value.to_string() == "1"
        });
        if linearizable {
            self.tables
                .catalog_barrier()
                .await
                .map_err(|source| QueryError::Cluster {
                    what: "waiting for the catalog (select_sequential_consistency)".into(),
                    source,
                })?;
        }
        let referenced = rewrite::referenced_tables(&mut statement);
        let catalog = self.state.catalog();
        for name in &referenced {
            let plain = name
                .strip_prefix(&format!("{DEFAULT_DATABASE}."))
                .unwrap_or(name);
            if let Some(t) = catalog.table(plain) {
                if t.kafka().is_some() {
                    return Err(QueryError::KafkaTable(plain.to_string()));
                }
            }
        }
        let ctx = SessionContext::new_with_config_rt(session_config(2), self.runtime.clone());
        functions::register(&ctx);
        for (name, def) in &catalog.tables {
            if let Engine::MergeTree { .. } = def.engine {
                ctx.register_table(
                    name.as_str(),
                    Arc::new(provider::StoredTable::new(
                        def.read_schema(),
                        name,
                        self.tables.clone(),
                        linearizable,
                    )),
                )?;
            }
        }
        self.register_system_tables(&ctx, &catalog, &referenced)
            .await?;
        let plan = ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement,
            )))
            .await?;
        let plan = functions::defaults::clickhouse_defaults(plan)?;
        let frame = ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(QueryResult { schema, batches })
    }

    /// `system.*` tables; those that ask every member are built only when queried.
    async fn register_system_tables(
        &self,
        ctx: &SessionContext,
        catalog: &crate::catalog::Catalog,
        referenced: &[String],
    ) -> Result<(), QueryError> {
        let wants = |t: &str| referenced.iter().any(|r| r.ends_with(t));
        let system = Arc::new(MemorySchemaProvider::new());
        ctx.catalog(CATALOG_NAME)
            .ok_or_else(|| QueryError::Internal("default catalog missing".into()))?
            .register_schema("system", system)?;
        let consumers = if wants("kafka_consumers") {
            self.cluster.consumers().await
        } else {
            Vec::new()
        };
        let consumers = system_tables::kafka_consumers(&consumers)?;
        let dead_letters = if wants("dead_letter_queue") {
            self.cluster.dead_letters().await
        } else {
            Vec::new()
        };
        let dead_letter_queue = system_tables::dead_letter_queue(dead_letters)?;
        let replicas = if wants("replicas") {
            self.cluster.replicas().await
        } else {
            Vec::new()
        };
        let replicas = system_tables::replicas(&replicas)?;
        let mut writers = Vec::new();
        if wants("writer_log") {
            for table in catalog.tables.values().filter(|t| t.kafka().is_none()) {
                let log = self
                    .tables
                    .writer_log(&table.name)
                    .await
                    .map_err(|source| QueryError::Cluster {
                        what: format!("reading the writer log of table {}", table.name),
                        source,
                    })?;
                writers.extend(log.into_iter().map(|e| (table.name.clone(), e)));
            }
        }
        let writer_log = system_tables::writer_log(&writers)?;
        let mut rows = BTreeMap::new();
        if wants("tables") {
            for table in catalog.tables.values().filter(|t| t.kafka().is_none()) {
                if let Ok(n) = self.tables.row_count(&table.name, false).await {
                    rows.insert(table.name.clone(), n);
                }
            }
        }
        let tables = system_tables::tables(catalog, &|name| rows.get(name).copied())?;
        let groups = system_tables::raft_groups(&self.cluster.raft_groups())?;
        let mut parts = Vec::new();
        if wants("parts") {
            for table in catalog.tables.values().filter(|t| t.kafka().is_none()) {
                if let Ok(Some(store)) = self.state.tables.existing(&table.name) {
                    let held = store
                        .parts()
                        .map_err(|e| QueryError::Internal(e.to_string()))?;
                    parts.extend(held.into_iter().map(|p| (table.name.clone(), p)));
                }
            }
        }
        let parts = system_tables::parts(&self.cluster.node_name(), &parts)?;
        let offset_resets = system_tables::kafka_offset_resets(catalog)?;
        let named_collections =
            named_collections::batch(catalog, &self.state.config_collections())?;
        for (name, batch) in [
            ("kafka_consumers", consumers),
            ("dead_letter_queue", dead_letter_queue),
            ("tables", tables),
            ("replicas", replicas),
            ("writer_log", writer_log),
            ("raft_groups", groups),
            ("parts", parts),
            ("kafka_offset_resets", offset_resets),
            ("named_collections", named_collections),
        ] {
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
            ctx.register_table(TableReference::partial("system", name), Arc::new(table))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let k: Vec<i64> = (0..n).collect();
        let s: Vec<String> = k
            .iter()
            .map(|k| format!("a string of some length {k:>12}"))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(k)),
                Arc::new(StringArray::from(s)),
            ],
        )
        .expect("batch")
    }

    #[tokio::test]
    async fn a_query_over_the_memory_limit_fails_and_the_next_one_runs() {
        let runtime = query_runtime(16 * 1024 * 1024).expect("runtime");
        let ctx = SessionContext::new_with_config_rt(session_config(2), runtime);
        let big = rows(1_000_000);
        let table = MemTable::try_new(big.schema(), vec![vec![big]]).expect("table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        // A hash join's build side cannot spill: it must fit in the pool.
        let err = ctx
            .sql("SELECT count(*) FROM t a JOIN t b ON a.s = b.s")
            .await
            .expect("plans")
            .collect()
            .await
            .expect_err("over the limit");
        assert!(err.to_string().contains("Resources exhausted"), "{err}");
        let small = ctx
            .sql("SELECT count(*) AS c FROM t WHERE k < 10")
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs within the limit");
        assert_eq!(small[0].num_rows(), 1);
    }
}
