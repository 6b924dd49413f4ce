//! `system.named_collections`: every named collection, from SQL and from the node's config
//! file, with secret values shown as `[HIDDEN]`.
//!
//! ClickHouse's columns: `name`, `collection`, `source`, `create_query`. ClickHouse's
//! `collection` is a `Map(String, String)`; here it is that map's text,
//! `{'key':'value',…}`, since Sluice's output formats have no Map type.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

use crate::catalog::named_collections::ConfigCollections;
use crate::catalog::named_collections::NamedCollection;
use crate::catalog::Catalog;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("collection", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("create_query", DataType::Utf8, false),
    ]))
}

/// The map's text as ClickHouse prints a `Map(String, String)`.
fn map_text(collection: &NamedCollection) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let pairs: Vec<String> = collection
        .masked_pairs()
        .iter()
        .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// One row a collection, by name; SQL collections first when a name is in both (it
/// cannot be: CREATE refuses a config collection's name).
pub fn batch(catalog: &Catalog, config: &ConfigCollections) -> Result<RecordBatch, ArrowError> {
    let mut all: Vec<&NamedCollection> = catalog.named_collections.values().collect();
    all.extend(
        config
            .values()
            .filter(|c| !catalog.named_collections.contains_key(&c.name)),
    );
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let text = |f: &dyn Fn(&NamedCollection) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(all.iter().map(|c| f(c))))
    };
    let columns = vec![
        text(&|c| c.name.clone()),
        text(&map_text),
        text(&|c| c.source.name().to_string()),
        text(&NamedCollection::create_query),
    ];
    RecordBatch::try_new(schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::named_collections::{CollectionEntry, CollectionSource};

    #[test]
    fn secrets_are_hidden_and_sources_shown() {
        let entry = |v: &str| CollectionEntry {
            value: v.into(),
            overridable: None,
        };
        let sql = NamedCollection::new(
            "b".into(),
            vec![
                ("kafka_broker_list".into(), entry("h:1")),
                ("kafka_sasl_password".into(), entry("pw")),
            ],
            CollectionSource::Sql,
        )
        .expect("valid");
        let file = NamedCollection::new(
            "a".into(),
            vec![("kafka_format".into(), entry("CSV"))],
            CollectionSource::Config,
        )
        .expect("valid");
        let mut catalog = Catalog::default();
        catalog.named_collections.insert("b".into(), sql);
        let config: ConfigCollections = [("a".to_string(), file)].into_iter().collect();
        let batch = batch(&catalog, &config).expect("batch");
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("strings")
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(column(0), vec!["a", "b"]);
        assert_eq!(column(2), vec!["config", "sql"]);
        assert_eq!(
            column(1)[1],
            "{'kafka_broker_list':'h:1','kafka_sasl_password':'[HIDDEN]'}"
        );
        assert!(!column(3)[1].contains("pw'"), "{}", column(3)[1]);
    }
}
