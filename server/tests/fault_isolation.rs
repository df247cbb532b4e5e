//! Fault isolation through the real server: a model that panics or fails on purpose
//! (kiln-zoo's `fault-injection` feature) fails only its own batches, and its executor
//! reloads it after a panic.

mod common;

use common::*;
use kiln_server::ServeSettings;
use serde_json::{Value, json};

#[tokio::test]
async fn a_failing_model_fails_only_its_own_batches() {
    let repository = repository_with_lenet("lenet-fashion", |_| {});
    add_lenet(repository.path(), "faulty", |c| {
        c["architecture"]
            .as_table_mut()
            .unwrap()
            .insert("kind".into(), toml::Value::String("faulty-lenet5".into()));
        set_batching(c, "max_queue_delay_us", 0);
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let data = test_set();
    let with_first_pixel = |value: u8| {
        let mut rows = pixel_rows(&data, 0);
        rows[0][0] = value;
        json!({ "pixels": rows })
    };
    let faulty = format!("{base}/v1/models/faulty/classify");

    let panicked = client
        .post(&faulty)
        .json(&with_first_pixel(255))
        .send()
        .await
        .unwrap();
    assert_eq!(panicked.status(), 500);
    let body: Value = panicked.json().await.unwrap();
    assert_internal_detail_withheld(&body, "panicked");

    let failed = client
        .post(&faulty)
        .json(&with_first_pixel(140))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let body: Value = failed.json().await.unwrap();
    assert_internal_detail_withheld(&body, "grey first pixel");

    // The restarted executor and the other model keep working.
    let fine = client
        .post(&faulty)
        .json(&with_first_pixel(0))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
    let other = post_png(&client, &base, png(&data, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let text = metrics_text(&client, &base).await;
    let backend_failures = "kiln_request_failure_total{backend=\"flex\",model=\"faulty\",reason=\"backend\",version=\"1\"}";
    assert_eq!(metric(&text, backend_failures), Some(2.0));
    server.shutdown().await.unwrap();
}

/// A 500 names a request id to find in the log, and says nothing of the failure itself.
fn assert_internal_detail_withheld(body: &Value, detail: &str) {
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("request id"), "{body}");
    assert!(!message.contains(detail), "{body}");
}
