//! What each consumer is doing, for `system.kafka_consumers` and `ConsumerStatus`.
//!
//! Consumers write their own entry; readers take snapshots. Only the last few exceptions
//! are kept, so a consumer stuck on a bad message cannot grow memory. The lag is worked
//! out when a snapshot is taken, from the last watermarks the consumer read and the
//! position its tables stored, which move at different times.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::rate::RateWindow;
use crate::topology::resume_position;
pub use crate::topology::{ConsumerKey, ConsumerSnapshot};

/// How many recent exceptions a consumer keeps (ClickHouse keeps 10).
const EXCEPTIONS_KEPT: usize = 10;

#[derive(Debug)]
struct Inner {
    snapshot: ConsumerSnapshot,
    exceptions: VecDeque<(i64, String)>,
    /// The lowest next offset the consumer's views stored (or the group offset standing
    /// in for a view that stored nothing); `None` while it reads from the beginning.
    stored: Option<i64>,
    /// The partition's (low, high) watermarks as last read from the broker.
    watermarks: Option<(i64, i64)>,
    messages: RateWindow,
    rows: RateWindow,
}

impl Default for Inner {
    fn default() -> Inner {
        let now = Instant::now();
        Inner {
            snapshot: ConsumerSnapshot::default(),
            exceptions: VecDeque::new(),
            stored: None,
            watermarks: None,
            messages: RateWindow::new(now, 0),
            rows: RateWindow::new(now, 0),
        }
    }
}

#[derive(Debug, Default)]
pub struct ConsumerStatus {
    inner: Mutex<Inner>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ConsumerStatus {
    fn update(&self, f: impl FnOnce(&mut Inner)) {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
    }

    pub fn snapshot(&self) -> ConsumerSnapshot {
        let guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let at = Instant::now();
        let mut s = guard.snapshot.clone();
        s.exceptions = guard.exceptions.iter().cloned().collect();
        s.high_watermark = guard.watermarks.map(|(_, high)| high);
        s.stored_offset = resume_position(guard.stored, guard.watermarks.map(|(low, _)| low));
        s.messages_per_second = guard.messages.per_second(at);
        s.rows_per_second = guard.rows.per_second(at);
        s
    }

    pub fn polled(&self, messages: u64) {
        self.update(|i| {
            i.snapshot.last_poll_time = now();
            i.snapshot.num_messages_read += messages;
            i.messages
                .record(Instant::now(), i.snapshot.num_messages_read);
        });
    }

    /// The consumer starts reading at `next_offset`, which its tables stored, or from
    /// the partition's beginning (`None`) when a view has stored nothing.
    pub fn positioned(&self, next_offset: Option<i64>) {
        self.update(|i| {
            if let Some(o) = next_offset {
                i.snapshot.current_offset = o;
            }
            i.stored = next_offset;
        });
    }

    /// A block was stored: the partition is read up to `next_offset`, and a restart would
    /// resume at `stored` (the lowest of the views' positions).
    pub fn committed(&self, next_offset: i64, stored: i64, rows: u64, skipped: u64) {
        self.update(|i| {
            let s = &mut i.snapshot;
            s.current_offset = next_offset;
            s.last_commit_time = now();
            s.num_commits += 1;
            s.num_rows_written += rows;
            s.num_skipped_messages += skipped;
            i.stored = Some(stored);
            i.rows.record(Instant::now(), s.num_rows_written);
        });
    }

    /// The partition's watermarks as the broker just gave them.
    pub fn watermarks(&self, low: i64, high: i64) {
        self.update(|i| i.watermarks = Some((low, high)));
    }

    pub fn error(&self, text: impl Into<String>) {
        let text = text.into();
        self.update(|i| {
            i.snapshot.num_errors += 1;
            if i.exceptions.len() == EXCEPTIONS_KEPT {
                i.exceptions.pop_front();
            }
            i.exceptions.push_back((now(), text));
        });
    }

    pub fn set_used(&self, used: bool) {
        self.update(|i| i.snapshot.is_currently_used = used);
    }

    pub fn restarted(&self) {
        self.update(|i| i.snapshot.num_restarts += 1);
    }
}

/// Every consumer of this node, by key.
#[derive(Debug, Default)]
pub struct ConsumerRegistry {
    entries: Mutex<BTreeMap<ConsumerKey, Arc<ConsumerStatus>>>,
}

impl ConsumerRegistry {
    pub fn entry(&self, key: &ConsumerKey) -> Arc<ConsumerStatus> {
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.entry(key.clone()).or_default().clone()
    }

    /// Forgets every consumer `keep` does not name: those of dropped tables, of tables
    /// that lost their last view, of partitions now run elsewhere.
    pub fn retain(&self, mut keep: impl FnMut(&ConsumerKey) -> bool) {
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.retain(|k, _| keep(k));
    }

    pub fn remove(&self, key: &ConsumerKey) {
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.remove(key);
    }

    pub fn snapshot(&self) -> Vec<(ConsumerKey, ConsumerSnapshot)> {
        let entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_exceptions_only() {
        let s = ConsumerStatus::default();
        for i in 0..25 {
            s.error(format!("e{i}"));
        }
        let snap = s.snapshot();
        assert_eq!(snap.exceptions.len(), EXCEPTIONS_KEPT);
        assert_eq!(snap.exceptions.last().map(|e| e.1.as_str()), Some("e24"));
    }

    #[test]
    fn lag_is_the_high_watermark_past_the_stored_position() {
        let s = ConsumerStatus::default();
        assert_eq!(
            (s.snapshot().stored_offset, s.snapshot().lag()),
            (None, None)
        );
        // Nothing stored yet: the consumer reads from the partition's first offset.
        s.watermarks(100, 1_000);
        let snap = s.snapshot();
        assert_eq!(snap.high_watermark, Some(1_000));
        assert_eq!((snap.stored_offset, snap.lag()), (Some(100), Some(900)));
        s.polled(400);
        s.committed(500, 500, 400, 0);
        assert_eq!(s.snapshot().lag(), Some(500));
        // A view ahead of the block keeps the lowest position as the stored one.
        s.committed(1_000, 990, 500, 0);
        let snap = s.snapshot();
        assert_eq!(
            (snap.current_offset, snap.stored_offset),
            (1_000, Some(990))
        );
        assert_eq!(snap.lag(), Some(10));
        s.committed(1_100, 1_100, 100, 0);
        assert_eq!(s.snapshot().lag(), Some(0), "stored past an old watermark");
        s.watermarks(100, 1_100);
        assert_eq!(s.snapshot().lag(), Some(0));
        assert_eq!(s.snapshot().high_watermark, s.snapshot().stored_offset);
    }

    #[test]
    fn rates_count_what_was_read_and_stored() {
        let s = ConsumerStatus::default();
        assert_eq!(s.snapshot().messages_per_second, 0.0);
        s.polled(300);
        s.committed(300, 300, 250, 50);
        let snap = s.snapshot();
        // Within the status's first second the span is a second.
        assert!(snap.messages_per_second > 0.0 && snap.messages_per_second <= 300.0);
        assert!(snap.rows_per_second > 0.0 && snap.rows_per_second <= 250.0);
    }

    #[test]
    fn retain_forgets_the_consumers_not_named() {
        let registry = ConsumerRegistry::default();
        let key = |table: &str, partition| ConsumerKey {
            table: table.into(),
            topic: "t".into(),
            partition,
        };
        registry.entry(&key("kept", 0)).polled(1);
        registry.entry(&key("dropped", 0)).polled(1);
        registry.entry(&key("dropped", 1)).polled(1);
        registry.retain(|k| k.table == "kept");
        let left: Vec<ConsumerKey> = registry.snapshot().into_iter().map(|(k, _)| k).collect();
        assert_eq!(left, vec![key("kept", 0)]);
    }
}
