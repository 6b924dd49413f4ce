//! What a partition consumer decides while its partition brings nothing: when to send the
//! group offset again, when to ask the broker whether the client is stalled, and what the
//! answer means. Pure: time and the broker's answers are passed in.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use super::status::ConsumerKey;
use super::IngestError;

/// A consumer that received nothing for this long while its partition holds messages past
/// its position is stuck (seen after a broker restart: librdkafka reconnected but never
/// fetched again); it fails so its supervisor starts a fresh one from the stored offset.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// How often an idle consumer re-sends its group offset.
pub const RECOMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// What the group offset should say (the stored position), and when it was last sent.
/// The writer sets it; the reader re-sends it while the partition is idle.
#[derive(Debug)]
pub struct GroupOffset {
    next: Option<i64>,
    sent_at: Instant,
}

impl GroupOffset {
    /// Nothing to send yet: the consumer has no position until its first block is
    /// written, unless it starts at a known offset.
    pub fn new(now: Instant) -> GroupOffset {
        GroupOffset {
            next: None,
            sent_at: now,
        }
    }

    /// The partition is stored up to `next`, and that was just sent.
    pub fn sent(&mut self, next: i64, now: Instant) {
        self.next = Some(next);
        self.sent_at = now;
    }

    pub fn next(&self) -> Option<i64> {
        self.next
    }

    /// The offset to send again, once the last send is `RECOMMIT_INTERVAL` old; taking it
    /// counts as sending it.
    pub fn resend_due(&mut self, now: Instant) -> Option<i64> {
        let next = self.next?;
        if now.saturating_duration_since(self.sent_at) < RECOMMIT_INTERVAL {
            return None;
        }
        self.sent_at = now;
        Some(next)
    }
}

/// When the last message arrived and when the broker was last asked about a stall.
#[derive(Debug)]
pub struct StallWatch {
    last_message_at: Instant,
    checked_at: Instant,
}

impl StallWatch {
    pub fn new(now: Instant) -> StallWatch {
        StallWatch {
            last_message_at: now,
            checked_at: now,
        }
    }

    pub fn message(&mut self, now: Instant) {
        self.last_message_at = now;
    }

    /// Whether to ask the broker for the partition's end: nothing arrived for
    /// `STALL_AFTER` and the last check is as old, so a quiet partition costs one request
    /// per `STALL_AFTER`. Taking a due check counts as making it.
    pub fn check_due(&mut self, now: Instant) -> bool {
        let due = now.saturating_duration_since(self.last_message_at) >= STALL_AFTER
            && now.saturating_duration_since(self.checked_at) >= STALL_AFTER;
        if due {
            self.checked_at = now;
        }
        due
    }

    pub fn idle_secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.last_message_at)
            .as_secs()
    }
}

/// How far the client has read: librdkafka's fetch position when it has a real one, and
/// never behind `next`. The fetch position steps over what is not a message (transaction
/// markers), so an idle transactional topic is not taken for a stalled one.
pub fn fetched_to(next: i64, position: Option<i64>) -> i64 {
    position.filter(|o| *o >= 0).unwrap_or(next).max(next)
}

/// The verdict on a stall check: `Stalled` when the partition ends past what the client
/// fetched although nothing arrived, `Unresponsive` when the partition's end could not be
/// read. After a broker restart a client was seen that never reached the broker again
/// (its requests queued for minutes) while a new client connected at once. A restart
/// while the broker is really down costs nothing: the new consumer resumes from the
/// stored position once the broker is back.
pub fn stall_verdict(
    key: &ConsumerKey,
    next: i64,
    fetched_to: i64,
    watermarks: Result<(i64, i64), KafkaError>,
    idle_secs: u64,
) -> Result<(), IngestError> {
    match watermarks {
        Ok((_, end)) if end > fetched_to => Err(IngestError::Stalled {
            key: Box::new(key.clone()),
            next,
            end,
            idle_secs,
        }),
        Ok(_) => Ok(()),
        Err(error) => Err(IngestError::Unresponsive {
            key: Box::new(key.clone()),
            idle_secs,
            error: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    fn key() -> ConsumerKey {
        ConsumerKey {
            table: "queue".into(),
            topic: "events".into(),
            partition: 2,
        }
    }

    #[test]
    fn nothing_is_resent_before_a_position_is_known() {
        let t0 = Instant::now();
        let mut g = GroupOffset::new(t0);
        assert_eq!(g.next(), None);
        assert_eq!(g.resend_due(t0 + RECOMMIT_INTERVAL * 10), None);
    }

    #[test]
    fn the_group_offset_is_resent_every_interval() {
        let t0 = Instant::now();
        let mut g = GroupOffset::new(t0);
        g.sent(42, t0);
        assert_eq!(g.next(), Some(42));
        let just_before = t0 + RECOMMIT_INTERVAL - Duration::from_millis(1);
        assert_eq!(g.resend_due(just_before), None);
        let t1 = t0 + RECOMMIT_INTERVAL;
        assert_eq!(g.resend_due(t1), Some(42));
        // Sent at t1: the next one is an interval later.
        assert_eq!(g.resend_due(t1 + Duration::from_secs(1)), None);
        assert_eq!(g.resend_due(t1 + RECOMMIT_INTERVAL), Some(42));
    }

    #[test]
    fn a_written_block_puts_off_the_resend() {
        let t0 = Instant::now();
        let mut g = GroupOffset::new(t0);
        g.sent(42, t0);
        let t1 = t0 + RECOMMIT_INTERVAL - Duration::from_secs(1);
        g.sent(50, t1);
        assert_eq!(g.resend_due(t0 + RECOMMIT_INTERVAL), None);
        assert_eq!(g.resend_due(t1 + RECOMMIT_INTERVAL), Some(50));
    }

    #[test]
    fn a_stall_check_waits_for_a_quiet_partition() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(t0);
        assert!(!w.check_due(t0 + STALL_AFTER - Duration::from_millis(1)));
        w.message(t0 + Duration::from_secs(10));
        // Quiet for only 20 s since the last message.
        assert!(!w.check_due(t0 + STALL_AFTER));
        let t1 = t0 + Duration::from_secs(10) + STALL_AFTER;
        assert!(w.check_due(t1));
        assert_eq!(w.idle_secs(t1), STALL_AFTER.as_secs());
    }

    #[test]
    fn stall_checks_are_spaced_out() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(t0);
        let t1 = t0 + STALL_AFTER;
        assert!(w.check_due(t1));
        assert!(!w.check_due(t1 + Duration::from_secs(1)), "just checked");
        assert!(w.check_due(t1 + STALL_AFTER));
    }

    #[test]
    fn the_fetch_position_counts_only_ahead_of_the_stored_one() {
        assert_eq!(fetched_to(100, None), 100);
        assert_eq!(fetched_to(100, Some(105)), 105, "stepped over markers");
        assert_eq!(fetched_to(100, Some(90)), 100, "never behind the position");
        // librdkafka's logical offsets are negative: no position.
        assert_eq!(fetched_to(100, Some(-1001)), 100);
    }

    #[test]
    fn a_partition_ending_past_what_was_fetched_is_a_stall() {
        match stall_verdict(&key(), 100, 100, Ok((0, 130)), 31) {
            Err(IngestError::Stalled {
                key: k,
                next,
                end,
                idle_secs,
            }) => {
                assert_eq!(*k, key());
                assert_eq!((next, end, idle_secs), (100, 130, 31));
            }
            other => panic!("expected a stall, got {other:?}"),
        }
    }

    #[test]
    fn a_partition_read_to_its_end_is_only_quiet() {
        assert!(stall_verdict(&key(), 100, 100, Ok((0, 100)), 31).is_ok());
        // Transaction markers up to 104 were stepped over.
        assert!(stall_verdict(&key(), 100, 104, Ok((0, 104)), 31).is_ok());
        assert!(stall_verdict(&key(), 100, 104, Ok((0, 105)), 31).is_err());
    }

    #[test]
    fn an_unreadable_partition_end_is_an_unresponsive_client() {
        let error = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        let shown = error.to_string();
        match stall_verdict(&key(), 100, 100, Err(error), 45) {
            Err(IngestError::Unresponsive {
                idle_secs, error, ..
            }) => {
                assert_eq!(idle_secs, 45);
                assert_eq!(error, shown);
            }
            other => panic!("expected an unresponsive client, got {other:?}"),
        }
    }
}
