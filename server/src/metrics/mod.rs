//! Metrics through the `metrics` facade, exposed in Prometheus' text format by
//! `metrics-exporter-prometheus`. Each server owns one [`Metrics`] with its own recorder —
//! none is installed globally, so several servers in one process (tests) keep theirs apart.
//! Each model gets a [`ModelMetrics`] with its labels bound; the batcher, the step loops and
//! the protocol handlers record into it, and task modules register their own families
//! through its [`MetricsScope`]. Rates (items/s) and the energy share are brought up to date
//! when `/metrics` is rendered. This module imports nothing else of the server.

mod live;
mod model;
mod scope;
mod stats;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use live::LiveModelStats;
pub use model::{FailureReason, ModelMetrics, RequestRecord};
pub use scope::MetricsScope;
pub use stats::{BatchStats, CountAndDuration, InferenceStats, StatsSnapshot};
pub use window::{ThroughputWindow, WindowSummary};

/// How far back `kiln_items_per_second` looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Upper bounds of the latency histograms' buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds of the batch-size histograms' buckets, in items.
pub const SIZE_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Histograms counted in items rather than seconds.
const SIZE_HISTOGRAMS: [&str; 2] = ["kiln_batch_size", "kiln_caption_stage_batch_size"];

/// One power reading's worth of energy, as the power meter hands it over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergySample<'a> {
    /// Where the figure comes from: `nvml`, `rapl` or `estimate`.
    pub source: &'a str,
    pub joules: f64,
    /// Time since the previous reading.
    pub elapsed: Duration,
    pub gpu_utilization: Option<f64>,
    pub gpu_memory_used_bytes: Option<u64>,
}

/// The server's metrics: its recorder, every model's metrics and the energy readings.
pub struct Metrics {
    handle: PrometheusHandle,
    root: MetricsScope,
    /// Per power source: (energy, power) gauges, registered at the first reading.
    sources: Mutex<HashMap<String, (metrics::Gauge, metrics::Gauge)>>,
    /// Cumulative joules over time, for the energy used inside the rate window.
    energy_timeline: Mutex<EnergyTimeline>,
    models: Mutex<Vec<Arc<ModelMetrics>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut builder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the latency buckets are not empty");
        for name in SIZE_HISTOGRAMS {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.into()), &SIZE_BUCKETS)
                .expect("the size buckets are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Self {
            handle,
            root: MetricsScope::new(Arc::new(recorder)),
            sources: Mutex::new(HashMap::new()),
            energy_timeline: Mutex::new(EnergyTimeline::default()),
            models: Mutex::new(Vec::new()),
        }
    }

    /// The metrics of one model, with its labels bound. A model loaded again under the same
    /// labels keeps its metrics.
    pub fn for_model(&self, model: &str, version: &str, backend: &str) -> Arc<ModelMetrics> {
        let mut models = self.models.lock().expect("metrics lock");
        if let Some(existing) = models.iter().find(|m| m.is(model, version, backend)) {
            return existing.clone();
        }
        let scope =
            self.root
                .with_labels(&[("backend", backend), ("model", model), ("version", version)]);
        let model_metrics = Arc::new(ModelMetrics::new(scope));
        models.push(model_metrics.clone());
        model_metrics
    }

    /// Record the energy of one power reading.
    pub fn record_energy(&self, sample: EnergySample<'_>) {
        let (energy, power) = self
            .sources
            .lock()
            .expect("metrics lock")
            .entry(sample.source.to_string())
            .or_insert_with(|| {
                let source = self.root.with_labels(&[("source", sample.source)]);
                (
                    // The facade's counters count whole numbers; joules are fractions, so
                    // this counter is a gauge that only ever rises.
                    source.gauge(
                        "kiln_energy_joules_total",
                        "Energy used since start, by source",
                    ),
                    source.gauge(
                        "kiln_power_watts",
                        "Power drawn, by source: nvml and rapl are measured, estimate is CPU time x configured watts",
                    ),
                )
            })
            .clone();
        energy.increment(sample.joules);
        if !sample.elapsed.is_zero() {
            power.set(sample.joules / sample.elapsed.as_secs_f64());
        }
        let gpu = self.root.with_labels(&[("gpu", "all")]);
        if let Some(u) = sample.gpu_utilization {
            gpu.gauge("kiln_gpu_utilization", "GPU busy fraction (NVML)")
                .set(u);
        }
        if let Some(bytes) = sample.gpu_memory_used_bytes {
            gpu.gauge("kiln_gpu_memory_used_bytes", "GPU memory in use (NVML)")
                .set(bytes as f64);
        }
        self.energy_timeline
            .lock()
            .expect("energy lock")
            .record(sample.joules);
    }

    /// Prometheus text exposition of every metric, with rates brought up to date.
    pub fn render(&self) -> String {
        self.refresh_rates();
        self.handle.render()
    }

    /// Every model's live figures (rates brought up to date), in load order.
    pub fn live(&self) -> Vec<LiveModelStats> {
        self.refresh_rates()
            .into_iter()
            .map(|(model, summary)| model.live(summary))
            .collect()
    }

    /// Where the energy figures come from: `measured` (NVML or RAPL), `estimated` (CPU time
    /// × the configured watts), or `none` before the first reading.
    pub fn energy_kind(&self) -> &'static str {
        let sources = self.sources.lock().expect("metrics lock");
        if sources.keys().any(|s| s != "estimate") {
            "measured"
        } else if sources.is_empty() {
            "none"
        } else {
            "estimated"
        }
    }

    /// Bring every model's windowed rates and efficiency gauges up to date.
    fn refresh_rates(&self) -> Vec<(Arc<ModelMetrics>, WindowSummary)> {
        let energy = self
            .energy_timeline
            .lock()
            .expect("energy lock")
            .joules_within(RATE_WINDOW);
        let models = self.models.lock().expect("metrics lock").clone();
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
        models.into_iter().zip(summaries).collect()
    }

    /// Fold recorded histogram samples into their buckets. Rendering does it too; between
    /// scrapes this keeps the samples from piling up.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
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
