//! The load generator against a real Kiln: its counts must match the server's own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_loadtest::inputs::{load_images, load_prompts};
use kiln_loadtest::payloads::V2Target;
use kiln_loadtest::plan::{Arrivals, Level, LoadPlan, RequestForm};
use kiln_loadtest::plot::Run;
use kiln_loadtest::report;
use kiln_loadtest::runner::{Payloads, run_level};
use kiln_loadtest::server_metrics::Scrape;
use kiln_server::{RunningServer, ServeSettings};

/// A Kiln serving the bundled models, ready, and the repository's root.
async fn ready_kiln() -> (RunningServer, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut server = RunningServer::start(ServeSettings::for_tests(root.join("models")))
        .await
        .unwrap();
    server.wait_ready().await;
    (server, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_the_server_and_reports_are_written() {
    let (server, root) = ready_kiln().await;
    let base = format!("http://{}", server.http_addr());
    let plan = LoadPlan {
        url: base.clone(),
        model: "lenet-fashion".into(),
        form: RequestForm::HttpBinary,
        path: None,
        levels: vec![
            Level::Concurrency(1),
            Level::Concurrency(8),
            Level::RequestRate(300.0),
        ],
        warmup: Duration::from_millis(200),
        window: Duration::from_millis(300),
        max_windows: 4,
        stability: 0.5,
        max_requests: 2_000,
        api_key: None,
        arrivals: Arrivals::Constant,
    };
    let images = load_images(&root.join("examples/images")).unwrap();
    assert_eq!(images.len(), 5);
    let client = reqwest::Client::new();
    let metrics = || async { Scrape::parse(&metrics_text(&client, &base).await) };
    let before = metrics().await;
    let mut results = Vec::new();
    for (i, &level) in plan.levels.iter().enumerate() {
        let form = if i == 1 {
            RequestForm::HttpJson
        } else {
            RequestForm::HttpBinary
        };
        results.push(
            run_level(
                &plan,
                &client,
                None,
                Payloads::new(&images, form),
                level,
                &|_| {},
            )
            .await,
        );
    }
    let after = metrics().await;

    let client_ok: usize = results.iter().map(|r| r.ok).sum();
    let server_ok = after.model_total("kiln_request_success_total", "lenet-fashion")
        - before.model_total("kiln_request_success_total", "lenet-fashion");
    assert_eq!(
        client_ok as f64, server_ok,
        "client and server disagree: {results:#?}"
    );
    for r in &results {
        assert_eq!(r.errors, 0, "{r:#?}");
        assert!(r.sent <= plan.max_requests);
        assert!(
            r.throughput > 0.0 && r.latency.p99_ms >= r.latency.p50_ms,
            "{r:#?}"
        );
        let split = r.server.expect("the server's metrics were read");
        assert!(
            split.avg_batch >= 1.0 && split.inferences > 0.0,
            "{split:?}"
        );
        // The bundled LeNet's fixed `max_batch_size = 64`, and no latency target.
        assert_eq!(split.batch_size_at_end, Some(64.0), "{split:?}");
        assert_eq!(split.target_share_at_end, None, "{split:?}");
    }

    let table = report::table(&results);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("c=") || l.starts_with("rate="))
            .count(),
        3,
        "{table}"
    );
    let csv = report::csv(&results);
    assert_eq!(csv.lines().count(), 4);
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(header.len(), row.len(), "{csv}");
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        (column("batch_size_at_end"), column("target_share_at_end")),
        ("64", "")
    );
    assert!(
        column("send_lag_p99_ms").parse::<f64>().unwrap() >= 0.0,
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&report::json(&results)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    let svg = report::svg(&results, "test");
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("polyline")
    );
    for r in &results {
        // The histogram holds every measured success; its text form counts them all.
        assert_eq!(r.histogram.len() as usize, r.measured_ok);
        let distribution = r.histogram.percentile_distribution();
        assert!(
            distribution.contains(&format!("Total count    = {:>12}", r.measured_ok)),
            "{distribution}"
        );
    }
    server.shutdown().await.unwrap();

    // Two runs' results.json drawn against each other by the binary's `plot` command.
    let dir = tempfile::tempdir().unwrap();
    for run in ["fixed", "adaptive"] {
        std::fs::create_dir_all(dir.path().join(run)).unwrap();
        std::fs::write(
            dir.path().join(run).join("results.json"),
            report::json(&results),
        )
        .unwrap();
    }
    let out = dir.path().join("compared.svg");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-loadtest"))
        .arg("plot")
        .arg(format!("fixed={}", dir.path().join("fixed").display()))
        .arg(format!(
            "adaptive={}",
            dir.path().join("adaptive/results.json").display()
        ))
        .args(["--target-ms", "25", "--title", "LeNet", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let svg = std::fs::read_to_string(&out).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
    assert!(svg.contains("adaptive p50") && svg.contains("target 25 ms"));
    let run = Run::from_results_json("fixed", &report::json(&results)).unwrap();
    assert_eq!(run.points.len(), results.len());
    assert_eq!(run.points[2].offered, 300.0);
    assert_eq!(run.points[0].p99_ms, results[0].latency.p99_ms);
    // A missing run is an error, not an empty plot.
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-loadtest"))
        .args(["plot", "x=/nonexistent/results.json", "--out"])
        .arg(dir.path().join("none.svg"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

/// A load generator that cannot keep its schedule says so, rather than passing its own
/// lateness off as the server's latency: its runtime here is stalled 150 ms in every 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_behind_its_schedule_says_so() {
    let (server, root) = ready_kiln().await;
    let plan = LoadPlan {
        url: format!("http://{}", server.http_addr()),
        model: "lenet-fashion".into(),
        form: RequestForm::HttpBinary,
        path: None,
        levels: vec![Level::RequestRate(200.0)],
        warmup: Duration::from_millis(200),
        window: Duration::from_millis(400),
        max_windows: 3,
        stability: 0.5,
        max_requests: 2_000,
        api_key: None,
        arrivals: Arrivals::Constant,
    };
    let images = load_images(&root.join("examples/images")).unwrap();
    let stalled = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::spawn(async {
                loop {
                    std::thread::sleep(Duration::from_millis(150));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let client = reqwest::Client::new();
            let payloads = Payloads::new(&images, RequestForm::HttpBinary);
            run_level(&plan, &client, None, payloads, plan.levels[0], &|_| {}).await
        })
    })
    .await
    .unwrap();
    // A request due as a stall begins leaves 150 ms late; a quarter of them are due in
    // a stall's first 50 ms.
    assert!(stalled.send_lag_p99_ms >= 100.0, "{stalled:#?}");
    assert!(stalled.generator_fell_behind, "{stalled:#?}");
    let warnings = report::warnings(std::slice::from_ref(&stalled));
    assert!(
        warnings.starts_with("warning: at rate=200 ") && warnings.contains("fell behind"),
        "{warnings}"
    );
    assert!(report::table(&[stalled]).contains("late ms"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_inference_protocol_forms_are_answered_and_counted() {
    let (server, root) = ready_kiln().await;
    let base = format!("http://{}", server.http_addr());
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let images = load_images(&root.join("examples/images")).unwrap();
    let prompts = load_prompts(&root.join("examples/prompts-en.txt")).unwrap();
    for model in ["lenet-fashion", "lstm-web-en"] {
        let metadata: serde_json::Value = client
            .get(format!("{base}/v2/models/{model}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let target = V2Target::from_metadata(model, &metadata).unwrap();
        assert_eq!(target.text, model == "lstm-web-en");
        for form in [
            RequestForm::V2Json,
            RequestForm::V2Binary,
            RequestForm::Grpc,
        ] {
            let plan = LoadPlan {
                url: base.clone(),
                model: model.into(),
                form,
                path: None,
                levels: vec![Level::Concurrency(4)],
                warmup: Duration::from_millis(100),
                window: Duration::from_millis(200),
                max_windows: 2,
                stability: 0.5,
                max_requests: 300,
                api_key: None,
                arrivals: Arrivals::Poisson,
            };
            let payloads = Payloads::v2(&target, form, &images, &prompts).unwrap();
            let before = Scrape::parse(&metrics_text(&client, &base).await);
            let result = run_level(
                &plan,
                &client,
                Some(&channel),
                payloads,
                Level::Concurrency(4),
                &|_| {},
            )
            .await;
            let after = Scrape::parse(&metrics_text(&client, &base).await);
            let served = after.model_total("kiln_request_success_total", model)
                - before.model_total("kiln_request_success_total", model);
            assert_eq!(result.errors, 0, "{model} {form:?}: {result:#?}");
            assert!(result.ok > 0, "{model} {form:?}");
            assert_eq!(result.ok as f64, served, "{model} {form:?}");
        }
    }
    server.shutdown().await.unwrap();
}

async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
