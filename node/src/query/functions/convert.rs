//! Type conversions as ClickHouse does them: `toInt8..toInt64`, `toUInt8..toUInt64`,
//! `toString`, and `concat` (which joins its arguments' `toString` text).
//!
//! Integer conversions wrap on overflow (`toUInt8(300)` is 44, `toUInt32(-1)` 4294967295),
//! truncate floats toward zero, and read text strictly: an optional sign and digits,
//! nothing else, a '-' refused for unsigned types. `toString` writes ClickHouse's text
//! (shortest float digits, `YYYY-MM-DD hh:mm:ss`, arrays as `[1,'a']`); any NULL argument
//! of `concat` makes its result NULL.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int16Array, Int32Array, Int64Array, Int8Array, StringArray,
    UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use chrono::DateTime;
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::scalar::{bad_arity, bad_type, ChScalar};

/// The integer conversions and the type each produces.
const INTEGERS: [(&str, DataType); 8] = [
    ("toInt8", DataType::Int8),
    ("toInt16", DataType::Int16),
    ("toInt32", DataType::Int32),
    ("toInt64", DataType::Int64),
    ("toUInt8", DataType::UInt8),
    ("toUInt16", DataType::UInt16),
    ("toUInt32", DataType::UInt32),
    ("toUInt64", DataType::UInt64),
];

pub fn udfs() -> Vec<ScalarUDF> {
    let mut out: Vec<ScalarUDF> = vec![
        ChScalar::udf(
            "toInt8",
            1..=1,
            |t| integer_arg(t, "toInt8", DataType::Int8),
            to_integer,
        ),
        ChScalar::udf(
            "toInt16",
            1..=1,
            |t| integer_arg(t, "toInt16", DataType::Int16),
            to_integer,
        ),
        ChScalar::udf(
            "toInt32",
            1..=1,
            |t| integer_arg(t, "toInt32", DataType::Int32),
            to_integer,
        ),
        ChScalar::udf(
            "toInt64",
            1..=1,
            |t| integer_arg(t, "toInt64", DataType::Int64),
            to_integer,
        ),
        ChScalar::udf(
            "toUInt8",
            1..=1,
            |t| integer_arg(t, "toUInt8", DataType::UInt8),
            to_integer,
        ),
        ChScalar::udf(
            "toUInt16",
            1..=1,
            |t| integer_arg(t, "toUInt16", DataType::UInt16),
            to_integer,
        ),
        ChScalar::udf(
            "toUInt32",
            1..=1,
            |t| integer_arg(t, "toUInt32", DataType::UInt32),
            to_integer,
        ),
        ChScalar::udf(
            "toUInt64",
            1..=1,
            |t| integer_arg(t, "toUInt64", DataType::UInt64),
            to_integer,
        ),
    ];
    debug_assert_eq!(out.len(), INTEGERS.len());
    out.push(ChScalar::udf(
        "toString",
        1..=1,
        |_| Ok(DataType::Utf8),
        to_string,
    ));
    out.push(ChScalar::udf(
        "concat",
        1..=64,
        |_| Ok(DataType::Utf8),
        concat,
    ));
    out
}

fn integer_arg(types: &[DataType], function: &str, out: DataType) -> Result<DataType> {
    match types.first() {
        Some(t)
            if t.is_numeric()
                || matches!(
                    t,
                    DataType::Boolean
                        | DataType::Null
                        | DataType::Date32
                        | DataType::Timestamp(TimeUnit::Second, None)
                        | DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                ) =>
        {
            Ok(out)
        }
        Some(other) => Err(bad_type(function, other)),
        None => Err(bad_arity(function, "one argument", 0)),
    }
}

fn function_of(ret: &DataType) -> &'static str {
    INTEGERS
        .iter()
        .find(|(_, t)| t == ret)
        .map(|(n, _)| *n)
        .unwrap_or("toInt64")
}

/// Text as ClickHouse's integer parsers read it: an optional sign, then digits only.
fn parse_integer(text: &str, function: &str, unsigned: bool) -> Result<i128> {
    let fail = |why: &str| {
        DataFusionError::Execution(format!(
            "{function}: cannot parse '{text}' as an integer: {why}"
        ))
    };
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail("expected an optional sign and digits"));
    }
    if unsigned && text.starts_with('-') {
        return Err(fail("an unsigned type must not contain '-'"));
    }
    // Longer than any 64-bit value: ClickHouse reads it modulo 2^64 as well; i128 wraps
    // the same way for up to 38 digits, and longer text is refused.
    text.parse::<i128>().map_err(|_| fail("too many digits"))
}

fn integers(array: &ArrayRef, function: &str, unsigned: bool) -> Result<Vec<Option<i128>>> {
    let dt = array.data_type();
    Ok(match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8)?;
            text.as_string::<i32>()
                .iter()
                .map(|t| t.map(|t| parse_integer(t, function, unsigned)).transpose())
                .collect::<Result<_>>()?
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let f = cast(array, &DataType::Float64)?;
            // Toward zero, as a C++ static_cast does; NaN becomes 0.
            f.as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .map(|v| v.map(|v| v.trunc() as i128))
                .collect()
        }
        DataType::UInt64 => array
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .iter()
            .map(|v| v.map(i128::from))
            .collect(),
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map(i128::from))
            .collect(),
        DataType::Timestamp(TimeUnit::Second, None) => array
            .as_primitive::<arrow::datatypes::TimestampSecondType>()
            .iter()
            .map(|v| v.map(i128::from))
            .collect(),
        DataType::Date32 => array
            .as_primitive::<arrow::datatypes::Date32Type>()
            .iter()
            .map(|v| v.map(i128::from))
            .collect(),
        DataType::Null => vec![None; array.len()],
        t if t.is_integer() => {
            let n = cast(array, &DataType::Int64)?;
            n.as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .map(|v| v.map(i128::from))
                .collect()
        }
        other => return Err(bad_type(function, other)),
    })
}

fn to_integer(args: &[ArrayRef], ret: &DataType) -> Result<ArrayRef> {
    let function = function_of(ret);
    let unsigned = ret.is_unsigned_integer();
    let v = integers(&args[0], function, unsigned)?;
    // `as` keeps the low bits: ClickHouse's wrap-around on overflow.
    macro_rules! build {
        ($array:ty, $t:ty) => {
            Arc::new(<$array>::from(
                v.iter().map(|x| x.map(|x| x as $t)).collect::<Vec<_>>(),
            )) as ArrayRef
        };
    }
    Ok(match ret {
        DataType::Int8 => build!(Int8Array, i8),
        DataType::Int16 => build!(Int16Array, i16),
        DataType::Int32 => build!(Int32Array, i32),
        DataType::Int64 => build!(Int64Array, i64),
        DataType::UInt8 => build!(UInt8Array, u8),
        DataType::UInt16 => build!(UInt16Array, u16),
        DataType::UInt32 => build!(UInt32Array, u32),
        DataType::UInt64 => build!(UInt64Array, u64),
        other => return Err(bad_type(function, other)),
    })
}

/// A float as ClickHouse writes it: the shortest digits that read back the same, plain
/// between 1e-6 and 1e21 and in exponent form outside, `inf`, `-inf`, `nan`.
pub fn float_text(v: f64, shortest: impl Fn(f64) -> String) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        return format!("{v:e}");
    }
    shortest(v)
}

/// One value as ClickHouse's text; `quoted` for a value inside an array, where strings
/// and dates are in single quotes. `None` for NULL at the top level.
fn text_of(array: &dyn Array, row: usize, quoted: bool) -> Result<Option<String>> {
    if array.is_null(row) {
        return Ok(if quoted { Some("NULL".into()) } else { None });
    }
    let quote = |s: String| {
        if quoted {
            format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        } else {
            s
        }
    };
    Ok(Some(match array.data_type() {
        DataType::Utf8 => quote(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => quote(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => quote(array.as_string_view().value(row).to_string()),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Float64 => {
            let v = array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(row);
            float_text(v, |v| v.to_string())
        }
        DataType::Float32 => {
            let v = array
                .as_primitive::<arrow::datatypes::Float32Type>()
                .value(row);
            float_text(f64::from(v), |_| v.to_string())
        }
        DataType::Date32 => {
            let d = array
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(row);
            let day = chrono::NaiveDate::default()
                .checked_add_signed(chrono::TimeDelta::days(i64::from(d)))
                .ok_or_else(|| {
                    DataFusionError::Execution(format!("toString: day {d} is out of range"))
                })?;
            quote(day.format("%Y-%m-%d").to_string())
        }
        DataType::Timestamp(TimeUnit::Second, None) => {
            let s = array
                .as_primitive::<arrow::datatypes::TimestampSecondType>()
                .value(row);
            let t = DateTime::from_timestamp(s, 0).ok_or_else(|| {
                DataFusionError::Execution(format!("toString: second {s} is out of range"))
            })?;
            quote(t.format("%Y-%m-%d %H:%M:%S").to_string())
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            let mut parts = Vec::with_capacity(list.len());
            for i in 0..list.len() {
                parts.push(text_of(list.as_ref(), i, true)?.unwrap_or_default());
            }
            format!("[{}]", parts.join(","))
        }
        t if t.is_integer() => {
            let one = array.slice(row, 1);
            let text = cast(&one, &DataType::Utf8)?;
            text.as_string::<i32>().value(0).to_string()
        }
        other => return Err(bad_type("toString", other)),
    }))
}

fn texts(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    (0..array.len())
        .map(|i| text_of(array.as_ref(), i, false))
        .collect()
}

fn to_string(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    Ok(Arc::new(StringArray::from(texts(&args[0])?)))
}

fn concat(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let Some(first) = args.first() else {
        return Err(bad_arity("concat", "at least one argument", 0));
    };
    let mut out: Vec<Option<String>> = vec![Some(String::new()); first.len()];
    for arg in args {
        for (acc, piece) in out.iter_mut().zip(texts(arg)?) {
            *acc = match (acc.take(), piece) {
                (Some(mut s), Some(p)) => {
                    s.push_str(&p);
                    Some(s)
                }
                _ => None,
            };
        }
    }
    Ok(Arc::new(StringArray::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, ListArray};
    use arrow::datatypes::Int32Type;

    fn ints(ret: DataType, input: ArrayRef) -> Vec<String> {
        let out = to_integer(&[input], &ret).expect("converts");
        texts(&out)
            .expect("text")
            .into_iter()
            .map(|s| s.unwrap_or_default())
            .collect()
    }

    #[test]
    fn integers_wrap_and_truncate_as_clickhouse() {
        let n: ArrayRef = Arc::new(Int64Array::from(vec![300, -1]));
        assert_eq!(ints(DataType::UInt8, n.clone()), ["44", "255"]);
        assert_eq!(ints(DataType::UInt32, n), ["300", "4294967295"]);
        let f: ArrayRef = Arc::new(Float64Array::from(vec![3.9, -3.9]));
        assert_eq!(ints(DataType::Int8, f), ["3", "-3"]);
        let s: ArrayRef = Arc::new(StringArray::from(vec!["300"]));
        assert_eq!(ints(DataType::UInt8, s), ["44"]);
        for bad in ["abc", " 5", "-1", ""] {
            let s: ArrayRef = Arc::new(StringArray::from(vec![bad]));
            let err = to_integer(&[s], &DataType::UInt8).expect_err(bad);
            assert!(err.to_string().contains("toUInt8"), "{err}");
        }
    }

    #[test]
    fn text_as_clickhouse_writes_it() {
        let f: ArrayRef = Arc::new(Float64Array::from(vec![0.1, 1e20, 1e-7, 1.0, f64::NAN]));
        let got: Vec<_> = texts(&f).expect("text").into_iter().flatten().collect();
        assert_eq!(got, ["0.1", "100000000000000000000", "1e-7", "1", "nan"]);
        let a: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
        ]));
        assert_eq!(texts(&a).expect("text"), [Some("[1,NULL]".to_string())]);
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
        let n: ArrayRef = Arc::new(Float64Array::from(vec![2.5, 1.0]));
        let joined = concat(&[s, n], &DataType::Utf8).expect("concat");
        assert_eq!(
            texts(&joined).expect("text"),
            [Some("a2.5".to_string()), None]
        );
    }
}
