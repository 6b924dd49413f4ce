//! Moving a Kafka table's positions on purpose (`ALTER TABLE … RESET OFFSETS`): where to,
//! and the record of each move kept in the catalog for `system.kafka_offset_resets`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How many moves the catalog keeps; the oldest go first.
pub const RESETS_KEPT: usize = 1000;

/// Where a reset moves a partition, as `kafka-consumer-groups --reset-offsets` puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTo {
    /// The partition's first offset still held by the broker.
    Earliest,
    /// The partition's end: only messages produced from now on are read.
    Latest,
    /// An offset, held to the partition's range.
    Offset(i64),
    /// The first message with a timestamp at or after this one (milliseconds since the
    /// epoch); the end when there is none.
    Timestamp(i64),
    /// This many messages past (or, negative, before) the current position.
    ShiftBy(i64),
}

impl fmt::Display for ResetTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetTo::Earliest => write!(f, "EARLIEST"),
            ResetTo::Latest => write!(f, "LATEST"),
            ResetTo::Offset(o) => write!(f, "OFFSET {o}"),
            ResetTo::Timestamp(ms) => {
                match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(*ms) {
                    Some(t) => write!(f, "TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.3f")),
                    None => write!(f, "TIMESTAMP {ms}"),
                }
            }
            ResetTo::ShiftBy(n) => write!(f, "SHIFT BY {n}"),
        }
    }
}

/// One partition's move, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetReset {
    /// When the move was made, in milliseconds since the epoch (the proposer's clock).
    pub time_ms: i64,
    pub table: String,
    pub topic: String,
    pub partition: i32,
    /// Where the table would have resumed: its views' lowest stored position, else the
    /// group's committed offset; none when it would have read from the beginning.
    pub from_offset: Option<i64>,
    pub to_offset: i64,
    /// What was asked for (`TIMESTAMP '…'`, `EARLIEST`, …).
    pub target: String,
    /// Who asked: the caller's user name if it gave one, and its address.
    pub requested_by: String,
}
