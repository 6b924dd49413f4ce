//! A counter's rate over a sliding window, for the messages/s and rows/s a consumer shows.
//!
//! Pure: times are passed in. The counter is a step function kept as the times it moved;
//! the rate is how much it moved since the window's start, over the time since then (or
//! since the counter started, when that is later). Moves closer together than `RESOLUTION`
//! share one sample, so a consumer cutting thousands of blocks a second keeps a few
//! hundred samples at most.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back a rate looks.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Samples closer together than this are merged.
const RESOLUTION: Duration = Duration::from_millis(100);

/// The shortest span a rate is taken over, so a counter that just started does not show
/// a few messages as millions a second.
const MIN_SPAN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RateWindow {
    /// (when, the counter's total from then on), oldest first; never empty.
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// A counter at `total` from `now` on.
    pub fn new(now: Instant, total: u64) -> RateWindow {
        RateWindow {
            samples: VecDeque::from([(now, total)]),
        }
    }

    /// The counter reads `total` from `now` on.
    pub fn record(&mut self, now: Instant, total: u64) {
        // The first sample is the counter's start, which a rate measures from: it is
        // never merged into.
        let merge = self.samples.len() > 1;
        match self.samples.back_mut() {
            Some((at, last)) if merge && now.saturating_duration_since(*at) < RESOLUTION => {
                *last = total
            }
            _ => self.samples.push_back((now, total)),
        }
        self.forget_before(now);
    }

    /// Drops samples older than the window, keeping the last one at or before its start:
    /// it holds the counter's value there.
    fn forget_before(&mut self, now: Instant) {
        let Some(start) = now.checked_sub(WINDOW) else {
            return;
        };
        while self.samples.len() > 1 && self.samples.get(1).is_some_and(|(at, _)| *at <= start) {
            self.samples.pop_front();
        }
    }

    /// Per second over the window ending at `now`.
    pub fn per_second(&self, now: Instant) -> f64 {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return 0.0;
        };
        let start = now.checked_sub(WINDOW).unwrap_or(first.0);
        // The counter's value at the window's start: the last sample at or before it, or
        // the first one when the counter started inside the window.
        let (from, base) = self
            .samples
            .iter()
            .take_while(|(at, _)| *at <= start)
            .last()
            .map_or(*first, |(_, total)| (start, *total));
        let moved = last.1.saturating_sub(base);
        if moved == 0 {
            return 0.0;
        }
        let span = now.saturating_duration_since(from).max(MIN_SPAN);
        moved as f64 / span.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_steady_counter_shows_its_rate() {
        let t0 = Instant::now();
        let mut r = RateWindow::new(t0, 0);
        // 100 a second for 30 s, a sample every 200 ms.
        for i in 1..=150u64 {
            r.record(t0 + ms(i * 200), i * 20);
        }
        let rate = r.per_second(t0 + ms(30000));
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn only_the_window_counts() {
        let t0 = Instant::now();
        let mut r = RateWindow::new(t0, 0);
        // 5,000 at once, then 200 during the last 10 s.
        r.record(t0 + ms(1000), 5_000);
        r.record(t0 + ms(25000), 5_100);
        r.record(t0 + ms(29000), 5_200);
        let rate = r.per_second(t0 + ms(30000));
        assert!((rate - 20.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn a_counter_that_stopped_falls_to_zero_after_the_window() {
        let t0 = Instant::now();
        let mut r = RateWindow::new(t0, 0);
        r.record(t0 + ms(2000), 300);
        assert!(r.per_second(t0 + ms(5000)) > 0.0);
        assert_eq!(r.per_second(t0 + ms(2000) + WINDOW), 0.0);
        assert_eq!(r.per_second(t0 + ms(60000)), 0.0);
    }

    #[test]
    fn a_young_counter_is_measured_from_its_start() {
        let t0 = Instant::now();
        let mut r = RateWindow::new(t0, 1_000);
        r.record(t0 + ms(4000), 1_400);
        let rate = r.per_second(t0 + ms(4000));
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        // Within its first second, the span is a second.
        let mut r = RateWindow::new(t0, 0);
        r.record(t0 + ms(200), 50);
        assert!((r.per_second(t0 + ms(200)) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_move_right_after_the_start_counts() {
        let t0 = Instant::now();
        let mut r = RateWindow::new(t0, 0);
        r.record(t0 + ms(5), 300);
        r.record(t0 + ms(10), 400);
        assert!((r.per_second(t0 + ms(10)) - 400.0).abs() < 1e-9);
    }

    #[test]
    fn close_samples_merge_and_old_ones_go() {
        let t0 = Instant::now();
        let mut r = RateWindow::new(t0, 0);
        for i in 1..=10_000u64 {
            // 10,000 moves within one second: ten samples' worth.
            r.record(t0 + Duration::from_micros(i * 100), i);
        }
        assert!(r.samples.len() <= 12, "{}", r.samples.len());
        for i in 1..=1_000u64 {
            r.record(t0 + ms(1_000 + i * 500), 10_000 + i);
        }
        // 501 s in, at most the window's 20 samples and the one before it remain.
        assert!(r.samples.len() <= 22, "{}", r.samples.len());
        let rate = r.per_second(t0 + ms(501000));
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
    }
}
