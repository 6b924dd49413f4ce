//! JSONEachRow messages to an Arrow batch of a Kafka table's columns.
//!
//! A block is first decoded by `json_columns`, which parses with serde_json straight into
//! Arrow builders and gives up on anything whose arrow-json reading it does not know.
//! Then arrow-json is fed every message of the block at once; only when that fails are
//! messages decoded one by one, so a broken message costs its own rows and nothing else.
//! Omitted fields and JSON `null` in non-Nullable columns take the column's default, as
//! ClickHouse does (`input_format_defaults_for_omitted_fields`,
//! `input_format_null_as_default`); unknown fields are skipped, or make their message
//! broken with `input_format_skip_unknown_fields = 0`.

use std::sync::Arc;

use arrow::array::{
    new_empty_array, Array, ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, Int8Array, ListArray, RecordBatch, Scalar, StringArray,
    TimestampSecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::compute::kernels::zip::zip;
use arrow::compute::{concat_batches, filter_record_batch, is_not_null};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::Decoder;
use arrow::json::ReaderBuilder;
use chrono::{NaiveDate, Utc};

use super::{json_columns, BrokenMessage, FormatError, RawMessage};
use crate::catalog::{ChType, Column};

/// Decodes the messages of one block. Returns the rows of the good messages (declared
/// columns only), the number of rows each message produced (0 for broken ones), and the
/// broken messages.
pub fn decode(
    columns: &[Column],
    messages: &[RawMessage],
    skip_unknown_fields: bool,
) -> Result<(RecordBatch, Vec<usize>, Vec<BrokenMessage>), FormatError> {
    let decode_schema = decode_schema(columns);
    let strict = !skip_unknown_fields;
    let mut broken = Vec::new();
    let fast = json_columns::decode(&decode_schema, messages, skip_unknown_fields);
    let (batch, rows_per_message) =
        match fast.map_or_else(|| decode_together(&decode_schema, messages, strict), Ok) {
            Ok(ok) => ok,
            Err(_) => decode_one_by_one(&decode_schema, messages, strict, &mut broken)?,
        };
    let (batch, rows_per_message) =
        finish_columns(columns, batch, rows_per_message, messages, &mut broken)?;
    Ok((batch, rows_per_message, broken))
}

/// What the columns are decoded as before `finish_columns`: every column nullable, so an
/// omitted key or `null` can be told from a value.
fn decode_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, decode_type(&c.ty), true))
            .collect::<Vec<_>>(),
    ))
}

/// The type arrow-json decodes a column as. DateTime columns are read as text and parsed
/// here (`parse_datetimes`): arrow's parser tries every format it knows for each value,
/// and took about a tenth of a node's CPU on the guide's four DateTime columns.
fn decode_type(ty: &ChType) -> DataType {
    if matches!(ty.base(), ChType::DateTime) {
        DataType::Utf8
    } else {
        ty.arrow_type()
    }
}

/// `strict`: a key the table lacks is an error (`input_format_skip_unknown_fields = 0`).
fn new_decoder(schema: &SchemaRef, rows_hint: usize, strict: bool) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(schema.clone())
        .with_batch_size(rows_hint.clamp(1, 65_536))
        .with_coerce_primitive(true)
        .with_strict_mode(strict)
        .build_decoder()
}

/// Feeds one message; returns how many rows it held. One message must hold whole JSON
/// rows: a message that ends inside a row is broken, not glued to the next one.
fn feed(
    decoder: &mut Decoder,
    payload: &[u8],
    flushed: &mut Vec<RecordBatch>,
) -> Result<usize, ArrowError> {
    let mut rows = 0;
    let mut before = decoder.len();
    let mut rest = payload;
    while !rest.is_empty() {
        let consumed = decoder.decode(rest)?;
        rest = &rest[consumed..];
        if consumed == 0 || !rest.is_empty() {
            // The decoder holds a full batch: move it out and go on.
            if decoder.has_partial_record() {
                return Err(ArrowError::JsonError("row too large".into()));
            }
            rows += decoder.len() - before;
            flushed.extend(decoder.flush()?);
            before = 0;
        }
    }
    if decoder.has_partial_record() {
        return Err(ArrowError::JsonError(
            "message ends inside a JSON object".into(),
        ));
    }
    Ok(rows + decoder.len() - before)
}

fn decode_together(
    schema: &SchemaRef,
    messages: &[RawMessage],
    strict: bool,
) -> Result<(RecordBatch, Vec<usize>), ArrowError> {
    let mut decoder = new_decoder(schema, messages.len(), strict)?;
    let mut batches = Vec::new();
    let mut rows = Vec::with_capacity(messages.len());
    for m in messages {
        rows.push(feed(
            &mut decoder,
            m.payload.as_deref().unwrap_or_default(),
            &mut batches,
        )?);
    }
    batches.extend(decoder.flush()?);
    Ok((concat_batches(schema, &batches)?, rows))
}

fn decode_one_by_one(
    schema: &SchemaRef,
    messages: &[RawMessage],
    strict: bool,
    broken: &mut Vec<BrokenMessage>,
) -> Result<(RecordBatch, Vec<usize>), FormatError> {
    let mut batches = Vec::new();
    let mut rows = Vec::with_capacity(messages.len());
    for m in messages {
        let mut own = Vec::new();
        let result = new_decoder(schema, 1, strict).and_then(|mut decoder| {
            let n = feed(
                &mut decoder,
                m.payload.as_deref().unwrap_or_default(),
                &mut own,
            )?;
            own.extend(decoder.flush()?);
            Ok(n)
        });
        match result {
            Ok(n) => {
                rows.push(n);
                batches.append(&mut own);
            }
            Err(e) => {
                rows.push(0);
                broken.push(BrokenMessage {
                    offset: m.offset,
                    error: e.to_string(),
                });
            }
        }
    }
    let batch = concat_batches(schema, &batches).map_err(FormatError::Arrow)?;
    Ok((batch, rows))
}

/// Fills defaults, checks enum values, and sets the final nullability of every column.
/// Rows with an enum value that is not a member make their message broken.
fn finish_columns(
    columns: &[Column],
    batch: RecordBatch,
    mut rows_per_message: Vec<usize>,
    messages: &[RawMessage],
    broken: &mut Vec<BrokenMessage>,
) -> Result<(RecordBatch, Vec<usize>), FormatError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    let mut bad_rows: Vec<(usize, String)> = Vec::new();
    for (column, array) in columns.iter().zip(batch.columns()) {
        let mut array = array.clone();
        if let Some(members) = column.ty.enum_members() {
            array = normalize_enum(&column.name, members, &array, &mut bad_rows)?;
        }
        if matches!(column.ty.base(), ChType::DateTime) {
            array = parse_datetimes(&column.name, &array, &mut bad_rows)?;
        }
        if !column.ty.is_nullable() && array.null_count() > 0 {
            let default = default_scalar(&column.ty)?;
            let mask = is_not_null(&array).map_err(FormatError::Arrow)?;
            array = zip(&mask, &array, &default).map_err(FormatError::Arrow)?;
        }
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| c.ty.arrow_field(&c.name))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema, arrays).map_err(FormatError::Arrow)?;
    if bad_rows.is_empty() {
        return Ok((batch, rows_per_message));
    }
    // Drop every row of a message with a bad row: a message is the unit that is skipped.
    let mut keep = vec![true; batch.num_rows()];
    let mut row_start = 0usize;
    for (i, n) in rows_per_message.iter_mut().enumerate() {
        let range = row_start..row_start + *n;
        row_start += *n;
        if let Some((_, reason)) = bad_rows.iter().find(|(r, _)| range.contains(r)) {
            for k in range {
                keep[k] = false;
            }
            *n = 0;
            broken.push(BrokenMessage {
                offset: messages[i].offset,
                error: reason.clone(),
            });
        }
    }
    broken.sort_by_key(|b| b.offset);
    let batch =
        filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(FormatError::Arrow)?;
    Ok((batch, rows_per_message))
}

/// A column decoded as text (enums and DateTimes are).
fn as_text<'a>(array: &'a ArrayRef, column: &str) -> Result<&'a StringArray, FormatError> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| FormatError::Internal(format!("column {column} was not decoded as text")))
}

/// Enum values arrive as names, or as their numbers (ClickHouse accepts both); the table
/// stores names.
fn normalize_enum(
    column: &str,
    members: &[(String, i16)],
    array: &ArrayRef,
    bad_rows: &mut Vec<(usize, String)>,
) -> Result<ArrayRef, FormatError> {
    let strings = as_text(array, column)?;
    let is_member = |v: &str| members.iter().any(|(n, _)| n == v);
    // Names are the common case: the column is then kept as it was decoded.
    if strings.iter().flatten().all(is_member) {
        return Ok(array.clone());
    }
    let out: StringArray = strings
        .iter()
        .enumerate()
        .map(|(row, value)| {
            let v = value?;
            if is_member(v) {
                return Some(v);
            }
            let by_number = v
                .parse::<i16>()
                .ok()
                .and_then(|num| members.iter().find(|(_, value)| *value == num));
            match by_number {
                Some((name, _)) => Some(name.as_str()),
                None => {
                    bad_rows.push((row, format!("column {column}: unknown enum value '{v}'")));
                    None
                }
            }
        })
        .collect();
    Ok(Arc::new(out))
}

/// DateTime text (or a JSON number, which arrives as its text) to seconds since the epoch,
/// UTC. The common `YYYY-MM-DD hh:mm:ss` form and whole numbers (unix seconds) are parsed
/// directly; anything else goes to arrow's parser, which knows RFC 3339 and more, so what
/// is accepted is what arrow-json's own DateTime decoding accepted. A value neither
/// understands makes its row bad.
fn parse_datetimes(
    column: &str,
    array: &ArrayRef,
    bad_rows: &mut Vec<(usize, String)>,
) -> Result<ArrayRef, FormatError> {
    let strings = as_text(array, column)?;
    let mut last = LastDate::default();
    let seconds: TimestampSecondArray = strings
        .iter()
        .enumerate()
        .map(|(row, value)| {
            let value = value?;
            let parsed = parse_datetime(value, &mut last);
            if parsed.is_none() {
                bad_rows.push((
                    row,
                    format!("column {column}: cannot parse '{value}' as DateTime"),
                ));
            }
            parsed
        })
        .collect();
    Ok(Arc::new(seconds))
}

fn parse_datetime(value: &str, last: &mut LastDate) -> Option<i64> {
    if let Some(seconds) = parse_datetime_text(value.as_bytes(), last) {
        return Some(seconds);
    }
    if let Ok(seconds) = value.parse::<i64>() {
        return Some(seconds);
    }
    if let Ok(seconds) = value.parse::<f64>() {
        // As arrow-json: a fractional number of seconds is truncated.
        return seconds.is_finite().then_some(seconds as i64);
    }
    string_to_datetime(&Utc, value).ok().map(|t| t.timestamp())
}

/// The last valid date read in a column, with its midnight in seconds since the epoch. A
/// block's DateTimes share few dates, and checking the calendar for every value was a few
/// per cent of decoding.
#[derive(Default)]
struct LastDate {
    text: [u8; 10],
    midnight: Option<i64>,
}

/// `YYYY-MM-DD hh:mm:ss` exactly, as seconds since the epoch; `None` for any other form
/// or an impossible date or time.
fn parse_datetime_text(b: &[u8], last: &mut LastDate) -> Option<i64> {
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // chrono's limits: no leap second written as :60.
    if hour >= 24 || minute >= 60 || second >= 60 {
        return None;
    }
    let midnight = match last.midnight {
        Some(midnight) if last.text[..] == b[..10] => midnight,
        _ => {
            let year = i32::try_from(num(0..4)?).ok()?;
            let date = NaiveDate::from_ymd_opt(year, num(5..7)?, num(8..10)?)?;
            let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
            last.text.copy_from_slice(&b[..10]);
            last.midnight = Some(midnight);
            midnight
        }
    };
    Some(midnight + i64::from(hour * 3600 + minute * 60 + second))
}

/// The value ClickHouse stores for an omitted field of a non-Nullable column.
pub fn default_scalar(ty: &ChType) -> Result<Scalar<ArrayRef>, FormatError> {
    let array: ArrayRef =
        match ty.base() {
            ChType::Int8 => Arc::new(Int8Array::from(vec![0])),
            ChType::Int16 => Arc::new(Int16Array::from(vec![0])),
            ChType::Int32 => Arc::new(Int32Array::from(vec![0])),
            ChType::Int64 => Arc::new(Int64Array::from(vec![0])),
            ChType::UInt8 => Arc::new(UInt8Array::from(vec![0])),
            ChType::UInt16 => Arc::new(UInt16Array::from(vec![0])),
            ChType::UInt32 => Arc::new(UInt32Array::from(vec![0])),
            ChType::UInt64 => Arc::new(UInt64Array::from(vec![0])),
            ChType::Float32 => Arc::new(Float32Array::from(vec![0.0])),
            ChType::Float64 => Arc::new(Float64Array::from(vec![0.0])),
            ChType::Bool => Arc::new(BooleanArray::from(vec![false])),
            ChType::String => Arc::new(StringArray::from(vec![""])),
            ChType::Enum { members, .. } => Arc::new(StringArray::from(vec![
                ChType::enum_default(members).unwrap_or_default(),
            ])),
            ChType::Date => Arc::new(Date32Array::from(vec![0])),
            ChType::DateTime => Arc::new(TimestampSecondArray::from(vec![0])),
            ChType::Array(inner) => {
                let field = Arc::new(Field::new("item", inner.arrow_type(), inner.is_nullable()));
                Arc::new(
                    ListArray::try_new(
                        field,
                        OffsetBuffer::new_zeroed(1),
                        new_empty_array(&inner.arrow_type()),
                        None,
                    )
                    .map_err(FormatError::Arrow)?,
                )
            }
            ChType::LowCardinality(_) | ChType::Nullable(_) => {
                return Err(FormatError::Internal(format!("no default for {ty}")))
            }
        };
    debug_assert!(matches!(array.data_type(), DataType::List(_)) || array.len() == 1);
    Ok(Scalar::new(array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_support::{self, msg};
    use arrow::array::AsArray;
    use arrow::datatypes::{TimestampSecondType, UInt32Type};

    fn columns() -> Vec<Column> {
        test_support::columns(&[
            ("created_at", "DateTime"),
            ("state", "Enum('none' = 0, 'open' = 1, 'closed' = 2)"),
            ("number", "UInt32"),
            ("title", "String"),
            ("labels", "Array(LowCardinality(String))"),
            ("note", "Nullable(String)"),
        ])
    }

    #[test]
    fn decodes_and_fills_defaults() {
        let messages = vec![
            msg(
                0,
                r#"{"created_at":"2011-02-12 02:22:00","state":"open","number":7,"title":"Über","labels":["bug"]}"#,
            ),
            msg(1, r#"{"title":"修复"}"#),
            msg(2, r#"{"state":2,"number":"9","note":"x","extra":1}"#),
        ];
        let (batch, rows, broken) = decode(&columns(), &messages, true).expect("decodes");
        assert!(broken.is_empty());
        assert_eq!(rows, vec![1, 1, 1]);
        let created = batch.column(0).as_primitive::<TimestampSecondType>();
        assert_eq!(created.value(0), 1_297_477_320);
        assert_eq!(created.value(1), 0);
        let state = batch.column(1).as_string::<i32>();
        assert_eq!(
            (state.value(0), state.value(1), state.value(2)),
            ("open", "none", "closed")
        );
        assert_eq!(batch.column(2).as_primitive::<UInt32Type>().value(2), 9);
        assert_eq!(batch.column(4).as_list::<i32>().value(1).len(), 0);
        assert!(batch.column(5).is_null(0));
        assert!(!batch.schema().field(0).is_nullable());
    }

    #[test]
    fn datetimes_parse_as_arrow_json_did() {
        let cases = [
            ("2011-02-12 02:22:00", Some(1_297_477_320)),
            ("1970-01-01 00:00:00", Some(0)),
            ("2024-02-29 23:59:59", Some(1_709_251_199)),
            ("1969-12-31 23:59:59", Some(-1)),
            ("2011-02-12T02:22:00Z", Some(1_297_477_320)),
            ("2011-02-12T04:22:00+02:00", Some(1_297_477_320)),
            ("1297477320", Some(1_297_477_320)),
            ("1297477320.9", Some(1_297_477_320)),
            ("2023-02-29 00:00:00", None),
            ("2011-13-12 02:22:00", None),
            ("2011-02-12 24:00:00", None),
            ("yesterday", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_datetime(text, &mut LastDate::default()),
                want,
                "{text}"
            );
        }
        // The same answers in one column, where each value may reuse the date before it.
        let mut last = LastDate::default();
        for (text, want) in cases.iter().chain(cases.iter().rev()) {
            assert_eq!(parse_datetime(text, &mut last), *want, "{text} in a column");
        }
        // The fast path agrees with chrono on every day of a leap cycle, at several times
        // of each day, whether the date was just read or not.
        let mut last = LastDate::default();
        let mut day = chrono::NaiveDate::from_ymd_opt(1999, 12, 25).expect("date");
        for _ in 0..1_500 {
            for (h, m, s) in [(13, 14, 15), (0, 0, 0), (23, 59, 59)] {
                let text = format!("{} {h:02}:{m:02}:{s:02}", day.format("%Y-%m-%d"));
                let want = day
                    .and_hms_opt(h, m, s)
                    .expect("time")
                    .and_utc()
                    .timestamp();
                assert_eq!(
                    parse_datetime_text(text.as_bytes(), &mut last),
                    Some(want),
                    "{text}"
                );
                assert_eq!(
                    parse_datetime_text(text.as_bytes(), &mut LastDate::default()),
                    Some(want),
                    "{text}"
                );
            }
            day = day.succ_opt().expect("next day");
        }
        // An impossible time on a known date is still refused.
        assert_eq!(parse_datetime_text(b"2000-01-01 23:60:00", &mut last), None);
    }

    #[test]
    fn a_bad_datetime_breaks_only_its_message() {
        let messages = vec![
            msg(20, r#"{"created_at":"2011-02-12 02:22:00","number":1}"#),
            msg(21, r#"{"created_at":"2011-02-30 02:22:00","number":2}"#),
            msg(22, r#"{"created_at":1297477320,"number":3}"#),
            msg(23, r#"{"created_at":null,"number":4}"#),
        ];
        let (batch, rows, broken) = decode(&columns(), &messages, true).expect("decodes");
        assert_eq!(rows, vec![1, 0, 1, 1]);
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].offset, 21);
        assert!(
            broken[0].error.contains("created_at"),
            "{}",
            broken[0].error
        );
        assert!(
            broken[0].error.contains("2011-02-30"),
            "{}",
            broken[0].error
        );
        let created = batch.column(0).as_primitive::<TimestampSecondType>();
        assert_eq!(
            created.values().to_vec(),
            vec![1_297_477_320, 1_297_477_320, 0]
        );
    }

    fn msgs(payloads: &[&str]) -> Vec<RawMessage> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| msg(i as i64, p))
            .collect()
    }

    #[test]
    fn the_fast_path_agrees_with_arrow_json() {
        let schema = decode_schema(&columns());
        // The guide's Kafka table, as the quickstart creates it.
        let ddl = include_str!("../../../scripts/sql/quickstart.sql");
        let first = ddl.split(';').next().expect("a statement");
        let crate::sql::Statement::CreateTable(queue) = crate::sql::parse(first).expect("parses")
        else {
            panic!("the quickstart starts with its Kafka table");
        };
        let guide_columns: Vec<Column> = queue
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                ty: ChType::parse(&c.type_text).expect("type"),
            })
            .collect();
        assert_eq!(guide_columns.len(), 25);
        let guide_events: Vec<RawMessage> = (0..2_000)
            .map(|i| RawMessage {
                payload: Some(crate::sample::github::event(11, i).json_line().into()),
                key: None,
                offset: i as i64,
                timestamp_ms: None,
                headers: Vec::new(),
            })
            .collect();
        let hand_made = msgs(&[
            r#"{"created_at":"2011-02-12 02:22:00","state":"open","number":7,"title":"Über","labels":["bug","ui"]}"#,
            r#"{"labels":[],"title":"tab\there \"quoted\" \u00e9 \ud83d\ude00","number":0}"#,
            r#"{"title":12345678901234567890,"state":2,"note":true}"#,
            r#"{"title":-42,"note":false,"created_at":1297477320}"#,
            r#"{"extra":{"deep":[1,2.5,{"x":null}]},"number":null,"labels":null,"note":null}"#,
            r#"{"ti\u0074le":"escaped key","unknown":-0,"other":1.5e3}"#,
            "",
            " \n\t ",
            r#"  {"number":4294967295}  "#,
            "{}",
        ]);
        for (schema, messages) in [
            (schema.clone(), hand_made),
            (decode_schema(&guide_columns), guide_events),
        ] {
            let fast = json_columns::decode(&schema, &messages, true).expect("fast path takes it");
            let arrow = decode_together(&schema, &messages, false).expect("arrow-json reads it");
            assert_eq!(fast, arrow);
        }
    }

    #[test]
    fn the_fast_path_gives_up_where_it_cannot_match_arrow_json() {
        let schema = decode_schema(&columns());
        for payload in [
            r#"{"title":1.5}"#,
            r#"{"title":-0}"#,
            r#"{"number":"9"}"#,
            r#"{"number":-1}"#,
            r#"{"number":4294967296}"#,
            r#"{"number":1,"number":2}"#,
            r#"{"number":3}{"number":4}"#,
            r#"{"number":2"#,
            r#"[1]"#,
            r#"{"labels":[null]}"#,
            r#"{"labels":"bug"}"#,
            r#"{"title":{"a":1}}"#,
        ] {
            let messages = msgs(&[r#"{"number":1}"#, payload]);
            assert!(
                json_columns::decode(&schema, &messages, true).is_none(),
                "{payload}"
            );
        }
        let floats = decode_schema(&[Column {
            name: "x".into(),
            ty: ChType::parse("Float64").expect("type"),
        }]);
        assert!(json_columns::decode(&floats, &msgs(&[r#"{"x":1}"#]), true).is_none());
    }

    #[test]
    fn broken_messages_cost_only_themselves() {
        let messages = vec![
            msg(10, r#"{"number":1}"#),
            msg(11, r#"{"number":2"#),
            msg(12, r#"{"number":"abc"}"#),
            msg(13, "not json at all"),
            msg(14, r#"{"state":"bogus"}"#),
            msg(15, r#"{"number":3}{"number":4}"#),
        ];
        let (batch, rows, broken) = decode(&columns(), &messages, true).expect("decodes");
        assert_eq!(rows, vec![1, 0, 0, 0, 0, 2]);
        assert_eq!(batch.num_rows(), 3);
        let offsets: Vec<i64> = broken.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, vec![11, 12, 13, 14]);
        assert!(broken[3].error.contains("bogus"));
        let numbers = batch.column(2).as_primitive::<UInt32Type>();
        assert_eq!(numbers.values().to_vec(), vec![1, 3, 4]);
    }

    #[test]
    fn unknown_fields_break_their_message_when_not_skipped() {
        let messages = vec![
            msg(30, r#"{"number":1}"#),
            msg(31, r#"{"number":2,"extra":true}"#),
            msg(32, r#"{"number":3}"#),
        ];
        let (batch, rows, broken) = decode(&columns(), &messages, false).expect("decodes");
        assert_eq!(rows, vec![1, 0, 1]);
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].offset, 31);
        assert!(broken[0].error.contains("extra"), "{}", broken[0].error);
        let numbers = batch.column(2).as_primitive::<UInt32Type>();
        assert_eq!(numbers.values().to_vec(), vec![1, 3]);
        let (_, rows, broken) = decode(&columns(), &messages, true).expect("decodes");
        assert_eq!((rows, broken.len()), (vec![1, 1, 1], 0));
    }
}
