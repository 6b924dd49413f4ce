//! What each consumer is doing, for `system.kafka_consumers` and `ConsumerStatus`.
//!
//! Consumers write their own entry; readers take snapshots. Only the last few exceptions
//! are kept, so a consumer stuck on a bad message cannot grow memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

pub use crate::topology::{ConsumerKey, ConsumerSnapshot};

/// How many recent exceptions a consumer keeps (ClickHouse keeps 10).
const EXCEPTIONS_KEPT: usize = 10;

#[derive(Debug, Default)]
pub struct ConsumerStatus {
    inner: Mutex<(ConsumerSnapshot, VecDeque<(i64, String)>)>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ConsumerStatus {
    fn update(&self, f: impl FnOnce(&mut ConsumerSnapshot, &mut VecDeque<(i64, String)>)) {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (snapshot, exceptions) = &mut *guard;
        f(snapshot, exceptions);
    }

    pub fn snapshot(&self) -> ConsumerSnapshot {
        let guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut s = guard.0.clone();
        s.exceptions = guard.1.iter().cloned().collect();
        s
    }

    pub fn polled(&self, messages: u64) {
        self.update(|s, _| {
            s.last_poll_time = now();
            s.num_messages_read += messages;
        });
    }

    pub fn positioned(&self, next_offset: i64) {
        self.update(|s, _| s.current_offset = next_offset);
    }

    pub fn committed(&self, next_offset: i64, rows: u64, skipped: u64) {
        self.update(|s, _| {
            s.current_offset = next_offset;
            s.last_commit_time = now();
            s.num_commits += 1;
            s.num_rows_written += rows;
            s.num_skipped_messages += skipped;
        });
    }

    pub fn error(&self, text: impl Into<String>) {
        let text = text.into();
        self.update(|s, e| {
            s.num_errors += 1;
            if e.len() == EXCEPTIONS_KEPT {
                e.pop_front();
            }
            e.push_back((now(), text));
        });
    }

    pub fn set_used(&self, used: bool) {
        self.update(|s, _| s.is_currently_used = used);
    }

    pub fn restarted(&self) {
        self.update(|s, _| s.num_restarts += 1);
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

    pub fn remove_table(&self, table: &str) {
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.retain(|k, _| k.table != table);
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
}
