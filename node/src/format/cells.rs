//! One column of a Kafka table filled cell by cell, straight into its Arrow builder: from
//! text for the text formats (CSV, TabSeparated, JSONCompactEachRow, the raw formats), from
//! typed values (`push_int`, `push_enum`, ...) for Protobuf and Avro.
//!
//! A cell is parsed with ClickHouse's text rules: integers in range, floats with `inf` and
//! `nan`, Bool words (`true`, `1`, `yes`, `on`, ...), Enum names or numbers (stored by
//! name), Date and DateTime per `date_time_input_format`, arrays as `[1,'a',NULL]`. NULL
//! and defaults follow `input_format_null_as_default`.
//! Invariant: a failed push appends nothing to a column, or at most the broken row itself
//! (an array whose items were partly pushed), so `RowsBuilder` can pad a broken row.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, Int8Builder, ListArray, NullBufferBuilder,
    StringBuilder, TimestampSecondBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
    UInt8Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef};
use arrow::error::ArrowError;

use super::array_text::{split_array_item, ArrayItem};
use super::datetime_text::{parse_date, parse_datetime};
use crate::catalog::kafka_settings::{DateTimeInputFormat, FormatSettings};
use crate::catalog::ChType;

/// Longest piece of a bad value quoted in an error.
const QUOTED_MAX_CHARS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CellError {
    #[error("column {column}: cannot parse '{value}' as {ty}")]
    Parse {
        column: String,
        ty: String,
        value: String,
    },
    #[error("column {column}: NULL in non-Nullable {ty} (input_format_null_as_default = 0)")]
    NotNullable { column: String, ty: String },
    #[error("column {column}: '{value}' is not a member of {ty}")]
    NotMember {
        column: String,
        ty: String,
        value: String,
    },
    #[error("column {column}: {what} given for {ty}")]
    Mismatch {
        column: String,
        ty: String,
        what: &'static str,
    },
}

/// A value quoted in an error, cut short.
fn shown(value: &str) -> String {
    if value.chars().count() <= QUOTED_MAX_CHARS {
        return value.to_string();
    }
    let cut: String = value.chars().take(QUOTED_MAX_CHARS).collect();
    format!("{cut}...")
}

/// A column's builder, with what its cells need to know.
pub struct ColumnBuilder {
    name: String,
    ty: ChType,
    nullable: bool,
    null_as_default: bool,
    date_time: DateTimeInputFormat,
    values: Values,
}

enum Values {
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Enum(StringBuilder, Vec<(String, i16)>),
    Date(Date32Builder),
    DateTime(TimestampSecondBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        validity: NullBufferBuilder,
        items: Box<ColumnBuilder>,
    },
}

/// A match whose eight integer arms run `$body` on their builder.
macro_rules! each_int {
    ($values:expr, $b:ident => $body:expr, $($other:tt)*) => {
        match $values {
            Values::Int8($b) => $body,
            Values::Int16($b) => $body,
            Values::Int32($b) => $body,
            Values::Int64($b) => $body,
            Values::UInt8($b) => $body,
            Values::UInt16($b) => $body,
            Values::UInt32($b) => $body,
            Values::UInt64($b) => $body,
            $($other)*
        }
    };
}

impl ColumnBuilder {
    pub fn new(name: &str, ty: &ChType, settings: &FormatSettings, rows: usize) -> Self {
        ColumnBuilder {
            name: name.to_string(),
            ty: ty.clone(),
            nullable: ty.is_nullable(),
            null_as_default: settings.null_as_default,
            date_time: settings.date_time_input_format,
            values: Values::for_type(ty, settings, rows),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_array(&self) -> bool {
        matches!(self.values, Values::List { .. })
    }

    pub fn is_nullable(&self) -> bool {
        self.nullable
    }

    /// Integer and float columns, which read a JSON `true` as 1.
    pub fn is_number(&self) -> bool {
        each_int!(&self.values, _b => true,
            Values::Float32(_) | Values::Float64(_) => true,
            _ => false,
        )
    }

    pub fn len(&self) -> usize {
        each_int!(&self.values, b => b.len(),
            Values::Float32(b) => b.len(),
            Values::Float64(b) => b.len(),
            Values::Bool(b) => b.len(),
            Values::Text(b) | Values::Enum(b, _) => b.len(),
            Values::Date(b) => b.len(),
            Values::DateTime(b) => b.len(),
            Values::List { offsets, .. } => offsets.len() - 1,
        )
    }

    fn parse_error(&self, value: &str) -> CellError {
        CellError::Parse {
            column: self.name.clone(),
            ty: self.ty.to_string(),
            value: shown(value),
        }
    }

    pub fn mismatch(&self, what: &'static str) -> CellError {
        CellError::Mismatch {
            column: self.name.clone(),
            ty: self.ty.to_string(),
            what,
        }
    }

    /// Appends a value given as text (already unescaped by the format).
    pub fn push_text(&mut self, text: &str) -> Result<(), CellError> {
        macro_rules! number {
            ($b:expr) => {
                match text.parse() {
                    Ok(v) => $b.append_value(v),
                    Err(_) => return Err(self.parse_error(text)),
                }
            };
        }
        // ClickHouse reads an integer's digits until there are none: an empty field is 0
        // (checked with ClickHouse 26.9 for TSV and quoted CSV). A float wants a digit.
        macro_rules! integer {
            ($b:expr) => {
                if text.is_empty() {
                    $b.append_value(0)
                } else {
                    number!($b)
                }
            };
        }
        match &mut self.values {
            Values::Int8(b) => integer!(b),
            Values::Int16(b) => integer!(b),
            Values::Int32(b) => integer!(b),
            Values::Int64(b) => integer!(b),
            Values::UInt8(b) => integer!(b),
            Values::UInt16(b) => integer!(b),
            Values::UInt32(b) => integer!(b),
            Values::UInt64(b) => integer!(b),
            Values::Float32(b) => number!(b),
            Values::Float64(b) => number!(b),
            Values::Bool(b) => match parse_bool(text) {
                Some(v) => b.append_value(v),
                None => return Err(self.parse_error(text)),
            },
            Values::Text(b) => b.append_value(text),
            Values::Enum(b, members) => {
                if members.iter().any(|(name, _)| name == text) {
                    b.append_value(text);
                } else {
                    let by_number = text
                        .parse::<i16>()
                        .ok()
                        .and_then(|n| members.iter().find(|(_, v)| *v == n));
                    match by_number {
                        Some((name, _)) => b.append_value(name),
                        None => {
                            return Err(CellError::NotMember {
                                column: self.name.clone(),
                                ty: self.ty.to_string(),
                                value: shown(text),
                            })
                        }
                    }
                }
            }
            Values::Date(b) => match parse_date(text, self.date_time) {
                Some(days) => b.append_value(days),
                None => return Err(self.parse_error(text)),
            },
            Values::DateTime(b) => match parse_datetime(text, self.date_time) {
                Some(seconds) => b.append_value(seconds),
                None => return Err(self.parse_error(text)),
            },
            Values::List { .. } => return self.push_array_text(text),
        }
        Ok(())
    }

    /// Appends an integer read from a binary format: into an integer column if in range,
    /// a float, a Bool (0 or 1), an Enum by number, a Date as days or a DateTime as
    /// seconds, or a String as its decimal text (as ClickHouse converts them).
    pub fn push_int(&mut self, v: i128) -> Result<(), CellError> {
        macro_rules! int {
            ($b:expr) => {
                match v.try_into() {
                    Ok(v) => $b.append_value(v),
                    Err(_) => return Err(self.parse_error(&v.to_string())),
                }
            };
        }
        match &mut self.values {
            Values::Int8(b) => int!(b),
            Values::Int16(b) => int!(b),
            Values::Int32(b) => int!(b),
            Values::Int64(b) => int!(b),
            Values::UInt8(b) => int!(b),
            Values::UInt16(b) => int!(b),
            Values::UInt32(b) => int!(b),
            Values::UInt64(b) => int!(b),
            // Precision past 2^53 is lost, as in ClickHouse's conversion.
            Values::Float32(b) => b.append_value(v as f32),
            Values::Float64(b) => b.append_value(v as f64),
            Values::Bool(b) if v == 0 || v == 1 => b.append_value(v == 1),
            Values::Date(b) => int!(b),
            Values::DateTime(b) => int!(b),
            Values::Text(b) => b.append_value(v.to_string()),
            Values::Enum(..) | Values::Bool(_) => return self.push_text(&v.to_string()),
            Values::List { .. } => return Err(self.mismatch("a number")),
        }
        Ok(())
    }

    /// Appends a float read from a binary format: into a float column, or a String as
    /// its text; integer columns refuse it rather than round it.
    pub fn push_float(&mut self, v: f64) -> Result<(), CellError> {
        match &mut self.values {
            // Float64 to Float32 rounds, as ClickHouse's conversion does.
            Values::Float32(b) => b.append_value(v as f32),
            Values::Float64(b) => b.append_value(v),
            Values::Text(b) => b.append_value(v.to_string()),
            _ => return Err(self.mismatch("a floating-point number")),
        }
        Ok(())
    }

    /// Appends a boolean read from a binary format: a Bool, 1 or 0 in an integer column,
    /// `true` or `false` in a String.
    pub fn push_bool(&mut self, v: bool) -> Result<(), CellError> {
        match &mut self.values {
            Values::Bool(b) => b.append_value(v),
            Values::Text(b) => b.append_value(if v { "true" } else { "false" }),
            _ => return self.push_int(i128::from(v)),
        }
        Ok(())
    }

    /// Appends an enum value read from a binary format: an Enum column takes it by name
    /// (else by number), an integer column its number, a String its name.
    pub fn push_enum(&mut self, name: &str, number: i32) -> Result<(), CellError> {
        match &mut self.values {
            Values::Text(b) => b.append_value(name),
            Values::Enum(_, members) => {
                if members.iter().any(|(n, _)| n == name) {
                    return self.push_text(name);
                }
                return self.push_text(&number.to_string());
            }
            _ => return self.push_int(i128::from(number)),
        }
        Ok(())
    }

    /// Appends a point in time given in milliseconds since the epoch: a DateTime keeps
    /// the second, a Date the day, an integer column the milliseconds.
    pub fn push_timestamp_ms(&mut self, ms: i64) -> Result<(), CellError> {
        match &mut self.values {
            Values::DateTime(b) => b.append_value(ms.div_euclid(1000)),
            Values::Date(b) => match i32::try_from(ms.div_euclid(86_400_000)) {
                Ok(days) => b.append_value(days),
                Err(_) => return Err(self.parse_error(&ms.to_string())),
            },
            _ => return self.push_int(i128::from(ms)),
        }
        Ok(())
    }

    /// Appends a day given as days since the epoch: a Date, a DateTime at its midnight
    /// (UTC), or the number in an integer column.
    pub fn push_date_days(&mut self, days: i32) -> Result<(), CellError> {
        match &mut self.values {
            Values::DateTime(b) => b.append_value(i64::from(days) * 86_400),
            _ => return self.push_int(i128::from(days)),
        }
        Ok(())
    }

    /// NULL: stored as NULL in a Nullable column, else as the default when
    /// `input_format_null_as_default` allows it.
    pub fn push_null(&mut self) -> Result<(), CellError> {
        if self.nullable {
            self.append_null();
            return Ok(());
        }
        if !self.null_as_default {
            return Err(CellError::NotNullable {
                column: self.name.clone(),
                ty: self.ty.to_string(),
            });
        }
        self.push_default();
        Ok(())
    }

    /// The value ClickHouse stores for an omitted field: NULL in a Nullable column, else
    /// zero, the empty string, the Enum's default member, the epoch, an empty array.
    pub fn push_default(&mut self) {
        if self.nullable {
            self.append_null();
            return;
        }
        each_int!(&mut self.values, b => b.append_value(0),
            Values::Float32(b) => b.append_value(0.0),
            Values::Float64(b) => b.append_value(0.0),
            Values::Bool(b) => b.append_value(false),
            Values::Text(b) => b.append_value(""),
            Values::Enum(b, members) => {
                b.append_value(ChType::enum_default(members).unwrap_or_default())
            }
            Values::Date(b) => b.append_value(0),
            Values::DateTime(b) => b.append_value(0),
            Values::List { .. } => self.end_array(),
        )
    }

    /// A NULL whatever the type: pads a broken row that is dropped before the batch is
    /// made, so a non-Nullable column never keeps it.
    pub fn append_null(&mut self) {
        each_int!(&mut self.values, b => b.append_null(),
            Values::Float32(b) => b.append_null(),
            Values::Float64(b) => b.append_null(),
            Values::Bool(b) => b.append_null(),
            Values::Text(b) | Values::Enum(b, _) => b.append_null(),
            Values::Date(b) => b.append_null(),
            Values::DateTime(b) => b.append_null(),
            Values::List { offsets, validity, items, .. } => {
                // Items already pushed for this row go into the NULL row, not the next;
                // a nested row left open inside them is closed first, at every depth.
                items.close_open_row();
                offsets.push(i32::try_from(items.len()).unwrap_or(i32::MAX));
                validity.append_null();
            }
        )
    }

    /// Whether an Array column holds items of a row not yet closed (a parse that failed
    /// half way through an array), here or in a nested array.
    fn has_open_row(&self) -> bool {
        match &self.values {
            Values::List { offsets, items, .. } => {
                let closed = offsets.last().copied().unwrap_or_default();
                items.len() > usize::try_from(closed).unwrap_or_default() || items.has_open_row()
            }
            _ => false,
        }
    }

    /// Closes a half-read Array row over the items it holds, so they do not join the next
    /// row; the caller drops that row (with its parent's, when nested). It is closed as a
    /// valid row, not NULL: a nested array's items may not be NULL, and Arrow checks that
    /// before the row is dropped. Other columns have no half-read rows.
    pub fn close_open_row(&mut self) {
        if !self.has_open_row() {
            return;
        }
        if let Some(items) = self.array_items() {
            items.close_open_row();
        }
        self.end_array();
    }

    /// The item builder of an Array column, `None` for other types. Items pushed to it
    /// belong to the open row until `end_array`.
    pub fn array_items(&mut self) -> Option<&mut ColumnBuilder> {
        match &mut self.values {
            Values::List { items, .. } => Some(items),
            _ => None,
        }
    }

    /// Closes an Array column's row over the items pushed since the last row.
    pub fn end_array(&mut self) {
        if let Values::List {
            offsets,
            validity,
            items,
            ..
        } = &mut self.values
        {
            offsets.push(i32::try_from(items.len()).unwrap_or(i32::MAX));
            validity.append_non_null();
        }
    }

    /// An array written as ClickHouse writes it in text formats: `[1,2]`, `['a','b\'c']`,
    /// `[NULL]`, nested `[[1],[]]`.
    fn push_array_text(&mut self, text: &str) -> Result<(), CellError> {
        let bad = |me: &Self| me.parse_error(text);
        let Some(inner) = text
            .trim()
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
        else {
            return Err(bad(self));
        };
        let Some(items) = self.array_items() else {
            return Err(bad(self));
        };
        let mut rest = inner.trim_start();
        let result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            let Some((item, after)) = split_array_item(rest) else {
                break Err(());
            };
            let pushed = match item {
                ArrayItem::Null => items.push_null(),
                ArrayItem::Text(t) => items.push_text(&t),
            };
            if pushed.is_err() {
                break Err(());
            }
            rest = after.trim_start();
            match rest.strip_prefix(',') {
                Some(r) => rest = r.trim_start(),
                None if rest.is_empty() => break Ok(()),
                None => break Err(()),
            }
        };
        if result.is_err() {
            // The row's items so far would belong to the next row: take them back by
            // closing them into a row of their own, which the caller drops.
            self.close_open_row();
            return Err(bad(self));
        }
        self.end_array();
        Ok(())
    }

    /// The values so far; the builder is left empty. Fails only if the offsets of an
    /// Array column disagree with its items, which the pushes above do not let happen.
    pub fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(each_int!(&mut self.values, b => Arc::new(b.finish()),
            Values::Float32(b) => Arc::new(b.finish()),
            Values::Float64(b) => Arc::new(b.finish()),
            Values::Bool(b) => Arc::new(b.finish()),
            Values::Text(b) | Values::Enum(b, _) => Arc::new(b.finish()),
            Values::Date(b) => Arc::new(b.finish()),
            Values::DateTime(b) => Arc::new(b.finish()),
            Values::List { field, offsets, validity, items } => {
                let ends = std::mem::replace(offsets, vec![0]);
                Arc::new(ListArray::try_new(
                    field.clone(),
                    OffsetBuffer::new(ends.into()),
                    items.finish()?,
                    validity.finish(),
                )?)
            }
        ))
    }
}

impl Values {
    fn for_type(ty: &ChType, settings: &FormatSettings, rows: usize) -> Values {
        match ty.base() {
            ChType::Int8 => Values::Int8(Int8Builder::with_capacity(rows)),
            ChType::Int16 => Values::Int16(Int16Builder::with_capacity(rows)),
            ChType::Int32 => Values::Int32(Int32Builder::with_capacity(rows)),
            ChType::Int64 => Values::Int64(Int64Builder::with_capacity(rows)),
            ChType::UInt8 => Values::UInt8(UInt8Builder::with_capacity(rows)),
            ChType::UInt16 => Values::UInt16(UInt16Builder::with_capacity(rows)),
            ChType::UInt32 => Values::UInt32(UInt32Builder::with_capacity(rows)),
            ChType::UInt64 => Values::UInt64(UInt64Builder::with_capacity(rows)),
            ChType::Float32 => Values::Float32(Float32Builder::with_capacity(rows)),
            ChType::Float64 => Values::Float64(Float64Builder::with_capacity(rows)),
            ChType::Bool => Values::Bool(BooleanBuilder::with_capacity(rows)),
            ChType::Enum { members, .. } => Values::Enum(
                StringBuilder::with_capacity(rows, rows * 8),
                members.clone(),
            ),
            ChType::Date => Values::Date(Date32Builder::with_capacity(rows)),
            ChType::DateTime => Values::DateTime(TimestampSecondBuilder::with_capacity(rows)),
            ChType::Array(inner) => {
                let field = match ty.base().arrow_type() {
                    DataType::List(field) => field,
                    // `arrow_type` maps every Array to a List.
                    _ => Arc::new(inner.arrow_field("item")),
                };
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Values::List {
                    field,
                    offsets,
                    validity: NullBufferBuilder::new(rows),
                    items: Box::new(ColumnBuilder::new("item", inner, settings, rows)),
                }
            }
            // String; LowCardinality and Nullable were unwrapped by `base`.
            _ => Values::Text(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }
}

/// ClickHouse's words for a Bool in text formats.
fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: &[&str] = &["true", "1", "yes", "on", "t", "y", "enable"];
    const FALSE: &[&str] = &["false", "0", "no", "off", "f", "n", "disable"];
    if TRUE.iter().any(|w| w.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if FALSE.iter().any(|w| w.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Int64Type, TimestampSecondType, UInt8Type};

    fn builder(ty: &str) -> ColumnBuilder {
        let ty = ChType::parse(ty).expect("type");
        ColumnBuilder::new("c", &ty, &FormatSettings::default(), 4)
    }

    #[test]
    fn numbers_bools_and_enums() {
        let mut b = builder("UInt8");
        b.push_text("255").expect("in range");
        b.push_text("+7").expect("plus sign");
        assert!(b.push_text("256").is_err());
        assert!(b.push_text("-1").is_err());
        assert!(b.push_text("1.5").is_err());
        assert_eq!(b.len(), 2);
        let a = b.finish().expect("offsets match items");
        assert_eq!(
            a.as_primitive::<UInt8Type>().values().to_vec(),
            vec![255, 7]
        );

        let mut b = builder("Bool");
        for t in ["true", "0", "Yes", "off"] {
            b.push_text(t).expect(t);
        }
        assert!(b.push_text("maybe").is_err());
        let a = b.finish().expect("offsets match items");
        let bools: Vec<bool> = a.as_boolean().iter().flatten().collect();
        assert_eq!(bools, vec![true, false, true, false]);

        let mut b = builder("Enum8('a' = 1, 'b' = 2)");
        b.push_text("b").expect("name");
        b.push_text("1").expect("number");
        let err = b.push_text("c").expect_err("not a member");
        assert!(err.to_string().contains("'c'"), "{err}");
        b.push_default();
        let a = b.finish().expect("offsets match items");
        let names: Vec<&str> = a.as_string::<i32>().iter().flatten().collect();
        assert_eq!(names, vec!["b", "a", "a"]);
    }

    #[test]
    fn null_and_default_follow_the_settings() {
        let mut b = builder("Nullable(Int64)");
        b.push_null().expect("nullable");
        b.push_default();
        b.push_text("-5").expect("number");
        let a = b.finish().expect("offsets match items");
        assert_eq!(a.null_count(), 2);
        assert_eq!(a.as_primitive::<Int64Type>().value(2), -5);

        let mut b = builder("Int64");
        b.push_null().expect("null as default");
        assert_eq!(
            b.finish()
                .expect("offsets match items")
                .as_primitive::<Int64Type>()
                .value(0),
            0
        );

        let strict = FormatSettings {
            null_as_default: false,
            ..FormatSettings::default()
        };
        let mut b = ColumnBuilder::new("n", &ChType::Int64, &strict, 1);
        let err = b.push_null().expect_err("strict");
        assert!(err.to_string().contains("column n"), "{err}");
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn typed_values_convert_as_clickhouse_converts_them() {
        let mut b = builder("UInt8");
        b.push_int(255).expect("in range");
        b.push_bool(true).expect("bool as 1");
        let err = b.push_int(-1).expect_err("out of range");
        assert!(err.to_string().contains("'-1' as UInt8"), "{err}");
        assert!(b.push_float(1.0).is_err(), "a float is not rounded");
        assert_eq!(b.len(), 2);

        let mut b = builder("String");
        b.push_int(-7).expect("text");
        b.push_bool(false).expect("text");
        b.push_enum("OPEN", 1).expect("name");
        let a = b.finish().expect("offsets match items");
        let texts: Vec<&str> = a.as_string::<i32>().iter().flatten().collect();
        assert_eq!(texts, ["-7", "false", "OPEN"]);

        let mut b = builder("Enum8('a' = 1, 'b' = 2)");
        b.push_enum("b", 9).expect("by name");
        b.push_enum("renamed", 1).expect("by number");
        assert!(b.push_enum("c", 3).is_err());
        b.push_int(2).expect("a number");
        let a = b.finish().expect("offsets match items");
        let names: Vec<&str> = a.as_string::<i32>().iter().flatten().collect();
        assert_eq!(names, ["b", "a", "b"]);

        let mut b = builder("DateTime");
        b.push_timestamp_ms(-1).expect("before the epoch");
        b.push_date_days(1).expect("midnight");
        b.push_int(5).expect("seconds");
        let a = b.finish().expect("offsets match items");
        assert_eq!(
            a.as_primitive::<TimestampSecondType>().values().to_vec(),
            [-1, 86_400, 5]
        );
        let mut b = builder("Date");
        b.push_timestamp_ms(86_400_000 * 3 + 1).expect("the day");
        b.push_date_days(4).expect("days");
        let a = b.finish().expect("offsets match items");
        assert_eq!(a.as_primitive::<Date32Type>().values().to_vec(), [3, 4]);
    }

    #[test]
    fn dates_and_datetimes() {
        let mut b = builder("Date");
        b.push_text("2024-02-29").expect("date");
        assert!(b.push_text("2024-02-30").is_err());
        assert_eq!(
            b.finish()
                .expect("offsets match items")
                .as_primitive::<Date32Type>()
                .value(0),
            19_782
        );
        let mut b = builder("DateTime");
        b.push_text("2011-02-12 02:22:00").expect("datetime");
        assert!(b.push_text("2011-02-12T02:22:00Z").is_err());
        let a = b.finish().expect("offsets match items");
        assert_eq!(
            a.as_primitive::<TimestampSecondType>().value(0),
            1_297_477_320
        );
    }

    #[test]
    fn arrays_as_clickhouse_writes_them() {
        let mut b = builder("Array(String)");
        b.push_text("['a','b\\'c','x,y']").expect("strings");
        b.push_text("[]").expect("empty");
        // Nothing pushed yet: nothing appended. An item pushed: the row is closed holding
        // it, for the caller to drop, so the next row starts clean.
        assert!(b.push_text("['unclosed]").is_err());
        assert_eq!(b.len(), 2);
        assert!(b.push_text("['a','unclosed]").is_err());
        assert_eq!(b.len(), 3);
        b.push_default();
        assert_eq!(b.len(), 4);
        let a = b.finish().expect("offsets match items");
        let list = a.as_list::<i32>();
        let first = list.value(0);
        let items: Vec<&str> = first.as_string::<i32>().iter().flatten().collect();
        assert_eq!(items, vec!["a", "b'c", "x,y"]);
        assert_eq!(list.value(1).len(), 0);
        assert_eq!(list.value(2).len(), 1);
        assert_eq!(list.value(3).len(), 0);

        let mut b = builder("Array(Nullable(Int32))");
        b.push_text("[1, NULL ,3]").expect("ints");
        assert!(b.push_text("[1,x]").is_err());
        let a = b.finish().expect("offsets match items");
        let first = a.as_list::<i32>().value(0);
        assert_eq!(first.len(), 3);
        assert!(first.is_null(1));

        let mut b = builder("Array(Array(UInt8))");
        b.push_text("[[1,2],[],[3]]").expect("nested");
        // A failure inside a nested array closes both levels; the next row is whole.
        assert!(b.push_text("[[5],[6,x]]").is_err());
        b.push_text("[[4]]").expect("nested");
        let a = b.finish().expect("offsets match items");
        let list = a.as_list::<i32>();
        assert_eq!(list.len(), 3);
        assert_eq!(list.value(0).len(), 3);
        let last = list.value(2);
        let last = last.as_list::<i32>();
        assert_eq!(last.len(), 1);
        assert_eq!(
            last.value(0).as_primitive::<UInt8Type>().values().to_vec(),
            vec![4]
        );
    }
}
