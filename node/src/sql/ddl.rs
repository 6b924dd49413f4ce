//! Parsed `CREATE TABLE` to a catalog table definition: types typed, engine arguments and
//! settings validated. Errors name the column, setting or engine at fault.

use crate::catalog::{
    Catalog, ChType, Column, Engine, KafkaSettings, MergeTreeSettings, SettingsError, TableDef,
    TypeError,
};

use super::{CreateTable, EngineArg};

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
            let mut pairs = Vec::new();
            let args = &create.engine.args;
            if let [EngineArg::Ident(collection)] = args.as_slice() {
                return Err(DdlError::NoNamedCollection {
                    table,
                    collection: collection.clone(),
                });
            }
            if args.len() > KAFKA_POSITIONAL.len() {
                return Err(DdlError::KafkaArgs {
                    table,
                    max: KAFKA_POSITIONAL.len(),
                    got: args.len(),
                });
            }
            for (name, arg) in KAFKA_POSITIONAL.iter().zip(args) {
                let value = match arg {
                    EngineArg::String(s) | EngineArg::Number(s) | EngineArg::Ident(s) => s,
                };
                pairs.push((name.to_string(), value.clone()));
            }
            pairs.extend(create.settings.iter().cloned());
            if !create.order_by.is_empty() {
                return Err(DdlError::Invalid {
                    table,
                    reason: "engine Kafka takes no ORDER BY".into(),
                });
            }
            Engine::Kafka(Box::new(
                KafkaSettings::from_pairs(&pairs).map_err(settings_error)?,
            ))
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
