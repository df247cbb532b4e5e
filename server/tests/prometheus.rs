//! A real Prometheus server (Debian's `prometheus` package) scrapes Kiln, and PromQL over
//! its HTTP API returns the served images/s and images/s/W.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use kiln_server::ServeSettings;
use serde_json::Value;

/// The value of a one-series PromQL query, if Prometheus has it yet.
async fn query(client: &reqwest::Client, prometheus: &str, promql: &str) -> Option<f64> {
    let response: Value = client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    response["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[tokio::test]
async fn prometheus_scrapes_images_per_second_and_per_watt() {
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("install Debian's prometheus package (scripts/test.sh does)");
    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.power_sample_ms = 100;
    let (server, base) = start(settings).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kiln\n    static_configs:\n      - targets: ['{}']\n",
            server.http_addr()
        ),
    )
    .unwrap();
    // Prometheus cannot report a port it picked, so take a free one first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _prometheus = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let prometheus = format!("http://127.0.0.1:{port}");

    let client = reqwest::Client::new();
    let data = test_set();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let (mut per_second, mut per_watt) = (None, None);
    while per_second.is_none() || per_watt.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never saw Kiln's figures"
        );
        for i in 0..32 {
            let r = post_png(&client, &base, png(&data, i))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        per_second = query(
            &client,
            &prometheus,
            "kiln_items_per_second{model=\"lenet-fashion\"}",
        )
        .await
        .filter(|v| *v > 0.0);
        per_watt = query(
            &client,
            &prometheus,
            "kiln_items_per_second_per_watt{model=\"lenet-fashion\"}",
        )
        .await
        .filter(|v| *v > 0.0);
        // Prometheus scrapes once a second; give it the time to.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every query of the Grafana dashboard parses and returns data from this Prometheus.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/kiln-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().replace("$model", ".*"))
        .collect();
    for expr in &exprs {
        loop {
            let response: Value = client
                .get(format!("{prometheus}/api/v1/query"))
                .query(&[("query", expr.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(response["status"], "success", "{expr}: {response}");
            // Failure series exist only once something has failed.
            let has_data = !response["data"]["result"].as_array().unwrap().is_empty();
            if has_data || expr.contains("failure") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no data for {expr}");
            let r = post_png(&client, &base, png(&data, 0))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            // Rates need two scrapes, one second apart.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    if !std::path::Path::new("/sys/class/powercap").exists() {
        let source = query(
            &client,
            &prometheus,
            "count(kiln_power_watts{source=\"estimate\"})",
        )
        .await;
        assert_eq!(
            source,
            Some(1.0),
            "without a power meter the source must read estimate"
        );
    }
    server.shutdown().await.unwrap();
}
