//! JSONEachRow straight into Arrow builders, parsed by serde_json: the fast path of
//! `json_each_row`.
//!
//! arrow-json first builds a tape of every message and then walks it once per column,
//! looking each key up in a SipHash map; on the guide's events that took 4.2 µs an event
//! here, half of a node's CPU in the three-node benchmark. This path parses each message
//! once and appends every value to its column's builder as it is read: 2.3 µs an event.
//!
//! Its result must equal arrow-json's under `json_each_row`'s settings (primitives
//! coerced to text, unknown keys skipped), so it accepts only input whose arrow-json
//! result is known: strings, `true`/`false` and integers in text columns, integers in
//! range in integer columns, booleans in boolean columns, arrays of these, `null` for a
//! whole value. On anything else (a float, a string in a number column, a repeated key,
//! two rows in one message, broken JSON) it gives up on the block, and the caller decodes
//! the block with arrow-json, which also names what is wrong with a broken message. Such
//! a block costs the time this path spent before giving up on top of arrow-json's, at
//! most about half again.

use std::fmt;
use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Int16Builder, Int32Builder, Int64Builder, Int8Builder,
    ListArray, RecordBatch, StringBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
    UInt8Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::RawMessage;

/// Decodes every message of a block into `schema` (arrow-json's decode schema); `None`
/// when a column type or any message is outside what this path accepts. With
/// `skip_unknown_fields` off, a key the table lacks gives up too: arrow-json then names it.
pub fn decode(
    schema: &SchemaRef,
    messages: &[RawMessage],
    skip_unknown_fields: bool,
) -> Option<(RecordBatch, Vec<usize>)> {
    let rows_hint = messages.len();
    let mut columns = schema
        .fields()
        .iter()
        .map(|f| ColumnSink::for_type(f.data_type(), rows_hint))
        .collect::<Option<Vec<_>>>()?;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut seen = vec![false; columns.len()];
    let mut rows_per_message = Vec::with_capacity(messages.len());
    for m in messages {
        let payload = m.payload.as_deref().unwrap_or_default();
        // arrow-json reads a message of whitespace alone as no rows.
        if payload
            .iter()
            .all(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
        {
            rows_per_message.push(0);
            continue;
        }
        // Checked once here, the text is not checked again string by string, which took
        // a sixth of this path's time.
        let text = std::str::from_utf8(payload).ok()?;
        let mut de = serde_json::Deserializer::from_str(text);
        seen.fill(false);
        let row = RowSeed {
            columns: &mut columns,
            names: &names,
            seen: &mut seen,
            skip_unknown_fields,
        };
        row.deserialize(&mut de).ok()?;
        // A second row in the message, or anything after the row, goes the slow way.
        de.end().ok()?;
        rows_per_message.push(1);
    }
    let arrays = columns
        .into_iter()
        .map(ColumnSink::finish)
        .collect::<Option<Vec<_>>>()?;
    let batch = RecordBatch::try_new(schema.clone(), arrays).ok()?;
    Some((batch, rows_per_message))
}

/// Gives up on the block. The message is never shown: the block then goes to arrow-json.
fn give_up<T, E: de::Error>() -> Result<T, E> {
    Err(E::custom("outside the fast path"))
}

/// One column's values as they are read.
enum ColumnSink {
    Scalar(ScalarSink),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        validity: NullBufferBuilder,
        items: ScalarSink,
    },
}

impl ColumnSink {
    fn for_type(data_type: &DataType, rows_hint: usize) -> Option<ColumnSink> {
        match data_type {
            DataType::List(field) => Some(ColumnSink::List {
                field: field.clone(),
                offsets: {
                    let mut offsets = Vec::with_capacity(rows_hint + 1);
                    offsets.push(0);
                    offsets
                },
                validity: NullBufferBuilder::new(rows_hint),
                items: ScalarSink::for_type(field.data_type(), rows_hint)?,
            }),
            other => ScalarSink::for_type(other, rows_hint).map(ColumnSink::Scalar),
        }
    }

    fn append_null(&mut self) -> Option<()> {
        match self {
            ColumnSink::Scalar(sink) => sink.append_null(),
            ColumnSink::List {
                offsets, validity, ..
            } => append_null_list(offsets, validity)?,
        }
        Some(())
    }

    fn finish(self) -> Option<ArrayRef> {
        match self {
            ColumnSink::Scalar(mut sink) => Some(sink.finish()),
            ColumnSink::List {
                field,
                offsets,
                mut validity,
                mut items,
            } => {
                let offsets = OffsetBuffer::new(offsets.into());
                ListArray::try_new(field, offsets, items.finish(), validity.finish())
                    .ok()
                    .map(|list| Arc::new(list) as ArrayRef)
            }
        }
    }
}

enum ScalarSink {
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
}

/// A match on a sink whose eight integer arms all run `$body` on their builder; the
/// arms for the other sinks follow it.
macro_rules! match_sink {
    ($sink:expr, $b:ident => $body:expr, $($other_arms:tt)*) => {
        match $sink {
            ScalarSink::Int8($b) => $body,
            ScalarSink::Int16($b) => $body,
            ScalarSink::Int32($b) => $body,
            ScalarSink::Int64($b) => $body,
            ScalarSink::UInt8($b) => $body,
            ScalarSink::UInt16($b) => $body,
            ScalarSink::UInt32($b) => $body,
            ScalarSink::UInt64($b) => $body,
            $($other_arms)*
        }
    };
}

impl ScalarSink {
    fn for_type(data_type: &DataType, rows: usize) -> Option<ScalarSink> {
        Some(match data_type {
            // The guide's strings average about 20 bytes.
            DataType::Utf8 => ScalarSink::Text(StringBuilder::with_capacity(rows, rows * 24)),
            DataType::Boolean => ScalarSink::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Int8 => ScalarSink::Int8(Int8Builder::with_capacity(rows)),
            DataType::Int16 => ScalarSink::Int16(Int16Builder::with_capacity(rows)),
            DataType::Int32 => ScalarSink::Int32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => ScalarSink::Int64(Int64Builder::with_capacity(rows)),
            DataType::UInt8 => ScalarSink::UInt8(UInt8Builder::with_capacity(rows)),
            DataType::UInt16 => ScalarSink::UInt16(UInt16Builder::with_capacity(rows)),
            DataType::UInt32 => ScalarSink::UInt32(UInt32Builder::with_capacity(rows)),
            DataType::UInt64 => ScalarSink::UInt64(UInt64Builder::with_capacity(rows)),
            // Floats are parsed with other rounding than arrow-json's; dates and the rest
            // have forms of their own. Those tables take arrow-json's path.
            _ => return None,
        })
    }

    fn len(&self) -> usize {
        match_sink!(self, b => b.len(),
            ScalarSink::Text(b) => b.len(),
            ScalarSink::Bool(b) => b.len(),
        )
    }

    fn append_null(&mut self) {
        match_sink!(self, b => b.append_null(),
            ScalarSink::Text(b) => b.append_null(),
            ScalarSink::Bool(b) => b.append_null(),
        )
    }

    /// An integer as arrow-json stores it: in range, or not at all.
    fn append_int(&mut self, v: i128) -> Option<()> {
        match_sink!(self, b => b.append_value(v.try_into().ok()?),
            ScalarSink::Text(b) => b.append_value(v.to_string()),
            ScalarSink::Bool(_) => return None,
        );
        Some(())
    }

    fn finish(&mut self) -> ArrayRef {
        match_sink!(self, b => Arc::new(b.finish()),
            ScalarSink::Text(b) => Arc::new(b.finish()),
            ScalarSink::Bool(b) => Arc::new(b.finish()),
        )
    }
}

/// One JSON object: its known keys fill their columns, the others are skipped, and the
/// columns it does not name get a null (arrow-json's reading of an omitted key).
struct RowSeed<'a> {
    columns: &'a mut [ColumnSink],
    names: &'a [&'a str],
    seen: &'a mut [bool],
    skip_unknown_fields: bool,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys usually come in column order, so the next column is tried first.
        let mut next = 0;
        while let Some(key) = map.next_key_seed(KeySeed {
            names: self.names,
            hint: next,
        })? {
            let Some(i) = key else {
                if !self.skip_unknown_fields {
                    return give_up();
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            // arrow-json keeps the last of repeated keys; that case goes its way.
            if std::mem::replace(&mut self.seen[i], true) {
                return give_up();
            }
            map.next_value_seed(ValueSeed(&mut self.columns[i]))?;
            next = i + 1;
        }
        for (column, seen) in self.columns.iter_mut().zip(self.seen.iter()) {
            if !seen {
                column.append_null().map_or_else(give_up, Ok)?;
            }
        }
        Ok(())
    }
}

/// A key: the index of its column, or `None` for a key the table does not have.
struct KeySeed<'a> {
    names: &'a [&'a str],
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        if self.names.get(self.hint) == Some(&key) {
            return Ok(Some(self.hint));
        }
        Ok(self.names.iter().position(|name| *name == key))
    }
}

/// A column's value in a row.
struct ValueSeed<'a>(&'a mut ColumnSink);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0 {
            ColumnSink::Scalar(sink) => d.deserialize_any(ScalarSeed {
                sink,
                null_allowed: true,
            }),
            ColumnSink::List {
                offsets,
                validity,
                items,
                ..
            } => d.deserialize_any(ListVisitor {
                offsets,
                validity,
                items,
            }),
        }
    }
}

/// A scalar value; `null` is allowed for a whole column value, not for an array item.
struct ScalarSeed<'a> {
    sink: &'a mut ScalarSink,
    null_allowed: bool,
}

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.sink {
            ScalarSink::Text(b) => {
                b.append_value(v);
                Ok(())
            }
            _ => give_up(),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.sink {
            ScalarSink::Text(b) => b.append_value(if v { "true" } else { "false" }),
            ScalarSink::Bool(b) => b.append_value(v),
            _ => return give_up(),
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.sink.append_int(i128::from(v)).map_or_else(give_up, Ok)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        // serde_json reports only negative numbers here, and `-0` as 0, whose text
        // arrow-json would keep as "-0".
        if v == 0 {
            return give_up();
        }
        self.sink.append_int(i128::from(v)).map_or_else(give_up, Ok)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        give_up()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if !self.null_allowed {
            return give_up();
        }
        self.sink.append_null();
        Ok(())
    }
}

/// An array column's value: the items go to the item builder, the row's end to the
/// offsets.
struct ListVisitor<'a> {
    offsets: &'a mut Vec<i32>,
    validity: &'a mut NullBufferBuilder,
    items: &'a mut ScalarSink,
}

impl<'de> Visitor<'de> for ListVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ScalarSeed {
                sink: self.items,
                null_allowed: false,
            })?
            .is_some()
        {}
        let end = i32::try_from(self.items.len()).map_or_else(|_| give_up(), Ok)?;
        self.offsets.push(end);
        self.validity.append_non_null();
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        append_null_list(self.offsets, self.validity).map_or_else(give_up, Ok)
    }
}

/// A `null` array: no items, so its end is the previous row's.
fn append_null_list(offsets: &mut Vec<i32>, validity: &mut NullBufferBuilder) -> Option<()> {
    offsets.push(*offsets.last()?);
    validity.append_null();
    Some(())
}
