//! Runs statements: DDL becomes catalog commands, SELECTs go to the query engine.
//! Shared by the SQL call and the typed calls, so both behave the same.

use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::catalog::is_kafka_envelope_column;
use crate::catalog::{CatalogCommand, CatalogError, CatalogOutcome};
use crate::cluster::{Cluster, ClusterError};
use crate::format::output::OutputFormat;
use crate::ingest::sink::{KafkaSink, SinkError};
use crate::query::{QueryEngine, QueryError, QueryResult};
use crate::sql::ddl::{table_def_with, DdlError};
use crate::sql::{self, SqlError, Statement};
use crate::state::{NodeState, StateError};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Ddl(#[from] DdlError),
    #[error(transparent)]
    Format(#[from] crate::format::PrepareError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("INSERT INTO {table}: {reason}")]
    Insert { table: String, reason: String },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Preflight(#[from] crate::ingest::preflight::PreflightError),
    #[error("ALTER TABLE {table} RESET OFFSETS refused: {reason}")]
    ResetRefused { table: String, reason: String },
    #[error("ALTER TABLE {table} RESET OFFSETS: {source}")]
    ResetKafka {
        table: String,
        #[source]
        source: crate::ingest::offset_reset::OffsetResetError,
    },
    #[error(transparent)]
    Alter(#[from] super::alter::AlterError),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Output(#[from] crate::format::output::OutputError),
    #[error(transparent)]
    Inserting(#[from] super::insert::InsertError),
    #[error(transparent)]
    NamedCollection(#[from] crate::catalog::named_collections::CollectionError),
}

impl ExecError {
    /// The catalog error inside, if the statement was refused by the catalog.
    pub fn catalog(&self) -> Option<&CatalogError> {
        match self {
            ExecError::State(StateError::Catalog(c)) => Some(c),
            ExecError::Cluster(ClusterError::Catalog(c)) => Some(c),
            _ => None,
        }
    }
}

/// What a statement returned: rows for a query, a message for DDL.
#[derive(Debug)]
pub enum ExecOutput {
    Rows(QueryResult),
    /// A query whose `FORMAT` clause says how its rows are written.
    Formatted {
        result: QueryResult,
        format: OutputFormat,
        elapsed: std::time::Duration,
    },
    Done(String),
}

pub struct Executor {
    pub state: Arc<NodeState>,
    pub cluster: Arc<Cluster>,
    pub queries: QueryEngine,
    pub sink: KafkaSink,
    /// The node-wide Kafka client properties, for the calls a statement makes itself.
    pub kafka: Arc<crate::ingest::client::KafkaClientDefaults>,
    /// Where `kafka_schema` files are read at CREATE (`format_schema_path`).
    pub format_schema_path: std::path::PathBuf,
}

/// Who a statement is run for, as recorded where it matters (offset resets): the user
/// name the caller gave, if any, and its address.
pub const UNKNOWN_CALLER: &str = "unknown";

impl Executor {
    pub async fn execute_sql(&self, text: &str, caller: &str) -> Result<ExecOutput, ExecError> {
        let statement = sql::parse(text)?;
        self.execute_for(statement, caller).await
    }

    pub async fn execute(&self, statement: Statement) -> Result<ExecOutput, ExecError> {
        self.execute_for(statement, UNKNOWN_CALLER).await
    }

    /// Runs a statement for `caller` (see `UNKNOWN_CALLER`).
    pub async fn execute_for(
        &self,
        statement: Statement,
        caller: &str,
    ) -> Result<ExecOutput, ExecError> {
        let catalog = self.state.catalog();
        let command = match statement {
            Statement::ResetOffsets(reset) => {
                let moves = self.reset_offsets(reset, caller).await?;
                return Ok(ExecOutput::Rows(super::reset_offsets::moves_result(
                    &moves,
                )?));
            }
            Statement::Query { statement, format } => {
                let format = format
                    .map(|name| OutputFormat::from_name(&name))
                    .transpose()?;
                let started = std::time::Instant::now();
                let result = self.queries.execute(*statement).await?;
                return Ok(match format {
                    Some(format) => ExecOutput::Formatted {
                        result,
                        format,
                        elapsed: started.elapsed(),
                    },
                    None => ExecOutput::Rows(result),
                });
            }
            Statement::Insert(insert) => {
                return self
                    .insert(insert, futures::stream::empty())
                    .await
                    .map(ExecOutput::Done)
            }
            Statement::NamedCollection(statement) => return self.named_collection(statement).await,
            Statement::ShowCreate(show) => return self.show_create(show),
            Statement::ShowTables => {
                let names: Vec<&str> = catalog
                    .tables
                    .keys()
                    .chain(catalog.views.keys())
                    .map(String::as_str)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                return Ok(ExecOutput::Rows(single_column("name", names)?));
            }
            Statement::Describe { name } => {
                let table = catalog
                    .table(&name)
                    .ok_or(QueryError::NoTable(name.clone()))?;
                let schema = Arc::new(arrow::datatypes::Schema::new(vec![
                    arrow::datatypes::Field::new("name", arrow::datatypes::DataType::Utf8, false),
                    arrow::datatypes::Field::new("type", arrow::datatypes::DataType::Utf8, false),
                    // ClickHouse's DESCRIBE names it `comment` too (ALTER … COMMENT COLUMN).
                    arrow::datatypes::Field::new(
                        "comment",
                        arrow::datatypes::DataType::Utf8,
                        false,
                    ),
                ]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(arrow::array::StringArray::from(
                            table
                                .columns
                                .iter()
                                .map(|c| c.name.clone())
                                .collect::<Vec<_>>(),
                        )),
                        Arc::new(arrow::array::StringArray::from(
                            table
                                .columns
                                .iter()
                                .map(|c| c.ty.to_string())
                                .collect::<Vec<_>>(),
                        )),
                        Arc::new(arrow::array::StringArray::from(
                            table
                                .columns
                                .iter()
                                .map(|c| table.comment(&c.name).to_string())
                                .collect::<Vec<_>>(),
                        )),
                    ],
                )
                .map_err(QueryError::from)?;
                return Ok(ExecOutput::Rows(QueryResult {
                    schema,
                    batches: vec![batch],
                }));
            }
            Statement::CreateTable(create) => {
                let config = self.state.config_collections();
                let mut def = table_def_with(&create, &catalog, &config)?;
                // Compiled here, once, so the replicated definition carries the schema.
                crate::format::prepare_table(&mut def, &self.format_schema_path)?;
                if !(create.if_not_exists && catalog.table(&def.name).is_some()) {
                    crate::ingest::preflight::check_new_table(self.sink.defaults(), &def).await?;
                }
                CatalogCommand::CreateTable {
                    def,
                    if_not_exists: create.if_not_exists,
                }
            }
            Statement::CreateView(create) => {
                if create.if_not_exists && catalog.views.contains_key(&create.name) {
                    return Ok(ExecOutput::Done("Ok. (already exists)".into()));
                }
                CatalogCommand::CreateView {
                    def: crate::query::views::plan_view(&create, &catalog).await?,
                    if_not_exists: create.if_not_exists,
                }
            }
            Statement::Alter(alter) => super::alter::command(alter, &catalog).await?,
            Statement::DropTable { name, if_exists } => {
                CatalogCommand::DropTable { name, if_exists }
            }
            Statement::DropView { name, if_exists } => CatalogCommand::DropView { name, if_exists },
            Statement::Detach { name } => CatalogCommand::SetDetached {
                name,
                detached: true,
            },
            Statement::Attach { name } => CatalogCommand::SetDetached {
                name,
                detached: false,
            },
        };
        let outcome = self.apply(command).await?;
        Ok(ExecOutput::Done(match outcome {
            CatalogOutcome::Changed => "Ok.".into(),
            CatalogOutcome::Unchanged => "Ok. (nothing to change)".into(),
        }))
    }

    /// Runs an INSERT; `data` is the client's stream of rows for `FORMAT <name>` (after
    /// any written inline). Rows from a query into a Kafka table go to its topic as
    /// always; everything else is `admin::insert`'s.
    pub async fn insert<S>(&self, insert: sql::Insert, data: S) -> Result<String, ExecError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, super::insert::InsertError>> + Unpin,
    {
        use super::insert::{
            fit, insert_columns, insert_data, name_rows, InsertError, InsertSettings, InsertTarget,
        };
        use futures::StreamExt as _;
        let catalog = self.state.catalog();
        let table = catalog
            .table(&insert.table)
            .ok_or(QueryError::NoTable(insert.table.clone()))?;
        let settings = InsertSettings::parse(&table.name, &insert.settings)?;
        let mut target =
            InsertTarget::new(table, catalog.clone(), &self.cluster, &self.sink, settings);
        match insert.rows {
            sql::InsertRows::Query { source, format } => {
                if table.kafka().is_some() {
                    return self
                        .insert_into_kafka(table, insert.columns, source, format)
                        .await;
                }
                let columns = insert_columns(table, &insert.columns)?;
                let result = self
                    .queries
                    .execute(sqlparser::ast::Statement::Query(source))
                    .await?;
                // The batches' own types: the plan's schema may differ in a Decimal's
                // precision, and the rows are cast to the table's types anyway.
                let schema = result
                    .batches
                    .first()
                    .map_or_else(|| result.schema.clone(), RecordBatch::schema);
                let rows = arrow::compute::concat_batches(&schema, &result.batches)
                    .map_err(QueryError::from)?;
                let named = name_rows(table, &rows, &columns)?;
                let fitted = fit(table, &named, 1)?;
                target.write(&fitted).await?;
            }
            sql::InsertRows::Data { format, inline } => {
                let columns = insert_columns(table, &insert.columns)?;
                let mut any = inline.is_some();
                let inline = futures::stream::iter(
                    inline.map(|text| Ok::<_, InsertError>(bytes::Bytes::from(text))),
                );
                let mut data = data.peekable();
                any |= std::pin::Pin::new(&mut data).peek().await.is_some();
                if !any {
                    return Err(InsertError::NoData {
                        table: table.name.clone(),
                        format: format.name(),
                    }
                    .into());
                }
                insert_data(&mut target, &columns, format, inline.chain(data)).await?;
            }
        }
        Ok(target.report.message())
    }

    /// Rows into a Kafka table: the SELECT or VALUES runs here, its columns fill the
    /// table's by position (or the listed ones), and the rows go to the topic; done once
    /// the broker acknowledged them all (at least once).
    async fn insert_into_kafka(
        &self,
        table: &crate::catalog::TableDef,
        insert_columns: Vec<String>,
        source: Box<sqlparser::ast::Query>,
        format: Option<crate::catalog::kafka_settings::Format>,
    ) -> Result<String, ExecError> {
        let failed = |reason: String| ExecError::Insert {
            table: table.name.clone(),
            reason,
        };
        let Some(kafka) = table.kafka() else {
            return Err(failed("not a Kafka table".into()));
        };
        // ClickHouse ignores the clause and writes the table's format; a clause naming
        // another format is refused rather than silently not obeyed.
        if let Some(format) = format {
            if format != kafka.format {
                return Err(failed(format!(
                    "FORMAT {format}: the table writes its kafka_format, {}",
                    kafka.format
                )));
            }
        }
        let columns: Vec<String> = if insert_columns.is_empty() {
            table.columns.iter().map(|c| c.name.clone()).collect()
        } else {
            for name in &insert_columns {
                if table.column(name).is_none() && !is_kafka_envelope_column(name) {
                    return Err(failed(format!(
                        "no column {name} in the table (besides its columns, an insert may fill the message's _key, _timestamp, _headers.name and _headers.value)"
                    )));
                }
            }
            insert_columns
        };
        let result = self
            .queries
            .execute(sqlparser::ast::Statement::Query(source))
            .await?;
        let rows = arrow::compute::concat_batches(&result.schema, &result.batches)
            .map_err(QueryError::from)?;
        if rows.num_columns() != columns.len() {
            return Err(failed(format!(
                "the rows have {} columns, the insert fills {} ({})",
                rows.num_columns(),
                columns.len(),
                columns.join(", ")
            )));
        }
        let fields: Vec<arrow::datatypes::Field> = rows
            .schema()
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, name)| arrow::datatypes::Field::new(name, f.data_type().clone(), true))
            .collect();
        let named = RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            rows.columns().to_vec(),
        )
        .map_err(QueryError::from)?;
        let conformed = crate::query::views::conform(table, &named)
            .map_err(|e| failed(format!("the rows do not fit the table's columns: {e}")))?;
        let envelope = crate::query::views::envelope(&named)
            .map_err(|e| failed(format!("the message key, timestamp or headers: {e}")))?;
        let (sent, topic) = self.sink.send(table, &conformed, envelope.as_ref()).await?;
        Ok(format!("Ok. {sent} rows sent to topic {topic}."))
    }

    pub async fn apply(&self, command: CatalogCommand) -> Result<CatalogOutcome, ExecError> {
        Ok(self.cluster.write_catalog(command).await?)
    }
}

fn single_column(name: &str, values: Vec<&str>) -> Result<QueryResult, QueryError> {
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new(name, arrow::datatypes::DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::StringArray::from(values))],
    )?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
    })
}
