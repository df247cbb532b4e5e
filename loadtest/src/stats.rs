//! Latency percentiles and throughput stability.

use std::time::Duration;

/// Summary of the latencies of one measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

/// Percentiles by the nearest-rank method.
pub fn latency(samples: &mut [Duration]) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[index.clamp(1, samples.len()) - 1].as_secs_f64() * 1e3
    };
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e3;
    Latency {
        p50_ms: rank(50.0),
        p90_ms: rank(90.0),
        p95_ms: rank(95.0),
        p99_ms: rank(99.0),
        mean_ms: mean,
    }
}

/// Whether the last three throughputs lie within `tolerance` (a fraction) of their mean.
pub fn is_stable(throughputs: &[f64], tolerance: f64) -> bool {
    let Some(last) = throughputs.len().checked_sub(3).map(|i| &throughputs[i..]) else {
        return false;
    };
    let mean = last.iter().sum::<f64>() / 3.0;
    mean > 0.0 && last.iter().all(|t| (t - mean).abs() <= tolerance * mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = latency(&mut samples);
        assert_eq!((l.p50_ms, l.p90_ms, l.p99_ms), (50.0, 90.0, 99.0));
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(latency(&mut []), Latency::default());
    }

    #[test]
    fn stability_needs_three_close_windows() {
        assert!(!is_stable(&[100.0, 100.0], 0.1));
        assert!(is_stable(&[10.0, 100.0, 105.0, 98.0], 0.1));
        assert!(!is_stable(&[100.0, 150.0, 100.0], 0.1));
    }
}
