//! `length`, `empty`, `notEmpty`, `has`: ClickHouse's functions over arrays and strings.
//!
//! `length` of a String counts bytes (not characters) and of an Array its elements; both
//! are UInt64. `empty`/`notEmpty`/`has` answer UInt8 0/1, as in ClickHouse, so they print
//! as numbers. A NULL argument gives NULL.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, OffsetSizeTrait, UInt64Array, UInt8Array,
};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ScalarUDF;

use super::scalar::{bad_arity, bad_type, ChScalar};

pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ChScalar::udf(
            "length",
            1..=1,
            |t| sized(&t[0], "length", DataType::UInt64),
            length,
        ),
        ChScalar::udf(
            "empty",
            1..=1,
            |t| sized(&t[0], "empty", DataType::UInt8),
            empty,
        ),
        ChScalar::udf(
            "notEmpty",
            1..=1,
            |t| sized(&t[0], "notEmpty", DataType::UInt8),
            not_empty,
        ),
        ChScalar::udf_coerced("has", |_| Ok(DataType::UInt8), has, has_coerce),
    ]
}

fn sized(ty: &DataType, function: &str, out: DataType) -> Result<DataType> {
    match ty {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::Null => Ok(out),
        other => Err(bad_type(function, other)),
    }
}

/// The size of each row's value: bytes of a string, elements of an array.
fn sizes(array: &ArrayRef, function: &str) -> Result<Vec<Option<u64>>> {
    fn list<O: OffsetSizeTrait>(l: &GenericListArray<O>) -> Vec<Option<u64>> {
        (0..l.len())
            .map(|i| l.is_valid(i).then(|| l.value_length(i).as_usize() as u64))
            .collect()
    }
    Ok(match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(|s| s.len() as u64))
            .collect(),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .map(|s| s.map(|s| s.len() as u64))
            .collect(),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .map(|s| s.map(|s| s.len() as u64))
            .collect(),
        DataType::Binary => array
            .as_binary::<i32>()
            .iter()
            .map(|s| s.map(|s| s.len() as u64))
            .collect(),
        DataType::LargeBinary => array
            .as_binary::<i64>()
            .iter()
            .map(|s| s.map(|s| s.len() as u64))
            .collect(),
        DataType::List(_) => list(array.as_list::<i32>()),
        DataType::LargeList(_) => list(array.as_list::<i64>()),
        DataType::Null => vec![None; array.len()],
        other => return Err(bad_type(function, other)),
    })
}

fn length(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    Ok(Arc::new(UInt64Array::from(sizes(&args[0], "length")?)))
}

fn empty(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let out: UInt8Array = sizes(&args[0], "empty")?
        .into_iter()
        .map(|n| n.map(|n| u8::from(n == 0)))
        .collect();
    Ok(Arc::new(out))
}

fn not_empty(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let out: UInt8Array = sizes(&args[0], "notEmpty")?
        .into_iter()
        .map(|n| n.map(|n| u8::from(n > 0)))
        .collect();
    Ok(Arc::new(out))
}

/// `has(array, x)`: the needle is cast to the array's element type, as ClickHouse compares
/// them by value.
fn has_coerce(types: &[DataType]) -> Result<Vec<DataType>> {
    let [array, _] = types else {
        return Err(bad_arity(
            "has",
            "two arguments (array, value)",
            types.len(),
        ));
    };
    match array {
        DataType::List(f) | DataType::LargeList(f) => {
            Ok(vec![array.clone(), f.data_type().clone()])
        }
        other => Err(bad_type("has", other)),
    }
}

/// ClickHouse's `has` finds NULL in an array holding NULL; equal values match.
fn has(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let needles = &args[1];
    let mut out = Vec::with_capacity(needles.len());
    let rows: Vec<Option<ArrayRef>> = match args[0].data_type() {
        DataType::List(_) => args[0].as_list::<i32>().iter().collect(),
        DataType::LargeList(_) => args[0].as_list::<i64>().iter().collect(),
        other => return Err(bad_type("has", other)),
    };
    for (i, row) in rows.into_iter().enumerate() {
        let Some(values) = row else {
            out.push(None);
            continue;
        };
        let needle = ScalarValue::try_from_array(needles, i)?;
        let mut found = false;
        for j in 0..values.len() {
            if ScalarValue::try_from_array(&values, j)? == needle {
                found = true;
                break;
            }
        }
        out.push(Some(u8::from(found)));
    }
    Ok(Arc::new(UInt8Array::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ListArray, StringArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn length_counts_bytes_of_strings_and_elements_of_arrays() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("é"), Some(""), None]));
        let got = length(&[s], &DataType::UInt64).expect("length");
        assert_eq!(
            got.as_primitive::<arrow::datatypes::UInt64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(2), Some(0), None]
        );
        let a: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            Some(vec![]),
        ]));
        let got = not_empty(std::slice::from_ref(&a), &DataType::UInt8).expect("notEmpty");
        assert_eq!(
            got.as_primitive::<arrow::datatypes::UInt8Type>().values(),
            &[1, 0]
        );
        let needle: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![None, Some(1)]));
        let got = has(&[a, needle], &DataType::UInt8).expect("has");
        assert_eq!(
            got.as_primitive::<arrow::datatypes::UInt8Type>().values(),
            &[1, 0]
        );
    }
}
