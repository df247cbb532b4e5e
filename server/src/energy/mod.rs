//! Power and energy. A [`PowerMeter`] samples the first source that works — NVML, then
//! RAPL, then an estimate from CPU time — on its own task, and records into the metrics,
//! which attribute the energy to models by their share of compute time.

mod sources;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use sources::{
    CpuTimeEstimate, PowerError, PowerProbe, PowerSource, RaplProbe, Reading, counter_delta,
    process_cpu_seconds,
};

use crate::metrics::{EnergySample, Metrics};

/// Consecutive failed reads after which a source is dropped for the next one.
const MAX_FAILURES: u32 = 3;

/// Samples power and energy and records them into [`Metrics`].
pub struct PowerMeter {
    /// Usable sources, best first; the first is the one being read.
    probes: Vec<Box<dyn PowerProbe>>,
    failures: u32,
    /// The current source's previous reading; `None` until a source taken over after a
    /// failure has been read once, since its first reading counts from start-up.
    last_joules: Option<f64>,
    last_at: std::time::Instant,
}

impl PowerMeter {
    /// Every source that opens on this machine, best first; the CPU-time estimate is always
    /// last (and always available on Linux).
    pub fn detect(estimated_watts_per_core: f64) -> Self {
        let mut probes: Vec<Box<dyn PowerProbe>> = Vec::new();
        #[cfg(feature = "nvml")]
        match sources::NvmlProbe::open() {
            Ok(probe) => probes.push(Box::new(probe)),
            Err(e) => tracing::debug!(error = %e, "no NVML power source"),
        }
        match RaplProbe::open(Path::new("/sys/class/powercap")) {
            Ok(probe) => probes.push(Box::new(probe)),
            Err(e) => tracing::debug!(error = %e, "no RAPL power source"),
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        match CpuTimeEstimate::new(
            estimated_watts_per_core * cores,
            PathBuf::from("/proc/self/stat"),
        ) {
            Ok(probe) => probes.push(Box::new(probe)),
            Err(e) => tracing::warn!(error = %e, "no CPU-time power estimate either"),
        }
        Self::with_probes(probes)
    }

    pub fn with_probes(probes: Vec<Box<dyn PowerProbe>>) -> Self {
        if let Some(first) = probes.first() {
            tracing::info!(source = first.source().label(), "power source");
        }
        Self {
            probes,
            failures: 0,
            // Every probe counts from its creation, which is start-up for the first one.
            last_joules: Some(0.0),
            last_at: std::time::Instant::now(),
        }
    }

    /// The source being read, if any is left.
    pub fn source(&self) -> Option<PowerSource> {
        self.probes.first().map(|p| p.source())
    }

    /// Read the current source once and record the energy since the last reading.
    pub fn sample(&mut self, metrics: &Metrics) {
        let Some(probe) = self.probes.first_mut() else {
            return;
        };
        match probe.read() {
            Ok(reading) => {
                self.failures = 0;
                let now = std::time::Instant::now();
                let elapsed = now.duration_since(self.last_at);
                let previous = self.last_joules.replace(reading.joules);
                self.last_at = now;
                // A source's first reading after a fail-over is only a baseline.
                if let Some(previous) = previous {
                    let joules = (reading.joules - previous).max(0.0);
                    metrics.record_energy(EnergySample {
                        source: probe.source().label(),
                        joules,
                        elapsed,
                        gpu_utilization: reading.gpu_utilization,
                        gpu_memory_used_bytes: reading.gpu_memory_used_bytes,
                    });
                }
            }
            Err(e) => {
                self.failures += 1;
                if self.failures >= MAX_FAILURES {
                    let failed = self.probes.remove(0).source();
                    let next = self.source().map_or("none", PowerSource::label);
                    tracing::warn!(source = failed.label(), error = %e, next, "power source keeps failing; no longer polled");
                    self.failures = 0;
                    self.last_joules = None;
                }
            }
        }
    }

    /// Sample every `interval` until the task is dropped.
    pub async fn run(mut self, metrics: Arc<Metrics>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.sample(&metrics);
        }
    }
}
