//! `formatReadableSize(bytes)`: ClickHouse's binary-prefixed size text, `1.50 KiB`.
//!
//! Divides by 1024 while the size is at least 1024 (up to YiB) and writes two decimals,
//! a tie rounding away from zero as ClickHouse's fixed-point printer does.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::ScalarUDF;

use super::scalar::{bad_type, ChScalar};

const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

pub fn udfs() -> Vec<ScalarUDF> {
    vec![ChScalar::udf(
        "formatReadableSize",
        1..=1,
        |t| match &t[0] {
            t if t.is_numeric() || *t == DataType::Null => Ok(DataType::Utf8),
            other => Err(bad_type("formatReadableSize", other)),
        },
        format_readable_size,
    )]
}

pub fn readable_size(bytes: f64) -> String {
    let mut size = bytes;
    let mut unit = 0;
    while unit + 1 < UNITS.len() && size.abs() >= 1024.0 {
        size /= 1024.0;
        unit += 1;
    }
    let rounded = (size * 100.0).round() / 100.0;
    format!("{rounded:.2} {}", UNITS[unit])
}

fn format_readable_size(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let f = cast(&args[0], &DataType::Float64)?;
    let out: StringArray = f
        .as_primitive::<arrow::datatypes::Float64Type>()
        .iter()
        .map(|v| v.map(readable_size))
        .collect();
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::readable_size;

    #[test]
    fn sizes_as_clickhouse_writes_them() {
        assert_eq!(readable_size(1.0), "1.00 B");
        assert_eq!(readable_size(1536.0), "1.50 KiB");
        assert_eq!(readable_size(1_000_000.0), "976.56 KiB");
        assert_eq!(readable_size(-2048.0), "-2.00 KiB");
        assert_eq!(readable_size(1152.0), "1.13 KiB");
    }
}
