//! Health, readiness, metadata and metrics routes, and a repository with a broken model.

mod common;

use common::*;
use kiln_server::{RunningServer, ServeSettings};
use serde_json::Value;

#[tokio::test]
async fn health_and_metadata_describe_the_bundled_model() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    assert_eq!(get("/v2/health/live").await.unwrap().status(), 200);
    assert_eq!(get("/v2/health/ready").await.unwrap().status(), 200);
    assert_eq!(
        get("/v2/models/lenet-fashion/ready")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(get("/v2/models/missing/ready").await.unwrap().status(), 404);

    let server_meta: Value = get("/v2").await.unwrap().json().await.unwrap();
    assert_eq!(server_meta["name"], "kiln");

    let meta: Value = get("/v2/models/lenet-fashion")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["name"], "lenet-fashion");
    assert_eq!(meta["versions"][0], "1");
    assert_eq!(
        meta["inputs"][0]["shape"],
        serde_json::json!([-1, 1, 28, 28])
    );
    assert_eq!(meta["outputs"][0]["shape"], serde_json::json!([-1, 10]));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_expose_every_kiln_series() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let data = test_set();
    let ok = post_png(&client, &base, png(&data, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for name in [
        "kiln_request_success_total",
        "kiln_inference_count_total",
        "kiln_inference_exec_count_total",
        "kiln_pending_requests",
        "kiln_request_duration_seconds_bucket",
        "kiln_queue_duration_seconds_bucket",
        "kiln_compute_duration_seconds_bucket",
        "kiln_batch_size_bucket",
        "kiln_items_per_second",
    ] {
        assert!(
            text.contains(&format!("{name}{{")),
            "missing {name} in\n{text}"
        );
    }
    let labels = "{backend=\"flex\",model=\"lenet-fashion\",version=\"1\"}";
    assert_eq!(
        metric(&text, &format!("kiln_request_success_total{labels}")),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, &format!("kiln_pending_requests{labels}")),
        Some(0.0)
    );
    assert!(metric(&text, &format!("kiln_items_per_second{labels}")).unwrap() > 0.0);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broken_model_folder_leaves_the_others_serving() {
    let repository = repository_with_lenet("lenet-fashion", |_| {});
    // Broken in three ways: unparsable config, missing weights, wrong label count.
    let broken = repository.path().join("garbled");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("model.toml"), "task = [unclosed").unwrap();
    add_lenet(repository.path(), "no-weights", |c| {
        c.insert("weights".into(), toml::Value::String("absent.bpk".into()));
    });
    add_lenet(repository.path(), "few-labels", |_| {});
    std::fs::write(
        repository.path().join("few-labels/labels.txt"),
        "one\ntwo\n",
    )
    .unwrap();

    let mut server = RunningServer::start(ServeSettings::for_tests(repository.path()))
        .await
        .unwrap();
    let base = format!("http://{}", server.http_addr());
    let client = reqwest::Client::new();
    // Liveness answers while the repository loads.
    assert_eq!(
        client
            .get(format!("{base}/v2/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.wait_ready().await;

    assert_eq!(
        client
            .get(format!("{base}/v2/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/v2/models/lenet-fashion/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for name in ["garbled", "no-weights", "few-labels"] {
        let r = client
            .get(format!("{base}/v2/models/{name}/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("failed to load"),
            "{body}"
        );
    }
    let data = test_set();
    let ok = post_png(&client, &base, png(&data, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.shutdown().await.unwrap();
}
