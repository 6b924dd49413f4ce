//! A partition consumer's name and what it reports: shared by the consumers that fill
//! them in, the system tables and metrics that show them, and the peers that ask.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerKey {
    pub table: String,
    pub topic: String,
    pub partition: i32,
}

impl ConsumerKey {
    pub fn consumer_id(&self, node: &str) -> String {
        format!("{node}/{}/{}/{}", self.table, self.topic, self.partition)
    }
}

/// What a consumer reports, for `system.kafka_consumers`: ClickHouse's columns, then
/// where the partition ends and how far behind the stored position is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerSnapshot {
    pub current_offset: i64,
    pub exceptions: Vec<(i64, String)>,
    pub last_poll_time: i64,
    pub num_messages_read: u64,
    pub last_commit_time: i64,
    pub num_commits: u64,
    pub is_currently_used: bool,
    pub num_skipped_messages: u64,
    pub num_rows_written: u64,
    pub num_restarts: u64,
    pub num_errors: u64,
    /// The partition's high watermark (the offset the broker gives its next message), as
    /// last read from the broker; unknown until the consumer first asked.
    pub high_watermark: Option<i64>,
    /// Where the consumer resumes: the lowest next offset its views' tables stored,
    /// never below the first offset the broker still holds.
    pub stored_offset: Option<i64>,
    /// Messages read and rows stored per second, over the last few seconds.
    pub messages_per_second: f64,
    pub rows_per_second: f64,
}

impl ConsumerSnapshot {
    /// Messages in the partition past the stored position; unknown until both are.
    pub fn lag(&self) -> Option<u64> {
        Some(lag(self.high_watermark?, self.stored_offset?))
    }
}

/// The messages between a stored position and the partition's end. Never negative: the
/// high watermark is read from time to time, so a position stored since may be past it.
pub fn lag(high_watermark: i64, stored_offset: i64) -> u64 {
    u64::try_from(high_watermark.saturating_sub(stored_offset)).unwrap_or(0)
}

/// Where a consumer would resume: its stored position, or the partition's first offset
/// when nothing is stored or what is stored was deleted by retention (the consumer then
/// reads from the earliest offset, `auto.offset.reset = earliest`). Unknown until one
/// of the two is.
pub fn resume_position(stored: Option<i64>, low_watermark: Option<i64>) -> Option<i64> {
    match (stored, low_watermark) {
        (Some(s), Some(low)) => Some(s.max(low)),
        (s, low) => s.or(low),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_what_the_partition_holds_past_the_stored_position() {
        assert_eq!(lag(1_000, 400), 600);
        assert_eq!(lag(1_000, 1_000), 0);
        assert_eq!(lag(0, 0), 0);
        // A watermark read before the last block was stored.
        assert_eq!(lag(1_000, 1_200), 0);
        assert_eq!(lag(i64::MIN, i64::MAX), 0, "no overflow");
        assert_eq!(lag(i64::MAX, i64::MIN), i64::MAX as u64, "no overflow");
    }

    #[test]
    fn lag_is_unknown_until_both_ends_are() {
        let mut s = ConsumerSnapshot::default();
        assert_eq!(s.lag(), None);
        s.stored_offset = Some(5);
        assert_eq!(s.lag(), None);
        s.high_watermark = Some(12);
        assert_eq!(s.lag(), Some(7));
        s.stored_offset = None;
        assert_eq!(s.lag(), None);
    }

    #[test]
    fn a_consumer_resumes_where_it_stored_or_at_the_first_offset_left() {
        assert_eq!(resume_position(Some(40), Some(0)), Some(40));
        assert_eq!(resume_position(Some(40), None), Some(40));
        // Nothing stored: read from the beginning.
        assert_eq!(resume_position(None, Some(7)), Some(7));
        // Retention deleted what the stored position points at.
        assert_eq!(resume_position(Some(3), Some(7)), Some(7));
        assert_eq!(resume_position(None, None), None);
    }
}
