//! `ALTER TABLE queue RESET OFFSETS [FOR PARTITION n[, m…]] TO …`: moving a Kafka table's
//! positions on purpose, with the targets of `kafka-consumer-groups --reset-offsets`:
//! `EARLIEST`, `LATEST`, `OFFSET n`, `TIMESTAMP 'YYYY-MM-DD hh:mm:ss[.fff]'` (UTC, or
//! with an offset in ISO 8601 form; a bare number is milliseconds since the epoch) and
//! `SHIFT BY n` (negative to go back).

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::{unexpected, SqlError, Statement};
use crate::catalog::rewind::ResetTo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOffsets {
    pub table: String,
    /// The partitions to move (of each of the table's topics); empty means all.
    pub partitions: Vec<i32>,
    pub to: ResetTo,
}

/// Whether the next token is the word `word` (not a keyword sqlparser knows), consuming it.
fn parse_word(p: &mut Parser, word: &str) -> bool {
    let matched = matches!(
        &p.peek_token_ref().token,
        Token::Word(w) if w.value.eq_ignore_ascii_case(word)
    );
    if matched {
        p.next_token();
    }
    matched
}

fn parse_integer(p: &mut Parser, what: &str) -> Result<i64, SqlError> {
    let negative = p.consume_token(&Token::Minus);
    let token = p.next_token();
    let Token::Number(digits, _) = &token.token else {
        return Err(SqlError::Syntax(format!(
            "expected {what} (an integer), found {}",
            token.token
        )));
    };
    let value: i64 = digits
        .parse()
        .map_err(|_| SqlError::Syntax(format!("{what} {digits} is not a 64-bit integer")))?;
    Ok(if negative { -value } else { value })
}

/// A point in time as milliseconds since the epoch: `YYYY-MM-DD hh:mm:ss[.fff]` and
/// `YYYY-MM-DD` in UTC (the time zone Sluice runs in), or RFC 3339 with its offset.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// After `ALTER TABLE name`: `RESET OFFSETS …`. Other ALTERs are refused by name.
pub(super) fn parse_alter(p: &mut Parser, table: String) -> Result<Statement, SqlError> {
    if !(p.parse_keyword(Keyword::RESET) && parse_word(p, "OFFSETS")) {
        return Err(SqlError::Unsupported(format!(
            "ALTER TABLE {table} {}: the only ALTER Sluice runs is ALTER TABLE <kafka table> RESET OFFSETS [FOR PARTITION n] TO EARLIEST | LATEST | OFFSET n | TIMESTAMP '…' | SHIFT BY n",
            p.peek_token_ref().token
        )));
    }
    let mut partitions = Vec::new();
    if p.parse_keywords(&[Keyword::FOR, Keyword::PARTITION]) {
        loop {
            let n = parse_integer(p, "a partition")?;
            let partition = i32::try_from(n)
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| SqlError::Syntax(format!("partition {n} is out of range")))?;
            partitions.push(partition);
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    if !p.parse_keyword(Keyword::TO) {
        return Err(unexpected(
            p,
            "TO EARLIEST, LATEST, OFFSET n, TIMESTAMP '…' or SHIFT BY n",
        ));
    }
    let to = if parse_word(p, "EARLIEST") {
        ResetTo::Earliest
    } else if parse_word(p, "LATEST") {
        ResetTo::Latest
    } else if p.parse_keyword(Keyword::OFFSET) {
        let offset = parse_integer(p, "an offset")?;
        if offset < 0 {
            return Err(SqlError::Syntax(format!(
                "offset {offset} is negative; use SHIFT BY to move back from the current position"
            )));
        }
        ResetTo::Offset(offset)
    } else if p.parse_keyword(Keyword::TIMESTAMP) {
        match p.peek_token_ref().token.clone() {
            Token::SingleQuotedString(text) => {
                p.next_token();
                ResetTo::Timestamp(parse_timestamp_ms(&text).ok_or_else(|| {
                    SqlError::Syntax(format!(
                        "TIMESTAMP '{text}': expected 'YYYY-MM-DD hh:mm:ss[.fff]' (UTC) or ISO 8601 with an offset"
                    ))
                })?)
            }
            _ => ResetTo::Timestamp(parse_integer(p, "milliseconds since the epoch")?),
        }
    } else if parse_word(p, "SHIFT") {
        if !p.parse_keyword(Keyword::BY) {
            return Err(unexpected(p, "BY after SHIFT"));
        }
        ResetTo::ShiftBy(parse_integer(p, "a number of messages")?)
    } else {
        return Err(unexpected(
            p,
            "EARLIEST, LATEST, OFFSET n, TIMESTAMP '…' or SHIFT BY n after TO",
        ));
    };
    Ok(Statement::ResetOffsets(ResetOffsets {
        table,
        partitions,
        to,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn reset(text: &str) -> ResetOffsets {
        match parse(text) {
            Ok(Statement::ResetOffsets(r)) => r,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn every_target_of_kafka_consumer_groups() {
        assert_eq!(
            reset("ALTER TABLE queue RESET OFFSETS TO EARLIEST"),
            ResetOffsets {
                table: "queue".into(),
                partitions: vec![],
                to: ResetTo::Earliest
            }
        );
        assert_eq!(
            reset("alter table default.queue reset offsets for partition 0, 2 to latest;"),
            ResetOffsets {
                table: "queue".into(),
                partitions: vec![0, 2],
                to: ResetTo::Latest
            }
        );
        assert_eq!(
            reset("ALTER TABLE q RESET OFFSETS TO OFFSET 500").to,
            ResetTo::Offset(500)
        );
        assert_eq!(
            reset("ALTER TABLE q RESET OFFSETS TO SHIFT BY -100").to,
            ResetTo::ShiftBy(-100)
        );
        assert_eq!(
            reset("ALTER TABLE q RESET OFFSETS TO TIMESTAMP '2026-12-06 10:00:00.250'").to,
            ResetTo::Timestamp(1_796_551_200_250)
        );
        assert_eq!(
            reset("ALTER TABLE q RESET OFFSETS TO TIMESTAMP '2026-12-06T11:00:00+01:00'").to,
            ResetTo::Timestamp(1_796_551_200_000)
        );
        assert_eq!(
            reset("ALTER TABLE q RESET OFFSETS TO TIMESTAMP 1796551200000").to,
            ResetTo::Timestamp(1_796_551_200_000)
        );
        assert_eq!(
            ResetTo::Timestamp(1_796_551_200_250).to_string(),
            "TIMESTAMP '2026-12-06 10:00:00.250'"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| parse(text).expect_err(text).to_string();
        assert!(
            err("ALTER TABLE q FREEZE").contains("RESET OFFSETS"),
            "{}",
            err("ALTER TABLE q FREEZE")
        );
        assert!(err("ALTER TABLE q RESET OFFSETS TO OFFSET -1").contains("negative"));
        assert!(err("ALTER TABLE q RESET OFFSETS TO TIMESTAMP 'yesterday'").contains("yesterday"));
        assert!(err("ALTER TABLE q RESET OFFSETS TO NOWHERE").contains("EARLIEST"));
        assert!(err("ALTER TABLE q RESET OFFSETS FOR PARTITION x TO LATEST").contains("partition"));
    }
}
