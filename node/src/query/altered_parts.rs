//! Tests: a table's parts written before and after ALTERs read as the current columns,
//! by a query and after a merge, with renamed columns finding their old values, added
//! ones reading their fill in older parts, dropped ones gone, and widened ones cast.

use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;

use super::parts_scan::PartsTable;
use crate::catalog::alter::{AlterAction, ColumnPosition};
use crate::catalog::{
    Catalog, CatalogCommand, ChType, Column, Engine, MergeTreeSettings, TableDef,
};
use crate::table::part::{self, PartMeta};
use crate::table::{Part, PartRef};

fn table() -> TableDef {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
    };
    TableDef {
        name: "t".into(),
        columns: vec![
            column("k", ChType::UInt64),
            column("a", ChType::Int32),
            column("s", ChType::String),
        ],
        engine: Engine::MergeTree {
            engine_name: "MergeTree".into(),
            order_by: vec!["k".into()],
            settings: MergeTreeSettings::default(),
        },
        detached: false,
        layout: Default::default(),
    }
}

/// Writes `rows` (named as a view's output names them) as a fresh part of `def`, the way
/// a consumer does: conformed to the table, sorted and encoded.
fn write_part(dir: &std::path::Path, seq: u64, def: &TableDef, rows: RecordBatch) -> PartRef {
    let batch = super::views::conform(def, &rows).expect("conform");
    let data = part::encode(&batch, &def.order_by()).expect("encode");
    let meta = PartMeta {
        first: seq,
        last: seq,
        level: 0,
        rows: batch.num_rows() as u64,
        bytes: data.len() as u64,
    };
    std::fs::write(dir.join(meta.file_name()), data).expect("write part");
    Part::new(meta, dir)
}

fn rows(columns: Vec<(&str, arrow::array::ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("rows")
}

async fn answer(def: &TableDef, parts: &[PartRef], sql: &str) -> Result<String, String> {
    let ctx = SessionContext::new_with_config(crate::query::session_config(2));
    ctx.register_table(
        "t",
        Arc::new(PartsTable {
            schema: def.arrow_schema(),
            read_schema: def.read_schema(),
            parts: parts.to_vec(),
        }),
    )
    .expect("register");
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string())
}

#[tokio::test]
async fn old_and_new_parts_read_as_the_current_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut catalog = Catalog::default();
    catalog
        .apply(&CatalogCommand::CreateTable {
            def: table(),
            if_not_exists: false,
        })
        .expect("create");
    let before = catalog.table("t").expect("t").clone();
    let old = write_part(
        dir.path(),
        1,
        &before,
        rows(vec![
            ("k", Arc::new(UInt64Array::from(vec![2, 1]))),
            ("a", Arc::new(Int32Array::from(vec![20, 10]))),
            ("s", Arc::new(StringArray::from(vec!["y", "x"]))),
        ]),
    );
    let add = |name: &str, ty, fill: Option<&str>| AlterAction::AddColumn {
        column: Column {
            name: name.into(),
            ty,
        },
        if_not_exists: false,
        fill: fill.map(str::to_string),
        position: ColumnPosition::Last,
    };
    catalog
        .apply(&CatalogCommand::AlterTable {
            table: "t".into(),
            actions: vec![
                AlterAction::RenameColumn {
                    from: "a".into(),
                    to: "b".into(),
                    if_exists: false,
                },
                // A new column under the old name: old parts must not show b's values.
                add("a", ChType::Int64, Some("7")),
                AlterAction::DropColumn {
                    name: "s".into(),
                    if_exists: false,
                },
                add("n", ChType::Nullable(Box::new(ChType::String)), None),
                AlterAction::ModifyColumn {
                    name: "b".into(),
                    ty: ChType::Int64,
                    if_exists: false,
                },
            ],
        })
        .expect("alter");
    let after = catalog.table("t").expect("t").clone();
    assert_eq!(
        after
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.ty))
            .collect::<Vec<_>>(),
        ["k UInt64", "b Int64", "a Int64", "n Nullable(String)"]
    );
    let new = write_part(
        dir.path(),
        2,
        &after,
        rows(vec![
            ("k", Arc::new(UInt64Array::from(vec![3]))),
            ("b", Arc::new(Int64Array::from(vec![30]))),
            ("a", Arc::new(Int64Array::from(vec![99]))),
            ("n", Arc::new(StringArray::from(vec!["z"]))),
        ]),
    );
    let expected = [
        "+---+----+----+---+",
        "| k | b  | a  | n |",
        "+---+----+----+---+",
        "| 1 | 10 | 7  |   |",
        "| 2 | 20 | 7  |   |",
        "| 3 | 30 | 99 | z |",
        "+---+----+----+---+",
    ]
    .join("\n");
    let parts = vec![old.clone(), new.clone()];
    let all = "SELECT k, b, a, n FROM t ORDER BY k";
    assert_eq!(answer(&after, &parts, all).await.expect("query"), expected);
    // Filters on a filled or renamed column see the values the rows read as, also where
    // they are pushed into the Parquet scan and prune by statistics.
    for (sql, count) in [
        ("SELECT count(*) AS c FROM t WHERE a = 7", 2),
        ("SELECT count(*) AS c FROM t WHERE b > 15", 2),
        ("SELECT count(*) AS c FROM t WHERE n IS NULL", 2),
    ] {
        let got = answer(&after, &parts, sql).await.expect("query");
        assert!(got.contains(&format!("| {count} |")), "{sql}: {got}");
    }
    let dropped = answer(&after, &parts, "SELECT s FROM t").await;
    assert!(
        dropped.is_err_and(|e| e.contains("s")),
        "a dropped column is gone"
    );

    // A merge writes the current columns, filled, and reads back the same.
    let meta = PartMeta {
        first: 1,
        last: 2,
        level: 1,
        rows: 3,
        bytes: 0,
    };
    let path = dir.path().join(meta.file_name());
    let mut file = std::fs::File::create(&path).expect("merged file");
    let merged_rows =
        part::merge(&parts, &after.stored_schema(), &after.order_by(), &mut file).expect("merge");
    assert_eq!(merged_rows, 3);
    drop(file);
    let bytes = std::fs::metadata(&path).expect("size").len();
    let merged = Part::new(PartMeta { bytes, ..meta }, dir.path());
    let written = part::read_file(merged.path())
        .expect("read")
        .next()
        .expect("a batch")
        .expect("batch");
    assert_eq!(
        written
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>(),
        [
            ("k".to_string(), DataType::UInt64),
            ("a".to_string(), DataType::Int64),
            ("a#2".to_string(), DataType::Int64),
            ("n".to_string(), DataType::Utf8),
        ]
    );
    assert_eq!(
        answer(&after, &[merged], all).await.expect("query"),
        expected
    );
}
