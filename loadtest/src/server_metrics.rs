//! Kiln's own view of a measurement, from `/metrics` read before and after it.

use std::collections::HashMap;

/// Samples of the Prometheus text format, keyed by `name{labels}` as written.
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub HashMap<String, f64>);

impl Scrape {
    pub fn parse(text: &str) -> Self {
        Scrape(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (key, value) = l.rsplit_once(' ')?;
                    Some((key.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The samples of `name` whose labels include `model="<model>"`.
    fn model_samples<'a>(&'a self, name: &'a str, model: &str) -> impl Iterator<Item = f64> + 'a {
        let needle = format!("model=\"{model}\"");
        self.0
            .iter()
            .filter(move |(k, _)| k.split('{').next() == Some(name) && k.contains(&needle))
            .map(|(_, v)| *v)
    }

    /// Sum of every sample of `name` whose labels include `model="<model>"`.
    pub fn model_total(&self, name: &str, model: &str) -> f64 {
        self.model_samples(name, model).sum()
    }

    /// The sample of `name` whose labels include `model="<model>"`, when there is one: for
    /// gauges, of which a model has one.
    pub fn model_value(&self, name: &str, model: &str) -> Option<f64> {
        self.model_samples(name, model).next()
    }

    /// Whether the scrape holds Kiln series for `model` (other servers' metrics do not).
    pub fn knows_model(&self, model: &str) -> bool {
        let needle = format!("model=\"{model}\"");
        self.0
            .keys()
            .any(|k| k.starts_with("kiln_") && k.contains(&needle))
    }

    /// Sum of every sample of `name`, whatever its labels.
    pub fn total(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }
}

/// What the server saw between two scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ServerSplit {
    pub requests_ok: f64,
    pub requests_failed: f64,
    pub inferences: f64,
    pub executions: f64,
    pub avg_batch: f64,
    /// Mean wait in the queue per request.
    pub queue_ms: f64,
    /// Mean forward-pass time per batch.
    pub compute_ms: f64,
    pub joules: f64,
    /// Items per joule (= items/s per watt), from the energy counter; 0 when unknown.
    pub items_per_joule: f64,
    pub power_source: Option<&'static str>,
    /// The batcher's largest batch when the measurement ended: chosen for the latency
    /// target, or as configured.
    pub batch_size_at_end: Option<f64>,
    /// The share of the latency target the batching decisions had when the measurement
    /// ended, after the answered requests' corrections; only with a target.
    pub target_share_at_end: Option<f64>,
}

impl ServerSplit {
    pub fn between(before: &Scrape, after: &Scrape, model: &str) -> Self {
        let delta = |name: &str| after.model_total(name, model) - before.model_total(name, model);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let inferences = delta("kiln_inference_count_total");
        let executions = delta("kiln_inference_exec_count_total");
        let source = ["nvml", "rapl", "estimate"].into_iter().find(|s| {
            after
                .0
                .contains_key(&format!("kiln_energy_joules_total{{source=\"{s}\"}}"))
        });
        let joules =
            after.total("kiln_energy_joules_total") - before.total("kiln_energy_joules_total");
        Self {
            requests_ok: delta("kiln_request_success_total"),
            requests_failed: delta("kiln_request_failure_total"),
            inferences,
            executions,
            avg_batch: ratio(inferences, executions),
            queue_ms: ratio(
                delta("kiln_queue_duration_seconds_sum"),
                delta("kiln_queue_duration_seconds_count"),
            ) * 1e3,
            compute_ms: ratio(
                delta("kiln_compute_duration_seconds_sum"),
                delta("kiln_compute_duration_seconds_count"),
            ) * 1e3,
            joules,
            items_per_joule: ratio(inferences, joules),
            power_source: source,
            batch_size_at_end: after.model_value("kiln_batching_max_batch_size", model),
            target_share_at_end: after.model_value("kiln_batching_target_share", model),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_per_model() {
        let before = Scrape::parse(
            "# HELP x\nkiln_inference_count_total{backend=\"flex\",model=\"a\",version=\"1\"} 10\nkiln_inference_exec_count_total{backend=\"flex\",model=\"a\",version=\"1\"} 5\nkiln_energy_joules_total{source=\"estimate\"} 1\n",
        );
        let after = Scrape::parse(
            "kiln_inference_count_total{backend=\"flex\",model=\"a\",version=\"1\"} 50\nkiln_inference_exec_count_total{backend=\"flex\",model=\"a\",version=\"1\"} 15\nkiln_inference_count_total{backend=\"flex\",model=\"b\",version=\"1\"} 99\nkiln_energy_joules_total{source=\"estimate\"} 5\n",
        );
        let split = ServerSplit::between(&before, &after, "a");
        assert_eq!(
            (split.inferences, split.executions, split.avg_batch),
            (40.0, 10.0, 4.0)
        );
        assert_eq!((split.joules, split.items_per_joule), (4.0, 10.0));
        assert_eq!(split.power_source, Some("estimate"));
        assert_eq!(
            (split.batch_size_at_end, split.target_share_at_end),
            (None, None)
        );
    }

    #[test]
    fn the_batching_gauges_are_read_at_the_end() {
        let after = Scrape::parse(
            "kiln_batching_max_batch_size{backend=\"flex\",model=\"a\",version=\"1\"} 24\nkiln_batching_target_share{backend=\"flex\",model=\"a\",version=\"1\"} 0.56\nkiln_batching_max_batch_size{backend=\"flex\",model=\"b\",version=\"1\"} 64\n",
        );
        let split = ServerSplit::between(&Scrape::default(), &after, "a");
        assert_eq!(split.batch_size_at_end, Some(24.0));
        assert_eq!(split.target_share_at_end, Some(0.56));
        let other = ServerSplit::between(&Scrape::default(), &after, "b");
        assert_eq!(
            (other.batch_size_at_end, other.target_share_at_end),
            (Some(64.0), None)
        );
    }
}
