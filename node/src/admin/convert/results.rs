//! What the executor and the catalog return, as the admin API's replies: query results,
//! DDL messages, and tables and views as `ListTables` and `DescribeTable` show them.

use std::collections::BTreeMap;

use arrow::ipc::writer::StreamWriter;
use tonic::Status;

use crate::admin::executor::ExecOutput;
use crate::catalog::{CatalogOutcome, Engine, TableDef, ViewDef};
use crate::format::output::{self, OutputColumn, OutputFormat, Statistics};
use crate::proto::{
    Column, ColumnMeta, DdlResponse, DescribeTableResponse, ExecuteResponse, ResultSet, Row,
    TableInfo,
};
use crate::query::{display, QueryResult};

/// The engine name ClickHouse lists materialized views under.
const VIEW_ENGINE: &str = "MaterializedView";

/// A query's rows twice: as text per value for people, and as an Arrow IPC stream for
/// programs, which keeps the types.
pub fn result_set(result: &QueryResult) -> Result<ResultSet, Status> {
    let columns = result
        .schema
        .fields()
        .iter()
        .map(|f| ColumnMeta {
            name: f.name().clone(),
            r#type: display::type_name(f.data_type()),
        })
        .collect();
    let rows = display::rows(&result.batches)
        .map_err(|e| Status::internal(e.to_string()))?
        .into_iter()
        .map(|values| Row { values })
        .collect();
    let mut arrow_ipc = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut arrow_ipc, &result.schema)
            .map_err(|e| Status::internal(e.to_string()))?;
        for b in &result.batches {
            writer
                .write(b)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        writer
            .finish()
            .map_err(|e| Status::internal(e.to_string()))?;
    }
    Ok(ResultSet {
        columns,
        rows,
        arrow_ipc,
    })
}

/// The SQL call's reply: rows for a query, a message for anything else. Rows are written
/// in `format` when the statement's FORMAT clause or the caller (`asked`) names one.
pub fn execute_response(output: ExecOutput, asked: &str) -> Result<ExecuteResponse, Status> {
    let (result, format, elapsed) = match output {
        ExecOutput::Done(message) => {
            return Ok(ExecuteResponse {
                message,
                ..ExecuteResponse::default()
            })
        }
        ExecOutput::Rows(result) if asked.is_empty() => {
            let rows = result.batches.iter().map(|b| b.num_rows() as u64).sum();
            return Ok(ExecuteResponse {
                result: Some(result_set(&result)?),
                rows,
                ..ExecuteResponse::default()
            });
        }
        ExecOutput::Rows(result) => (
            result,
            OutputFormat::from_name(asked).map_err(|e| Status::invalid_argument(e.to_string()))?,
            std::time::Duration::ZERO,
        ),
        ExecOutput::Formatted {
            result,
            format,
            elapsed,
        } => (result, format, elapsed),
    };
    let columns: Vec<OutputColumn> = result
        .schema
        .fields()
        .iter()
        .map(|f| OutputColumn {
            name: f.name().clone(),
            type_name: display::type_name(f.data_type()),
        })
        .collect();
    let formatted = output::render(
        format,
        &columns,
        &result.batches,
        Statistics {
            elapsed_seconds: elapsed.as_secs_f64(),
        },
    )
    .map_err(|e| Status::internal(e.to_string()))?;
    Ok(ExecuteResponse {
        formatted,
        format: format!("{format:?}"),
        rows: result.batches.iter().map(|b| b.num_rows() as u64).sum(),
        elapsed_seconds: elapsed.as_secs_f64(),
        ..ExecuteResponse::default()
    })
}

/// A typed DDL call answers with a message only; a statement that returned rows instead
/// is answered as done.
pub fn ddl_response(output: ExecOutput) -> DdlResponse {
    DdlResponse {
        message: match output {
            ExecOutput::Done(m) => m,
            ExecOutput::Rows(_) | ExecOutput::Formatted { .. } => "Ok.".into(),
        },
    }
}

/// A catalog command's reply: its outcome, as the variant's name.
pub fn outcome_response(outcome: &CatalogOutcome) -> DdlResponse {
    DdlResponse {
        message: format!("{outcome:?}"),
    }
}

/// `total_rows`: as a replica of the table counts them (the caller asks one); 0 for a
/// Kafka table, which keeps no rows.
pub fn table_info(t: &TableDef, total_rows: u64) -> TableInfo {
    TableInfo {
        name: t.name.clone(),
        engine: t.engine.name().to_string(),
        total_rows,
        detached: t.detached,
    }
}

pub fn view_info(name: &str) -> TableInfo {
    TableInfo {
        name: name.to_string(),
        engine: VIEW_ENGINE.into(),
        total_rows: 0,
        detached: false,
    }
}

pub fn describe_view(v: &ViewDef) -> DescribeTableResponse {
    DescribeTableResponse {
        table: Some(view_info(&v.name)),
        view_source: v.source.clone(),
        view_target: v.target.clone(),
        view_query: v.original_query.clone(),
        ..Default::default()
    }
}

/// A table's columns, ORDER BY and the settings that shape it, as ClickHouse names them;
/// a password is shown hidden.
pub fn describe_table(t: &TableDef, info: TableInfo) -> DescribeTableResponse {
    let mut settings = BTreeMap::new();
    let mut order_by = Vec::new();
    match &t.engine {
        Engine::Kafka(k) => {
            settings.insert("kafka_broker_list".to_string(), k.broker_list.clone());
            settings.insert("kafka_topic_list".to_string(), k.topic_list.join(","));
            settings.insert("kafka_group_name".to_string(), k.group_name.clone());
            settings.insert("kafka_format".to_string(), k.format.name().to_string());
            if let Some(schema) = &k.schema {
                settings.insert("kafka_schema".to_string(), schema.to_string());
            }
            for (name, value) in k
                .format_settings
                .non_default()
                .into_iter()
                .chain(k.compression.non_default())
            {
                settings.insert(name.to_string(), value);
            }
            settings.insert(
                "kafka_max_block_size".to_string(),
                k.max_block_size.to_string(),
            );
            settings.insert(
                "kafka_skip_broken_messages".to_string(),
                k.skip_broken_messages.to_string(),
            );
            settings.insert(
                "kafka_handle_error_mode".to_string(),
                k.handle_error_mode.name().to_string(),
            );
            if let Some(p) = &k.sasl_password {
                settings.insert(
                    "kafka_sasl_password".to_string(),
                    mask("kafka_sasl_password", p),
                );
            }
        }
        Engine::MergeTree {
            order_by: keys,
            settings: s,
            ..
        } => {
            order_by = keys.clone();
            settings.insert(
                "replicated_deduplication_window".to_string(),
                s.dedup_window.to_string(),
            );
            if s.replicas > 0 {
                settings.insert("replicas".to_string(), s.replicas.to_string());
            }
        }
    }
    DescribeTableResponse {
        table: Some(info),
        columns: t
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                r#type: c.ty.to_string(),
            })
            .collect(),
        settings: settings.into_iter().collect(),
        order_by,
        ..Default::default()
    }
}

fn mask(name: &str, value: &str) -> String {
    if crate::ingest::client::is_secret_property(name) {
        "[HIDDEN]".into()
    } else {
        value.to_string()
    }
}

/// The moves of an offset reset, as the typed call answers them.
pub fn reset_offsets_response(
    moves: &[crate::catalog::rewind::OffsetReset],
) -> crate::proto::ResetOffsetsResponse {
    crate::proto::ResetOffsetsResponse {
        partitions: moves
            .iter()
            .map(|m| crate::proto::PartitionOffsetReset {
                topic: m.topic.clone(),
                partition: m.partition,
                from_offset: m.from_offset.unwrap_or_default(),
                has_from_offset: m.from_offset.is_some(),
                to_offset: m.to_offset,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::catalog::{ChType, KafkaSettings, MergeTreeSettings};

    #[test]
    fn a_result_set_carries_text_and_the_arrow_stream() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::UInt32, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .expect("batch");
        let result = QueryResult {
            schema,
            batches: vec![batch.clone()],
        };
        let set = result_set(&result).expect("result set");
        let columns: Vec<(&str, &str)> = set
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.r#type.as_str()))
            .collect();
        assert_eq!(columns, [("n", "UInt32"), ("s", "String")]);
        let rows: Vec<Vec<&str>> = set
            .rows
            .iter()
            .map(|r| r.values.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(rows, [["1", "a"], ["2", "NULL"]]);
        let read: Vec<RecordBatch> =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(set.arrow_ipc), None)
                .expect("reader")
                .collect::<Result<_, _>>()
                .expect("batches");
        assert_eq!(read, vec![batch]);

        let executed = execute_response(ExecOutput::Done("Ok.".into()), "").expect("reply");
        assert_eq!((executed.result, executed.message.as_str()), (None, "Ok."));
        let answered = ddl_response(ExecOutput::Rows(result));
        assert_eq!(answered.message, "Ok.");
        assert_eq!(
            outcome_response(&CatalogOutcome::Unchanged).message,
            "Unchanged"
        );
    }

    #[test]
    fn a_description_shows_the_engine_settings_and_hides_passwords() {
        let mut settings = KafkaSettings::for_tests();
        settings.sasl_password = Some("secret".into());
        let queue = TableDef {
            name: "queue".into(),
            columns: vec![crate::catalog::Column {
                name: "a".into(),
                ty: ChType::UInt32,
            }],
            engine: Engine::Kafka(Box::new(settings)),
            detached: true,
            layout: Default::default(),
        };
        let d = describe_table(&queue, table_info(&queue, 0));
        let settings: BTreeMap<String, String> = d.settings.into_iter().collect();
        assert_eq!(settings["kafka_sasl_password"], "[HIDDEN]");
        assert_eq!(settings["kafka_topic_list"], "t");
        assert_eq!(settings["kafka_broker_list"], "b:9092");
        assert_eq!(
            (d.columns[0].name.as_str(), d.columns[0].r#type.as_str()),
            ("a", "UInt32")
        );
        let info = d.table.expect("info");
        assert_eq!((info.engine.as_str(), info.detached), ("Kafka", true));

        let events = TableDef {
            name: "events".into(),
            columns: vec![],
            engine: Engine::MergeTree {
                engine_name: "ReplicatedMergeTree".into(),
                order_by: vec!["a".into()],
                settings: MergeTreeSettings {
                    dedup_window: 7,
                    replicas: 0,
                },
            },
            detached: false,
            layout: Default::default(),
        };
        let d = describe_table(&events, table_info(&events, 12));
        assert_eq!(d.order_by, ["a"]);
        assert_eq!(
            d.settings,
            [(
                "replicated_deduplication_window".to_string(),
                "7".to_string()
            )]
            .into()
        );
        assert_eq!(d.table.expect("info").total_rows, 12);

        let view = ViewDef {
            name: "v".into(),
            source: "queue".into(),
            target: "events".into(),
            original_query: "SELECT a FROM queue".into(),
            query: "SELECT a FROM queue".into(),
            output_columns: vec!["a".into()],
        };
        let d = describe_view(&view);
        assert_eq!(
            (
                d.view_source.as_str(),
                d.view_target.as_str(),
                d.view_query.as_str()
            ),
            ("queue", "events", "SELECT a FROM queue")
        );
        assert_eq!(d.table.expect("info").engine, "MaterializedView");
    }
}
