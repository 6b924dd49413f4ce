//! Date and DateTime text as ClickHouse's `date_time_input_format` reads it, in UTC (the
//! time zone every Sluice node runs in).
//!
//! `basic` takes `YYYY-MM-DD hh:mm:ss` (any one non-digit between the parts, as ClickHouse
//! allows), `YYYY-MM-DD` (midnight) and unix seconds written as digits. `best_effort` adds
//! ISO 8601 / RFC 3339 (`T`, fractions, `Z` or an offset), RFC 2822, day-first slashed
//! dates, `12 Feb 2011` and compact `YYYYMMDD[hhmmss]`; fractions of a second are dropped,
//! as a DateTime holds seconds. It covers the common forms, not every one ClickHouse's
//! parser guesses at.

use arrow::compute::kernels::cast_utils::string_to_datetime;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::catalog::kafka_settings::DateTimeInputFormat;

/// 1970-01-01: Arrow's Date32 counts days from it.
fn epoch() -> NaiveDate {
    NaiveDate::default()
}

/// A DateTime as seconds since the epoch, or `None` when `mode` does not read `text`.
pub fn parse_datetime(text: &str, mode: DateTimeInputFormat) -> Option<i64> {
    let text = text.trim();
    if mode == DateTimeInputFormat::BestEffort {
        // Eight or fourteen digits are a compact date (and time) there, not unix seconds.
        if let Some(seconds) = compact_digits(text) {
            return Some(seconds);
        }
    }
    if let Some(seconds) = basic_datetime(text) {
        return Some(seconds);
    }
    if mode == DateTimeInputFormat::Basic {
        return None;
    }
    best_effort(text)
}

/// `YYYYMMDD` and `YYYYMMDDhhmmss`, as best_effort reads all-digit text of those lengths.
fn compact_digits(text: &str) -> Option<i64> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let form = match text.len() {
        8 => {
            return Some(
                NaiveDate::parse_from_str(text, "%Y%m%d")
                    .ok()?
                    .and_hms_opt(0, 0, 0)?
                    .and_utc()
                    .timestamp(),
            )
        }
        14 => "%Y%m%d%H%M%S",
        _ => return None,
    };
    Some(
        NaiveDateTime::parse_from_str(text, form)
            .ok()?
            .and_utc()
            .timestamp(),
    )
}

/// A Date as days since the epoch.
pub fn parse_date(text: &str, mode: DateTimeInputFormat) -> Option<i32> {
    let text = text.trim();
    if let Some(date) = basic_date(text) {
        return days(date);
    }
    if mode == DateTimeInputFormat::Basic {
        return None;
    }
    let seconds = best_effort(text)?;
    i32::try_from(seconds.div_euclid(86_400)).ok()
}

fn days(date: NaiveDate) -> Option<i32> {
    i32::try_from(date.signed_duration_since(epoch()).num_days()).ok()
}

/// `YYYY?MM?DD` with any non-digit separators.
fn basic_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4].is_ascii_digit() || b[7].is_ascii_digit() {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(digits(&b[0..4])?).ok()?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

fn basic_datetime(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if !b.is_empty() && b.len() <= 18 && b.iter().all(u8::is_ascii_digit) {
        return text.parse::<i64>().ok();
    }
    if b.len() == 10 {
        return Some(
            basic_date(text)?
                .and_hms_opt(0, 0, 0)?
                .and_utc()
                .timestamp(),
        );
    }
    if b.len() != 19 || [13, 16].iter().any(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    if b[10].is_ascii_digit() {
        return None;
    }
    let date = basic_date(&text[..10])?;
    let time = date.and_hms_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    )?;
    Some(time.and_utc().timestamp())
}

fn best_effort(text: &str) -> Option<i64> {
    if let Ok(t) = string_to_datetime(&Utc, text) {
        return Some(t.timestamp());
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t.timestamp());
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z") {
        return Some(t.timestamp());
    }
    const FORMS: &[&str] = &[
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%d/%m/%Y %H:%M:%S",
        "%d.%m.%Y %H:%M:%S",
        "%Y%m%dT%H%M%S",
        "%Y%m%d%H%M%S",
    ];
    for form in FORMS {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, form) {
            return Some(t.and_utc().timestamp());
        }
    }
    for form in ["%Y/%m/%d", "%d/%m/%Y", "%d.%m.%Y", "%d %b %Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(text, form) {
            return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use DateTimeInputFormat::{Basic, BestEffort};

    #[test]
    fn basic_reads_the_plain_forms_only() {
        let cases = [
            ("2011-02-12 02:22:00", Some(1_297_477_320)),
            ("2011/02/12T02:22:00", Some(1_297_477_320)),
            ("2011-02-12", Some(1_297_468_800)),
            ("1297477320", Some(1_297_477_320)),
            ("0", Some(0)),
            (" 2011-02-12 02:22:00 ", Some(1_297_477_320)),
            ("2011-02-12T02:22:00Z", None),
            ("2011-02-30 00:00:00", None),
            ("2011-02-12 25:00:00", None),
            ("12/02/2011", None),
            ("", None),
            ("yesterday", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_datetime(text, Basic), want, "{text}");
        }
    }

    /// Each text as ClickHouse 26.9 reads it, in both modes: `SELECT toUnixTimestamp(a)
    /// FROM format(TSV, 'a DateTime(\'UTC\')', '<text>') SETTINGS date_time_input_format = ..`.
    #[test]
    fn both_modes_read_as_clickhouse_reads() {
        let cases: &[(&str, Option<i64>, Option<i64>)] = &[
            ("2011-02-12T02:22:00Z", None, Some(1_297_477_320)),
            ("2011-02-12T04:22:00+02:00", None, Some(1_297_477_320)),
            ("2011-02-12T02:22:00.750Z", None, Some(1_297_477_320)),
            ("Sat, 12 Feb 2011 02:22:00 +0000", None, Some(1_297_477_320)),
            (
                "2011/02/12 02:22:00",
                Some(1_297_477_320),
                Some(1_297_477_320),
            ),
            ("12/02/2011 02:22:00", None, Some(1_297_477_320)),
            ("20110212T022200", None, Some(1_297_477_320)),
            ("1297477320.9", None, None),
            (
                "2011-02-12 02:22:00",
                Some(1_297_477_320),
                Some(1_297_477_320),
            ),
            ("12/02/2011", None, Some(1_297_468_800)),
            ("02/12/2011", None, Some(1_322_784_000)),
            ("2011-02-12", Some(1_297_468_800), Some(1_297_468_800)),
            ("1297477320", Some(1_297_477_320), Some(1_297_477_320)),
            ("12 Feb 2011", None, Some(1_297_468_800)),
            ("2011-02-12 02:22", None, Some(1_297_477_320)),
            (
                "2011/02/12T02:22:00",
                Some(1_297_477_320),
                Some(1_297_477_320),
            ),
            ("2011-02-12 02:22:00 +0100", None, Some(1_297_473_720)),
            ("20110212", Some(20_110_212), Some(1_297_468_800)),
            ("nan", None, None),
            ("not a time", None, None),
        ];
        for &(text, basic, best_effort) in cases {
            assert_eq!(parse_datetime(text, Basic), basic, "basic {text}");
            assert_eq!(
                parse_datetime(text, BestEffort),
                best_effort,
                "best_effort {text}"
            );
        }
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(parse_date("1970-01-02", Basic), Some(1));
        assert_eq!(parse_date("1969-12-31", Basic), Some(-1));
        assert_eq!(parse_date("2024-02-29", Basic), Some(19_782));
        assert_eq!(parse_date("2023-02-29", Basic), None);
        assert_eq!(parse_date("2024/02/29", Basic), Some(19_782));
        assert_eq!(parse_date("29/02/2024", Basic), None);
        assert_eq!(parse_date("29/02/2024", BestEffort), Some(19_782));
        assert_eq!(
            parse_date("2024-02-29T23:59:59+00:00", BestEffort),
            Some(19_782)
        );
    }
}
