//! Avro, both directions: each Kafka message is an Avro Object Container File, its own
//! schema first, then any number of records, each a row.
//!
//! Record fields reach the column of the same name (exactly, else ignoring case); a column
//! with no field in a message's schema makes that message broken, as ClickHouse's
//! default (`input_format_avro_allow_missing_fields = 0`; with 1 it takes its default).
//! Written files carry a schema
//! made from the columns, as ClickHouse makes it, and are compressed with snappy, as
//! ClickHouse writes them by default. Values go into the Arrow builders typed.

use apache_avro::schema::Schema;
use apache_avro::types::Value;
use apache_avro::{Codec, Reader, Writer};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use serde_json::json;

use super::cells::{CellError, ColumnBuilder};
use super::rows::{decode_binary_messages, RowsBuilder};
use super::{BrokenMessage, FormatError, RawMessage};
use crate::catalog::kafka_settings::{Format, FormatSettings};
use crate::catalog::{ChType, Column};

/// Why one Kafka message could not be read; the format is added by `rows`.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("not an Avro Object Container File: {0}")]
    Container(String),
    #[error("record {index}: {reason}")]
    Record { index: usize, reason: String },
    #[error("the file's schema is not a record but {0}")]
    NotRecord(String),
    #[error("column {column} has no field in the file's schema (fields: {fields})")]
    NoField { column: String, fields: String },
    #[error("record {index}, field {field}: {source}")]
    Cell {
        index: usize,
        field: String,
        #[source]
        source: CellError,
    },
}

/// Why rows could not be written as Avro, or why a table's columns cannot be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvroWriteError {
    #[error("column {column}: {reason}")]
    Column { column: String, reason: String },
    #[error("the schema made from the columns is refused: {0}")]
    Schema(String),
    #[error("writing the file: {0}")]
    Write(String),
}

pub fn decode(
    columns: &[Column],
    settings: &FormatSettings,
    messages: &[RawMessage],
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    let allow_missing = settings.avro_allow_missing_fields;
    decode_binary_messages(
        Format::Avro,
        columns,
        settings,
        messages,
        |payload, rows| decode_file(payload, rows, allow_missing),
    )
}

fn decode_file(
    payload: &[u8],
    rows: &mut RowsBuilder,
    allow_missing: bool,
) -> Result<(), AvroError> {
    let reader = Reader::new(payload).map_err(|e| AvroError::Container(e.to_string()))?;
    let Schema::Record(record) = reader.writer_schema() else {
        return Err(AvroError::NotRecord(format!(
            "{:?}",
            apache_avro::schema::SchemaKind::from(reader.writer_schema())
        )));
    };
    let names: Vec<String> = record.fields.iter().map(|f| f.name.clone()).collect();
    // Each column's position among the record's fields (`None`: the column takes its
    // default); the file's schema is the same for all its records.
    let positions = rows
        .columns()
        .iter()
        .map(|c| {
            let at = names
                .iter()
                .position(|n| n == c.name())
                .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(c.name())));
            match at {
                None if !allow_missing => Err(AvroError::NoField {
                    column: c.name().to_string(),
                    fields: names.join(", "),
                }),
                at => Ok(at),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (index, record) in reader.enumerate() {
        let record = record.map_err(|e| AvroError::Record {
            index,
            reason: e.to_string(),
        })?;
        let Value::Record(fields) = record else {
            return Err(AvroError::Record {
                index,
                reason: "not a record".into(),
            });
        };
        for (column, &at) in rows.columns().iter_mut().zip(&positions) {
            let Some(at) = at else {
                column.push_default();
                continue;
            };
            let Some((name, value)) = fields.get(at) else {
                return Err(AvroError::Record {
                    index,
                    reason: format!("field {} is missing", names[at]),
                });
            };
            push_value(column, value).map_err(|source| AvroError::Cell {
                index,
                field: name.clone(),
                source,
            })?;
        }
        rows.end_row();
    }
    Ok(())
}

fn push_value(column: &mut ColumnBuilder, value: &Value) -> Result<(), CellError> {
    match value {
        Value::Null => column.push_null(),
        Value::Boolean(v) => column.push_bool(*v),
        Value::Int(v) | Value::TimeMillis(v) => column.push_int(i128::from(*v)),
        Value::Long(v) | Value::TimeMicros(v) => column.push_int(i128::from(*v)),
        Value::Float(v) => column.push_float(f64::from(*v)),
        Value::Double(v) => column.push_float(*v),
        Value::String(s) => column.push_text(s),
        Value::Bytes(b) | Value::Fixed(_, b) => match std::str::from_utf8(b) {
            Ok(s) => column.push_text(s),
            Err(_) => Err(column.mismatch("bytes that are not UTF-8 (String columns hold UTF-8)")),
        },
        Value::Uuid(u) => column.push_text(&u.to_string()),
        Value::Enum(n, name) => column.push_enum(name, i32::try_from(*n).unwrap_or(i32::MAX)),
        Value::Union(_, inner) => push_value(column, inner),
        Value::Date(days) => column.push_date_days(*days),
        Value::TimestampMillis(ms) | Value::LocalTimestampMillis(ms) => {
            column.push_timestamp_ms(*ms)
        }
        Value::TimestampMicros(us) | Value::LocalTimestampMicros(us) => {
            column.push_timestamp_ms(us.div_euclid(1_000))
        }
        Value::TimestampNanos(ns) | Value::LocalTimestampNanos(ns) => {
            column.push_timestamp_ms(ns.div_euclid(1_000_000))
        }
        Value::Array(items) => {
            let Some(builder) = column.array_items() else {
                return Err(column.mismatch("an array"));
            };
            for item in items {
                push_value(builder, item)?;
            }
            column.end_array();
            Ok(())
        }
        Value::Map(_) | Value::Record(_) => Err(column.mismatch("a map or record")),
        Value::Decimal(_) | Value::BigDecimal(_) | Value::Duration(_) => {
            Err(column.mismatch("a decimal or duration"))
        }
    }
}

/// The schema ClickHouse would write for `columns`, checked by the Avro library: the
/// CREATE of an Avro table calls it so a column Avro cannot name fails there.
pub fn schema(columns: &[Column]) -> Result<Schema, AvroWriteError> {
    let fields = columns
        .iter()
        .map(|c| {
            let ty = field_type(&c.name, &c.ty)?;
            Ok(json!({ "name": c.name, "type": ty }))
        })
        .collect::<Result<Vec<_>, AvroWriteError>>()?;
    let text = json!({ "type": "record", "name": "row", "fields": fields }).to_string();
    Schema::parse_str(&text).map_err(|e| AvroWriteError::Schema(e.to_string()))
}

fn field_type(column: &str, ty: &ChType) -> Result<serde_json::Value, AvroWriteError> {
    Ok(match ty {
        ChType::Nullable(inner) => json!(["null", field_type(column, inner)?]),
        ChType::LowCardinality(inner) => field_type(column, inner)?,
        ChType::Int8 | ChType::Int16 | ChType::Int32 | ChType::UInt8 | ChType::UInt16 => {
            json!("int")
        }
        // ClickHouse writes UInt32 as int, wrapping values past 2^31; long keeps them.
        ChType::UInt32 | ChType::Int64 | ChType::UInt64 => json!("long"),
        ChType::Float32 => json!("float"),
        ChType::Float64 => json!("double"),
        ChType::Bool => json!("boolean"),
        ChType::String => json!("string"),
        ChType::Date => json!({ "type": "int", "logicalType": "date" }),
        // Seconds, as ClickHouse writes a DateTime.
        ChType::DateTime => json!("int"),
        ChType::Enum { members, .. } => {
            let bad: Vec<&str> = members
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| !is_avro_name(n))
                .collect();
            if !bad.is_empty() {
                return Err(AvroWriteError::Column {
                    column: column.to_string(),
                    reason: format!(
                        "Enum members {} are not Avro enum symbols ([A-Za-z_][A-Za-z0-9_]*)",
                        bad.join(", ")
                    ),
                });
            }
            let symbols: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
            json!({ "type": "enum", "name": format!("enum_{}", avro_name_part(column)), "symbols": symbols })
        }
        ChType::Array(inner) => json!({ "type": "array", "items": field_type(column, inner)? }),
    })
}

fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A column name made fit for the middle of an Avro type name.
fn avro_name_part(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// One Object Container File per `per_message` rows.
pub fn encode(
    columns: &[Column],
    batch: &RecordBatch,
    per_message: usize,
) -> Result<Vec<Vec<u8>>, AvroWriteError> {
    let schema = schema(columns)?;
    let per_message = per_message.max(1);
    let mut out = Vec::with_capacity(batch.num_rows().div_ceil(per_message));
    let mut start = 0;
    while start < batch.num_rows() {
        let end = (start + per_message).min(batch.num_rows());
        let mut writer = Writer::with_codec(&schema, Vec::new(), Codec::Snappy);
        for row in start..end {
            let fields = columns
                .iter()
                .zip(batch.columns())
                .map(|(c, array)| {
                    to_avro(array.as_ref(), row, &c.ty)
                        .map(|v| (c.name.clone(), v))
                        .map_err(|reason| AvroWriteError::Column {
                            column: c.name.clone(),
                            reason,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            writer
                .append(Value::Record(fields))
                .map_err(|e| AvroWriteError::Write(e.to_string()))?;
        }
        out.push(
            writer
                .into_inner()
                .map_err(|e| AvroWriteError::Write(e.to_string()))?,
        );
        start = end;
    }
    Ok(out)
}

/// A cell as the Avro value of the type `field_type` gives the column.
fn to_avro(array: &dyn Array, row: usize, ty: &ChType) -> Result<Value, String> {
    if let ChType::Nullable(inner) = ty {
        return Ok(if array.is_null(row) {
            Value::Union(0, Box::new(Value::Null))
        } else {
            Value::Union(1, Box::new(to_avro(array, row, inner)?))
        });
    }
    if array.is_null(row) {
        return Err("NULL in a column that is not Nullable".into());
    }
    macro_rules! prim {
        ($t:ty) => {
            array.as_primitive::<$t>().value(row)
        };
    }
    let out_of_range = |v: &dyn std::fmt::Display| format!("{v} is out of the range of Avro long");
    Ok(match (array.data_type(), ty.base()) {
        (DataType::Int8, _) => Value::Int(i32::from(prim!(Int8Type))),
        (DataType::Int16, _) => Value::Int(i32::from(prim!(Int16Type))),
        (DataType::Int32, _) => Value::Int(prim!(Int32Type)),
        (DataType::UInt8, _) => Value::Int(i32::from(prim!(UInt8Type))),
        (DataType::UInt16, _) => Value::Int(i32::from(prim!(UInt16Type))),
        (DataType::UInt32, _) => Value::Long(i64::from(prim!(UInt32Type))),
        (DataType::Int64, _) => Value::Long(prim!(Int64Type)),
        (DataType::UInt64, _) => {
            let v = prim!(UInt64Type);
            Value::Long(i64::try_from(v).map_err(|_| out_of_range(&v))?)
        }
        (DataType::Float32, _) => Value::Float(prim!(Float32Type)),
        (DataType::Float64, _) => Value::Double(prim!(Float64Type)),
        (DataType::Boolean, _) => Value::Boolean(array.as_boolean().value(row)),
        (DataType::Date32, _) => Value::Date(prim!(Date32Type)),
        (DataType::Timestamp(TimeUnit::Second, _), _) => {
            let v = prim!(TimestampSecondType);
            Value::Int(
                i32::try_from(v).map_err(|_| format!("{v} is out of the range of Avro int"))?,
            )
        }
        (DataType::Utf8, ChType::Enum { members, .. }) => {
            let name = array.as_string::<i32>().value(row);
            let index = members
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| format!("'{name}' is not a member of {ty}"))?;
            Value::Enum(u32::try_from(index).unwrap_or(u32::MAX), name.to_string())
        }
        (DataType::Utf8, _) => Value::String(array.as_string::<i32>().value(row).to_string()),
        (DataType::List(_), ChType::Array(inner)) => {
            let items = array.as_list::<i32>().value(row);
            Value::Array(
                (0..items.len())
                    .map(|i| to_avro(items.as_ref(), i, inner))
                    .collect::<Result<_, _>>()?,
            )
        }
        (other, _) => return Err(format!("values of Arrow type {other} cannot be written")),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use apache_avro::types::Record;

    use super::super::test_support::{kafka_table, msg, rows_text};
    use super::super::{decode_block, encode::encode_messages, prepare_table};
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/format/testdata");

    const SCHEMA: &str = r#"{"type": "record", "name": "event", "fields": [
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "boolean"},
        {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "e", "type": {"type": "enum", "name": "color", "symbols": ["red", "green"]}},
        {"name": "arr", "type": {"type": "array", "items": "long"}},
        {"name": "n", "type": ["null", "string"]},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "extra", "type": "string"}
    ]}"#;

    const COLUMNS: &[(&str, &str)] = &[
        ("i", "Int32"),
        ("l", "UInt64"),
        ("f", "Float32"),
        ("d", "Float64"),
        ("b", "Bool"),
        ("S", "String"),
        ("raw", "String"),
        ("e", "Enum8('red' = 1, 'green' = 2)"),
        ("arr", "Array(Int64)"),
        ("n", "Nullable(String)"),
        ("day", "Date"),
        ("ts", "DateTime"),
    ];

    fn file(rows: &[(i32, Option<&str>)]) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).expect("schema");
        let mut w = Writer::new(&schema, Vec::new());
        for (i, n) in rows {
            let mut r = Record::new(&schema).expect("record schema");
            r.put("i", *i);
            r.put("l", 1_i64 << 40);
            r.put("f", 0.5_f32);
            r.put("d", -2.25_f64);
            r.put("b", true);
            r.put("s", format!("s{i}"));
            r.put("raw", Value::Bytes(b"raw".to_vec()));
            r.put("e", Value::Enum(1, "green".into()));
            r.put("arr", Value::Array(vec![Value::Long(1), Value::Long(2)]));
            r.put(
                "n",
                match n {
                    Some(s) => Value::Union(1, Box::new(Value::String(s.to_string()))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            );
            r.put("day", Value::Date(19_782));
            r.put("ts", Value::TimestampMillis(1_700_000_000_999));
            r.put("extra", "skipped");
            w.append(r).expect("append");
        }
        w.into_inner().expect("file")
    }

    const ROW: &str =
        "1099511627776|0.5|-2.25|true|s{i}|raw|green|[1, 2]|{n}|2024-02-29|2023-11-14T22:13:20";

    fn row(i: i32, n: &str) -> String {
        format!(
            "{i}|{}",
            ROW.replace("{i}", &i.to_string()).replace("{n}", n)
        )
    }

    #[test]
    fn every_mapped_type_decodes_and_round_trips() {
        let t = kafka_table(COLUMNS, "Avro", &[("kafka_schema", "ignored:X")]);
        let messages = [
            msg(0, file(&[(1, Some("x")), (2, None)])),
            msg(1, file(&[(3, None)])),
        ];
        let decoded = decode_block(&t, "t", 0, &messages).expect("decodes");
        assert!(decoded.broken.is_empty(), "{:?}", decoded.broken);
        let want = [row(1, "x"), row(2, "NULL"), row(3, "NULL")];
        assert_eq!(rows_text(&decoded.batch, COLUMNS.len()), want);
        let offsets = decoded.batch.column_by_name("_offset").expect("_offset");
        assert_eq!(
            rows_text(
                &RecordBatch::try_from_iter([("o", offsets.clone())]).expect("batch"),
                1
            ),
            ["0", "0", "1"]
        );

        let declared = decoded
            .batch
            .project(&(0..COLUMNS.len()).collect::<Vec<_>>())
            .expect("project");
        let out =
            encode_messages(&t.columns, t.kafka().expect("kafka"), &declared, 2).expect("encodes");
        assert_eq!(out.len(), 2, "one container file per two rows");
        let again: Vec<_> = out
            .iter()
            .enumerate()
            .map(|(i, p)| msg(i as i64, p))
            .collect();
        let again = decode_block(&t, "t", 0, &again).expect("decodes");
        assert_eq!(rows_text(&again.batch, COLUMNS.len()), want);
        let written = Reader::new(out[0].as_slice()).expect("a container file");
        let schema = serde_json::to_value(written.writer_schema()).expect("json");
        assert_eq!(schema["fields"][1]["type"], json!("long"));
        assert_eq!(schema["fields"][9]["type"], json!(["null", "string"]));
        assert_eq!(schema["fields"][10]["type"]["logicalType"], json!("date"));
    }

    #[test]
    fn a_broken_message_costs_its_own_rows_and_names_the_column() {
        let t = kafka_table(COLUMNS, "Avro", &[]);
        let mut cut = file(&[(2, None), (3, None)]);
        cut.truncate(cut.len() - 20);
        let other = Schema::parse_str(
            r#"{"type": "record", "name": "r", "fields": [{"name": "i", "type": "int"}]}"#,
        )
        .expect("schema");
        let mut w = Writer::new(&other, Vec::new());
        let mut r = Record::new(&other).expect("record");
        r.put("i", 9);
        w.append(r).expect("append");
        let missing = w.into_inner().expect("file");
        let messages = [
            msg(0, file(&[(1, None)])),
            msg(1, cut),
            msg(2, b"not avro"),
            msg(3, missing),
            msg(4, file(&[(5, None)])),
        ];
        let decoded = decode_block(&t, "t", 0, &messages).expect("decodes");
        assert_eq!(rows_text(&decoded.batch, 1), ["1", "5"]);
        let errors: Vec<(i64, &str)> = decoded
            .broken
            .iter()
            .map(|b| (b.offset, b.error.as_str()))
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors.iter().all(|(_, e)| e.starts_with("Avro: ")),
            "{errors:?}"
        );
        assert!(
            errors[1].1.contains("not an Avro Object Container File"),
            "{errors:?}"
        );
        assert!(errors[2].1.contains("column l has no field"), "{errors:?}");

        let lenient = kafka_table(
            &[
                ("i", "Int32"),
                ("missing", "Nullable(String)"),
                ("zero", "UInt8"),
            ],
            "Avro",
            &[("input_format_avro_allow_missing_fields", "1")],
        );
        let decoded =
            decode_block(&lenient, "t", 0, &[msg(0, file(&[(4, None)]))]).expect("decodes");
        assert!(decoded.broken.is_empty(), "{:?}", decoded.broken);
        assert_eq!(rows_text(&decoded.batch, 3), ["4|NULL|0"]);

        let narrow = kafka_table(&[("i", "UInt8")], "Avro", &[]);
        let decoded =
            decode_block(&narrow, "t", 0, &[msg(0, file(&[(300, None)]))]).expect("decodes");
        let e = &decoded.broken[0].error;
        assert!(e.contains("record 0, field i") && e.contains("300"), "{e}");
    }

    #[test]
    fn what_clickhouse_writes_decodes() {
        let columns = [
            ("id", "Int64"),
            ("name", "String"),
            ("price", "Float64"),
            ("paid", "Bool"),
            ("status", "Enum8('UNKNOWN' = 0, 'OPEN' = 1, 'CLOSED' = 2)"),
            ("tags", "Array(String)"),
            ("qty", "UInt16"),
            ("day", "Date"),
            ("at", "DateTime"),
        ];
        let t = kafka_table(&columns, "Avro", &[]);
        let bytes = std::fs::read(Path::new(TESTDATA).join("clickhouse.avro")).expect("fixture");
        let decoded = decode_block(&t, "t", 0, &[msg(0, bytes)]).expect("decodes");
        assert!(decoded.broken.is_empty(), "{:?}", decoded.broken);
        assert_eq!(
            rows_text(&decoded.batch, columns.len()),
            [
                "0|n0|0.0|false|CLOSED|[0, x]|0|2024-01-02|2024-01-02T03:04:05",
                "1|n1|0.5|true|OPEN|[1, x]|10|2024-01-03|2024-01-02T03:04:06",
                "2|n2|1.0|false|CLOSED|[2, x]|20|2024-01-04|2024-01-02T03:04:07",
            ]
        );
    }

    #[test]
    fn create_refuses_columns_avro_cannot_name() {
        let mut t = kafka_table(&[("e", "Enum8('a-b' = 1)")], "Avro", &[]);
        let e = prepare_table(&mut t, Path::new("/nonexistent"))
            .expect_err("bad symbol")
            .to_string();
        assert!(e.contains("column e") && e.contains("a-b"), "{e}");
        let mut t = kafka_table(&[("has space", "Int32")], "Avro", &[]);
        let e = prepare_table(&mut t, Path::new("/nonexistent"))
            .expect_err("bad name")
            .to_string();
        assert!(e.contains("format Avro"), "{e}");
        let mut t = kafka_table(COLUMNS, "Avro", &[]);
        prepare_table(&mut t, Path::new("/nonexistent")).expect("valid columns");
    }
}
