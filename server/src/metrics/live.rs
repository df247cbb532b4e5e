//! What a live view of the server shows per model (the playground's stats panel): the
//! latencies of the requests that finished in the last seconds, as percentiles, beside the
//! running totals and the windowed rates the Prometheus gauges carry.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::RATE_WINDOW;

/// At most this many recent latencies are kept per model; under heavier load the
/// percentiles describe the latest requests of the window.
const MAX_RECENT: usize = 4096;

/// Latencies of recently finished requests.
#[derive(Debug, Default)]
pub struct RecentLatencies {
    samples: VecDeque<(Instant, f64)>,
}

impl RecentLatencies {
    pub fn record(&mut self, at: Instant, latency: Duration) {
        if self.samples.len() == MAX_RECENT {
            self.samples.pop_front();
        }
        self.samples.push_back((at, latency.as_secs_f64()));
    }

    /// The `q`-quantiles (0..=1) of the latencies within the rate window, in seconds, by
    /// the nearest-rank method; `None` when no request finished in it.
    pub fn quantiles_at(&mut self, now: Instant, qs: &[f64]) -> Option<Vec<f64>> {
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.samples.iter().map(|(_, s)| *s).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        Some(
            qs.iter()
                .map(|q| {
                    let rank = (q * n as f64).ceil() as usize;
                    sorted[rank.clamp(1, n) - 1]
                })
                .collect(),
        )
    }
}

/// One model's live figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveModelStats {
    pub model: String,
    pub version: String,
    pub backend: String,
    /// Requests finished since start, successful or not.
    pub requests: u64,
    pub failures: u64,
    /// Items inferred and batches executed since start (their ratio: the average batch).
    pub inferences: u64,
    pub executions: u64,
    /// Over the last 10 s; `None` when no request finished in it.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Items per second over the last 10 s.
    pub items_per_second: f64,
    /// Items per joule (items/s per watt) over the last 10 s; 0 without energy readings.
    pub items_per_joule: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_cover_the_window_only() {
        let mut recent = RecentLatencies::default();
        let start = Instant::now();
        recent.record(start, Duration::from_secs(9));
        let later = start + RATE_WINDOW + Duration::from_secs(1);
        for ms in 1..=100 {
            recent.record(later, Duration::from_millis(ms));
        }
        let q = recent.quantiles_at(later, &[0.5, 0.99]).unwrap();
        assert_eq!(q, [0.05, 0.099]);
        assert!(
            recent
                .quantiles_at(later + 2 * RATE_WINDOW, &[0.5])
                .is_none()
        );
    }
}
