//! Named collections: sets of `key = value` settings kept under a name, which a Kafka
//! table uses as `ENGINE = Kafka(name, key = value, …)` (ClickHouse's named collections).
//!
//! A collection comes from SQL (replicated with the catalog) or from the node's config
//! file (read-only to SQL). This module holds the values, the pure resolution of a table's
//! effective settings (collection, then engine-argument overrides, then SETTINGS), and the
//! masking of secret values. Must not import `rdkafka`, `actix`, `sled` or the query engine.
//! Invariant: a secret value never leaves through `Display`, `masked()` or an error here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What ClickHouse prints in place of a secret value.
pub const HIDDEN: &str = "[HIDDEN]";

/// One `key = value [[NOT] OVERRIDABLE]` of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionEntry {
    pub value: String,
    /// `Some(true)`: `OVERRIDABLE`; `Some(false)`: `NOT OVERRIDABLE`; `None`: neither was
    /// written, and the key is overridable (ClickHouse's
    /// `allow_named_collection_override_by_default` default, true).
    pub overridable: Option<bool>,
}

impl CollectionEntry {
    pub fn can_override(&self) -> bool {
        self.overridable.unwrap_or(true)
    }
}

/// Where a collection was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollectionSource {
    /// `CREATE NAMED COLLECTION`, replicated with the catalog.
    Sql,
    /// The node's config file: SQL cannot alter or drop it.
    Config,
}

impl CollectionSource {
    /// As `system.named_collections.source` shows it.
    pub fn name(self) -> &'static str {
        match self {
            CollectionSource::Sql => "sql",
            CollectionSource::Config => "config",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCollection {
    pub name: String,
    /// By key: a BTreeMap, so every replica lists and resolves in the same order.
    pub entries: BTreeMap<String, CollectionEntry>,
    pub source: CollectionSource,
}

/// A change made by `ALTER NAMED COLLECTION`: keys set (added or replaced), then keys
/// deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionChange {
    pub set: Vec<(String, CollectionEntry)>,
    pub delete: Vec<String>,
}

/// Named collections from the node's config file, by name.
pub type ConfigCollections = std::collections::BTreeMap<String, NamedCollection>;

/// How a Kafka table was declared, kept so its settings can be resolved again when its
/// collection changes, and printed back by `SHOW CREATE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaDeclaration {
    /// The named collection of `Kafka(name, …)`, if any.
    pub collection: Option<String>,
    /// The collection came from the config file of the node that ran CREATE: it is not
    /// in the catalog, and SQL cannot change it.
    #[serde(default)]
    pub from_config: bool,
    /// Positional `Kafka('brokers', 'topics', …)` arguments, in order.
    pub positional: Vec<String>,
    /// `key = value` arguments after the collection name.
    pub overrides: Vec<(String, String)>,
    /// The table's SETTINGS clause.
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CollectionError {
    #[error("named collection {0} already exists")]
    Exists(String),
    #[error("named collection {0} does not exist")]
    Missing(String),
    #[error("named collection {0} is defined in the node's config file; SQL cannot alter or drop it (edit the config file)")]
    FromConfig(String),
    #[error("named collection {name}: key {key} is given twice")]
    DuplicateKey { name: String, key: String },
    #[error("named collection {name}: key {key} is both set and deleted")]
    SetAndDeleted { name: String, key: String },
    #[error("named collection {name}: cannot delete key {key}: it is not in the collection")]
    NoKey { name: String, key: String },
    #[error("named collection {name} has no keys (a collection needs one at least; DROP NAMED COLLECTION removes it)")]
    Empty { name: String },
    #[error("named collection {name} is used by table(s) {}; drop them first", tables.join(", "))]
    InUse { name: String, tables: Vec<String> },
    #[error("named collection {collection}: key {key} is NOT OVERRIDABLE, and table {table} overrides it")]
    NotOverridable {
        collection: String,
        key: String,
        table: String,
    },
    #[error("named collection {collection} changed while ALTER NAMED COLLECTION ran (or a table using it was created or dropped); run it again")]
    Concurrent { collection: String },
}

/// Whether the value of `key` is a secret: passwords, secrets, tokens and key material.
/// Matched on the lower-cased name, so librdkafka's dotted names are covered too.
pub fn is_secret(key: &str) -> bool {
    const MARKERS: &[&str] = &[
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private",
        "ssl_key",
        "ssl.key",
        "key_pem",
        "key.pem",
        "keytab",
    ];
    let key = key.to_ascii_lowercase();
    MARKERS.iter().any(|m| key.contains(m))
}

/// The value as it may be shown: `[HIDDEN]` for a secret key.
pub fn masked<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        HIDDEN
    } else {
        value
    }
}

/// A value as a SQL string literal.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl NamedCollection {
    pub fn new(
        name: String,
        pairs: Vec<(String, CollectionEntry)>,
        source: CollectionSource,
    ) -> Result<NamedCollection, CollectionError> {
        let mut entries = BTreeMap::new();
        for (key, entry) in pairs {
            if entries.insert(key.clone(), entry).is_some() {
                return Err(CollectionError::DuplicateKey { name, key });
            }
        }
        if entries.is_empty() {
            return Err(CollectionError::Empty { name });
        }
        Ok(NamedCollection {
            name,
            entries,
            source,
        })
    }

    /// The collection after `change`; ClickHouse's rule: `SET` of an existing key keeps its
    /// `[NOT] OVERRIDABLE` unless the statement gives one.
    pub fn altered(&self, change: &CollectionChange) -> Result<NamedCollection, CollectionError> {
        let mut out = self.clone();
        let mut seen = std::collections::BTreeSet::new();
        for (key, entry) in &change.set {
            if !seen.insert(key.as_str()) {
                return Err(CollectionError::DuplicateKey {
                    name: self.name.clone(),
                    key: key.clone(),
                });
            }
            let overridable = entry
                .overridable
                .or_else(|| self.entries.get(key).and_then(|e| e.overridable));
            out.entries.insert(
                key.clone(),
                CollectionEntry {
                    value: entry.value.clone(),
                    overridable,
                },
            );
        }
        for key in &change.delete {
            if seen.contains(key.as_str()) {
                return Err(CollectionError::SetAndDeleted {
                    name: self.name.clone(),
                    key: key.clone(),
                });
            }
            if out.entries.remove(key).is_none() {
                return Err(CollectionError::NoKey {
                    name: self.name.clone(),
                    key: key.clone(),
                });
            }
        }
        if out.entries.is_empty() {
            return Err(CollectionError::Empty {
                name: self.name.clone(),
            });
        }
        Ok(out)
    }

    /// `key = value` pairs with secrets masked, as `system.named_collections.collection`.
    pub fn masked_pairs(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(k, e)| (k.clone(), masked(k, &e.value).to_string()))
            .collect()
    }

    /// `CREATE NAMED COLLECTION …` that makes this collection again, secrets masked.
    pub fn create_query(&self) -> String {
        let keys: Vec<String> = self
            .entries
            .iter()
            .map(|(k, e)| {
                let flag = match e.overridable {
                    Some(true) => " OVERRIDABLE",
                    Some(false) => " NOT OVERRIDABLE",
                    None => "",
                };
                format!("{k} = {}{flag}", quote(masked(k, &e.value)))
            })
            .collect();
        format!(
            "CREATE NAMED COLLECTION {} AS {}",
            self.name,
            keys.join(", ")
        )
    }
}

impl super::Catalog {
    /// Names of the tables whose settings come from the catalog's collection `name`.
    pub fn tables_using_collection(&self, name: &str) -> Vec<String> {
        self.tables
            .values()
            .filter(|t| {
                t.kafka()
                    .and_then(|k| k.declaration.as_ref())
                    .is_some_and(|d| !d.from_config && d.collection.as_deref() == Some(name))
            })
            .map(|t| t.name.clone())
            .collect()
    }

    /// A table naming a SQL collection is refused if the collection is gone (dropped
    /// between the statement's resolution and this apply).
    pub(super) fn check_collection_exists(
        &self,
        def: &super::TableDef,
    ) -> Result<(), CollectionError> {
        let declared = def.kafka().and_then(|k| k.declaration.as_ref());
        match declared {
            Some(KafkaDeclaration {
                collection: Some(name),
                from_config: false,
                ..
            }) if !self.named_collections.contains_key(name) => {
                Err(CollectionError::Missing(name.clone()))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn apply_collection(
        &mut self,
        cmd: &super::CatalogCommand,
    ) -> Result<super::CatalogOutcome, super::CatalogError> {
        use super::{CatalogCommand, CatalogOutcome};
        match cmd {
            CatalogCommand::CreateNamedCollection {
                collection,
                if_not_exists,
            } => {
                if self.named_collections.contains_key(&collection.name) {
                    if *if_not_exists {
                        return Ok(CatalogOutcome::Unchanged);
                    }
                    return Err(CollectionError::Exists(collection.name.clone()).into());
                }
                self.named_collections
                    .insert(collection.name.clone(), collection.clone());
            }
            CatalogCommand::AlterNamedCollection {
                before,
                after,
                tables,
            } => {
                let concurrent = || CollectionError::Concurrent {
                    collection: before.name.clone(),
                };
                let current = self
                    .named_collections
                    .get(&before.name)
                    .ok_or_else(|| CollectionError::Missing(before.name.clone()))?;
                let mut given: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
                given.sort_unstable();
                if current != before || self.tables_using_collection(&before.name) != given {
                    return Err(concurrent().into());
                }
                // Only the engine changes: a DETACH applied meanwhile stays.
                for def in tables {
                    let table = self.tables.get_mut(&def.name).ok_or_else(concurrent)?;
                    table.engine = def.engine.clone();
                }
                self.named_collections
                    .insert(after.name.clone(), after.clone());
            }
            CatalogCommand::DropNamedCollection { name, if_exists } => {
                if !self.named_collections.contains_key(name) {
                    if *if_exists {
                        return Ok(CatalogOutcome::Unchanged);
                    }
                    return Err(CollectionError::Missing(name.clone()).into());
                }
                let users = self.tables_using_collection(name);
                if !users.is_empty() {
                    return Err(CollectionError::InUse {
                        name: name.clone(),
                        tables: users,
                    }
                    .into());
                }
                self.named_collections.remove(name);
            }
            _ => return Ok(CatalogOutcome::Unchanged),
        }
        Ok(CatalogOutcome::Changed)
    }
}

/// A Kafka table's effective `key = value` settings: its collection's keys, replaced by
/// the engine's `key = value` overrides, replaced by its SETTINGS (the table's own words
/// win). Overriding a NOT OVERRIDABLE key is an error naming it.
pub fn resolve(
    table: &str,
    collection: &NamedCollection,
    declaration: &KafkaDeclaration,
) -> Result<Vec<(String, String)>, CollectionError> {
    let mut out: BTreeMap<String, String> = collection
        .entries
        .iter()
        .map(|(k, e)| (k.clone(), e.value.clone()))
        .collect();
    for (key, value) in declaration.overrides.iter().chain(&declaration.settings) {
        if let Some(entry) = collection.entries.get(key) {
            if !entry.can_override() {
                return Err(CollectionError::NotOverridable {
                    collection: collection.name.clone(),
                    key: key.clone(),
                    table: table.to_string(),
                });
            }
        }
        out.insert(key.clone(), value.clone());
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, overridable: Option<bool>) -> CollectionEntry {
        CollectionEntry {
            value: value.into(),
            overridable,
        }
    }

    fn coll() -> NamedCollection {
        NamedCollection::new(
            "k".into(),
            vec![
                ("kafka_broker_list".into(), entry("b:1", None)),
                ("kafka_topic_list".into(), entry("t", Some(false))),
                ("kafka_sasl_password".into(), entry("s3cret", None)),
            ],
            CollectionSource::Sql,
        )
        .expect("valid")
    }

    #[test]
    fn overrides_win_and_not_overridable_keys_refuse() {
        let decl = KafkaDeclaration {
            collection: Some("k".into()),
            overrides: vec![("kafka_broker_list".into(), "b:2".into())],
            settings: vec![("kafka_group_name".into(), "g".into())],
            ..Default::default()
        };
        let pairs = resolve("q", &coll(), &decl).expect("resolves");
        assert!(pairs.contains(&("kafka_broker_list".into(), "b:2".into())));
        assert!(pairs.contains(&("kafka_group_name".into(), "g".into())));
        assert!(pairs.contains(&("kafka_topic_list".into(), "t".into())));
        let decl = KafkaDeclaration {
            settings: vec![("kafka_topic_list".into(), "other".into())],
            ..Default::default()
        };
        assert_eq!(
            resolve("q", &coll(), &decl)
                .expect_err("not overridable")
                .to_string(),
            "named collection k: key kafka_topic_list is NOT OVERRIDABLE, and table q overrides it"
        );
    }

    #[test]
    fn alter_sets_keeps_flags_and_deletes() {
        let change = CollectionChange {
            set: vec![
                ("kafka_topic_list".into(), entry("t2", None)),
                ("kafka_client_id".into(), entry("c", Some(true))),
            ],
            delete: vec!["kafka_sasl_password".into()],
        };
        let after = coll().altered(&change).expect("alters");
        assert_eq!(after.entries["kafka_topic_list"], entry("t2", Some(false)));
        assert_eq!(after.entries["kafka_client_id"], entry("c", Some(true)));
        assert!(!after.entries.contains_key("kafka_sasl_password"));
        let bad = CollectionChange {
            set: vec![],
            delete: vec!["nope".into()],
        };
        assert!(matches!(
            coll().altered(&bad),
            Err(CollectionError::NoKey { .. })
        ));
        let both = CollectionChange {
            set: vec![("a".into(), entry("1", None))],
            delete: vec!["a".into()],
        };
        assert!(matches!(
            coll().altered(&both),
            Err(CollectionError::SetAndDeleted { .. })
        ));
    }

    #[test]
    fn secrets_are_masked_in_create_query_and_pairs() {
        let c = coll();
        let query = c.create_query();
        assert!(!query.contains("s3cret"), "{query}");
        assert!(
            query.contains("kafka_sasl_password = '[HIDDEN]'"),
            "{query}"
        );
        assert!(
            query.contains("kafka_topic_list = 't' NOT OVERRIDABLE"),
            "{query}"
        );
        assert!(c
            .masked_pairs()
            .contains(&("kafka_sasl_password".into(), HIDDEN.into())));
        for key in [
            "kafka_sasl_password",
            "sasl.password",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "ssl_key_pem",
            "access_token",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "kafka_broker_list",
            "kafka_sasl_username",
            "kafka_group_name",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }

    fn kafka_table_using(name: &str, collection: &str) -> super::super::TableDef {
        let mut settings = super::super::KafkaSettings::for_tests();
        settings.declaration = Some(KafkaDeclaration {
            collection: Some(collection.into()),
            ..Default::default()
        });
        super::super::TableDef {
            layout: Default::default(),
            name: name.into(),
            columns: vec![super::super::Column {
                name: "a".into(),
                ty: super::super::ChType::UInt32,
            }],
            engine: super::super::Engine::Kafka(Box::new(settings)),
            detached: false,
        }
    }

    #[test]
    fn catalog_keeps_collections_and_their_users_consistent() {
        use super::super::{Catalog, CatalogCommand, CatalogError, Engine};
        let mut c = Catalog::default();
        let create = CatalogCommand::CreateNamedCollection {
            collection: coll(),
            if_not_exists: false,
        };
        c.apply(&create).expect("created");
        assert_eq!(
            c.apply(&create),
            Err(CatalogError::Collection(CollectionError::Exists(
                "k".into()
            )))
        );
        // A table naming a collection that is gone is refused.
        assert_eq!(
            c.apply(&CatalogCommand::CreateTable {
                def: kafka_table_using("q0", "gone"),
                if_not_exists: false
            }),
            Err(CatalogError::Collection(CollectionError::Missing(
                "gone".into()
            )))
        );
        c.apply(&CatalogCommand::CreateTable {
            def: kafka_table_using("q", "k"),
            if_not_exists: false,
        })
        .expect("table");
        assert_eq!(
            c.apply(&CatalogCommand::DropNamedCollection {
                name: "k".into(),
                if_exists: false
            }),
            Err(CatalogError::Collection(CollectionError::InUse {
                name: "k".into(),
                tables: vec!["q".into()]
            }))
        );
        // An ALTER that saw another version of the collection, or other tables, is refused.
        let after = coll()
            .altered(&CollectionChange {
                set: vec![("kafka_client_id".into(), entry("x", None))],
                delete: vec![],
            })
            .expect("alters");
        let mut resolved = kafka_table_using("q", "k");
        if let Engine::Kafka(k) = &mut resolved.engine {
            k.client_id = Some("x".into());
        }
        let stale = CatalogCommand::AlterNamedCollection {
            before: after.clone(),
            after: after.clone(),
            tables: vec![resolved.clone()],
        };
        assert!(matches!(
            c.apply(&stale),
            Err(CatalogError::Collection(CollectionError::Concurrent { .. }))
        ));
        let missing_table = CatalogCommand::AlterNamedCollection {
            before: coll(),
            after: after.clone(),
            tables: vec![],
        };
        assert!(matches!(
            c.apply(&missing_table),
            Err(CatalogError::Collection(CollectionError::Concurrent { .. }))
        ));
        // Detached meanwhile: the ALTER changes the settings and keeps the detach.
        c.apply(&CatalogCommand::SetDetached {
            name: "q".into(),
            detached: true,
        })
        .expect("detach");
        c.apply(&CatalogCommand::AlterNamedCollection {
            before: coll(),
            after: after.clone(),
            tables: vec![resolved],
        })
        .expect("alter");
        let q = c.table("q").expect("q");
        assert!(q.detached);
        assert_eq!(
            q.kafka().and_then(|k| k.client_id.clone()),
            Some("x".into())
        );
        assert_eq!(c.named_collections["k"], after);
    }

    #[test]
    fn duplicate_and_empty_collections_are_refused() {
        assert!(matches!(
            NamedCollection::new(
                "x".into(),
                vec![
                    ("a".into(), entry("1", None)),
                    ("a".into(), entry("2", None))
                ],
                CollectionSource::Sql
            ),
            Err(CollectionError::DuplicateKey { .. })
        ));
        assert!(matches!(
            NamedCollection::new("x".into(), vec![], CollectionSource::Sql),
            Err(CollectionError::Empty { .. })
        ));
    }
}
