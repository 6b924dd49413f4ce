//! Protobuf and ProtobufSingle, both directions, by the table's compiled schema.
//!
//! A `Protobuf` Kafka message holds one or more messages, each after its varint length;
//! a `ProtobufSingle` message is one message with no length. Each message is a row.
//! Fields reach the column of the same name (see `proto_schema`): a field a message does
//! not carry takes the column's default (NULL when Nullable), as in ClickHouse, which
//! for proto3 scalars means a zero value too, since those are not sent.
//! A column named for a field of a nested message (`inner.x`, `inner_x`) takes its default
//! when the message does not carry the nested one.
//! Values go into the Arrow builders typed, without a detour through text.

use std::borrow::Cow;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};

use super::cells::{CellError, ColumnBuilder};
use super::proto_schema::{self, FieldPath, SchemaError};
use super::rows::{decode_binary_messages, RowsBuilder};
use super::text_out::{write_value, Style};
use super::{BrokenMessage, FormatError, RawMessage};
use crate::catalog::kafka_settings::{CompiledSchema, Format, FormatSettings};
use crate::catalog::{ChType, Column};

/// Why one Kafka message could not be read; the format is added by `rows`.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("message {index} in the Kafka message: {source}")]
    Decode {
        index: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error("field {field}: {source}")]
    Cell {
        field: String,
        #[source]
        source: CellError,
    },
}

/// Why rows could not be written as Protobuf messages.
#[derive(Debug, thiserror::Error)]
pub enum ProtoEncodeError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("table has no compiled Protobuf schema (created before Protobuf was supported?)")]
    NoSchema,
    #[error("column {column} into field {field}: {reason}")]
    Value {
        column: String,
        field: String,
        reason: String,
    },
}

/// The message type and the field of each column.
fn schema(
    compiled: Option<&CompiledSchema>,
    columns: &[Column],
) -> Result<(MessageDescriptor, Vec<FieldPath>), ProtoEncodeError> {
    let compiled = compiled.ok_or(ProtoEncodeError::NoSchema)?;
    let message = proto_schema::load(compiled)?;
    let fields = proto_schema::field_map(&message, columns, &compiled.message)?;
    Ok((message, fields))
}

pub fn decode(
    format: Format,
    compiled: Option<&CompiledSchema>,
    columns: &[Column],
    settings: &FormatSettings,
    messages: &[RawMessage],
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    let (message, fields) =
        schema(compiled, columns).map_err(|e| FormatError::Internal(format!("{format}: {e}")))?;
    let delimited = format == Format::Protobuf;
    decode_binary_messages(format, columns, settings, messages, |payload, rows| {
        let mut buf = payload;
        let mut index = 0;
        while !buf.is_empty() {
            let mut one = DynamicMessage::new(message.clone());
            let read = if delimited {
                one.merge_length_delimited(&mut buf)
            } else {
                one.merge(&mut buf)
            };
            read.map_err(|source| ProtoError::Decode { index, source })?;
            push_row(&one, &fields, rows)?;
            index += 1;
        }
        Ok::<(), ProtoError>(())
    })
}

/// The nested message `parents` lead to, if `message` carries every one of them.
fn nested<'a>(
    message: &'a DynamicMessage,
    parents: &[FieldDescriptor],
) -> Option<&'a DynamicMessage> {
    let mut current = message;
    for field in parents {
        if !current.has_field(field) {
            return None;
        }
        match current.get_field(field) {
            Cow::Borrowed(Value::Message(inner)) => current = inner,
            _ => return None,
        }
    }
    Some(current)
}

/// The nested message `parents` lead to, made where `message` has none yet.
fn nested_mut<'a>(
    message: &'a mut DynamicMessage,
    parents: &[FieldDescriptor],
) -> Option<&'a mut DynamicMessage> {
    let mut current = message;
    for field in parents {
        match current.get_field_mut(field) {
            Value::Message(inner) => current = inner,
            _ => return None,
        }
    }
    Some(current)
}

fn push_row(
    message: &DynamicMessage,
    paths: &[FieldPath],
    rows: &mut RowsBuilder,
) -> Result<(), ProtoError> {
    for (column, path) in rows.columns().iter_mut().zip(paths) {
        let field = &path.leaf;
        let cell = |source| ProtoError::Cell {
            field: path.name(),
            source,
        };
        let Some(message) = nested(message, &path.parents) else {
            column.push_default();
            continue;
        };
        if field.is_list() {
            if let Value::List(items) = message.get_field(field).as_ref() {
                let Some(builder) = column.array_items() else {
                    return Err(cell(column.mismatch("a repeated field")));
                };
                for item in items {
                    push_value(builder, field, item).map_err(cell)?;
                }
            }
            column.end_array();
        } else if message.has_field(field) {
            push_value(column, field, message.get_field(field).as_ref()).map_err(cell)?;
        } else {
            column.push_default();
        }
    }
    rows.end_row();
    Ok(())
}

fn push_value(
    column: &mut ColumnBuilder,
    field: &FieldDescriptor,
    value: &Value,
) -> Result<(), CellError> {
    match value {
        Value::Bool(v) => column.push_bool(*v),
        Value::I32(v) => column.push_int(i128::from(*v)),
        Value::I64(v) => column.push_int(i128::from(*v)),
        Value::U32(v) => column.push_int(i128::from(*v)),
        Value::U64(v) => column.push_int(i128::from(*v)),
        Value::F32(v) => column.push_float(f64::from(*v)),
        Value::F64(v) => column.push_float(*v),
        Value::String(s) => column.push_text(s),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => column.push_text(s),
            Err(_) => Err(column.mismatch("bytes that are not UTF-8 (String columns hold UTF-8)")),
        },
        Value::EnumNumber(n) => {
            let name = match field.kind() {
                Kind::Enum(e) => e.get_value(*n).map(|v| v.name().to_string()),
                _ => None,
            };
            column.push_enum(name.as_deref().unwrap_or_default(), *n)
        }
        Value::Message(_) | Value::Map(_) | Value::List(_) => {
            Err(column.mismatch("a nested message, map or list"))
        }
    }
}

/// The messages for `batch`: `per_message` length-delimited messages each for Protobuf,
/// one message each, without a length, for ProtobufSingle.
pub fn encode(
    format: Format,
    compiled: Option<&CompiledSchema>,
    columns: &[Column],
    batch: &RecordBatch,
    per_message: usize,
) -> Result<Vec<Vec<u8>>, ProtoEncodeError> {
    let (message, paths) = schema(compiled, columns)?;
    let per_message = if format == Format::ProtobufSingle {
        1
    } else {
        per_message.max(1)
    };
    let mut out = Vec::with_capacity(batch.num_rows().div_ceil(per_message));
    let mut payload = Vec::new();
    for row in 0..batch.num_rows() {
        let mut one = DynamicMessage::new(message.clone());
        for ((column, path), array) in columns.iter().zip(&paths).zip(batch.columns()) {
            if array.is_null(row) {
                continue;
            }
            let field = &path.leaf;
            let failed = |reason: String| ProtoEncodeError::Value {
                column: column.name.clone(),
                field: path.name(),
                reason,
            };
            let value = if let Some(list) = array.as_list_opt::<i32>() {
                let items = list.value(row);
                let mut values = Vec::with_capacity(items.len());
                for i in 0..items.len() {
                    if items.is_null(i) {
                        return Err(failed("a NULL item cannot be written".into()));
                    }
                    let item_ty = match column.ty.base() {
                        ChType::Array(inner) => inner.as_ref(),
                        other => other,
                    };
                    values.push(field_value(items.as_ref(), i, field, item_ty).map_err(failed)?);
                }
                Value::List(values)
            } else {
                field_value(array.as_ref(), row, field, &column.ty).map_err(failed)?
            };
            nested_mut(&mut one, &path.parents)
                .ok_or_else(|| failed("its parent is not a message".into()))?
                .set_field(field, value);
        }
        if format == Format::ProtobufSingle {
            payload.extend(one.encode_to_vec());
        } else {
            payload.extend(one.encode_length_delimited_to_vec());
        }
        if (row + 1) % per_message == 0 || row + 1 == batch.num_rows() {
            out.push(std::mem::take(&mut payload));
        }
    }
    Ok(out)
}

/// A cell of a column as a value of the field's kind (for a list, of its items).
fn field_value(
    array: &dyn Array,
    row: usize,
    field: &FieldDescriptor,
    ty: &ChType,
) -> Result<Value, String> {
    let cell = Cell::of(array, row)?;
    let int = |cell: &Cell| -> Result<i128, String> {
        match cell {
            Cell::Int(v) => Ok(*v),
            Cell::Bool(b) => Ok(i128::from(*b)),
            Cell::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not an integer")),
            Cell::Float(_) => Err("a float cannot be written as an integer".into()),
        }
    };
    let range = |v: i128| format!("{v} is out of the field's range");
    Ok(match field.kind() {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            let v = int(&cell)?;
            Value::I32(i32::try_from(v).map_err(|_| range(v))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            let v = int(&cell)?;
            Value::I64(i64::try_from(v).map_err(|_| range(v))?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            let v = int(&cell)?;
            Value::U32(u32::try_from(v).map_err(|_| range(v))?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            let v = int(&cell)?;
            Value::U64(u64::try_from(v).map_err(|_| range(v))?)
        }
        Kind::Float | Kind::Double => {
            let v = match cell {
                Cell::Float(f) => f,
                Cell::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{s}' is not a number"))?,
                other => int(&other)? as f64,
            };
            if field.kind() == Kind::Float {
                Value::F32(v as f32)
            } else {
                Value::F64(v)
            }
        }
        Kind::Bool => match cell {
            Cell::Bool(b) => Value::Bool(b),
            Cell::Text(s) => match s.trim() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(format!("'{s}' is not a Bool")),
            },
            other => Value::Bool(int(&other)? != 0),
        },
        Kind::String => Value::String(text(array, row, cell)?),
        Kind::Bytes => Value::Bytes(text(array, row, cell)?.into_bytes().into()),
        Kind::Enum(e) => match cell {
            Cell::Text(name) => {
                let number = e.get_value_by_name(&name).map(|v| v.number()).or_else(|| {
                    ty.enum_members()
                        .and_then(|m| m.iter().find(|(n, _)| *n == *name))
                        .map(|(_, n)| i32::from(*n))
                });
                Value::EnumNumber(
                    number.ok_or_else(|| format!("'{name}' is no value of {}", e.full_name()))?,
                )
            }
            other => {
                let v = int(&other)?;
                Value::EnumNumber(i32::try_from(v).map_err(|_| range(v))?)
            }
        },
        Kind::Message(_) => return Err("nested messages are not supported".into()),
    })
}

/// A cell's value, as the conversions above need it.
enum Cell<'a> {
    Int(i128),
    Float(f64),
    Bool(bool),
    Text(Cow<'a, str>),
}

impl<'a> Cell<'a> {
    fn of(array: &'a dyn Array, row: usize) -> Result<Cell<'a>, String> {
        macro_rules! int {
            ($t:ty) => {
                Cell::Int(i128::from(array.as_primitive::<$t>().value(row)))
            };
        }
        Ok(match array.data_type() {
            DataType::Int8 => int!(Int8Type),
            DataType::Int16 => int!(Int16Type),
            DataType::Int32 => int!(Int32Type),
            DataType::Int64 => int!(Int64Type),
            DataType::UInt8 => int!(UInt8Type),
            DataType::UInt16 => int!(UInt16Type),
            DataType::UInt32 => int!(UInt32Type),
            DataType::UInt64 => int!(UInt64Type),
            DataType::Float32 => {
                Cell::Float(f64::from(array.as_primitive::<Float32Type>().value(row)))
            }
            DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
            DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
            DataType::Utf8 => Cell::Text(Cow::Borrowed(array.as_string::<i32>().value(row))),
            DataType::Date32 => Cell::Int(i128::from(
                array
                    .as_primitive::<arrow::datatypes::Date32Type>()
                    .value(row),
            )),
            DataType::Timestamp(TimeUnit::Second, _) => Cell::Int(i128::from(
                array.as_primitive::<TimestampSecondType>().value(row),
            )),
            other => return Err(format!("values of Arrow type {other} cannot be written")),
        })
    }
}

/// A cell as text: a String as it is, anything else as ClickHouse writes it in text
/// formats (a Date as `2024-01-31`, not its day number).
fn text(array: &dyn Array, row: usize, cell: Cell<'_>) -> Result<String, String> {
    if let Cell::Text(s) = cell {
        return Ok(s.into_owned());
    }
    let mut out = Vec::new();
    write_value(&mut out, array, row, Style::Tsv).map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost_reflect::{DynamicMessage, ReflectMessage as _, Value};

    use super::super::test_support::{kafka_table, msg, rows_text};
    use super::super::{decode_block, encode::encode_messages, prepare_table, PrepareError};
    use super::*;
    use crate::catalog::TableDef;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/format/testdata");

    /// Every scalar kind, a repeated field, an enum, an optional and a nested message.
    const ALL: &str = r#"
        syntax = "proto3";
        package shop;
        enum Status { UNKNOWN = 0; OPEN = 1; CLOSED = 2; }
        message Inner { int32 x = 1; }
        message Order {
          int64 id = 1;
          string name = 2;
          double price = 3;
          bool paid = 4;
          Status status = 5;
          repeated string tags = 6;
          uint32 qty = 7;
          bytes note = 8;
          optional int32 maybe = 9;
          sint32 delta = 10;
          fixed64 big = 11;
          float ratio = 12;
          int32 day = 13;
          int64 at = 14;
          repeated Status history = 15;
          Inner inner = 16;
          map<string, int32> counts = 17;
        }
    "#;

    const COLUMNS: &[(&str, &str)] = &[
        ("id", "Int64"),
        ("Name", "String"),
        ("price", "Float64"),
        ("paid", "Bool"),
        ("status", "Enum8('UNKNOWN' = 0, 'OPEN' = 1, 'CLOSED' = 2)"),
        ("tags", "Array(String)"),
        ("qty", "UInt16"),
        ("note", "String"),
        ("maybe", "Nullable(Int32)"),
        ("delta", "Int32"),
        ("big", "UInt64"),
        ("ratio", "Float32"),
        ("day", "Date"),
        ("at", "DateTime"),
        ("history", "Array(String)"),
    ];

    fn schema_dir(proto: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("shop.proto"), proto).expect("write schema");
        dir
    }

    fn table(format: &str, columns: &[(&str, &str)], dir: &Path) -> Result<TableDef, PrepareError> {
        let mut t = kafka_table(columns, format, &[("kafka_schema", "shop:Order")]);
        prepare_table(&mut t, dir)?;
        Ok(t)
    }

    fn order(t: &TableDef, fields: &[(&str, Value)]) -> DynamicMessage {
        let compiled = t.kafka().and_then(|k| k.compiled_schema.as_ref());
        let desc = proto_schema::load(compiled.expect("compiled")).expect("loads");
        let mut m = DynamicMessage::new(desc);
        for (name, value) in fields {
            m.set_field_by_name(name, value.clone());
        }
        m
    }

    fn full(t: &TableDef, id: i64) -> DynamicMessage {
        order(
            t,
            &[
                ("id", Value::I64(id)),
                ("name", Value::String(format!("n{id}"))),
                ("price", Value::F64(2.5)),
                ("paid", Value::Bool(true)),
                ("status", Value::EnumNumber(2)),
                (
                    "tags",
                    Value::List(vec![Value::String("a".into()), Value::String("b".into())]),
                ),
                ("qty", Value::U32(7)),
                ("note", Value::Bytes(bytes::Bytes::from_static(b"hi"))),
                ("maybe", Value::I32(0)),
                ("delta", Value::I32(-3)),
                ("big", Value::U64(u64::MAX)),
                ("ratio", Value::F32(0.5)),
                ("day", Value::I32(19_782)),
                ("at", Value::I64(1_700_000_000)),
                (
                    "history",
                    Value::List(vec![Value::EnumNumber(1), Value::EnumNumber(2)]),
                ),
            ],
        )
    }

    const FULL_ROW: &str = "n{id}|2.5|true|CLOSED|[a, b]|7|hi|0|-3|18446744073709551615|0.5|2024-02-29|2023-11-14T22:13:20|[OPEN, CLOSED]";

    #[test]
    fn every_mapped_type_decodes_and_round_trips() {
        let dir = schema_dir(ALL);
        let t = table("Protobuf", COLUMNS, dir.path()).expect("compiles");
        let mut two = full(&t, 1).encode_length_delimited_to_vec();
        // Fields left out take the column defaults; the optional one is NULL.
        two.extend(order(&t, &[("id", Value::I64(2))]).encode_length_delimited_to_vec());
        let decoded = decode_block(&t, "t", 0, &[msg(0, &two)]).expect("decodes");
        assert!(decoded.broken.is_empty(), "{:?}", decoded.broken);
        let want = vec![
            format!("1|{}", FULL_ROW.replace("{id}", "1")),
            "2||0.0|false|UNKNOWN|[]|0||NULL|0|0|0.0|1970-01-01|1970-01-01T00:00:00|[]".into(),
        ];
        assert_eq!(rows_text(&decoded.batch, COLUMNS.len()), want);

        // Written back: two rows per Kafka message, each length-delimited, read again.
        let declared = decoded
            .batch
            .project(&(0..COLUMNS.len()).collect::<Vec<_>>())
            .expect("project");
        let kafka = t.kafka().expect("kafka");
        let out = encode_messages(&t.columns, kafka, &declared, 2).expect("encodes");
        assert_eq!(out.len(), 1);
        let again = decode_block(&t, "t", 0, &[msg(0, &out[0])]).expect("decodes");
        assert_eq!(rows_text(&again.batch, COLUMNS.len()), want);
    }

    #[test]
    fn nested_message_fields_go_to_columns_named_by_path() {
        let dir = schema_dir(ALL);
        let columns = [
            ("id", "Int64"),
            ("inner.x", "Int32"),
            ("INNER_x", "Nullable(Int32)"),
        ];
        let t = table("Protobuf", &columns, dir.path()).expect("compiles");
        let mut with_inner = order(&t, &[("id", Value::I64(1))]);
        let inner = with_inner
            .descriptor()
            .parent_pool()
            .get_message_by_name("shop.Inner")
            .expect("shop.Inner");
        let mut x = DynamicMessage::new(inner);
        x.set_field_by_name("x", Value::I32(5));
        with_inner.set_field_by_name("inner", Value::Message(x));
        let mut payload = with_inner.encode_length_delimited_to_vec();
        payload.extend(order(&t, &[("id", Value::I64(2))]).encode_length_delimited_to_vec());
        let decoded = decode_block(&t, "t", 0, &[msg(0, payload)]).expect("decodes");
        // Without the nested message, its fields take the columns' defaults.
        let want = ["1|5|5", "2|0|NULL"];
        assert_eq!(rows_text(&decoded.batch, 3), want);
        let declared = decoded.batch.project(&[0, 1, 2]).expect("project");
        let out =
            encode_messages(&t.columns, t.kafka().expect("kafka"), &declared, 2).expect("encodes");
        let again = decode_block(&t, "t", 0, &[msg(0, &out[0])]).expect("decodes");
        assert_eq!(rows_text(&again.batch, 3), want);

        let mut t = kafka_table(
            &[("inner.y", "Int32")],
            "Protobuf",
            &[("kafka_schema", "shop:Order")],
        );
        let e = prepare_table(&mut t, dir.path())
            .expect_err("no such field")
            .to_string();
        assert!(e.contains("column inner.y matches no field"), "{e}");
    }

    #[test]
    fn protobuf_single_is_one_message_without_a_length() {
        let dir = schema_dir(ALL);
        let t = table("ProtobufSingle", COLUMNS, dir.path()).expect("compiles");
        let messages = [
            msg(0, full(&t, 5).encode_to_vec()),
            msg(1, full(&t, 6).encode_to_vec()),
        ];
        let decoded = decode_block(&t, "t", 0, &messages).expect("decodes");
        let rows = rows_text(&decoded.batch, 2);
        assert_eq!(rows, ["5|n5", "6|n6"]);
        let declared = decoded
            .batch
            .project(&(0..COLUMNS.len()).collect::<Vec<_>>())
            .expect("project");
        let out = encode_messages(&t.columns, t.kafka().expect("kafka"), &declared, 100)
            .expect("encodes");
        assert_eq!(
            out.len(),
            2,
            "ProtobufSingle: a row per message whatever the setting"
        );
        assert_eq!(out[0], messages[0].payload.as_deref().expect("payload"));
    }

    #[test]
    fn a_broken_message_costs_its_own_rows_and_names_the_field() {
        let dir = schema_dir(ALL);
        let t = table("Protobuf", COLUMNS, dir.path()).expect("compiles");
        let good = full(&t, 1).encode_length_delimited_to_vec();
        let mut truncated = good.clone();
        truncated.extend(&good[..good.len() - 3]);
        let too_big = order(&t, &[("qty", Value::U32(70_000))]).encode_length_delimited_to_vec();
        let messages = [
            msg(0, &good),
            msg(1, &truncated),
            msg(2, &too_big),
            msg(3, &good),
        ];
        let decoded = decode_block(&t, "t", 0, &messages).expect("decodes");
        assert_eq!(rows_text(&decoded.batch, 1), ["1", "1"]);
        let offsets: Vec<i64> = decoded.broken.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, [1, 2]);
        assert!(
            decoded.broken[0]
                .error
                .starts_with("Protobuf: message 1 in the Kafka message"),
            "{}",
            decoded.broken[0].error
        );
        let e = &decoded.broken[1].error;
        assert!(
            e.contains("field qty") && e.contains("column qty") && e.contains("70000"),
            "{e}"
        );
    }

    #[test]
    fn what_clickhouse_writes_decodes() {
        let columns = [
            ("id", "Int64"),
            ("name", "String"),
            ("price", "Float64"),
            ("paid", "UInt8"),
            ("status", "Enum8('UNKNOWN' = 0, 'OPEN' = 1, 'CLOSED' = 2)"),
            ("tags", "Array(String)"),
            ("qty", "UInt16"),
            ("day", "Date"),
            ("at", "DateTime"),
        ];
        let mut t = kafka_table(
            &columns,
            "Protobuf",
            &[("kafka_schema", "order.proto:Order")],
        );
        prepare_table(&mut t, Path::new(TESTDATA)).expect("compiles");
        let bytes = std::fs::read(Path::new(TESTDATA).join("clickhouse.pb")).expect("fixture");
        let decoded = decode_block(&t, "t", 0, &[msg(0, bytes)]).expect("decodes");
        assert!(decoded.broken.is_empty(), "{:?}", decoded.broken);
        assert_eq!(
            rows_text(&decoded.batch, columns.len()),
            [
                "0|n0|0.0|0|CLOSED|[0, x]|0|2024-01-02|2024-01-02T03:04:05",
                "1|n1|0.5|1|OPEN|[1, x]|10|2024-01-03|2024-01-02T03:04:06",
                "2|n2|1.0|0|CLOSED|[2, x]|20|2024-01-04|2024-01-02T03:04:07",
            ]
        );
    }

    #[test]
    fn create_errors_name_file_message_column_and_field() {
        let dir = schema_dir(ALL);
        let err = |format: &str, schema: &str, columns: &[(&str, &str)], dir: &Path| {
            let mut t = kafka_table(columns, format, &[("kafka_schema", schema)]);
            prepare_table(&mut t, dir).expect_err(schema).to_string()
        };
        let e = err(
            "Protobuf",
            "nothere.proto:Order",
            &[("id", "Int64")],
            dir.path(),
        );
        assert!(e.contains("nothere.proto not found"), "{e}");
        let e = err("Protobuf", "shop:Nope", &[("id", "Int64")], dir.path());
        assert!(
            e.contains("no message type Nope") && e.contains("shop.Order"),
            "{e}"
        );
        let e = err("Protobuf", "../shop:Order", &[("id", "Int64")], dir.path());
        assert!(e.contains("inside format_schema_path"), "{e}");
        let e = err(
            "Protobuf",
            "shop:Order",
            &[("id", "Int64"), ("idd", "Int64")],
            dir.path(),
        );
        assert!(
            e.contains("column idd matches no field of message shop.Order"),
            "{e}"
        );
        for (column, ty, says) in [
            ("price", "Int64", "field price (double)"),
            ("tags", "String", "needs an Array column"),
            ("id", "Array(Int64)", "needs a repeated field"),
            (
                "inner",
                "String",
                "columns named after its fields (inner.x or inner_x)",
            ),
            ("counts", "String", "map fields are not supported"),
            ("status", "Enum8('OPEN' = 1)", "UNKNOWN = 0, CLOSED = 2"),
        ] {
            let e = err("ProtobufSingle", "shop:Order", &[(column, ty)], dir.path());
            assert!(
                e.contains(&format!("column {column}")) && e.contains(says),
                "{e}"
            );
        }
        let broken = schema_dir("syntax = \"proto3\"; message Order { int64 id = 1 }");
        let e = err(
            "Protobuf",
            "shop.proto:Order",
            &[("id", "Int64")],
            broken.path(),
        );
        assert!(e.contains("shop.proto does not compile"), "{e}");
    }

    #[test]
    fn kafka_schema_is_required_for_protobuf_only() {
        let pairs = |format: &str, schema: Option<&str>| {
            let mut p: Vec<(String, String)> = [
                ("kafka_broker_list", "b:9092"),
                ("kafka_topic_list", "t"),
                ("kafka_group_name", "g"),
                ("kafka_format", format),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            p.extend(schema.map(|s| ("kafka_schema".to_string(), s.to_string())));
            crate::catalog::KafkaSettings::from_pairs(&p)
        };
        let e = pairs("Protobuf", None).expect_err("no schema").to_string();
        assert!(
            e.contains("format Protobuf requires setting 'kafka_schema'"),
            "{e}"
        );
        let e = pairs("ProtobufSingle", Some("no_colon"))
            .expect_err("bad form")
            .to_string();
        assert!(e.contains("'file.proto:MessageName'"), "{e}");
        // Ignored, as ClickHouse ignores it, for a format that takes no schema.
        let s = pairs("JSONEachRow", Some("whatever")).expect("ignored");
        assert_eq!(s.compiled_schema, None);
        let mut p = vec![("kafka_max_rows_per_message".to_string(), "10".to_string())];
        p.extend(
            [
                ("kafka_broker_list", "b:9092"),
                ("kafka_topic_list", "t"),
                ("kafka_group_name", "g"),
                ("kafka_format", "ProtobufSingle"),
                ("kafka_schema", "s:M"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let s = crate::catalog::KafkaSettings::from_pairs(&p).expect("valid");
        assert_eq!(
            s.max_rows_per_message, 1,
            "ProtobufSingle: one row a message"
        );
        let e = pairs("AvroConfluent", None)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("schema registry"), "{e}");
    }
}
