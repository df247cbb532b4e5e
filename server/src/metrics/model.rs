//! One model's metrics: request outcomes and durations, batches, items per second and per
//! watt, and the running totals of the statistics extension.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::RATE_WINDOW;
use super::live::{LiveModelStats, RecentLatencies};
use super::scope::MetricsScope;
use super::stats::{InferenceStats, StatsSnapshot};
use super::window::{ThroughputWindow, WindowSummary};

/// Why a request failed, as reported in `kiln_request_failure_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Rejected,
    Timeout,
    Canceled,
    Invalid,
    Backend,
}

impl FailureReason {
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Rejected => "rejected",
            FailureReason::Timeout => "timeout",
            FailureReason::Canceled => "canceled",
            FailureReason::Invalid => "invalid",
            FailureReason::Backend => "backend",
        }
    }
}

/// One model's metrics, its labels (`model`, `version`, `backend`) bound.
pub struct ModelMetrics {
    scope: MetricsScope,
    request_success: Counter,
    inference_count: Counter,
    exec_count: Counter,
    pending: Gauge,
    request_duration: Histogram,
    queue_duration: Histogram,
    compute_duration: Histogram,
    batch_size: Histogram,
    batching_batch_size: Gauge,
    batching_queue_delay: Gauge,
    /// Registered when first set, so models without a latency target do not show it.
    batching_target_share: OnceLock<Gauge>,
    items_per_second: Gauge,
    device_memory: Gauge,
    items_per_second_per_watt: Gauge,
    joules_per_item: Gauge,
    window: Mutex<ThroughputWindow>,
    tokens_per_second: Gauge,
    token_window: Mutex<ThroughputWindow>,
    stats: InferenceStats,
    recent: Mutex<RecentLatencies>,
    /// Items per joule as last computed for the efficiency gauges.
    items_per_joule: Mutex<f64>,
}

impl ModelMetrics {
    pub(super) fn new(scope: MetricsScope) -> Self {
        Self {
            request_success: scope.counter(
                "kiln_request_success_total",
                "Requests answered successfully",
            ),
            inference_count: scope.counter(
                "kiln_inference_count_total",
                "Items inferred (images, sequences)",
            ),
            exec_count: scope.counter(
                "kiln_inference_exec_count_total",
                "Batches executed; inferences / executions is the average batch size",
            ),
            pending: scope.gauge("kiln_pending_requests", "Requests queued or running"),
            request_duration: scope.histogram(
                "kiln_request_duration_seconds",
                "End-to-end request time inside the server",
            ),
            queue_duration: scope.histogram(
                "kiln_queue_duration_seconds",
                "Time a request waited before its batch started",
            ),
            compute_duration: scope.histogram(
                "kiln_compute_duration_seconds",
                "Forward-pass time per batch",
            ),
            batch_size: scope.histogram("kiln_batch_size", "Items per executed batch"),
            batching_batch_size: scope.gauge(
                "kiln_batching_max_batch_size",
                "Largest batch the batcher forms now: as configured, or chosen for the latency target",
            ),
            batching_queue_delay: scope.gauge(
                "kiln_batching_queue_delay_seconds",
                "Longest a batch waits for more requests now: as configured, or chosen for the latency target",
            ),
            batching_target_share: OnceLock::new(),
            items_per_second: scope.gauge(
                "kiln_items_per_second",
                "Items served per second over the last 10 s",
            ),
            device_memory: scope.gauge(
                "kiln_model_device_memory_bytes",
                "Device memory Burn's pools grew by while the model loaded and warmed up at every batch size (GPU backends)",
            ),
            items_per_second_per_watt: scope.gauge(
                "kiln_items_per_second_per_watt",
                "Items per second per watt (items per joule) over the last 10 s, energy shared by compute time",
            ),
            joules_per_item: scope.gauge(
                "kiln_joules_per_item",
                "Joules per item over the last 10 s, energy shared out by compute time",
            ),
            tokens_per_second: scope.gauge(
                "kiln_generated_tokens_per_second",
                "Tokens generated per second over the last 10 s",
            ),
            window: Mutex::new(ThroughputWindow::new(RATE_WINDOW)),
            token_window: Mutex::new(ThroughputWindow::new(RATE_WINDOW)),
            stats: InferenceStats::default(),
            recent: Mutex::new(RecentLatencies::default()),
            items_per_joule: Mutex::new(0.0),
            scope,
        }
    }

    pub(super) fn is(&self, model: &str, version: &str, backend: &str) -> bool {
        self.scope.label("model") == Some(model)
            && self.scope.label("version") == Some(version)
            && self.scope.label("backend") == Some(backend)
    }

    /// Where a task registers its own families under this model's labels.
    pub fn scope(&self) -> &MetricsScope {
        &self.scope
    }

    /// `kiln_pending_requests`: every queue of the model counts into it.
    pub fn pending_gauge(&self) -> Gauge {
        self.pending.clone()
    }

    /// Device memory the model's load and warm-up took from the device's pools.
    pub fn set_device_memory(&self, bytes: u64) {
        self.device_memory.set(bytes as f64);
    }

    /// Start timing a request; see [`RequestRecord`].
    pub fn start_request(self: &Arc<Self>) -> RequestRecord {
        RequestRecord {
            metrics: self.clone(),
            started: std::time::Instant::now(),
            finished: false,
        }
    }

    /// Running totals in the shape of the inference statistics extension.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// A request finished: successfully, or for `failure`.
    pub fn request_finished(&self, elapsed: Duration, failure: Option<FailureReason>) {
        self.request_duration.record(elapsed.as_secs_f64());
        self.stats.request_finished(elapsed, failure.is_none());
        self.recent
            .lock()
            .expect("latency lock")
            .record(std::time::Instant::now(), elapsed);
        match failure {
            None => self.request_success.increment(1),
            Some(reason) => self.failed(reason),
        }
    }

    /// Failure series appear the first time a request fails for their reason.
    pub fn failed(&self, reason: FailureReason) {
        self.scope
            .with_labels(&[("reason", reason.label())])
            .counter(
                "kiln_request_failure_total",
                "Requests that failed, by reason",
            )
            .increment(1);
    }

    /// A request left the queue for a batch after waiting `waited`.
    pub fn record_queued(&self, waited: Duration) {
        self.queue_duration.record(waited.as_secs_f64());
        self.stats.dequeued(waited);
    }

    /// A batch of `size` items ran for `compute`.
    /// The batch size and delay the batcher uses from now on.
    pub fn record_batching_choice(&self, batch_size: usize, queue_delay: Duration) {
        self.batching_batch_size.set(batch_size as f64);
        self.batching_queue_delay.set(queue_delay.as_secs_f64());
    }

    /// The share of the latency target the batching decisions may spend from now on.
    pub fn record_target_share(&self, share: f64) {
        self.batching_target_share
            .get_or_init(|| {
                self.scope.gauge(
                    "kiln_batching_target_share",
                    "Share of the latency target that queueing and batches may take now, corrected by the p99 of answered requests",
                )
            })
            .set(share);
    }

    pub fn record_batch(&self, size: usize, compute: Duration) {
        self.stats.executed(size, compute);
        self.exec_count.increment(1);
        self.inference_count.increment(size as u64);
        self.batch_size.record(size as f64);
        self.compute_duration.record(compute.as_secs_f64());
        self.window
            .lock()
            .expect("window lock")
            .record(size as u64, compute);
    }

    /// Generated tokens, for the tokens-per-second rate.
    pub fn record_tokens(&self, tokens: u64) {
        self.token_window
            .lock()
            .expect("window lock")
            .record(tokens, Duration::ZERO);
    }

    /// Compute time that served no new items (a decoding step), for the energy share.
    pub fn record_compute(&self, compute: Duration) {
        self.window.lock().expect("window lock").record(0, compute);
    }

    pub(super) fn refresh_rate(&self) -> WindowSummary {
        let tokens = self.token_window.lock().expect("window lock").summary();
        self.tokens_per_second.set(if tokens.span_secs > 0.0 {
            tokens.items as f64 / tokens.span_secs
        } else {
            0.0
        });
        let summary = self.window.lock().expect("window lock").summary();
        let rate = if summary.span_secs > 0.0 {
            summary.items as f64 / summary.span_secs
        } else {
            0.0
        };
        self.items_per_second.set(rate);
        summary
    }

    /// Efficiency gauges from the energy charged to this model and the items it served in
    /// the window; both read 0 when it served nothing or no energy was measured.
    pub(super) fn set_efficiency(&self, joules: f64, items: u64) {
        let (per_item, per_joule) = if joules > 0.0 && items > 0 {
            (joules / items as f64, items as f64 / joules)
        } else {
            (0.0, 0.0)
        };
        self.joules_per_item.set(per_item);
        self.items_per_second_per_watt.set(per_joule);
        *self.items_per_joule.lock().expect("efficiency lock") = per_joule;
    }

    /// The live figures, with the rate of `summary` (as [`Self::refresh_rate`] returned it).
    pub(super) fn live(&self, summary: WindowSummary) -> LiveModelStats {
        let stats = self.stats.snapshot();
        let quantiles = self
            .recent
            .lock()
            .expect("latency lock")
            .quantiles_at(std::time::Instant::now(), &[0.5, 0.99]);
        let label = |name| self.scope.label(name).unwrap_or_default().to_string();
        LiveModelStats {
            model: label("model"),
            version: label("version"),
            backend: label("backend"),
            requests: stats.success.count + stats.fail.count,
            failures: stats.fail.count,
            inferences: stats.inference_count,
            executions: stats.execution_count,
            latency_p50_ms: quantiles.as_ref().map(|q| q[0] * 1e3),
            latency_p99_ms: quantiles.as_ref().map(|q| q[1] * 1e3),
            items_per_second: if summary.span_secs > 0.0 {
                summary.items as f64 / summary.span_secs
            } else {
                0.0
            },
            items_per_joule: *self.items_per_joule.lock().expect("efficiency lock"),
        }
    }
}

/// One request's outcome in the metrics. Dropped without [`finish`](Self::finish) — the
/// caller went away and the handler was cancelled — it counts as `canceled`.
pub struct RequestRecord {
    metrics: Arc<ModelMetrics>,
    started: std::time::Instant,
    finished: bool,
}

impl RequestRecord {
    pub fn finish(mut self, failure: Option<FailureReason>) {
        self.finished = true;
        self.metrics
            .request_finished(self.started.elapsed(), failure);
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics
                .request_finished(self.started.elapsed(), Some(FailureReason::Canceled));
        }
    }
}
