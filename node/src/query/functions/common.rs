//! Everyday ClickHouse functions whose meaning differs from DataFusion's function of the
//! same name, or which DataFusion does not have:
//!
//! - `lower`/`upper` change ASCII letters only, byte by byte, as ClickHouse's do;
//!   `lowerUTF8`/`upperUTF8` every letter, with Unicode's full mappings;
//! - `startsWith`/`endsWith`, `isNull`/`isNotNull` answer UInt8 0/1;
//! - `round(x[, n])` rounds floats half to even (banker's), integers half away from zero
//!   (only a negative `n` changes an integer), and keeps the argument's type;
//! - `floor`/`ceil` keep the argument's type (an integer is itself);
//! - `intDiv` truncates toward zero;
//! - `sqrt` is nan for a negative number; `toFloat64` converts numbers.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, UInt8Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type, UInt64Type};
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::scalar::{bad_arity, bad_type, ChScalar};

pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ChScalar::udf(
            "lower",
            1..=1,
            |t| text_arg(t, "lower", DataType::Utf8),
            |a, _| change_case(&a[0], Case::AsciiLower),
        ),
        ChScalar::udf(
            "lowerUTF8",
            1..=1,
            |t| text_arg(t, "lowerUTF8", DataType::Utf8),
            |a, _| change_case(&a[0], Case::Lower),
        ),
        ChScalar::udf(
            "upperUTF8",
            1..=1,
            |t| text_arg(t, "upperUTF8", DataType::Utf8),
            |a, _| change_case(&a[0], Case::Upper),
        ),
        ChScalar::udf(
            "upper",
            1..=1,
            |t| text_arg(t, "upper", DataType::Utf8),
            |a, _| change_case(&a[0], Case::AsciiUpper),
        ),
        ChScalar::udf(
            "startsWith",
            2..=2,
            |t| text_args(t, "startsWith"),
            |a, _| affix(a, "startsWith", |s, p| s.starts_with(p)),
        ),
        ChScalar::udf(
            "endsWith",
            2..=2,
            |t| text_args(t, "endsWith"),
            |a, _| affix(a, "endsWith", |s, p| s.ends_with(p)),
        ),
        ChScalar::udf(
            "isNull",
            1..=1,
            |_| Ok(DataType::UInt8),
            |a, _| Ok(nulls(&a[0], true)),
        ),
        ChScalar::udf(
            "isNotNull",
            1..=1,
            |_| Ok(DataType::UInt8),
            |a, _| Ok(nulls(&a[0], false)),
        ),
        ChScalar::udf("round", 1..=2, round_type, round),
        ChScalar::udf("intDiv", 2..=2, int_div_type, int_div),
        ChScalar::udf(
            "floor",
            1..=1,
            |t| whole_type(t, "floor"),
            |a, _| whole(&a[0], f64::floor, f32::floor),
        ),
        ChScalar::udf(
            "ceil",
            1..=1,
            |t| whole_type(t, "ceil"),
            |a, _| whole(&a[0], f64::ceil, f32::ceil),
        ),
        ChScalar::udf(
            "sqrt",
            1..=1,
            |t| match t.first() {
                Some(t) if t.is_numeric() || *t == DataType::Null => Ok(DataType::Float64),
                Some(t) => Err(bad_type("sqrt", t)),
                None => Err(bad_arity("sqrt", "one number", 0)),
            },
            sqrt,
        ),
        ChScalar::udf(
            "toFloat64",
            1..=1,
            |t| match t.first() {
                Some(t) if t.is_numeric() || *t == DataType::Null => Ok(DataType::Float64),
                Some(t) => Err(bad_type("toFloat64", t)),
                None => Err(bad_arity("toFloat64", "one number", 0)),
            },
            |a, _| Ok(cast(&a[0], &DataType::Float64)?),
        ),
    ]
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

fn text_arg(types: &[DataType], function: &str, out: DataType) -> Result<DataType> {
    match types.first() {
        Some(t) if is_text(t) => Ok(out),
        Some(t) => Err(bad_type(function, t)),
        None => Err(bad_arity(function, "a String", 0)),
    }
}

fn text_args(types: &[DataType], function: &str) -> Result<DataType> {
    match types.iter().find(|t| !is_text(t)) {
        Some(t) => Err(bad_type(function, t)),
        None => Ok(DataType::UInt8),
    }
}

fn strings(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Utf8)?)
}

#[derive(Clone, Copy)]
enum Case {
    AsciiLower,
    AsciiUpper,
    /// Unicode's full mappings (`ß` is `SS`), as ClickHouse's ICU-based `*UTF8` do.
    Lower,
    Upper,
}

fn change_case(array: &ArrayRef, case: Case) -> Result<ArrayRef> {
    let text = strings(array)?;
    let out: StringArray = text
        .as_string::<i32>()
        .iter()
        .map(|s| {
            s.map(|s| match case {
                Case::AsciiLower => s.to_ascii_lowercase(),
                Case::AsciiUpper => s.to_ascii_uppercase(),
                Case::Lower => s.to_lowercase(),
                Case::Upper => s.to_uppercase(),
            })
        })
        .collect();
    Ok(Arc::new(out))
}

fn affix(args: &[ArrayRef], _function: &str, test: fn(&str, &str) -> bool) -> Result<ArrayRef> {
    let (s, p) = (strings(&args[0])?, strings(&args[1])?);
    let out: UInt8Array = s
        .as_string::<i32>()
        .iter()
        .zip(p.as_string::<i32>().iter())
        .map(|(s, p)| Some(u8::from(test(s?, p?))))
        .collect();
    Ok(Arc::new(out))
}

fn nulls(array: &ArrayRef, null: bool) -> ArrayRef {
    // Logical nulls: a NULL literal's column has no validity bitmap.
    let mask = array.logical_nulls();
    let out: UInt8Array = (0..array.len())
        .map(|i| {
            let is_null = mask.as_ref().is_some_and(|m| m.is_null(i));
            Some(u8::from(is_null == null))
        })
        .collect();
    Arc::new(out)
}

/// The square root as Float64; nan for a negative number, as ClickHouse answers
/// (DataFusion's `sqrt` is an error there).
fn sqrt(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let x = cast(&args[0], &DataType::Float64)?;
    let out: Float64Array = x
        .as_primitive::<Float64Type>()
        .iter()
        .map(|x| x.map(f64::sqrt))
        .collect();
    Ok(Arc::new(out))
}

/// `floor`/`ceil` keep the argument's type, as ClickHouse's do: an integer is itself
/// (never through a Float64, which would change a large one).
fn whole_type(types: &[DataType], function: &str) -> Result<DataType> {
    match types.first() {
        Some(t)
            if t.is_integer()
                || matches!(t, DataType::Float32 | DataType::Float64 | DataType::Null) =>
        {
            Ok(t.clone())
        }
        Some(t) => Err(bad_type(function, t)),
        None => Err(bad_arity(function, "one number", 0)),
    }
}

fn whole(x: &ArrayRef, f64_op: fn(f64) -> f64, f32_op: fn(f32) -> f32) -> Result<ArrayRef> {
    Ok(match x.data_type() {
        DataType::Float64 => Arc::new(
            x.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(f64_op),
        ),
        DataType::Float32 => Arc::new(
            x.as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(f32_op),
        ),
        _ => x.clone(),
    })
}

/// `intDiv(a, b)`: the quotient truncated toward zero, UInt64 for an unsigned integer
/// dividend and Int64 otherwise (ClickHouse's narrower types print the same digits; a
/// quotient that does not fit, a negative one of an unsigned dividend, is an error). Floats are
/// divided first, then truncated; a zero divisor, an infinite or too large quotient is an
/// error, as in ClickHouse.
fn int_div_type(types: &[DataType]) -> Result<DataType> {
    for t in types {
        if !(t.is_integer() || matches!(t, DataType::Float32 | DataType::Float64 | DataType::Null))
        {
            return Err(bad_type("intDiv", t));
        }
    }
    let float = types
        .iter()
        .any(|t| matches!(t, DataType::Float32 | DataType::Float64));
    Ok(
        if !float && types.first().is_some_and(|t| t.is_unsigned_integer()) {
            DataType::UInt64
        } else {
            DataType::Int64
        },
    )
}

fn int_div(args: &[ArrayRef], ret: &DataType) -> Result<ArrayRef> {
    let error = |what: &str| DataFusionError::Execution(format!("intDiv: {what}"));
    let float = args
        .iter()
        .any(|a| matches!(a.data_type(), DataType::Float32 | DataType::Float64));
    let strict = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let as_type = |a: &ArrayRef, t: &DataType| -> Result<ArrayRef> {
        arrow::compute::cast_with_options(a, t, &strict)
            .map_err(|_| error(&format!("an argument does not fit {t}")))
    };
    if float {
        let (a, b) = (
            as_type(&args[0], &DataType::Float64)?,
            as_type(&args[1], &DataType::Float64)?,
        );
        let out: arrow::array::Int64Array = a
            .as_primitive::<Float64Type>()
            .iter()
            .zip(b.as_primitive::<Float64Type>().iter())
            .map(|(a, b)| match (a, b) {
                (Some(_), Some(0.0)) => Err(error("division by zero")),
                (Some(a), Some(b)) => {
                    let q = (a / b).trunc();
                    // i64::MAX as f64 is 2^63, itself out of range.
                    if q.is_finite() && q >= -(2f64.powi(63)) && q < 2f64.powi(63) {
                        Ok(Some(q as i64))
                    } else {
                        Err(error("the quotient is infinite or too large"))
                    }
                }
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        return Ok(Arc::new(out));
    }
    let (a, b) = (integers(&args[0])?, integers(&args[1])?);
    let quotients = a.into_iter().zip(b).map(|(a, b)| match (a, b) {
        (Some(_), Some(0)) => Err(error("division by zero")),
        (Some(a), Some(b)) => Ok(Some(a / b)),
        _ => Ok(None),
    });
    let too_large = || error(&format!("the quotient does not fit {ret}"));
    Ok(if *ret == DataType::UInt64 {
        let out: arrow::array::UInt64Array = quotients
            .map(|q| {
                q?.map(|q| u64::try_from(q).map_err(|_| too_large()))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Arc::new(out)
    } else {
        let out: arrow::array::Int64Array = quotients
            .map(|q| {
                q?.map(|q| i64::try_from(q).map_err(|_| too_large()))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Arc::new(out)
    })
}

/// An integer column's values, widened so that every integer type fits.
fn integers(array: &ArrayRef) -> Result<Vec<Option<i128>>> {
    Ok(if array.data_type().is_unsigned_integer() {
        cast(array, &DataType::UInt64)?
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.map(i128::from))
            .collect()
    } else {
        cast(array, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(i128::from))
            .collect()
    })
}

fn round_type(types: &[DataType]) -> Result<DataType> {
    if let Some(n) = types.get(1) {
        if !n.is_integer() {
            return Err(bad_type("round", n));
        }
    }
    match types.first() {
        Some(t) if t.is_integer() || matches!(t, DataType::Float32 | DataType::Float64) => {
            Ok(t.clone())
        }
        Some(DataType::Null) => Ok(DataType::Null),
        Some(t) => Err(bad_type("round", t)),
        None => Err(bad_arity("round", "a number and the decimal places", 0)),
    }
}

/// ClickHouse's order of operations: multiply by 10^n (divide by 10^-n), round, undo.
fn round_float(x: f64, n: i64) -> f64 {
    if n >= 0 {
        let scale = 10f64.powi(n.min(400) as i32);
        (x * scale).round_ties_even() / scale
    } else {
        let scale = 10f64.powi(n.saturating_neg().min(400) as i32);
        (x / scale).round_ties_even() * scale
    }
}

fn round_float32(x: f32, n: i64) -> f32 {
    if n >= 0 {
        let scale = 10f32.powi(n.min(60) as i32);
        (x * scale).round_ties_even() / scale
    } else {
        let scale = 10f32.powi(n.saturating_neg().min(60) as i32);
        (x / scale).round_ties_even() * scale
    }
}

/// Half away from zero to a multiple of 10^-n; an `n` of 0 or more leaves integers be.
fn round_integer(x: i128, n: i64) -> i128 {
    if n >= 0 {
        return x;
    }
    if n.saturating_neg() > 38 {
        return 0;
    }
    let scale = 10i128.pow(n.saturating_neg() as u32);
    let down = x / scale * scale;
    let rest = x - down;
    if rest.abs() * 2 >= scale {
        down + scale * x.signum()
    } else {
        down
    }
}

fn round(args: &[ArrayRef], ret: &DataType) -> Result<ArrayRef> {
    let len = args[0].len();
    let places: Vec<Option<i64>> = match args.get(1) {
        None => vec![Some(0); len],
        Some(n) => cast(n, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .iter()
            .collect(),
    };
    let x = &args[0];
    let out: ArrayRef = match ret {
        DataType::Null => x.clone(),
        DataType::Float64 => {
            let a = x.as_primitive::<Float64Type>();
            let v: Float64Array = a
                .iter()
                .zip(&places)
                .map(|(x, n)| Some(round_float(x?, (*n)?)))
                .collect();
            Arc::new(v)
        }
        DataType::Float32 => {
            let a = x.as_primitive::<Float32Type>();
            let v: arrow::array::Float32Array = a
                .iter()
                .zip(&places)
                .map(|(x, n)| Some(round_float32(x?, (*n)?)))
                .collect();
            Arc::new(v)
        }
        t if t.is_signed_integer() => {
            let a = cast(x, &DataType::Int64)?;
            let v: arrow::array::Int64Array = a
                .as_primitive::<Int64Type>()
                .iter()
                .zip(&places)
                .map(|(x, n)| match (x, n) {
                    (Some(x), Some(n)) => i64::try_from(round_integer(i128::from(x), *n))
                        .map(Some)
                        .map_err(|_| too_big(t)),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?;
            fit(Arc::new(v), t)?
        }
        t if t.is_unsigned_integer() => {
            let a = cast(x, &DataType::UInt64)?;
            let v: arrow::array::UInt64Array = a
                .as_primitive::<UInt64Type>()
                .iter()
                .zip(&places)
                .map(|(x, n)| match (x, n) {
                    (Some(x), Some(n)) => u64::try_from(round_integer(i128::from(x), *n))
                        .map(Some)
                        .map_err(|_| too_big(t)),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?;
            fit(Arc::new(v), t)?
        }
        other => return Err(bad_type("round", other)),
    };
    Ok(out)
}

fn too_big(ty: &DataType) -> DataFusionError {
    DataFusionError::Execution(format!("round: a rounded value does not fit {ty}"))
}

/// An integer column cast back to the argument's type; a rounded value that does not
/// fit (`round(toInt8(125), -1)`) is an error, not another number.
fn fit(array: ArrayRef, ty: &DataType) -> Result<ArrayRef> {
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(&array, ty, &options).map_err(|_| too_big(ty))
}
