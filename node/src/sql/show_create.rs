//! `SHOW CREATE [TABLE|VIEW|NAMED COLLECTION] name`: the statement that makes the object
//! again, printed from the catalog.
//!
//! The DDL parses back to the same definition, except that values of secret keys
//! (passwords, secrets, tokens, key material) are printed as `'[HIDDEN]'`, as ClickHouse
//! does. A Kafka table is printed as it was declared (its collection and overrides), not
//! with the collection's keys spelled out.

use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::{parse_table_name, SqlError, Statement, DEFAULT_DATABASE};
use crate::catalog::kafka_settings::{KafkaSettings, DEFAULT_MAX_BLOCK_SIZE};
use crate::catalog::named_collections::{masked, quote, KafkaDeclaration};
use crate::catalog::{Engine, TableDef, ViewDef, DEFAULT_DEDUP_WINDOW};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `SHOW CREATE name` and `SHOW CREATE TABLE name` (a view's name works too, as in
    /// ClickHouse).
    Table,
    View,
    NamedCollection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowCreate {
    pub kind: ObjectKind,
    pub name: String,
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// The statement, if the words ahead are `SHOW CREATE`; `None` leaves the parser as it was.
pub fn parse(p: &mut Parser) -> Result<Option<Statement>, SqlError> {
    let [first, second] = p.peek_tokens::<2>();
    if !(is_word(&first, "SHOW") && is_word(&second, "CREATE")) {
        return Ok(None);
    }
    p.next_token();
    p.next_token();
    let _ = p.parse_keyword(Keyword::TEMPORARY);
    let [a, b] = p.peek_tokens::<2>();
    let kind = if is_word(&a, "NAMED") && is_word(&b, "COLLECTION") {
        p.next_token();
        p.next_token();
        ObjectKind::NamedCollection
    } else if p.parse_keyword(Keyword::TABLE) {
        ObjectKind::Table
    } else if p.parse_keyword(Keyword::VIEW) {
        ObjectKind::View
    } else {
        ObjectKind::Table
    };
    let name = match kind {
        ObjectKind::NamedCollection => p.parse_identifier()?.value,
        _ => parse_table_name(p)?,
    };
    Ok(Some(Statement::ShowCreate(ShowCreate { kind, name })))
}

fn column_name(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

fn settings_clause(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} = {}", quote(masked(k, v))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TABLE default.name (…) ENGINE = … [ORDER BY …] [SETTINGS …]`.
pub fn table_ddl(table: &TableDef) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("    {} {}", column_name(&c.name), c.ty))
        .collect();
    let mut out = format!(
        "CREATE TABLE {DEFAULT_DATABASE}.{}\n(\n{}\n)\n",
        table.name,
        columns.join(",\n")
    );
    let (engine, settings) = match &table.engine {
        Engine::Kafka(kafka) => {
            let declaration = kafka
                .declaration
                .clone()
                .unwrap_or_else(|| declared_from(kafka));
            (kafka_engine(&declaration), declaration.settings)
        }
        Engine::MergeTree {
            engine_name,
            order_by,
            settings,
        } => {
            let keys = match order_by.as_slice() {
                [] => "tuple()".to_string(),
                [one] => one.clone(),
                many => format!("({})", many.join(", ")),
            };
            let mut pairs = Vec::new();
            if settings.dedup_window != DEFAULT_DEDUP_WINDOW {
                pairs.push((
                    "replicated_deduplication_window".to_string(),
                    settings.dedup_window.to_string(),
                ));
            }
            if settings.replicas != 0 {
                pairs.push(("replicas".to_string(), settings.replicas.to_string()));
            }
            (format!("{engine_name}()\nORDER BY {keys}"), pairs)
        }
    };
    out.push_str(&format!("ENGINE = {engine}"));
    if !settings.is_empty() {
        out.push_str(&format!("\nSETTINGS {}", settings_clause(&settings)));
    }
    out
}

fn kafka_engine(declaration: &KafkaDeclaration) -> String {
    let mut args: Vec<String> = Vec::new();
    if let Some(collection) = &declaration.collection {
        args.push(collection.clone());
        args.extend(
            declaration
                .overrides
                .iter()
                .map(|(k, v)| format!("{k} = {}", quote(masked(k, v)))),
        );
    } else {
        args.extend(declaration.positional.iter().map(|v| quote(v)));
    }
    format!("Kafka({})", args.join(", "))
}

/// The declaration of a table created before Sluice kept one: its main settings, as
/// SETTINGS.
fn declared_from(kafka: &KafkaSettings) -> KafkaDeclaration {
    let mut settings = vec![
        ("kafka_broker_list".to_string(), kafka.broker_list.clone()),
        ("kafka_topic_list".to_string(), kafka.topic_list.join(",")),
        ("kafka_group_name".to_string(), kafka.group_name.clone()),
        ("kafka_format".to_string(), kafka.format.name().to_string()),
    ];
    if let Some(id) = &kafka.client_id {
        settings.push(("kafka_client_id".into(), id.clone()));
    }
    if kafka.max_block_size != DEFAULT_MAX_BLOCK_SIZE {
        settings.push((
            "kafka_max_block_size".into(),
            kafka.max_block_size.to_string(),
        ));
    }
    for (name, value) in [
        ("kafka_security_protocol", &kafka.security_protocol),
        ("kafka_sasl_mechanism", &kafka.sasl_mechanism),
        ("kafka_sasl_username", &kafka.sasl_username),
        ("kafka_sasl_password", &kafka.sasl_password),
    ] {
        if let Some(v) = value {
            settings.push((name.to_string(), v.clone()));
        }
    }
    if let Some(schema) = &kafka.schema {
        settings.push(("kafka_schema".into(), schema.to_string()));
    }
    settings.extend(
        kafka
            .format_settings
            .non_default()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    KafkaDeclaration {
        settings,
        ..Default::default()
    }
}

/// `CREATE MATERIALIZED VIEW default.name TO default.target AS <the SELECT as written>`.
pub fn view_ddl(view: &ViewDef) -> String {
    format!(
        "CREATE MATERIALIZED VIEW {DEFAULT_DATABASE}.{} TO {DEFAULT_DATABASE}.{}\nAS {}",
        view.name,
        view.target,
        view.original_query.trim().trim_end_matches(';')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::named_collections::{
        CollectionEntry, CollectionSource, NamedCollection, HIDDEN,
    };
    use crate::catalog::Catalog;
    use crate::sql::ddl::table_def_with;
    use crate::sql::{parse, CreateTable};

    fn create(sql: &str) -> CreateTable {
        match parse(sql).expect("parses") {
            Statement::CreateTable(c) => c,
            other => panic!("not a create table: {other:?}"),
        }
    }

    fn collections() -> crate::catalog::named_collections::ConfigCollections {
        let c = NamedCollection::new(
            "kc".into(),
            vec![
                (
                    "kafka_broker_list".into(),
                    CollectionEntry {
                        value: "b:9092".into(),
                        overridable: None,
                    },
                ),
                (
                    "kafka_format".into(),
                    CollectionEntry {
                        value: "JSONEachRow".into(),
                        overridable: None,
                    },
                ),
            ],
            CollectionSource::Config,
        )
        .expect("valid");
        [("kc".to_string(), c)].into_iter().collect()
    }

    /// DDL printed, parsed and resolved again gives the same table.
    fn round_trips(sql: &str) -> String {
        let catalog = Catalog::default();
        let config = collections();
        let def = table_def_with(&create(sql), &catalog, &config).expect("valid");
        let printed = table_ddl(&def);
        let again = table_def_with(&create(&printed), &catalog, &config)
            .unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(again, def, "{printed}");
        printed
    }

    #[test]
    fn tables_round_trip() {
        round_trips(
            "CREATE TABLE q (a UInt8, `odd name` Enum8('x' = 1, 'y z' = 2), n Nullable(String)) ENGINE = Kafka('b:9092', 't1,t2', 'g', 'CSV') SETTINGS kafka_max_block_size = 10, format_csv_delimiter = ';'",
        );
        round_trips(
            "CREATE TABLE q (a UInt8) ENGINE = Kafka(kc, kafka_topic_list = 't', kafka_group_name = 'g') SETTINGS kafka_client_id = 'c'",
        );
        let printed = round_trips(
            "CREATE TABLE t (a UInt8, b String) ENGINE = ReplicatedMergeTree ORDER BY (a, b) SETTINGS replicas = 2",
        );
        assert!(printed.contains("ORDER BY (a, b)"), "{printed}");
        round_trips("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY tuple()");
    }

    #[test]
    fn secrets_are_hidden() {
        let catalog = Catalog::default();
        let def = table_def_with(
            &create("CREATE TABLE q (a UInt8) ENGINE = Kafka(kc, kafka_sasl_password = 'pw1') SETTINGS kafka_topic_list = 't', kafka_group_name = 'g', kafka_sasl_username = 'u', kafka_sasl_mechanism = 'PLAIN', kafka_security_protocol = 'sasl_plaintext'"),
            &catalog,
            &collections(),
        )
        .expect("valid");
        let printed = table_ddl(&def);
        assert!(!printed.contains("pw1"), "{printed}");
        assert!(
            printed.contains(&format!("kafka_sasl_password = '{HIDDEN}'")),
            "{printed}"
        );
        assert!(printed.contains("kafka_sasl_username = 'u'"), "{printed}");
    }

    #[test]
    fn parse_kinds() {
        let show = |sql: &str| match parse(sql).expect("parses") {
            Statement::ShowCreate(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(show("SHOW CREATE q").kind, ObjectKind::Table);
        assert_eq!(show("SHOW CREATE TABLE default.q").name, "q");
        assert_eq!(show("show create view mv").kind, ObjectKind::View);
        assert_eq!(
            show("SHOW CREATE NAMED COLLECTION kc"),
            ShowCreate {
                kind: ObjectKind::NamedCollection,
                name: "kc".into()
            }
        );
    }
}
