//! Values as clickhouse-client prints them: `2011-02-12 02:22:00`, `['a','b']`, `NULL`.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

const DATETIME: &str = "%Y-%m-%d %H:%M:%S";

fn options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some(DATETIME))
        .with_timestamp_tz_format(Some(DATETIME))
        .with_datetime_format(Some(DATETIME))
        .with_date_format(Some("%Y-%m-%d"))
}

/// Every row of the batches as strings, column by column.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, ArrowError> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(batch.num_columns());
            for column in batch.columns() {
                values.push(value(column.as_ref(), row, false)?);
            }
            out.push(values);
        }
    }
    Ok(out)
}

/// One value; inside arrays strings are quoted, as ClickHouse prints them.
pub fn value(array: &dyn Array, row: usize, nested: bool) -> Result<String, ArrowError> {
    if array.is_null(row) {
        return Ok("NULL".into());
    }
    match array.data_type() {
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let items = list.value(row);
            let mut parts = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                parts.push(value(items.as_ref(), i, true)?);
            }
            Ok(format!("[{}]", parts.join(",")))
        }
        DataType::Utf8 if nested => Ok(format!(
            "'{}'",
            array
                .as_string::<i32>()
                .value(row)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        )),
        DataType::Boolean => Ok(if array.as_boolean().value(row) {
            "true".into()
        } else {
            "false".into()
        }),
        _ => {
            let options = options();
            let formatter = ArrayFormatter::try_new(array, &options)?;
            Ok(formatter.value(row).to_string())
        }
    }
}

/// A ClickHouse-style name for an Arrow type.
pub fn type_name(dt: &DataType) -> String {
    crate::format::output::type_name(dt)
}
