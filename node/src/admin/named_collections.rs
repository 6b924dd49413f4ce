//! Runs the named-collection statements and `SHOW CREATE`.
//!
//! `ALTER NAMED COLLECTION` resolves again, here, the settings of every table that uses
//! the collection (schemas compiled, broker hosts checked, as at CREATE) and replicates
//! the collection and those tables in one catalog command: the ingest supervisor sees the
//! tables' new settings and restarts their consumers at a block boundary, from their
//! stored positions. A table the change would break refuses the whole ALTER, naming it.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::executor::{ExecError, ExecOutput, Executor};
use crate::catalog::named_collections::{CollectionError, CollectionSource, NamedCollection};
use crate::catalog::{CatalogCommand, CatalogOutcome, Engine};
use crate::query::{QueryError, QueryResult};
use crate::sql::ddl::resolve_kafka;
use crate::sql::named_collections::CollectionStatement;
use crate::sql::show_create::{table_ddl, view_ddl, ObjectKind, ShowCreate};

impl Executor {
    pub(super) async fn named_collection(
        &self,
        statement: CollectionStatement,
    ) -> Result<ExecOutput, ExecError> {
        let catalog = self.state.catalog();
        let config = self.state.config_collections();
        let command = match statement {
            CollectionStatement::Show => {
                let names: std::collections::BTreeSet<&str> = catalog
                    .named_collections
                    .keys()
                    .chain(config.keys())
                    .map(String::as_str)
                    .collect();
                return Ok(ExecOutput::Rows(single_column(
                    "name",
                    names.into_iter().collect(),
                )?));
            }
            CollectionStatement::Create {
                name,
                if_not_exists,
                entries,
            } => {
                // One name space: a table using `name` must find one collection.
                if config.contains_key(&name) {
                    if if_not_exists {
                        return Ok(ExecOutput::Done("Ok. (already exists)".into()));
                    }
                    return Err(CollectionError::Exists(name).into());
                }
                CatalogCommand::CreateNamedCollection {
                    collection: NamedCollection::new(name, entries, CollectionSource::Sql)?,
                    if_not_exists,
                }
            }
            CollectionStatement::Drop { name, if_exists } => {
                if config.contains_key(&name) {
                    return Err(CollectionError::FromConfig(name).into());
                }
                CatalogCommand::DropNamedCollection { name, if_exists }
            }
            CollectionStatement::Alter {
                name,
                if_exists,
                change,
            } => {
                if config.contains_key(&name) {
                    return Err(CollectionError::FromConfig(name).into());
                }
                let Some(before) = catalog.named_collections.get(&name) else {
                    if if_exists {
                        return Ok(ExecOutput::Done("Ok. (nothing to change)".into()));
                    }
                    return Err(CollectionError::Missing(name).into());
                };
                let after = before.altered(&change)?;
                let mut tables = Vec::new();
                for table_name in catalog.tables_using_collection(&name) {
                    let Some(table) = catalog.table(&table_name) else {
                        continue;
                    };
                    let Some(declaration) = table.kafka().and_then(|k| k.declaration.clone())
                    else {
                        continue;
                    };
                    let mut def = table.clone();
                    def.engine = Engine::Kafka(Box::new(resolve_kafka(
                        &table_name,
                        &declaration,
                        Some(&after),
                    )?));
                    crate::format::prepare_table(&mut def, &self.format_schema_path)?;
                    crate::ingest::preflight::check_new_table(self.sink.defaults(), &def).await?;
                    tables.push(def);
                }
                let count = tables.len();
                tracing::info!(collection = %name, tables = count, "altering named collection");
                self.apply(CatalogCommand::AlterNamedCollection {
                    before: before.clone(),
                    after,
                    tables,
                })
                .await?;
                return Ok(ExecOutput::Done(match count {
                    0 => "Ok.".to_string(),
                    n => format!(
                        "Ok. {n} table(s) using it restart their consumers with the new settings."
                    ),
                }));
            }
        };
        Ok(ExecOutput::Done(match self.apply(command).await? {
            CatalogOutcome::Changed => "Ok.".into(),
            CatalogOutcome::Unchanged => "Ok. (nothing to change)".into(),
        }))
    }

    /// The DDL of a table, view or collection, secrets masked; one `statement` column, as
    /// ClickHouse answers.
    // `ExecError` is the executor's one error type, large because of its Kafka variants;
    // every statement answers with it, as the async ones do.
    #[allow(clippy::result_large_err)]
    pub(super) fn show_create(&self, show: ShowCreate) -> Result<ExecOutput, ExecError> {
        let catalog = self.state.catalog();
        let view = || catalog.views.get(&show.name).map(view_ddl);
        let text = match show.kind {
            ObjectKind::Table => catalog.table(&show.name).map(table_ddl).or_else(view),
            ObjectKind::View => view(),
            ObjectKind::NamedCollection => {
                let config = self.state.config_collections();
                let found = catalog
                    .named_collections
                    .get(&show.name)
                    .or_else(|| config.get(&show.name))
                    .map(NamedCollection::create_query);
                return match found {
                    Some(text) => Ok(ExecOutput::Rows(single_column(
                        "statement",
                        vec![text.as_str()],
                    )?)),
                    None => Err(CollectionError::Missing(show.name).into()),
                };
            }
        };
        let text = text.ok_or(QueryError::NoTable(show.name))?;
        Ok(ExecOutput::Rows(single_column(
            "statement",
            vec![text.as_str()],
        )?))
    }
}

fn single_column(name: &str, values: Vec<&str>) -> Result<QueryResult, QueryError> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))])?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
    })
}
