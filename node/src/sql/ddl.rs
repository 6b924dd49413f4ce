//! Parsed `CREATE TABLE` to a catalog table definition: types typed, engine arguments and
//! settings validated. Errors name the column, setting or engine at fault.

use crate::catalog::{
    Catalog, ChType, Column, Engine, KafkaSettings, MergeTreeSettings, SettingsError, TableDef,
    TypeError,
};

use super::{CreateTable, EngineArg};
use crate::catalog::named_collections::ConfigCollections;
use crate::catalog::named_collections::{
    self as collections, CollectionError, CollectionSource, KafkaDeclaration, NamedCollection,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DdlError {
    #[error("table {table}: column {column}: {source}")]
    Type {
        table: String,
        column: String,
        #[source]
        source: TypeError,
    },
    #[error("table {table}: {source}")]
    Settings {
        table: String,
        #[source]
        source: SettingsError,
    },
    #[error(
        "table {table}: unknown engine {engine} (supported: Kafka, MergeTree, ReplicatedMergeTree)"
    )]
    UnknownEngine { table: String, engine: String },
    #[error("table {table}: engine Kafka takes at most {max} positional arguments (broker list, topic list, group, format), got {got}")]
    KafkaArgs {
        table: String,
        max: usize,
        got: usize,
    },
    #[error("table {table}: named collection {collection} does not exist")]
    NoNamedCollection { table: String, collection: String },
    #[error("table {table}: named collection {collection}: {source}")]
    CollectionSettings {
        table: String,
        collection: String,
        #[source]
        source: SettingsError,
    },
    #[error("table {table}: {source}")]
    Collection {
        table: String,
        #[source]
        source: CollectionError,
    },
    #[error("table {table}: {reason}")]
    Invalid { table: String, reason: String },
    #[error("table {table}: AS {source_table}: table {source_table} does not exist")]
    NoSourceTable { table: String, source_table: String },
}

/// Positional `Kafka(...)` arguments, in ClickHouse's order.
const KAFKA_POSITIONAL: [&str; 4] = [
    "kafka_broker_list",
    "kafka_topic_list",
    "kafka_group_name",
    "kafka_format",
];

pub fn table_def(create: &CreateTable, catalog: &Catalog) -> Result<TableDef, DdlError> {
    table_def_with(create, catalog, &ConfigCollections::new())
}

/// The table a CREATE makes, with `config`: the named collections of the node's config
/// file, used when the catalog has none of the name.
pub fn table_def_with(
    create: &CreateTable,
    catalog: &Catalog,
    config: &ConfigCollections,
) -> Result<TableDef, DdlError> {
    let table = create.name.clone();
    let columns = match &create.as_table {
        Some(source) => catalog
            .table(source)
            .ok_or_else(|| DdlError::NoSourceTable {
                table: table.clone(),
                source_table: source.clone(),
            })?
            .columns
            .clone(),
        None => create
            .columns
            .iter()
            .map(|c| {
                ChType::parse(&c.type_text)
                    .map(|ty| Column {
                        name: c.name.clone(),
                        ty,
                    })
                    .map_err(|source| DdlError::Type {
                        table: table.clone(),
                        column: c.name.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let settings_error = |source| DdlError::Settings {
        table: table.clone(),
        source,
    };
    let engine = match create.engine.name.as_str() {
        "Kafka" => {
            if !create.order_by.is_empty() {
                return Err(DdlError::Invalid {
                    table,
                    reason: "engine Kafka takes no ORDER BY".into(),
                });
            }
            let declaration = kafka_declaration(&table, create)?;
            let collection = match &declaration.collection {
                None => None,
                Some(name) => Some(find_collection(&table, name, catalog, config)?),
            };
            let mut declaration = declaration;
            declaration.from_config =
                collection.is_some_and(|c| c.source == CollectionSource::Config);
            Engine::Kafka(Box::new(resolve_kafka(&table, &declaration, collection)?))
        }
        name @ ("MergeTree" | "ReplicatedMergeTree") => {
            if name == "MergeTree" && !create.engine.args.is_empty() {
                return Err(DdlError::Invalid {
                    table,
                    reason: "MergeTree() takes no arguments".into(),
                });
            }
            for key in &create.order_by {
                let plain = key.trim_matches('`').trim_matches('"');
                if !columns.iter().any(|c| c.name == plain) {
                    return Err(DdlError::Invalid {
                        table,
                        reason: format!("ORDER BY {key}: no such column"),
                    });
                }
            }
            Engine::MergeTree {
                engine_name: name.to_string(),
                order_by: create.order_by.clone(),
                settings: MergeTreeSettings::from_pairs(&create.settings)
                    .map_err(settings_error)?,
            }
        }
        other => {
            return Err(DdlError::UnknownEngine {
                table,
                engine: other.to_string(),
            })
        }
    };
    Ok(TableDef {
        name: create.name.clone(),
        columns,
        engine,
        detached: false,
        layout: Default::default(),
    })
}

/// How the CREATE declared a Kafka table: `Kafka()`, `Kafka('brokers', 'topics', …)`
/// or `Kafka(collection, key = value, …)`, and its SETTINGS.
fn kafka_declaration(table: &str, create: &CreateTable) -> Result<KafkaDeclaration, DdlError> {
    let args = &create.engine.args;
    let mut declaration = KafkaDeclaration {
        settings: create.settings.clone(),
        ..Default::default()
    };
    let invalid = |reason: String| DdlError::Invalid {
        table: table.to_string(),
        reason,
    };
    match args.first() {
        Some(EngineArg::Ident(name)) => {
            declaration.collection = Some(name.clone());
            for arg in &args[1..] {
                match arg {
                    EngineArg::Setting(k, v) => declaration.overrides.push((k.clone(), v.clone())),
                    _ => {
                        return Err(invalid(format!(
                            "Kafka({name}, …): after a named collection, arguments are key = value overrides"
                        )))
                    }
                }
            }
        }
        _ => {
            if args.len() > KAFKA_POSITIONAL.len() {
                return Err(DdlError::KafkaArgs {
                    table: table.to_string(),
                    max: KAFKA_POSITIONAL.len(),
                    got: args.len(),
                });
            }
            for arg in args {
                match arg {
                    EngineArg::String(s) | EngineArg::Number(s) => {
                        declaration.positional.push(s.clone())
                    }
                    EngineArg::Ident(_) | EngineArg::Setting(..) => {
                        return Err(invalid(
                            "engine Kafka: a bare name or key = value argument must follow a named collection given first, as Kafka(collection, key = value, …)".into(),
                        ))
                    }
                }
            }
        }
    }
    // A key given twice by the table itself is ambiguous.
    let mut seen = std::collections::BTreeSet::new();
    for (key, _) in declaration.overrides.iter().chain(&declaration.settings) {
        if !seen.insert(key.as_str()) {
            return Err(DdlError::Settings {
                table: table.to_string(),
                source: SettingsError::Duplicate(key.clone()),
            });
        }
    }
    Ok(declaration)
}

/// The collection of that name: the catalog's, else the node config file's.
pub fn find_collection<'a>(
    table: &str,
    name: &str,
    catalog: &'a Catalog,
    config: &'a ConfigCollections,
) -> Result<&'a NamedCollection, DdlError> {
    catalog
        .named_collections
        .get(name)
        .or_else(|| config.get(name))
        .ok_or_else(|| DdlError::NoNamedCollection {
            table: table.to_string(),
            collection: name.to_string(),
        })
}

/// A Kafka table's settings from its declaration and, if it names one, its collection's
/// current keys. Errors name the collection when the key at fault came from it, and never
/// show a secret's value.
pub fn resolve_kafka(
    table: &str,
    declaration: &KafkaDeclaration,
    collection: Option<&NamedCollection>,
) -> Result<KafkaSettings, DdlError> {
    let pairs = match collection {
        Some(c) => {
            collections::resolve(table, c, declaration).map_err(|source| DdlError::Collection {
                table: table.to_string(),
                source,
            })?
        }
        None => {
            let mut pairs: Vec<(String, String)> = KAFKA_POSITIONAL
                .iter()
                .zip(&declaration.positional)
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            pairs.extend(declaration.settings.iter().cloned());
            pairs
        }
    };
    let mut settings = KafkaSettings::from_pairs(&pairs).map_err(|e| {
        let source = hide_secret(e);
        let own = |key: &str| {
            declaration
                .overrides
                .iter()
                .chain(&declaration.settings)
                .any(|(k, _)| k == key)
        };
        let key = match &source {
            SettingsError::Unknown(k) | SettingsError::Duplicate(k) => Some(k.as_str()),
            SettingsError::Invalid { name, .. } => Some(name.as_str()),
            _ => None,
        };
        match (collection, key) {
            (Some(c), key) if key.is_none_or(|k| !own(k)) => DdlError::CollectionSettings {
                table: table.to_string(),
                collection: c.name.clone(),
                source,
            },
            _ => DdlError::Settings {
                table: table.to_string(),
                source,
            },
        }
    })?;
    settings.declaration = Some(declaration.clone());
    Ok(settings)
}

/// The error with a secret setting's value replaced by `[HIDDEN]`.
fn hide_secret(error: SettingsError) -> SettingsError {
    match error {
        SettingsError::Invalid {
            name,
            value,
            reason,
        } => SettingsError::Invalid {
            value: collections::masked(&name, &value).to_string(),
            name,
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{parse, Statement};

    fn create(sql: &str) -> CreateTable {
        match parse(sql).expect("parses") {
            Statement::CreateTable(c) => c,
            other => panic!("not a create table: {other:?}"),
        }
    }

    #[test]
    fn positional_and_named_settings_merge() {
        let c = create(
            "CREATE TABLE q (a UInt8) ENGINE = Kafka('b:9092', 'out', 'g', 'JSONEachRow') SETTINGS kafka_num_consumers = 1",
        );
        let def = table_def(&c, &Catalog::default()).expect("valid");
        let s = def.kafka().expect("kafka");
        assert_eq!(s.broker_list, "b:9092");
        assert_eq!(s.topic_list, vec!["out".to_string()]);
    }

    #[test]
    fn errors_name_the_part() {
        let c = create("CREATE TABLE q (a UInt8, b Strng) ENGINE = MergeTree() ORDER BY a");
        let err = table_def(&c, &Catalog::default()).expect_err("bad type");
        assert_eq!(
            err.to_string(),
            "table q: column b: unknown type 'Strng' (supported: Int8..Int64, UInt8..UInt64, Float32, Float64, Bool, String, Date, DateTime, Enum, Enum8, Enum16, LowCardinality(T), Nullable(T), Array(T))"
        );
        let c = create("CREATE TABLE q (a UInt8) ENGINE = Log");
        assert!(matches!(
            table_def(&c, &Catalog::default()),
            Err(DdlError::UnknownEngine { .. })
        ));
        let c = create("CREATE TABLE q AS nothere ENGINE = MergeTree() ORDER BY a");
        assert!(matches!(
            table_def(&c, &Catalog::default()),
            Err(DdlError::NoSourceTable { .. })
        ));
        let c = create("CREATE TABLE q (a UInt8) ENGINE = MergeTree() ORDER BY b");
        assert!(table_def(&c, &Catalog::default())
            .expect_err("bad key")
            .to_string()
            .contains("ORDER BY b"));
        let c = create("CREATE TABLE q (a UInt8) ENGINE = Kafka() SETTINGS kafka_topic_list = 't'");
        assert!(table_def(&c, &Catalog::default())
            .expect_err("missing")
            .to_string()
            .contains("kafka_broker_list"));
    }
}
