//! Where the rows a consumer or an INSERT stored go next. A view reading the table they
//! went to, whose target is a Kafka table, sends them on to that table's topic; no other
//! view runs over them.

use arrow::array::RecordBatch;

use super::sink::KafkaSink;
use crate::catalog::{Catalog, TableDef, ViewDef};
use crate::query::views::run_view_to_kafka;

/// A view that could not send rows to its Kafka table, and why.
#[derive(Debug)]
pub struct PushFailure {
    pub view: String,
    pub reason: String,
}

/// Sends `rows`, new in `table`, through every view from `table` into a Kafka table (see
/// `push_targets`), stopping at the first that fails.
pub async fn push(
    catalog: &Catalog,
    sink: &KafkaSink,
    table: &TableDef,
    rows: &RecordBatch,
) -> Result<(), PushFailure> {
    if rows.num_rows() == 0 {
        return Ok(());
    }
    for (view, target) in push_targets(catalog, &table.name) {
        let failed = |reason: String| PushFailure {
            view: view.name.clone(),
            reason,
        };
        let (out, envelope) = run_view_to_kafka(view, table, target, rows.clone())
            .await
            .map_err(|e| failed(e.to_string()))?;
        sink.send(target, &out, envelope.as_ref())
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

/// The views from `table` that send its new rows to Kafka, each with its Kafka target, in
/// view name order. A view whose target is gone or not a Kafka table is left out.
fn push_targets<'a>(catalog: &'a Catalog, table: &str) -> Vec<(&'a ViewDef, &'a TableDef)> {
    catalog
        .views_of(table)
        .into_iter()
        .filter_map(|view| {
            let target = catalog
                .table(&view.target)
                .filter(|t| t.kafka().is_some())?;
            Some((view, target))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ChType, Column, Engine, KafkaSettings, MergeTreeSettings};

    fn table(name: &str, kafka: bool) -> TableDef {
        let engine = if kafka {
            Engine::Kafka(Box::new(KafkaSettings::for_tests()))
        } else {
            Engine::MergeTree {
                engine_name: "MergeTree".into(),
                order_by: vec!["a".into()],
                settings: MergeTreeSettings::default(),
            }
        };
        TableDef {
            name: name.into(),
            columns: vec![Column {
                name: "a".into(),
                ty: ChType::UInt32,
            }],
            engine,
            detached: false,
            layout: Default::default(),
        }
    }

    fn view(name: &str, source: &str, target: &str) -> ViewDef {
        ViewDef {
            name: name.into(),
            source: source.into(),
            target: target.into(),
            original_query: format!("SELECT a FROM {source}"),
            query: format!("SELECT a FROM {source}"),
            output_columns: vec!["a".into()],
        }
    }

    fn catalog(tables: &[TableDef], views: &[ViewDef]) -> Catalog {
        Catalog {
            tables: tables.iter().map(|t| (t.name.clone(), t.clone())).collect(),
            views: views.iter().map(|v| (v.name.clone(), v.clone())).collect(),
            ..Catalog::default()
        }
    }

    fn names(targets: &[(&ViewDef, &TableDef)]) -> Vec<(String, String)> {
        targets
            .iter()
            .map(|(v, t)| (v.name.clone(), t.name.clone()))
            .collect()
    }

    #[test]
    fn only_views_into_kafka_tables_push() {
        let c = catalog(
            &[
                table("queue", true),
                table("events", false),
                table("out_a", true),
                table("out_b", true),
                table("archive", false),
            ],
            &[
                view("ingest", "queue", "events"),
                view("to_b", "events", "out_b"),
                view("to_a", "events", "out_a"),
                view("keep", "events", "archive"),
            ],
        );
        assert_eq!(
            names(&push_targets(&c, "events")),
            [
                ("to_a".to_string(), "out_a".to_string()),
                ("to_b".to_string(), "out_b".to_string()),
            ]
        );
    }

    #[test]
    fn a_view_whose_target_is_gone_pushes_nothing() {
        let c = catalog(&[table("events", false)], &[view("to_x", "events", "x")]);
        assert!(push_targets(&c, "events").is_empty());
    }

    #[test]
    fn a_table_without_views_pushes_nothing() {
        let c = catalog(
            &[table("events", false), table("out", true)],
            &[view("other", "elsewhere", "out")],
        );
        assert!(push_targets(&c, "events").is_empty());
        assert!(push_targets(&c, "missing").is_empty());
    }
}
