//! Prometheus metrics. One [`Metrics`] registry per server; each model gets a
//! [`ModelMetrics`] with its label values bound, which the batcher and the HTTP layer record
//! into. Rates (items/s) are computed over a sliding window when `/metrics` is scraped.

mod stats;
mod window;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use stats::{BatchStats, CountAndDuration, InferenceStats, StatsSnapshot};
pub use window::{ThroughputWindow, WindowSummary};

use crate::batching::BatchObserver;
use crate::captioning::CaptionMetrics;
use crate::generation::GenerationMetrics;

/// How far back `kiln_items_per_second` looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

const MODEL_LABELS: [&str; 3] = ["model", "version", "backend"];

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

/// All of the server's metric families.
pub struct Metrics {
    registry: Registry,
    request_success: IntCounterVec,
    request_failure: IntCounterVec,
    inference_count: IntCounterVec,
    exec_count: IntCounterVec,
    pending: IntGaugeVec,
    request_duration: HistogramVec,
    queue_duration: HistogramVec,
    compute_duration: HistogramVec,
    batch_size: HistogramVec,
    items_per_second: GaugeVec,
    device_memory: IntGaugeVec,
    items_per_second_per_watt: GaugeVec,
    joules_per_item: GaugeVec,
    power_watts: GaugeVec,
    energy_joules: CounterVec,
    gpu_utilization: GaugeVec,
    gpu_memory_used: GaugeVec,
    generation: GenerationFamilies,
    captioning: CaptioningFamilies,
    /// Cumulative joules over time, for the energy used inside the rate window.
    energy_timeline: Mutex<EnergyTimeline>,
    models: Mutex<Vec<Arc<ModelMetrics>>>,
}

/// Metric families of text generation.
struct GenerationFamilies {
    tokens: IntCounterVec,
    tokens_per_second: GaugeVec,
    time_to_first_token: HistogramVec,
    inter_token_latency: HistogramVec,
    queue_duration: HistogramVec,
    prefill_duration: HistogramVec,
    active_sequences: IntGaugeVec,
    canceled: IntCounterVec,
    failed: IntCounterVec,
    finished: IntCounterVec,
}

/// Metric families of captioning, per stage (`encoder`, `decoder`).
struct CaptioningFamilies {
    stage_duration: HistogramVec,
    stage_batch_size: HistogramVec,
    active_hypotheses: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, extra: &[&str]| {
            let labels: Vec<&str> = MODEL_LABELS.iter().chain(extra).copied().collect();
            let c = IntCounterVec::new(Opts::new(name, help), &labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                &MODEL_LABELS,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let request_success = counter(
            "kiln_request_success_total",
            "Requests answered successfully",
            &[],
        );
        let request_failure = counter(
            "kiln_request_failure_total",
            "Requests that failed, by reason",
            &["reason"],
        );
        let inference_count = counter(
            "kiln_inference_count_total",
            "Items inferred (images, sequences)",
            &[],
        );
        let exec_count = counter(
            "kiln_inference_exec_count_total",
            "Batches executed; inferences / executions is the average batch size",
            &[],
        );
        let pending = IntGaugeVec::new(
            Opts::new("kiln_pending_requests", "Requests queued or running"),
            &MODEL_LABELS,
        )
        .expect("valid metric");
        registry
            .register(Box::new(pending.clone()))
            .expect("unique metric");
        let items_per_second = GaugeVec::new(
            Opts::new(
                "kiln_items_per_second",
                "Items served per second over the last 10 s",
            ),
            &MODEL_LABELS,
        )
        .expect("valid metric");
        registry
            .register(Box::new(items_per_second.clone()))
            .expect("unique metric");
        let device_memory = IntGaugeVec::new(
            Opts::new(
                "kiln_model_device_memory_bytes",
                "Device memory Burn's pools grew by while the model loaded and warmed up at every batch size (GPU backends)",
            ),
            &MODEL_LABELS,
        )
        .expect("valid metric");
        registry
            .register(Box::new(device_memory.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let items_per_second_per_watt = gauge(
            "kiln_items_per_second_per_watt",
            "Items per second per watt (items per joule) over the last 10 s, energy shared by compute time",
            &MODEL_LABELS,
        );
        let joules_per_item = gauge(
            "kiln_joules_per_item",
            "Joules per item over the last 10 s, energy shared out by compute time",
            &MODEL_LABELS,
        );
        let power_watts = gauge(
            "kiln_power_watts",
            "Power drawn, by source: nvml and rapl are measured, estimate is CPU time x configured watts",
            &["source"],
        );
        let gpu_utilization = gauge("kiln_gpu_utilization", "GPU busy fraction (NVML)", &["gpu"]);
        let gpu_memory_used = gauge(
            "kiln_gpu_memory_used_bytes",
            "GPU memory in use (NVML)",
            &["gpu"],
        );
        let energy_joules = CounterVec::new(
            Opts::new(
                "kiln_energy_joules_total",
                "Energy used since start, by source",
            ),
            &["source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(energy_joules.clone()))
            .expect("unique metric");
        let active_sequences = IntGaugeVec::new(
            Opts::new(
                "kiln_generation_active_sequences",
                "Sequences in the running decode batch",
            ),
            &MODEL_LABELS,
        )
        .expect("valid metric");
        registry
            .register(Box::new(active_sequences.clone()))
            .expect("unique metric");
        let generation = GenerationFamilies {
            tokens: counter("kiln_generated_tokens_total", "Tokens generated", &[]),
            tokens_per_second: gauge(
                "kiln_generated_tokens_per_second",
                "Tokens generated per second over the last 10 s",
                &MODEL_LABELS,
            ),
            time_to_first_token: histogram(
                "kiln_time_to_first_token_seconds",
                "Time from a generation's arrival to its first token",
                latency_buckets(),
            ),
            inter_token_latency: histogram(
                "kiln_inter_token_latency_seconds",
                "Time between two tokens of one generation",
                latency_buckets(),
            ),
            queue_duration: histogram(
                "kiln_generation_queue_duration_seconds",
                "Time a generation waited before joining the decode batch",
                latency_buckets(),
            ),
            prefill_duration: histogram(
                "kiln_generation_prefill_duration_seconds",
                "Time to run a prompt through the model",
                latency_buckets(),
            ),
            active_sequences,
            canceled: counter(
                "kiln_generation_canceled_total",
                "Generations stopped because their caller went away",
                &[],
            ),
            failed: counter(
                "kiln_generation_failed_total",
                "Generations ended by a model error",
                &[],
            ),
            finished: counter(
                "kiln_generation_finished_total",
                "Generations completed, by finish reason",
                &["reason"],
            ),
        };
        let stage_labels: Vec<&str> = MODEL_LABELS.iter().chain(&["stage"]).copied().collect();
        let stage_histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                &stage_labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let caption_hypotheses = IntGaugeVec::new(
            Opts::new(
                "kiln_caption_active_hypotheses",
                "Caption hypotheses in the running decoder batch",
            ),
            &MODEL_LABELS,
        )
        .expect("valid metric");
        registry
            .register(Box::new(caption_hypotheses.clone()))
            .expect("unique metric");
        let captioning = CaptioningFamilies {
            stage_duration: stage_histogram(
                "kiln_caption_stage_duration_seconds",
                "Compute time of one captioning batch, by stage (encoder, decoder step)",
                latency_buckets(),
            ),
            stage_batch_size: stage_histogram(
                "kiln_caption_stage_batch_size",
                "Images per encoder batch, hypotheses per decoder step",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            active_hypotheses: caption_hypotheses,
        };
        Self {
            generation,
            captioning,
            items_per_second_per_watt,
            joules_per_item,
            power_watts,
            energy_joules,
            gpu_utilization,
            gpu_memory_used,
            energy_timeline: Mutex::new(EnergyTimeline::default()),
            request_duration: histogram(
                "kiln_request_duration_seconds",
                "End-to-end request time inside the server",
                latency_buckets(),
            ),
            queue_duration: histogram(
                "kiln_queue_duration_seconds",
                "Time a request waited before its batch started",
                latency_buckets(),
            ),
            compute_duration: histogram(
                "kiln_compute_duration_seconds",
                "Forward-pass time per batch",
                latency_buckets(),
            ),
            batch_size: histogram(
                "kiln_batch_size",
                "Items per executed batch",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            registry,
            request_success,
            request_failure,
            inference_count,
            exec_count,
            pending,
            items_per_second,
            device_memory,
            models: Mutex::new(Vec::new()),
        }
    }

    /// The metrics of one model, with its labels bound. A model loaded again under the same
    /// labels keeps its metrics.
    pub fn for_model(&self, model: &str, version: &str, backend: &str) -> Arc<ModelMetrics> {
        let labels = [model, version, backend];
        let mut models = self.models.lock().expect("metrics lock");
        if let Some(existing) = models.iter().find(|m| m.labels == labels) {
            return existing.clone();
        }
        let model_metrics = Arc::new(ModelMetrics {
            labels: labels.map(String::from),
            request_success: self.request_success.with_label_values(&labels),
            request_failure: self.request_failure.clone(),
            inference_count: self.inference_count.with_label_values(&labels),
            exec_count: self.exec_count.with_label_values(&labels),
            pending: self.pending.with_label_values(&labels),
            request_duration: self.request_duration.with_label_values(&labels),
            queue_duration: self.queue_duration.with_label_values(&labels),
            compute_duration: self.compute_duration.with_label_values(&labels),
            batch_size: self.batch_size.with_label_values(&labels),
            items_per_second: self.items_per_second.with_label_values(&labels),
            device_memory: self.device_memory.with_label_values(&labels),
            items_per_second_per_watt: self.items_per_second_per_watt.with_label_values(&labels),
            joules_per_item: self.joules_per_item.with_label_values(&labels),
            window: Mutex::new(ThroughputWindow::new(RATE_WINDOW)),
            tokens_per_second: self.generation.tokens_per_second.with_label_values(&labels),
            token_window: Mutex::new(ThroughputWindow::new(RATE_WINDOW)),
            stats: InferenceStats::default(),
        });
        models.push(model_metrics.clone());
        model_metrics
    }

    /// Generation metrics of a model, recording into `model` as well.
    pub fn for_generation(&self, model: &Arc<ModelMetrics>) -> Arc<GenerationMetrics> {
        let labels = model.labels.clone();
        let values: [&str; 3] = [&labels[0], &labels[1], &labels[2]];
        let g = &self.generation;
        Arc::new(GenerationMetrics {
            tokens: g.tokens.with_label_values(&values),
            time_to_first_token: g.time_to_first_token.with_label_values(&values),
            inter_token_latency: g.inter_token_latency.with_label_values(&values),
            queue_duration: g.queue_duration.with_label_values(&values),
            prefill_duration: g.prefill_duration.with_label_values(&values),
            active_sequences: g.active_sequences.with_label_values(&values),
            canceled: g.canceled.with_label_values(&values),
            failed: g.failed.with_label_values(&values),
            finished: g.finished.clone(),
            labels,
            model: model.clone(),
        })
    }

    /// Captioning metrics of a model, recording into `model` as well.
    pub fn for_captioning(&self, model: &Arc<ModelMetrics>) -> Arc<CaptionMetrics> {
        let [m, v, b] = &model.labels;
        let stage = |family: &HistogramVec, stage: &str| {
            family.with_label_values(&[m.as_str(), v.as_str(), b.as_str(), stage])
        };
        let c = &self.captioning;
        Arc::new(CaptionMetrics {
            model: model.clone(),
            active_hypotheses: c.active_hypotheses.with_label_values(&[m, v, b]),
            encoder_duration: stage(&c.stage_duration, "encoder"),
            encoder_batch_size: stage(&c.stage_batch_size, "encoder"),
            decoder_duration: stage(&c.stage_duration, "decoder"),
            decoder_batch_size: stage(&c.stage_batch_size, "decoder"),
        })
    }

    /// Record `joules` used over `elapsed`, read from `source`.
    pub fn record_energy(
        &self,
        source: &str,
        joules: f64,
        elapsed: Duration,
        reading: &crate::energy::Reading,
    ) {
        self.energy_joules
            .with_label_values(&[source])
            .inc_by(joules);
        if !elapsed.is_zero() {
            self.power_watts
                .with_label_values(&[source])
                .set(joules / elapsed.as_secs_f64());
        }
        if let Some(u) = reading.gpu_utilization {
            self.gpu_utilization.with_label_values(&["all"]).set(u);
        }
        if let Some(bytes) = reading.gpu_memory_used_bytes {
            self.gpu_memory_used
                .with_label_values(&["all"])
                .set(bytes as f64);
        }
        self.energy_timeline
            .lock()
            .expect("energy lock")
            .record(joules);
    }

    /// Prometheus text exposition of every metric, with rates brought up to date.
    pub fn render(&self) -> String {
        let energy = self
            .energy_timeline
            .lock()
            .expect("energy lock")
            .joules_within(RATE_WINDOW);
        let models = self.models.lock().expect("metrics lock");
        let summaries: Vec<WindowSummary> = models.iter().map(|m| m.refresh_rate()).collect();
        let total_compute: f64 = summaries.iter().map(|s| s.compute_secs).sum();
        for (model, summary) in models.iter().zip(&summaries) {
            // Each model is charged the window's energy in proportion to its compute time.
            let share = if total_compute > 0.0 {
                summary.compute_secs / total_compute
            } else {
                0.0
            };
            model.set_efficiency(energy * share, summary.items);
        }
        drop(models);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}

/// One model's metrics.
pub struct ModelMetrics {
    labels: [String; 3],
    request_success: IntCounter,
    request_failure: IntCounterVec,
    inference_count: IntCounter,
    exec_count: IntCounter,
    pending: IntGauge,
    request_duration: prometheus::Histogram,
    queue_duration: prometheus::Histogram,
    compute_duration: prometheus::Histogram,
    batch_size: prometheus::Histogram,
    items_per_second: prometheus::Gauge,
    device_memory: IntGauge,
    items_per_second_per_watt: prometheus::Gauge,
    joules_per_item: prometheus::Gauge,
    window: Mutex<ThroughputWindow>,
    tokens_per_second: prometheus::Gauge,
    token_window: Mutex<ThroughputWindow>,
    stats: InferenceStats,
}

impl ModelMetrics {
    /// Device memory the model's load and warm-up took from the device's pools.
    pub fn set_device_memory(&self, bytes: u64) {
        self.device_memory
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
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
        self.request_duration.observe(elapsed.as_secs_f64());
        self.stats.request_finished(elapsed, failure.is_none());
        match failure {
            None => self.request_success.inc(),
            Some(reason) => self.failed(reason),
        }
    }

    pub fn failed(&self, reason: FailureReason) {
        let [m, v, b] = &self.labels;
        self.request_failure
            .with_label_values(&[m, v, b, reason.label()])
            .inc();
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

    fn refresh_rate(&self) -> WindowSummary {
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
    fn set_efficiency(&self, joules: f64, items: u64) {
        let (per_item, per_joule) = if joules > 0.0 && items > 0 {
            (joules / items as f64, items as f64 / joules)
        } else {
            (0.0, 0.0)
        };
        self.joules_per_item.set(per_item);
        self.items_per_second_per_watt.set(per_joule);
    }
}

impl BatchObserver for ModelMetrics {
    fn admitted(&self) {
        self.pending.inc();
    }

    fn released(&self) {
        self.pending.dec();
    }

    fn dequeued(&self, waited: Duration) {
        self.queue_duration.observe(waited.as_secs_f64());
        self.stats.dequeued(waited);
    }

    fn executed(&self, size: usize, compute: Duration) {
        self.stats.executed(size, compute);
        self.exec_count.inc();
        self.inference_count.inc_by(size as u64);
        self.batch_size.observe(size as f64);
        self.compute_duration.observe(compute.as_secs_f64());
        self.window
            .lock()
            .expect("window lock")
            .record(size as u64, compute);
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

/// Energy readings over time, to tell how much energy fell inside a recent window.
#[derive(Debug, Default)]
struct EnergyTimeline {
    /// (time, joules recorded then), oldest first; kept for twice the rate window.
    samples: std::collections::VecDeque<(std::time::Instant, f64)>,
}

impl EnergyTimeline {
    fn record(&mut self, joules: f64) {
        let now = std::time::Instant::now();
        self.samples.push_back((now, joules));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > 2 * RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn joules_within(&self, window: Duration) -> f64 {
        let now = std::time::Instant::now();
        self.samples
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= window)
            .map(|(_, j)| j)
            .sum()
    }
}
