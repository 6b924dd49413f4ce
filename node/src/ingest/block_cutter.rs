//! When to cut a block: by rows (`kafka_max_block_size`), by bytes (a block is one
//! replicated entry, so it stays a few MiB), or by time since its first message
//! (`kafka_flush_interval_ms`), and how long a poll may wait for the next message. Pure:
//! time is passed in.

use std::time::{Duration, Instant};

use crate::catalog::KafkaSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub flush_interval: Duration,
}

impl BlockLimits {
    /// The limits a Kafka table's settings ask for.
    pub fn of(settings: &KafkaSettings) -> BlockLimits {
        BlockLimits {
            max_rows: settings.max_block_size,
            max_bytes: settings.max_block_bytes,
            flush_interval: Duration::from_millis(settings.flush_interval_ms),
        }
    }
}

#[derive(Debug)]
pub struct BlockCutter {
    limits: BlockLimits,
    rows: u64,
    bytes: u64,
    first_at: Option<Instant>,
}

impl BlockCutter {
    pub fn new(limits: BlockLimits) -> BlockCutter {
        BlockCutter {
            limits,
            rows: 0,
            bytes: 0,
            first_at: None,
        }
    }

    pub fn push(&mut self, bytes: usize, now: Instant) {
        self.rows += 1;
        self.bytes += bytes as u64;
        self.first_at.get_or_insert(now);
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Full by rows or bytes: cut now.
    pub fn is_full(&self) -> bool {
        self.rows >= self.limits.max_rows || self.bytes >= self.limits.max_bytes
    }

    /// When the open block is due by time, if it has messages.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_at.map(|t| t + self.limits.flush_interval)
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.is_full() || self.deadline().is_some_and(|d| now >= d)
    }

    /// How long the next poll may wait: the poll timeout, shortened so that an open block
    /// is cut when it falls due rather than one poll timeout later.
    pub fn poll_wait(&self, now: Instant, poll_timeout: Duration) -> Duration {
        self.deadline()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(poll_timeout)
            .min(poll_timeout)
    }

    pub fn reset(&mut self) {
        self.rows = 0;
        self.bytes = 0;
        self.first_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BlockLimits {
        BlockLimits {
            max_rows: 3,
            max_bytes: 100,
            flush_interval: Duration::from_millis(500),
        }
    }

    #[test]
    fn cuts_by_rows() {
        let t0 = Instant::now();
        let mut c = BlockCutter::new(limits());
        assert!(!c.is_due(t0));
        c.push(1, t0);
        c.push(1, t0);
        assert!(!c.is_due(t0));
        c.push(1, t0);
        assert!(c.is_due(t0));
        c.reset();
        assert!(c.is_empty() && !c.is_due(t0));
    }

    #[test]
    fn cuts_by_bytes_even_with_one_large_message() {
        let t0 = Instant::now();
        let mut c = BlockCutter::new(limits());
        c.push(150, t0);
        assert!(c.is_full());
    }

    #[test]
    fn cuts_by_time_from_the_first_message() {
        let t0 = Instant::now();
        let mut c = BlockCutter::new(limits());
        assert_eq!(c.deadline(), None);
        c.push(1, t0);
        c.push(1, t0 + Duration::from_millis(400));
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(500)));
        assert!(!c.is_due(t0 + Duration::from_millis(499)));
        assert!(c.is_due(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn a_poll_waits_no_longer_than_the_open_block_allows() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(200);
        let mut c = BlockCutter::new(limits());
        // Nothing open: nothing falls due, the poll waits its full timeout.
        assert_eq!(c.poll_wait(t0, timeout), timeout);
        c.push(1, t0);
        // Due in 500 ms: the timeout is the shorter wait.
        assert_eq!(c.poll_wait(t0, timeout), timeout);
        // Due in 50 ms: the poll ends then.
        let late = t0 + Duration::from_millis(450);
        assert_eq!(c.poll_wait(late, timeout), Duration::from_millis(50));
        // Past due: no wait at all.
        let past = t0 + Duration::from_millis(700);
        assert_eq!(c.poll_wait(past, timeout), Duration::ZERO);
    }

    #[test]
    fn limits_follow_the_table_settings() {
        let mut settings = KafkaSettings::for_tests();
        settings.max_block_size = 7;
        settings.max_block_bytes = 1024;
        settings.flush_interval_ms = 1500;
        assert_eq!(
            BlockLimits::of(&settings),
            BlockLimits {
                max_rows: 7,
                max_bytes: 1024,
                flush_interval: Duration::from_millis(1500),
            }
        );
    }

    #[test]
    fn a_block_is_full_at_its_limits_not_before() {
        let t0 = Instant::now();
        let mut c = BlockCutter::new(limits());
        c.push(99, t0);
        assert!(!c.is_full(), "99 of 100 bytes, 1 of 3 rows");
        c.push(1, t0);
        assert!(c.is_full(), "100 of 100 bytes");
        c.reset();
        assert_eq!(c.deadline(), None, "a reset block has no deadline");
    }
}
