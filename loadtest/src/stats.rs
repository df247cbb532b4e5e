//! Latency percentiles (an HDR histogram: any number of samples in fixed memory, values to
//! three significant digits) and throughput stability.

use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Summary of the latencies of one measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Latencies in microseconds, from 1 µs to an hour; longer ones count as an hour.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

const MAX_MICROS: u64 = 3_600_000_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"))
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Percentiles (the value at or below which that share of samples lies), in ms.
    pub fn summary(&self) -> Latency {
        if self.0.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1e3;
        let at = |q: f64| ms(self.0.value_at_quantile(q));
        Latency {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(self.0.max()),
            mean_ms: self.0.mean() / 1e3,
        }
    }

    /// The percentile distribution in HdrHistogram's text form (`.hgrm`: value in ms,
    /// percentile, count up to it, 1/(1-percentile)), which HdrHistogram's plotters read.
    pub fn percentile_distribution(&self) -> String {
        let mut out = format!(
            "{:>12} {:>14} {:>10} {:>14}\n\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0u64;
        for step in self.0.iter_quantiles(5) {
            total += step.count_since_last_iteration();
            let quantile = step.quantile_iterated_to();
            let value = step.value_iterated_to() as f64 / 1e3;
            if quantile < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.3} {quantile:>14.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(out, "{value:>12.3} {quantile:>14.12} {total:>10}");
            }
        }
        let summary = self.summary();
        let _ = writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            summary.mean_ms,
            self.0.stdev() / 1e3
        );
        let _ = writeln!(
            out,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            summary.max_ms,
            self.0.len()
        );
        out
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

/// Whether requests that left `send_lag_p99_ms` late (p99) mean the load generator fell
/// behind its schedule: later than tokio's 1 ms timers and a busy moment explain (a
/// millisecond or two at any rate it keeps up with), and by more than a tenth of the p99
/// latency, which then counts the generator's lateness as well.
pub fn fell_behind(send_lag_p99_ms: f64, latency_p99_ms: f64) -> bool {
    send_lag_p99_ms > 5.0 && send_lag_p99_ms > 0.1 * latency_p99_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_hold_three_significant_digits() {
        let mut histogram = LatencyHistogram::default();
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let l = histogram.summary();
        let close = |value: f64, expected: f64| (value - expected).abs() <= expected * 1e-3;
        assert!(
            close(l.p50_ms, 50.0) && close(l.p90_ms, 90.0) && close(l.p99_ms, 99.0),
            "{l:?}"
        );
        assert!(close(l.max_ms, 100.0) && close(l.mean_ms, 50.5), "{l:?}");
        assert_eq!(LatencyHistogram::default().summary(), Latency::default());
        // An hour and beyond saturate instead of failing.
        histogram.record(Duration::from_secs(7200));
        assert_eq!(histogram.len(), 101);
    }

    #[test]
    fn the_distribution_reads_as_hdrhistogram_text() {
        let mut histogram = LatencyHistogram::default();
        for micros in [500, 1_000, 2_000, 40_000] {
            histogram.record(Duration::from_micros(micros));
        }
        let text = histogram.percentile_distribution();
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|line| !line.starts_with('#'))
            .map(|line| {
                line.split_whitespace()
                    .map(|v| v.parse().unwrap())
                    .collect()
            })
            .collect();
        assert!(
            rows.windows(2)
                .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1])
        );
        let last = rows.last().unwrap();
        assert!(
            (last[0] - 40.0).abs() < 0.05 && last[1] == 1.0 && last[2] == 4.0,
            "{text}"
        );
        assert!(text.contains("Total count    =            4"), "{text}");
    }

    #[test]
    fn lateness_counts_when_it_is_past_the_timer_and_a_tenth_of_the_latency() {
        // Within what timers and a busy moment explain: never, however fast the answers.
        assert!(!fell_behind(2.0, 14.0));
        assert!(!fell_behind(4.9, 5.0));
        assert!(fell_behind(5.5, 20.0));
        // Past the timers, but small beside what the answers took.
        assert!(!fell_behind(6.0, 80.0));
        assert!(fell_behind(1_500.0, 3_000.0));
    }

    #[test]
    fn stability_needs_three_close_windows() {
        assert!(!is_stable(&[100.0, 100.0], 0.1));
        assert!(is_stable(&[10.0, 100.0, 105.0, 98.0], 0.1));
        assert!(!is_stable(&[100.0, 150.0, 100.0], 0.1));
    }
}
