//! A sliding window of item counts, for rates such as items per second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Counts recorded with their time; old ones fall out of the window.
#[derive(Debug)]
pub struct ThroughputWindow {
    span: Duration,
    started: Instant,
    events: VecDeque<(Instant, u64)>,
}

impl ThroughputWindow {
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            started: Instant::now(),
            events: VecDeque::new(),
        }
    }

    pub fn record(&mut self, items: u64) {
        self.record_at(Instant::now(), items);
    }

    pub fn record_at(&mut self, at: Instant, items: u64) {
        self.events.push_back((at, items));
        self.expire(at);
    }

    /// Items per second over the window (or since start, when younger than the window).
    pub fn rate(&mut self) -> f64 {
        self.rate_at(Instant::now())
    }

    pub fn rate_at(&mut self, now: Instant) -> f64 {
        self.expire(now);
        let span = self.span.min(now.saturating_duration_since(self.started));
        if span.is_zero() {
            return 0.0;
        }
        let items: u64 = self.events.iter().map(|(_, n)| n).sum();
        items as f64 / span.as_secs_f64()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.events.front() {
            if now.saturating_duration_since(at) > self.span {
                self.events.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_counts_only_the_window() {
        let mut w = ThroughputWindow::new(Duration::from_secs(10));
        let t0 = w.started;
        w.record_at(t0 + Duration::from_secs(1), 100);
        w.record_at(t0 + Duration::from_secs(15), 50);
        // At t=20 s only the second event is inside the 10 s window.
        let rate = w.rate_at(t0 + Duration::from_secs(20));
        assert!((rate - 5.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn a_young_window_divides_by_its_age() {
        let mut w = ThroughputWindow::new(Duration::from_secs(10));
        let t0 = w.started;
        w.record_at(t0 + Duration::from_secs(1), 20);
        let rate = w.rate_at(t0 + Duration::from_secs(2));
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");
    }
}
