//! A sliding window of item counts and compute time, for rates such as items per second
//! and for sharing energy out between models.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Counts recorded with their time; old ones fall out of the window.
#[derive(Debug)]
pub struct ThroughputWindow {
    span: Duration,
    started: Instant,
    events: VecDeque<(Instant, u64, f64)>,
}

/// What a window holds right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSummary {
    pub items: u64,
    /// Seconds of forward-pass time.
    pub compute_secs: f64,
    /// The window's length (shorter while the window is younger than its span).
    pub span_secs: f64,
}

impl ThroughputWindow {
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            started: Instant::now(),
            events: VecDeque::new(),
        }
    }

    pub fn record(&mut self, items: u64, compute: Duration) {
        self.record_at(Instant::now(), items, compute);
    }

    pub fn record_at(&mut self, at: Instant, items: u64, compute: Duration) {
        self.events.push_back((at, items, compute.as_secs_f64()));
        self.expire(at);
    }

    pub fn summary(&mut self) -> WindowSummary {
        self.summary_at(Instant::now())
    }

    pub fn summary_at(&mut self, now: Instant) -> WindowSummary {
        self.expire(now);
        WindowSummary {
            items: self.events.iter().map(|e| e.1).sum(),
            compute_secs: self.events.iter().map(|e| e.2).sum(),
            span_secs: self
                .span
                .min(now.saturating_duration_since(self.started))
                .as_secs_f64(),
        }
    }

    /// Items per second over the window (or since start, when younger than the window).
    pub fn rate(&mut self) -> f64 {
        self.rate_at(Instant::now())
    }

    pub fn rate_at(&mut self, now: Instant) -> f64 {
        let summary = self.summary_at(now);
        if summary.span_secs == 0.0 {
            return 0.0;
        }
        summary.items as f64 / summary.span_secs
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, _, _)) = self.events.front() {
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
        w.record_at(t0 + Duration::from_secs(1), 100, Duration::ZERO);
        w.record_at(t0 + Duration::from_secs(15), 50, Duration::ZERO);
        // At t=20 s only the second event is inside the 10 s window.
        let rate = w.rate_at(t0 + Duration::from_secs(20));
        assert!((rate - 5.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn a_young_window_divides_by_its_age() {
        let mut w = ThroughputWindow::new(Duration::from_secs(10));
        let t0 = w.started;
        w.record_at(t0 + Duration::from_secs(1), 20, Duration::ZERO);
        let rate = w.rate_at(t0 + Duration::from_secs(2));
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");
    }
}
