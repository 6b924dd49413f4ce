//! `system.*` tables, built from live state for each query.
//!
//! `system.kafka_consumers` keeps ClickHouse's column names (the Nested `assignments.*`
//! and `exceptions.*` columns included) so its queries work unchanged; Sluice adds `node`,
//! `num_skipped_messages`, `num_rows_written`, `num_restarts`, and the partition's lag:
//! `high_watermark`, `stored_offset`, `lag`, `messages_per_second`, `rows_per_second`.
//! A Sluice consumer reads one partition, so these are plain columns, not `assignments.*`
//! arrays: `sum(lag)` is a table's lag.
//! `system.dead_letter_queue` keeps ClickHouse's Kafka columns and adds `node`.
//! `system.kafka_offset_resets` is Sluice's own: each partition an `ALTER TABLE … RESET
//! OFFSETS` moved, when, from where to where, and who asked.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int32Builder, Int64Array,
    Int64Builder, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
    TimestampSecondArray, TimestampSecondBuilder, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use crate::catalog::{Catalog, Engine};
use crate::dead_letters::{one_per_message, DeadLetter};
use crate::sql::DEFAULT_DATABASE;
use crate::table::{PartRef, WriterLogEntry};
use crate::topology::{ConsumerKey, ConsumerSnapshot};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Second, None)
}

fn list(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

pub fn kafka_consumers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("database", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("consumer_id", DataType::Utf8, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("assignments.topic", list(DataType::Utf8), false),
        Field::new("assignments.partition_id", list(DataType::Int32), false),
        Field::new("assignments.current_offset", list(DataType::Int64), false),
        Field::new("exceptions.time", list(ts()), false),
        Field::new("exceptions.text", list(DataType::Utf8), false),
        Field::new("last_poll_time", ts(), false),
        Field::new("num_messages_read", DataType::UInt64, false),
        Field::new("last_commit_time", ts(), false),
        Field::new("num_commits", DataType::UInt64, false),
        Field::new("is_currently_used", DataType::Boolean, false),
        Field::new("num_skipped_messages", DataType::UInt64, false),
        Field::new("num_rows_written", DataType::UInt64, false),
        Field::new("num_restarts", DataType::UInt64, false),
        Field::new("high_watermark", DataType::Int64, true),
        Field::new("stored_offset", DataType::Int64, true),
        Field::new("lag", DataType::UInt64, true),
        Field::new("messages_per_second", DataType::Float64, false),
        Field::new("rows_per_second", DataType::Float64, false),
    ]))
}

/// Dotted column names, which queries may write unquoted.
pub fn dotted_columns() -> Vec<String> {
    kafka_consumers_schema()
        .fields()
        .iter()
        .filter(|f| f.name().contains('.'))
        .map(|f| f.name().clone())
        .collect()
}

/// One consumer somewhere in the cluster: the node that runs it, and its state.
pub type NodeConsumer = (String, ConsumerKey, ConsumerSnapshot);

/// `system.kafka_consumers` over the consumers of every reachable node.
pub fn kafka_consumers(consumers: &[NodeConsumer]) -> Result<RecordBatch, ArrowError> {
    let n = consumers.len();
    let text = |f: &dyn Fn(&str, &ConsumerKey, &ConsumerSnapshot) -> String| -> ArrayRef {
        Arc::new(StringArray::from(
            consumers
                .iter()
                .map(|(node, k, s)| f(node, k, s))
                .collect::<Vec<_>>(),
        ))
    };
    let count = |f: &dyn Fn(&ConsumerSnapshot) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(
            consumers.iter().map(|(_, _, s)| f(s)).collect::<Vec<_>>(),
        ))
    };
    let time = |f: &dyn Fn(&ConsumerSnapshot) -> i64| -> ArrayRef {
        Arc::new(TimestampSecondArray::from(
            consumers.iter().map(|(_, _, s)| f(s)).collect::<Vec<_>>(),
        ))
    };
    let rate = |f: &dyn Fn(&ConsumerSnapshot) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(
            consumers.iter().map(|(_, _, s)| f(s)).collect::<Vec<_>>(),
        ))
    };
    let mut topics = ListBuilder::new(StringBuilder::new());
    let mut partitions = ListBuilder::new(Int32Builder::new());
    let mut offsets = ListBuilder::new(Int64Builder::new());
    let mut ex_time = ListBuilder::new(TimestampSecondBuilder::new());
    let mut ex_text = ListBuilder::new(StringBuilder::new());
    for (_, k, s) in consumers {
        topics.values().append_value(&k.topic);
        topics.append(true);
        partitions.values().append_value(k.partition);
        partitions.append(true);
        offsets.values().append_value(s.current_offset);
        offsets.append(true);
        for (t, e) in &s.exceptions {
            ex_time.values().append_value(*t);
            ex_text.values().append_value(e);
        }
        ex_time.append(true);
        ex_text.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![DEFAULT_DATABASE; n])),
        text(&|_, k, _| k.table.clone()),
        text(&|node, k, _| k.consumer_id(node)),
        text(&|node, _, _| node.to_string()),
        Arc::new(topics.finish()),
        Arc::new(partitions.finish()),
        Arc::new(offsets.finish()),
        Arc::new(ex_time.finish()),
        Arc::new(ex_text.finish()),
        time(&|s| s.last_poll_time),
        count(&|s| s.num_messages_read),
        time(&|s| s.last_commit_time),
        count(&|s| s.num_commits),
        Arc::new(BooleanArray::from(
            consumers
                .iter()
                .map(|(_, _, s)| s.is_currently_used)
                .collect::<Vec<_>>(),
        )),
        count(&|s| s.num_skipped_messages),
        count(&|s| s.num_rows_written),
        count(&|s| s.num_restarts),
        Arc::new(Int64Array::from(
            consumers
                .iter()
                .map(|(_, _, s)| s.high_watermark)
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            consumers
                .iter()
                .map(|(_, _, s)| s.stored_offset)
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt64Array::from(
            consumers
                .iter()
                .map(|(_, _, s)| s.lag())
                .collect::<Vec<_>>(),
        )),
        rate(&|s| s.messages_per_second),
        rate(&|s| s.rows_per_second),
    ];
    RecordBatch::try_new(kafka_consumers_schema(), columns)
}

pub fn dead_letter_queue_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_engine", DataType::Utf8, false),
        Field::new("event_date", DataType::Date32, false),
        Field::new("event_time", ts(), false),
        Field::new(
            "event_time_microseconds",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("database", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("raw_message", DataType::Utf8, false),
        Field::new("kafka_topic_name", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::UInt64, false),
        Field::new("kafka_offset", DataType::UInt64, false),
        Field::new("kafka_key", DataType::Utf8, false),
        Field::new("node", DataType::Utf8, false),
    ]))
}

/// `system.dead_letter_queue` over the dead letters of every reachable node, one row per
/// message (see `dead_letters::one_per_message`), in table, topic, partition and offset
/// order. ClickHouse's columns for Kafka (its RabbitMQ ones are left out), and `node`:
/// the node that recorded the letter.
pub fn dead_letter_queue(letters: Vec<(String, DeadLetter)>) -> Result<RecordBatch, ArrowError> {
    let letters = one_per_message(letters);
    let n = letters.len();
    let text = |f: &dyn Fn(&(String, DeadLetter)) -> String| -> ArrayRef {
        Arc::new(StringArray::from(letters.iter().map(f).collect::<Vec<_>>()))
    };
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let micros = |l: &DeadLetter| l.event_time_us;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["Kafka"; n])),
        Arc::new(Date32Array::from(
            letters
                .iter()
                .map(|(_, l)| {
                    i32::try_from(micros(l).div_euclid(86_400_000_000)).unwrap_or_default()
                })
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampSecondArray::from(
            letters
                .iter()
                .map(|(_, l)| micros(l).div_euclid(1_000_000))
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            letters.iter().map(|(_, l)| micros(l)).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(vec![DEFAULT_DATABASE; n])),
        text(&|(_, l)| l.table.clone()),
        text(&|(_, l)| l.error.clone()),
        text(&|(_, l)| lossy(&l.raw_message)),
        text(&|(_, l)| l.topic.clone()),
        Arc::new(UInt64Array::from(
            letters
                .iter()
                .map(|(_, l)| u64::try_from(l.partition).unwrap_or_default())
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt64Array::from(
            letters
                .iter()
                .map(|(_, l)| u64::try_from(l.offset).unwrap_or_default())
                .collect::<Vec<_>>(),
        )),
        text(&|(_, l)| lossy(&l.key)),
        text(&|(node, _)| node.clone()),
    ];
    RecordBatch::try_new(dead_letter_queue_schema(), columns)
}

pub fn kafka_offset_resets_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("database", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("from_offset", DataType::Int64, true),
        Field::new("to_offset", DataType::Int64, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("requested_by", DataType::Utf8, false),
    ]))
}

/// `system.kafka_offset_resets`: the catalog's record of moved positions, oldest first.
pub fn kafka_offset_resets(catalog: &Catalog) -> Result<RecordBatch, ArrowError> {
    let resets = &catalog.offset_resets;
    let text = |f: &dyn Fn(&crate::catalog::rewind::OffsetReset) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(resets.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(arrow::array::TimestampMillisecondArray::from_iter_values(
            resets.iter().map(|r| r.time_ms),
        )),
        Arc::new(StringArray::from(vec![DEFAULT_DATABASE; resets.len()])),
        text(&|r| &r.table),
        text(&|r| &r.topic),
        Arc::new(Int32Array::from_iter_values(
            resets.iter().map(|r| r.partition),
        )),
        Arc::new(Int64Array::from_iter(resets.iter().map(|r| r.from_offset))),
        Arc::new(Int64Array::from_iter_values(
            resets.iter().map(|r| r.to_offset),
        )),
        text(&|r| &r.target),
        text(&|r| &r.requested_by),
    ];
    RecordBatch::try_new(kafka_offset_resets_schema(), columns)
}

pub fn tables_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("database", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("engine", DataType::Utf8, false),
        Field::new("total_rows", DataType::UInt64, true),
        Field::new("is_detached", DataType::Boolean, false),
    ]))
}

/// `system.tables`; `rows` gives a stored table's row count.
pub fn tables(
    catalog: &Catalog,
    rows: &dyn Fn(&str) -> Option<u64>,
) -> Result<RecordBatch, ArrowError> {
    let mut names = Vec::new();
    let mut engines = Vec::new();
    let mut counts = Vec::new();
    let mut detached = Vec::new();
    for (name, t) in &catalog.tables {
        names.push(name.clone());
        engines.push(t.engine.name().to_string());
        counts.push(match t.engine {
            Engine::MergeTree { .. } => rows(name),
            Engine::Kafka(_) => None,
        });
        detached.push(t.detached);
    }
    for name in catalog.views.keys() {
        names.push(name.clone());
        engines.push("MaterializedView".into());
        counts.push(None);
        detached.push(false);
    }
    let n = names.len();
    RecordBatch::try_new(
        tables_schema(),
        vec![
            Arc::new(StringArray::from(vec![DEFAULT_DATABASE; n])),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(engines)),
            Arc::new(UInt64Array::from(counts)),
            Arc::new(BooleanArray::from(detached)),
        ],
    )
}

pub fn raft_groups_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("group", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("leader", DataType::Utf8, false),
        Field::new("term", DataType::UInt64, false),
        Field::new("last_log_index", DataType::UInt64, false),
        Field::new("applied_index", DataType::UInt64, false),
        Field::new("voters", list(DataType::Utf8), false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("parts", DataType::UInt64, false),
        Field::new("bytes_on_disk", DataType::UInt64, false),
    ]))
}

/// `system.raft_groups`: the tables' data groups this node runs, with the rows, parts and
/// bytes of its own replica. A table absent here is read from another node.
/// One data group as `system.raft_groups` shows it.
#[derive(Debug, Clone, Default)]
pub struct GroupRow {
    pub group: String,
    pub table: String,
    pub role: String,
    pub leader: String,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub voters: Vec<String>,
    pub rows: u64,
    /// The local replica's part files: how many, and their bytes.
    pub parts: u64,
    pub bytes_on_disk: u64,
}

pub fn raft_groups(rows: &[GroupRow]) -> Result<RecordBatch, ArrowError> {
    let text = |f: &dyn Fn(&GroupRow) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let number = |f: &dyn Fn(&GroupRow) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let mut voters = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for v in &r.voters {
            voters.values().append_value(v);
        }
        voters.append(true);
    }
    let voters = voters.finish();
    let schema = raft_groups_schema();
    // The list's item field must match the schema's exactly.
    let voters = arrow::array::ListArray::try_new(
        Arc::new(Field::new("item", DataType::Utf8, true)),
        voters.offsets().clone(),
        voters.values().clone(),
        None,
    )?;
    RecordBatch::try_new(
        schema,
        vec![
            text(&|r| r.table.clone()),
            text(&|r| r.group.clone()),
            text(&|r| r.role.clone()),
            text(&|r| r.leader.clone()),
            number(&|r| r.term),
            number(&|r| r.last_log_index),
            number(&|r| r.applied_index),
            Arc::new(voters),
            number(&|r| r.rows),
            number(&|r| r.parts),
            number(&|r| r.bytes_on_disk),
        ],
    )
}

pub fn replicas_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("node_id", DataType::UInt64, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("address", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("is_leader", DataType::Boolean, false),
        Field::new("term", DataType::UInt64, true),
        Field::new("last_log_index", DataType::UInt64, true),
        Field::new("applied_index", DataType::UInt64, true),
        Field::new("lag", DataType::UInt64, true),
        Field::new("error", DataType::Utf8, false),
    ]))
}

/// One member as `system.replicas` shows it; the numbers are missing when it did not answer.
#[derive(Debug, Clone, Default)]
pub struct ReplicaRow {
    pub node_id: u64,
    pub node: String,
    pub address: String,
    pub role: String,
    pub is_leader: bool,
    pub term: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub lag: Option<u64>,
    pub error: String,
}

/// `system.replicas`: every member of the cluster and how far behind the leader it is.
pub fn replicas(rows: &[ReplicaRow]) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(
        replicas_schema(),
        vec![
            Arc::new(UInt64Array::from(
                rows.iter().map(|r| r.node_id).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.address.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.role.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.is_leader).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                rows.iter().map(|r| r.term).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                rows.iter().map(|r| r.last_log_index).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                rows.iter().map(|r| r.applied_index).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                rows.iter().map(|r| r.lag).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
            )),
        ],
    )
}

pub fn writer_log_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("log_index", DataType::UInt64, false),
        Field::new("view", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("first_offset", DataType::Int64, false),
        Field::new("last_offset", DataType::Int64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("node_id", DataType::UInt64, false),
        Field::new("epoch", DataType::UInt64, false),
    ]))
}

/// `system.writer_log`: every block this replica applied from a Kafka partition, with the
/// node and assignment epoch that wrote it (how fencing is audited).
pub fn writer_log(entries: &[(String, WriterLogEntry)]) -> Result<RecordBatch, ArrowError> {
    let col = |f: &dyn Fn(&(String, WriterLogEntry)) -> u64| {
        Arc::new(UInt64Array::from(entries.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let text = |f: &dyn Fn(&(String, WriterLogEntry)) -> String| {
        Arc::new(StringArray::from(entries.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    RecordBatch::try_new(
        writer_log_schema(),
        vec![
            text(&|(t, _)| t.clone()),
            col(&|(_, e)| e.log_index),
            text(&|(_, e)| e.source.clone()),
            text(&|(_, e)| e.topic.clone()),
            Arc::new(Int32Array::from(
                entries.iter().map(|(_, e)| e.partition).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                entries
                    .iter()
                    .map(|(_, e)| e.first_offset)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                entries
                    .iter()
                    .map(|(_, e)| e.last_offset)
                    .collect::<Vec<_>>(),
            )),
            col(&|(_, e)| e.rows),
            col(&|(_, e)| e.node),
            col(&|(_, e)| e.epoch),
        ],
    )
}

pub fn parts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("node", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("level", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes_on_disk", DataType::UInt64, false),
        Field::new("active", DataType::Boolean, false),
    ]))
}

/// `system.parts`: the parts of this node's replicas, as ClickHouse lists a server's own
/// parts. Only active parts are listed: a part a merge replaced leaves the list at once.
pub fn parts(node: &str, parts: &[(String, PartRef)]) -> Result<RecordBatch, ArrowError> {
    let n = parts.len();
    RecordBatch::try_new(
        parts_schema(),
        vec![
            Arc::new(StringArray::from(vec![node; n])),
            Arc::new(StringArray::from_iter_values(parts.iter().map(|(t, _)| t))),
            Arc::new(StringArray::from_iter_values(
                parts.iter().map(|(_, p)| p.name()),
            )),
            Arc::new(arrow::array::UInt32Array::from_iter_values(
                parts.iter().map(|(_, p)| p.level()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                parts.iter().map(|(_, p)| p.rows()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                parts.iter().map(|(_, p)| p.bytes()),
            )),
            Arc::new(BooleanArray::from(vec![true; n])),
        ],
    )
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};

    use super::*;

    #[test]
    fn kafka_consumers_shows_each_partitions_lag_once_its_end_is_known() {
        let key = |partition| ConsumerKey {
            table: "queue".into(),
            topic: "events".into(),
            partition,
        };
        let measured = ConsumerSnapshot {
            high_watermark: Some(1_000),
            stored_offset: Some(640),
            messages_per_second: 120.5,
            rows_per_second: 118.0,
            ..ConsumerSnapshot::default()
        };
        let batch = kafka_consumers(&[
            ("n1".into(), key(0), measured),
            ("n2".into(), key(1), ConsumerSnapshot::default()),
        ])
        .expect("a batch");
        let column = |name: &str| batch.column_by_name(name).expect(name).clone();
        let high = column("high_watermark");
        let high = high.as_primitive::<Int64Type>();
        assert_eq!((high.value(0), high.is_null(1)), (1_000, true));
        let stored = column("stored_offset");
        let stored = stored.as_primitive::<Int64Type>();
        assert_eq!((stored.value(0), stored.is_null(1)), (640, true));
        let lag = column("lag");
        let lag = lag.as_primitive::<UInt64Type>();
        assert_eq!((lag.value(0), lag.is_null(1)), (360, true));
        let rate = column("messages_per_second");
        let rate = rate.as_primitive::<Float64Type>();
        assert_eq!((rate.value(0), rate.value(1)), (120.5, 0.0));
        let nodes = column("node");
        assert_eq!(nodes.as_string::<i32>().value(1), "n2");
    }
}
