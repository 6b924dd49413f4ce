//! ClickHouse's date and time functions over Sluice's Date (Arrow Date32) and DateTime
//! (Arrow seconds timestamp, UTC — the time zone every Sluice node runs in).
//!
//! Truncations keep ClickHouse's result types: `toStartOfMinute/Hour/Day` give a DateTime,
//! `toStartOfWeek/Month` and `toMonday` a Date. A Date cannot be before 1970-01-01, so a
//! week starting earlier is clamped to it, as ClickHouse does. Text arguments are read
//! as ClickHouse's `basic` DateTime input format reads them; unreadable text is an error.
//! A DateTime is 32-bit unsigned, as in ClickHouse: `toStartOfDay` of a later Date
//! saturates at 2106-02-07 06:28:15 and `toDateTime` of one wraps, as there.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, TimestampSecondArray, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{Datelike, NaiveDate};
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::scalar::{bad_arity, bad_type, ChScalar};
use crate::catalog::kafka_settings::DateTimeInputFormat;
use crate::format::datetime_text::{parse_date, parse_datetime};

const DAY_SECONDS: i64 = 86_400;
const DATETIME: DataType = DataType::Timestamp(TimeUnit::Second, None);

pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ChScalar::udf(
            "toStartOfMinute",
            1..=1,
            |t| time_arg(t, "toStartOfMinute", DATETIME),
            |a, _| truncate(a, "toStartOfMinute", 60),
        ),
        ChScalar::udf(
            "toStartOfHour",
            1..=1,
            |t| time_arg(t, "toStartOfHour", DATETIME),
            |a, _| truncate(a, "toStartOfHour", 3600),
        ),
        ChScalar::udf(
            "toStartOfDay",
            1..=1,
            |t| time_arg(t, "toStartOfDay", DATETIME),
            |a, _| truncate(a, "toStartOfDay", DAY_SECONDS),
        ),
        ChScalar::udf(
            "toStartOfWeek",
            1..=2,
            |t| time_arg(t, "toStartOfWeek", DataType::Date32),
            start_of_week,
        ),
        ChScalar::udf(
            "toMonday",
            1..=1,
            |t| time_arg(t, "toMonday", DataType::Date32),
            |a, _| week_start(&a[0], "toMonday", true),
        ),
        ChScalar::udf(
            "toStartOfMonth",
            1..=1,
            |t| time_arg(t, "toStartOfMonth", DataType::Date32),
            start_of_month,
        ),
        ChScalar::udf(
            "toYYYYMM",
            1..=1,
            |t| time_arg(t, "toYYYYMM", DataType::UInt32),
            to_yyyymm,
        ),
        ChScalar::udf(
            "toDate",
            1..=1,
            |t| any_arg(t, "toDate", DataType::Date32),
            to_date,
        ),
        ChScalar::udf(
            "toDateTime",
            1..=1,
            |t| any_arg(t, "toDateTime", DATETIME),
            to_date_time,
        ),
        ChScalar::udf(
            "toUnixTimestamp",
            1..=1,
            |t| any_arg(t, "toUnixTimestamp", DataType::UInt32),
            to_unix_timestamp,
        ),
        ChScalar::udf(
            "toYear",
            1..=1,
            |t| time_arg(t, "toYear", DataType::UInt16),
            |a, _| part(a, "toYear", |d, _| i64::from(d.year())),
        ),
        ChScalar::udf(
            "toMonth",
            1..=1,
            |t| time_arg(t, "toMonth", DataType::UInt8),
            |a, _| part(a, "toMonth", |d, _| i64::from(d.month())),
        ),
        ChScalar::udf(
            "toDayOfMonth",
            1..=1,
            |t| time_arg(t, "toDayOfMonth", DataType::UInt8),
            |a, _| part(a, "toDayOfMonth", |d, _| i64::from(d.day())),
        ),
        ChScalar::udf(
            "toDayOfWeek",
            1..=1,
            |t| time_arg(t, "toDayOfWeek", DataType::UInt8),
            |a, _| {
                part(a, "toDayOfWeek", |d, _| {
                    i64::from(d.weekday().number_from_monday())
                })
            },
        ),
        ChScalar::udf(
            "toHour",
            1..=1,
            |t| datetime_arg(t, "toHour"),
            |a, _| part(a, "toHour", |_, s| s.rem_euclid(DAY_SECONDS) / 3600),
        ),
        ChScalar::udf(
            "toMinute",
            1..=1,
            |t| datetime_arg(t, "toMinute"),
            |a, _| part(a, "toMinute", |_, s| s.rem_euclid(3600) / 60),
        ),
        ChScalar::udf(
            "toSecond",
            1..=1,
            |t| datetime_arg(t, "toSecond"),
            |a, _| part(a, "toSecond", |_, s| s.rem_euclid(60)),
        ),
    ]
}

/// A part of each Date or DateTime (`toYear` UInt16, the others UInt8): `get` is given
/// the day and the seconds since the epoch.
fn part(args: &[ArrayRef], function: &str, get: fn(NaiveDate, i64) -> i64) -> Result<ArrayRef> {
    let s = seconds(&args[0], function)?;
    let values = s.into_iter().map(|s| {
        let s = s?;
        Some(get(civil(s)?, s))
    });
    Ok(if function == "toYear" {
        Arc::new(
            values
                .map(|v| v.and_then(|v| u16::try_from(v).ok()))
                .collect::<arrow::array::UInt16Array>(),
        )
    } else {
        Arc::new(
            values
                .map(|v| v.and_then(|v| u8::try_from(v).ok()))
                .collect::<arrow::array::UInt8Array>(),
        )
    })
}

/// A Date or DateTime argument (the optional second one of toStartOfWeek is the mode).
fn time_arg(types: &[DataType], function: &str, out: DataType) -> Result<DataType> {
    match types.first() {
        Some(DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null) => {
            Ok(out)
        }
        Some(other) => Err(bad_type(function, other)),
        None => Err(bad_arity(function, "a Date or DateTime", 0)),
    }
}

/// A DateTime argument (ClickHouse refuses a Date for a time of day).
fn datetime_arg(types: &[DataType], function: &str) -> Result<DataType> {
    match types.first() {
        Some(DataType::Timestamp(..) | DataType::Null) => Ok(DataType::UInt8),
        Some(other) => Err(bad_type(function, other)),
        None => Err(bad_arity(function, "a DateTime", 0)),
    }
}

/// A Date, DateTime, String or integer argument.
fn any_arg(types: &[DataType], function: &str, out: DataType) -> Result<DataType> {
    match types.first() {
        Some(t)
            if t.is_integer()
                || matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) =>
        {
            Ok(out)
        }
        _ => time_arg(types, function, out),
    }
}

/// Each row as seconds since the epoch. Text is read as ClickHouse's toDateTime reads it.
fn seconds(array: &ArrayRef, function: &str) -> Result<Vec<Option<i64>>> {
    Ok(match array.data_type() {
        DataType::Timestamp(..) | DataType::Date64 => {
            let s = cast(array, &DATETIME)?;
            s.as_primitive::<arrow::datatypes::TimestampSecondType>()
                .iter()
                .collect()
        }
        DataType::Date32 => array
            .as_primitive::<arrow::datatypes::Date32Type>()
            .iter()
            .map(|d| d.map(|d| i64::from(d) * DAY_SECONDS))
            .collect(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8)?;
            text.as_string::<i32>()
                .iter()
                .map(|t| {
                    t.map(|t| {
                        parse_datetime(t, DateTimeInputFormat::Basic).ok_or_else(|| {
                            DataFusionError::Execution(format!(
                                "{function}: cannot parse '{t}' as DateTime"
                            ))
                        })
                    })
                    .transpose()
                })
                .collect::<Result<_>>()?
        }
        t if t.is_integer() => {
            let n = cast(array, &DataType::Int64)?;
            n.as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .collect()
        }
        DataType::Null => vec![None; array.len()],
        other => return Err(bad_type(function, other)),
    })
}

fn datetimes(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampSecondArray::from(
        values.into_iter().collect::<Vec<_>>(),
    ))
}

fn dates(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    // A Date before 1970-01-01 does not exist in ClickHouse: it is clamped to the epoch.
    let days: Vec<Option<i32>> = values
        .into_iter()
        .map(|d| d.map(|d| i32::try_from(d.max(0)).unwrap_or(i32::MAX)))
        .collect();
    Arc::new(Date32Array::from(days))
}

fn truncate(args: &[ArrayRef], function: &str, unit: i64) -> Result<ArrayRef> {
    let s = seconds(&args[0], function)?;
    // ClickHouse's DateTime is 32-bit unsigned: a Date past 2106-02-07 saturates.
    let max = i64::from(u32::MAX);
    Ok(datetimes(s.into_iter().map(|s| {
        s.map(|s| (s.div_euclid(unit) * unit).clamp(0, max))
    })))
}

fn start_of_week(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    // Bit 0 of the mode picks Monday as the first day; the other bits number weeks,
    // which a week's start does not depend on.
    let monday = match args.get(1) {
        None => false,
        Some(mode) => {
            let mode = cast(mode, &DataType::Int64)?;
            let mode = mode.as_primitive::<arrow::datatypes::Int64Type>();
            if mode.null_count() > 0 {
                return Err(DataFusionError::Execution(
                    "toStartOfWeek: the mode is NULL".into(),
                ));
            }
            let first = mode.values().first().copied().unwrap_or(0);
            if mode.values().iter().any(|m| *m != first) {
                return Err(DataFusionError::Execution(
                    "toStartOfWeek: the mode must be a constant".into(),
                ));
            }
            first & 1 == 1
        }
    };
    week_start(&args[0], "toStartOfWeek", monday)
}

fn week_start(array: &ArrayRef, function: &str, monday: bool) -> Result<ArrayRef> {
    let s = seconds(array, function)?;
    Ok(dates(s.into_iter().map(|s| {
        s.map(|s| {
            let day = s.div_euclid(DAY_SECONDS);
            // 1970-01-01 was a Thursday: weekday 0 = Monday.
            let monday_based = (day + 3).rem_euclid(7);
            let back = if monday {
                monday_based
            } else {
                (monday_based + 1) % 7
            };
            day - back
        })
    })))
}

fn civil(seconds: i64) -> Option<NaiveDate> {
    let days = i32::try_from(seconds.div_euclid(DAY_SECONDS)).ok()?;
    NaiveDate::default().checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
}

fn start_of_month(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let s = seconds(&args[0], "toStartOfMonth")?;
    Ok(dates(s.into_iter().map(|s| {
        let d = civil(s?)?;
        let first = d.with_day(1)?;
        Some(first.signed_duration_since(NaiveDate::default()).num_days())
    })))
}

fn to_yyyymm(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let s = seconds(&args[0], "toYYYYMM")?;
    let out: UInt32Array = s
        .into_iter()
        .map(|s| {
            let d = civil(s?)?;
            u32::try_from(d.year() * 100 + d.month() as i32).ok()
        })
        .collect();
    Ok(Arc::new(out))
}

/// `toDate`: a DateTime's day; text as `YYYY-MM-DD` (or a DateTime's text); a number is a
/// day number up to 65535 and unix seconds above, as in ClickHouse.
fn to_date(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let array = &args[0];
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8)?;
            let days: Vec<Option<i64>> = text
                .as_string::<i32>()
                .iter()
                .map(|t| {
                    t.map(|t| {
                        parse_date(t, DateTimeInputFormat::Basic)
                            .map(i64::from)
                            .ok_or_else(|| {
                                DataFusionError::Execution(format!(
                                    "toDate: cannot parse '{t}' as Date"
                                ))
                            })
                    })
                    .transpose()
                })
                .collect::<Result<_>>()?;
            Ok(dates(days))
        }
        t if t.is_integer() => {
            let s = seconds(array, "toDate")?;
            Ok(dates(s.into_iter().map(|n| {
                n.map(|n| {
                    if n <= 65_535 {
                        n
                    } else {
                        n.div_euclid(DAY_SECONDS)
                    }
                })
            })))
        }
        _ => {
            let s = seconds(array, "toDate")?;
            Ok(dates(
                s.into_iter().map(|s| s.map(|s| s.div_euclid(DAY_SECONDS))),
            ))
        }
    }
}

fn to_date_time(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let s = seconds(&args[0], "toDateTime")?;
    // ClickHouse's DateTime is 32-bit unsigned: a later Date wraps around, as there.
    Ok(datetimes(
        s.into_iter().map(|s| s.map(|s| i64::from(s as u32))),
    ))
}

fn to_unix_timestamp(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let s = seconds(&args[0], "toUnixTimestamp")?;
    // ClickHouse's DateTime is 32-bit unsigned; a value outside it wraps, as there.
    let out: UInt32Array = s.into_iter().map(|s| s.map(|s| s as u32)).collect();
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn date_text(a: &ArrayRef) -> Vec<String> {
        let c = cast(a, &DataType::Utf8).expect("cast");
        c.as_string::<i32>()
            .iter()
            .map(|s| s.unwrap_or("NULL").to_string())
            .collect()
    }

    #[test]
    fn weeks_start_on_sunday_or_monday_and_not_before_the_epoch() {
        // 1970-01-01 (Thursday), 2024-03-03 (Sunday), 2024-03-04 (Monday)
        let t: ArrayRef = datetimes([Some(0), Some(1_709_424_000), Some(1_709_510_400 + 5)]);
        let sunday = week_start(&t, "toStartOfWeek", false).expect("week");
        assert_eq!(
            date_text(&sunday),
            ["1970-01-01", "2024-03-03", "2024-03-03"]
        );
        let monday = week_start(&t, "toMonday", true).expect("week");
        assert_eq!(
            date_text(&monday),
            ["1970-01-01", "2024-02-26", "2024-03-04"]
        );
    }

    #[test]
    fn months_hours_and_numbers() {
        let t: ArrayRef = datetimes([Some(951_868_799), None]); // 2000-02-29 23:59:59
        assert_eq!(
            date_text(&start_of_month(std::slice::from_ref(&t), &DataType::Date32).expect("month")),
            ["2000-02-01", "NULL"]
        );
        let hour = truncate(std::slice::from_ref(&t), "toStartOfHour", 3600).expect("hour");
        assert_eq!(
            hour.as_primitive::<arrow::datatypes::TimestampSecondType>()
                .value(0),
            951_868_800 - 3600
        );
        let ym = to_yyyymm(&[t], &DataType::UInt32).expect("yyyymm");
        assert_eq!(
            ym.as_primitive::<arrow::datatypes::UInt32Type>().value(0),
            200_002
        );
        let n: ArrayRef = Arc::new(Int64Array::from(vec![65_535, 70_000]));
        assert_eq!(
            date_text(&to_date(&[n], &DataType::Date32).expect("date")),
            ["2149-06-06", "1970-01-01"]
        );
    }
}
