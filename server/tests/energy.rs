//! Power sources, fail-over between them, and sharing energy out between models.

mod common;

use std::time::Duration;

use common::*;
use kiln_server::ServeSettings;
use kiln_server::energy::{PowerError, PowerMeter, PowerProbe, PowerSource, Reading};
use kiln_server::metrics::Metrics;

/// Reports `step` more joules at every read, or fails every time.
struct FakeProbe {
    source: PowerSource,
    step: Option<f64>,
    joules: f64,
}

impl PowerProbe for FakeProbe {
    fn source(&self) -> PowerSource {
        self.source
    }

    fn read(&mut self) -> Result<Reading, PowerError> {
        let step = self
            .step
            .ok_or_else(|| PowerError::Unavailable("the meter is unplugged".into()))?;
        self.joules += step;
        Ok(Reading {
            joules: self.joules,
            ..Reading::default()
        })
    }
}

fn value(text: &str, prefix: &str) -> f64 {
    metric(text, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn energy_is_shared_by_compute_time_and_divided_by_items() {
    let metrics = Metrics::new();
    let a = metrics.for_model("a", "1", "flex");
    let b = metrics.for_model("b", "1", "flex");
    a.record_batch(10, Duration::from_secs(3));
    b.record_batch(5, Duration::from_secs(1));
    let mut meter = PowerMeter::with_probes(vec![Box::new(FakeProbe {
        source: PowerSource::Rapl,
        step: Some(40.0),
        joules: 0.0,
    })]);
    meter.sample(&metrics);
    let text = metrics.render();
    assert_eq!(
        value(&text, "kiln_energy_joules_total{source=\"rapl\"}"),
        40.0
    );
    // a computed 3 of the 4 seconds: 30 J for 10 items; b 10 J for 5 items.
    assert!(
        (value(
            &text,
            "kiln_joules_per_item{backend=\"flex\",model=\"a\",version=\"1\"}"
        ) - 3.0)
            .abs()
            < 1e-9
    );
    assert!(
        (value(
            &text,
            "kiln_joules_per_item{backend=\"flex\",model=\"b\",version=\"1\"}"
        ) - 2.0)
            .abs()
            < 1e-9
    );
    let per_watt = value(
        &text,
        "kiln_items_per_second_per_watt{backend=\"flex\",model=\"b\",version=\"1\"}",
    );
    assert!((per_watt - 0.5).abs() < 1e-9, "{per_watt}");
}

/// A meter whose NVML source always fails, with an estimate counting `step` joules per
/// read behind it, which has counted `since_start` joules before its first read.
fn failing_nvml_then_estimate(step: f64, since_start: f64) -> PowerMeter {
    PowerMeter::with_probes(vec![
        Box::new(FakeProbe {
            source: PowerSource::Nvml,
            step: None,
            joules: 0.0,
        }),
        Box::new(FakeProbe {
            source: PowerSource::Estimate,
            step: Some(step),
            joules: since_start,
        }),
    ])
}

#[test]
fn a_failing_source_is_dropped_for_the_next_after_three_tries() {
    let metrics = Metrics::new();
    let mut meter = failing_nvml_then_estimate(1.0, 0.0);
    for _ in 0..3 {
        assert_eq!(meter.source(), Some(PowerSource::Nvml));
        meter.sample(&metrics);
    }
    assert_eq!(meter.source(), Some(PowerSource::Estimate));
    // The first reading of the new source is its baseline; the second counts.
    meter.sample(&metrics);
    meter.sample(&metrics);
    let text = metrics.render();
    assert_eq!(
        value(&text, "kiln_energy_joules_total{source=\"estimate\"}"),
        1.0
    );
    assert!(!text.contains("source=\"nvml\""), "{text}");
}

#[test]
fn a_fallback_source_counts_only_from_its_first_reading() {
    let metrics = Metrics::new();
    // Counting since start-up, as a real probe does: 5 kJ before it is ever read.
    let mut meter = failing_nvml_then_estimate(2.0, 5_000.0);
    for _ in 0..6 {
        meter.sample(&metrics);
    }
    assert_eq!(meter.source(), Some(PowerSource::Estimate));
    let text = metrics.render();
    // Two intervals of 2 J after the baseline, not the 5 kJ since start-up.
    assert_eq!(
        value(&text, "kiln_energy_joules_total{source=\"estimate\"}"),
        4.0
    );
}

#[tokio::test]
async fn a_served_model_reports_power_and_efficiency() {
    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.power_sample_ms = 20;
    let (server, base) = start(settings).await;
    let client = reqwest::Client::new();
    let data = test_set();
    let labels = "{backend=\"flex\",model=\"lenet-fashion\",version=\"1\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Serve images until the sampler has charged energy to the model.
    loop {
        for i in 0..16 {
            let r = post_png(&client, &base, png(&data, i))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let text = metrics_text(&client, &base).await;
        let per_item = metric(&text, &format!("kiln_joules_per_item{labels}")).unwrap_or(0.0);
        if per_item > 0.0 {
            // No meter on these machines: the source must say it is an estimate.
            let source = if text.contains("kiln_power_watts{source=\"rapl\"}") {
                "rapl"
            } else {
                "estimate"
            };
            assert!(
                metric(
                    &text,
                    &format!("kiln_energy_joules_total{{source=\"{source}\"}}")
                )
                .unwrap()
                    > 0.0
            );
            assert!(
                metric(&text, &format!("kiln_items_per_second_per_watt{labels}")).unwrap() > 0.0
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no efficiency figures in\n{text}"
        );
    }
    server.shutdown().await.unwrap();
}
