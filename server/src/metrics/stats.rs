//! Per-model inference statistics in the shape of the Open Inference Protocol's statistics
//! extension: counts and total durations of successes, failures, queueing and compute, and
//! the same per batch size. Prometheus keeps histograms; these are the running totals that
//! `/v2/models/{m}/stats` and gRPC `ModelStatistics` report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and the total time it took.
#[derive(Debug, Default)]
struct DurationTotal {
    count: AtomicU64,
    nanos: AtomicU64,
}

impl DurationTotal {
    fn add(&self, elapsed: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn read(&self) -> CountAndDuration {
        CountAndDuration {
            count: self.count.load(Ordering::Relaxed),
            ns: self.nanos.load(Ordering::Relaxed),
        }
    }
}

/// Running totals for one model.
#[derive(Debug, Default)]
pub struct InferenceStats {
    success: DurationTotal,
    fail: DurationTotal,
    queue: DurationTotal,
    compute: DurationTotal,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    /// Batch size → (batches, compute nanoseconds).
    batches: Mutex<BTreeMap<usize, (u64, u64)>>,
}

impl InferenceStats {
    pub fn request_finished(&self, elapsed: Duration, succeeded: bool) {
        if succeeded {
            self.success.add(elapsed);
        } else {
            self.fail.add(elapsed);
        }
    }

    pub fn dequeued(&self, waited: Duration) {
        self.queue.add(waited);
    }

    pub fn executed(&self, size: usize, compute: Duration) {
        self.compute.add(compute);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count
            .fetch_add(size as u64, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.store(now_ms, Ordering::Relaxed);
        let mut batches = self.batches.lock().expect("stats lock");
        let entry = batches.entry(size).or_default();
        entry.0 += 1;
        entry.1 += compute.as_nanos() as u64;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            last_inference_ms: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            success: self.success.read(),
            fail: self.fail.read(),
            queue: self.queue.read(),
            compute_infer: self.compute.read(),
            batches: self
                .batches
                .lock()
                .expect("stats lock")
                .iter()
                .map(|(&size, &(count, ns))| BatchStats {
                    batch_size: size as u64,
                    compute_infer: CountAndDuration { count, ns },
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CountAndDuration {
    pub count: u64,
    pub ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_infer: CountAndDuration,
}

/// The totals at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub last_inference_ms: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub success: CountAndDuration,
    pub fail: CountAndDuration,
    pub queue: CountAndDuration,
    pub compute_infer: CountAndDuration,
    pub batches: Vec<BatchStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_per_kind_and_batch_size() {
        let stats = InferenceStats::default();
        stats.request_finished(Duration::from_micros(5), true);
        stats.request_finished(Duration::from_micros(7), false);
        stats.dequeued(Duration::from_nanos(100));
        stats.executed(4, Duration::from_nanos(1_000));
        stats.executed(4, Duration::from_nanos(3_000));
        stats.executed(1, Duration::from_nanos(500));
        let s = stats.snapshot();
        assert_eq!(
            s.success,
            CountAndDuration {
                count: 1,
                ns: 5_000
            }
        );
        assert_eq!(
            s.fail,
            CountAndDuration {
                count: 1,
                ns: 7_000
            }
        );
        assert_eq!(s.queue.count, 1);
        assert_eq!((s.inference_count, s.execution_count), (9, 3));
        assert_eq!(s.compute_infer.ns, 4_500);
        assert_eq!(
            s.batches,
            vec![
                BatchStats {
                    batch_size: 1,
                    compute_infer: CountAndDuration { count: 1, ns: 500 }
                },
                BatchStats {
                    batch_size: 4,
                    compute_infer: CountAndDuration {
                        count: 2,
                        ns: 4_000
                    }
                },
            ]
        );
        assert!(s.last_inference_ms > 0);
    }
}
