//! A recorder and a set of bound labels: where a model's (or the process's) metric
//! families are registered. Each call describes the family and returns the handle of the
//! series with the scope's labels, plus any extra ones.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Label, Recorder};
use metrics_exporter_prometheus::PrometheusRecorder;

/// Registers metric series with fixed labels into one recorder. Cheap to clone.
#[derive(Clone)]
pub struct MetricsScope {
    recorder: Arc<PrometheusRecorder>,
    /// Sorted by name, as Prometheus clients print them.
    labels: Vec<(&'static str, String)>,
}

impl MetricsScope {
    pub(super) fn new(recorder: Arc<PrometheusRecorder>) -> Self {
        Self {
            recorder,
            labels: Vec::new(),
        }
    }

    /// The same recorder with `extra` labels added to this scope's.
    pub fn with_labels(&self, extra: &[(&'static str, &str)]) -> Self {
        let mut labels = self.labels.clone();
        labels.extend(extra.iter().map(|&(k, v)| (k, v.to_string())));
        labels.sort_by_key(|&(k, _)| k);
        Self {
            recorder: self.recorder.clone(),
            labels,
        }
    }

    /// The value of label `name`, if the scope binds it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        let labels = self.key_labels();
        self.with_recorder(|| {
            metrics::describe_counter!(name, help);
            metrics::counter!(name, labels)
        })
    }

    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        let labels = self.key_labels();
        self.with_recorder(|| {
            metrics::describe_gauge!(name, help);
            metrics::gauge!(name, labels)
        })
    }

    pub fn histogram(&self, name: &'static str, help: &'static str) -> Histogram {
        let labels = self.key_labels();
        self.with_recorder(|| {
            metrics::describe_histogram!(name, help);
            metrics::histogram!(name, labels)
        })
    }

    fn key_labels(&self) -> Vec<Label> {
        self.labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect()
    }

    fn with_recorder<T>(&self, register: impl FnOnce() -> T) -> T {
        let recorder: &dyn Recorder = self.recorder.as_ref();
        metrics::with_local_recorder(recorder, register)
    }
}
