//! When a partition consumer asks the broker where its partition begins and ends, for the
//! lag it shows. Pure: time and whether a request is still out are passed in.
//!
//! The request is a broker round trip, so the consume loop never waits on it: it is sent
//! beside the loop, at most one at a time, once a second while messages arrive and every
//! few seconds while the partition is quiet (its end moves only when messages arrive,
//! which ends the quiet).

use std::time::{Duration, Instant};

/// Between two requests while messages arrive.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Between two requests while the partition brings nothing.
pub const QUIET_REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long one request may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct WatermarkSchedule {
    last: Option<Instant>,
}

impl WatermarkSchedule {
    /// Whether to ask now: none asked yet, or the last ask is `every` old and answered.
    /// Saying yes counts as asking.
    pub fn due(&mut self, now: Instant, every: Duration, in_flight: bool) -> bool {
        if in_flight
            || self
                .last
                .is_some_and(|last| now.saturating_duration_since(last) < every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ask_is_at_once() {
        let mut s = WatermarkSchedule::default();
        assert!(s.due(Instant::now(), QUIET_REFRESH_EVERY, false));
    }

    #[test]
    fn asks_are_spaced_out() {
        let t0 = Instant::now();
        let mut s = WatermarkSchedule::default();
        assert!(s.due(t0, REFRESH_EVERY, false));
        assert!(!s.due(t0 + Duration::from_millis(999), REFRESH_EVERY, false));
        assert!(s.due(t0 + REFRESH_EVERY, REFRESH_EVERY, false));
        // Quiet, the next ask waits longer.
        let t1 = t0 + REFRESH_EVERY;
        assert!(!s.due(t1 + REFRESH_EVERY, QUIET_REFRESH_EVERY, false));
        assert!(s.due(t1 + QUIET_REFRESH_EVERY, QUIET_REFRESH_EVERY, false));
    }

    #[test]
    fn one_ask_at_a_time() {
        let t0 = Instant::now();
        let mut s = WatermarkSchedule::default();
        assert!(s.due(t0, REFRESH_EVERY, false));
        let later = t0 + REFRESH_EVERY * 10;
        assert!(
            !s.due(later, REFRESH_EVERY, true),
            "the last one is still out"
        );
        assert!(s.due(later, REFRESH_EVERY, false));
    }
}
