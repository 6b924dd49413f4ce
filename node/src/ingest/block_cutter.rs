//! When to cut a block: by rows (`kafka_max_block_size`), by bytes (a block is one
//! replicated entry, so it stays a few MiB), or by time since its first message
//! (`kafka_flush_interval_ms`). Pure: time is passed in.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimits {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub flush_interval: Duration,
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
}
