//! Classification through the real HTTP server with the committed LeNet weights.

mod common;

use base64::Engine;
use common::*;
use kiln_server::ServeSettings;
use kiln_zoo::data::fashion_mnist::CLASS_NAMES;
use serde_json::{Value, json};

async fn classify_png(client: &reqwest::Client, base: &str, png: Vec<u8>) -> Value {
    let response = post_png(client, base, png).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn top_label(answer: &Value) -> &str {
    answer["predictions"][0]["label"].as_str().unwrap()
}

#[tokio::test]
async fn classifies_real_fashion_mnist_test_images() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let data = test_set();
    let mut correct = 0;
    for index in 0..50 {
        let answer = classify_png(&client, &base, png(&data, index)).await;
        assert_eq!(answer["model"], "lenet-fashion");
        ranked_probabilities(&answer, 5);
        let predictions = answer["predictions"].as_array().unwrap();
        let index_of_top = predictions[0]["index"].as_u64().unwrap() as usize;
        assert_eq!(CLASS_NAMES[index_of_top], top_label(&answer));
        correct += usize::from(top_label(&answer) == CLASS_NAMES[data.label(index)]);
    }
    // The model scores about 90 % on the whole test set.
    assert!(correct >= 40, "only {correct}/50 correct");
    // The first test image is an ankle boot, which the model gets right.
    assert_eq!(
        top_label(&classify_png(&client, &base, png(&data, 0)).await),
        "Ankle boot"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_input_form_gives_the_same_answer() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let data = test_set();
    let url = format!("{base}/v1/models/lenet-fashion/classify?top_k=3");
    let bytes = png(&data, 1);

    let raw: Value = client
        .post(&url)
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(bytes.clone())
            .file_name("x.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let multipart: Value = client
        .post(&url)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let json_image: Value = client
        .post(&url)
        .json(&json!({ "image": b64 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let json_pixels: Value = client
        .post(format!("{base}/v1/models/lenet-fashion/classify"))
        .json(&json!({ "pixels": pixel_rows(&data, 1), "top_k": 3 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(raw["predictions"].as_array().unwrap().len(), 3);
    for other in [&multipart, &json_image, &json_pixels] {
        assert_eq!(other["predictions"], raw["predictions"], "{other}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_match_unbatched_results() {
    // A long delay makes the batching deterministic: all requests arrive within it.
    let repository = repository_with_lenet("lenet-fashion", |c| {
        set_batching(c, "max_queue_delay_us", 300_000);
        set_batching(c, "max_batch_size", 64);
        no_preferred_sizes(c);
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let data = test_set();
    let url = format!("{base}/v1/models/lenet-fashion/classify?top_k=10");

    // Unbatched reference: one request at a time, to a server with the bundled settings.
    let (reference_server, reference_base) = start_bundled().await;
    let reference_url = format!("{reference_base}/v1/models/lenet-fashion/classify?top_k=10");
    let mut reference = Vec::new();
    for index in 0..32 {
        let answer: Value = client
            .post(&reference_url)
            .header("content-type", "image/png")
            .body(png(&data, index))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reference.push(answer);
    }
    let tasks: Vec<_> = (0..32)
        .map(|index| {
            let client = client.clone();
            let url = url.clone();
            let body = png(&data, index);
            tokio::spawn(async move {
                let r = client
                    .post(&url)
                    .header("content-type", "image/png")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            })
        })
        .collect();
    for (index, task) in tasks.into_iter().enumerate() {
        let batched = task.await.unwrap();
        let (b, r) = (
            batched["predictions"].as_array().unwrap(),
            reference[index]["predictions"].as_array().unwrap(),
        );
        for (pb, pr) in b.iter().zip(r) {
            let diff =
                (pb["probability"].as_f64().unwrap() - pr["probability"].as_f64().unwrap()).abs();
            assert!(diff < 1e-5, "image {index}: {pb} vs {pr}");
        }
        assert_eq!(b[0]["index"], r[0]["index"]);
    }

    let metrics_after = metrics_text(&client, &base).await;
    let delta = |name: &str| {
        let prefix = format!("{name}{{backend=\"flex\",model=\"lenet-fashion\",version=\"1\"}}");
        metric(&metrics_after, &prefix).unwrap()
    };
    let inferences = delta("kiln_inference_count_total");
    let executions = delta("kiln_inference_exec_count_total");
    assert_eq!(inferences, 32.0);
    reference_server.shutdown().await.unwrap();
    assert!(
        executions < inferences,
        "{executions} batches for {inferences} inferences"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_answers_429_at_once() {
    // One place in the queue and a long batching delay: of two concurrent requests, one
    // waits in the queue and the other is refused.
    let repository = repository_with_lenet("lenet-fashion", |c| {
        set_batching(c, "max_queue_size", 1);
        set_batching(c, "max_queue_delay_us", 500_000);
        no_preferred_sizes(c);
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let data = test_set();
    let url = format!("{base}/v1/models/lenet-fashion/classify");
    let send = |body: Vec<u8>| {
        client
            .post(&url)
            .header("content-type", "image/png")
            .body(body)
            .send()
    };
    let (a, b) = tokio::join!(send(png(&data, 0)), send(png(&data, 1)));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 429]);
    let refused = if a.status() == 429 { a } else { b };
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("queue is full"),
        "{body}"
    );

    let metrics = metrics_text(&client, &base).await;
    assert!(metrics.contains("kiln_request_failure_total{backend=\"flex\",model=\"lenet-fashion\",reason=\"rejected\",version=\"1\"} 1"), "{metrics}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_playground_page_and_its_stats_feed() {
    let repository = repository_with_lenet("lenet", |_| {});
    let mut settings = ServeSettings::for_tests(repository.path().to_path_buf());
    settings.api_keys = vec!["sk-play".into()];
    let (server, base) = start(settings).await;
    let client = reqwest::Client::new();
    // The page and its assets are public and come from the binary.
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("/playground/app.js"));
    for (asset, kind) in [("app.js", "text/javascript"), ("style.css", "text/css")] {
        let response = client
            .get(format!("{base}/playground/{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    // The feed needs the key, as every route the page calls.
    let feed = client
        .get(format!("{base}/v1/playground/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 401);
    let feed = |client: reqwest::Client, base: String| async move {
        let response = client
            .get(format!("{base}/v1/playground/stats"))
            .bearer_auth("sk-play")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    let before = feed(client.clone(), base.clone()).await;
    assert_eq!(before["models"][0]["model"], "lenet");
    assert_eq!(before["models"][0]["task"], "classify");
    assert_eq!(before["models"][0]["requests"], 0);
    assert!(before["models"][0]["latency_p99_ms"].is_null());
    let data = test_set();
    for index in 0..3 {
        let response = client
            .post(format!("{base}/v1/models/lenet/classify"))
            .bearer_auth("sk-play")
            .header("content-type", "image/png")
            .body(png(&data, index))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let after = feed(client.clone(), base.clone()).await;
    let model = &after["models"][0];
    assert_eq!(model["requests"], 3);
    assert_eq!(model["inferences"], 3);
    let (p50, p99) = (
        model["latency_p50_ms"].as_f64().unwrap(),
        model["latency_p99_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{model}");
    assert!(model["items_per_second"].as_f64().unwrap() > 0.0);
    assert!(["measured", "estimated", "none"].contains(&after["energy"].as_str().unwrap()));
    server.shutdown().await.unwrap();

    // Turned off, there is no page and no feed.
    let mut settings = ServeSettings::for_tests(repository.path().to_path_buf());
    settings.no_playground = true;
    let (server, base) = start(settings).await;
    for path in ["/", "/playground/app.js", "/v1/playground/stats"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    server.shutdown().await.unwrap();
}
