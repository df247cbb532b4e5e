//! Overload, deadlines, graceful shutdown, API keys and TLS, each through the real server.
//! Fault isolation, which needs a model that fails on purpose, is in `fault_isolation.rs`.

mod common;

use std::time::Duration;

use common::*;
use kiln_server::ServeSettings;
use serde_json::Value;

const LABELS: &str = "{backend=\"flex\",model=\"lenet-fashion\",version=\"1\"}";

/// A repository whose LeNet waits `delay_ms` to fill a batch, so requests stay queued.
fn slow_repository(delay_ms: i64) -> tempfile::TempDir {
    repository_with_lenet("lenet-fashion", |c| {
        set_batching(c, "max_queue_delay_us", delay_ms * 1000);
        no_preferred_sizes(c);
    })
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504_and_is_never_computed() {
    let repository = slow_repository(400);
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let data = test_set();

    let late = post_png(&client, &base, png(&data, 0))
        .header("kiln-timeout-ms", "50")
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 504);
    let body: Value = late.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("50 ms"), "{body}");

    // This one joins the queue behind the expired request; when the batch forms, the
    // expired request is dropped and only this one is computed.
    let on_time = post_png(&client, &base, png(&data, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(on_time.status(), 200);
    let text = metrics_text(&client, &base).await;
    assert_eq!(
        metric(&text, &format!("kiln_inference_count_total{LABELS}")),
        Some(1.0)
    );
    let timeout = "kiln_request_failure_total{backend=\"flex\",model=\"lenet-fashion\",reason=\"timeout\",version=\"1\"}";
    assert_eq!(metric(&text, timeout), Some(1.0));

    let bad = post_png(&client, &base, png(&data, 1))
        .header("kiln-timeout-ms", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_global_limit_answers_429_and_health_stays_responsive_under_a_flood() {
    let repository = slow_repository(20);
    let mut settings = ServeSettings::for_tests(repository.path());
    settings.max_concurrent_requests = 8;
    let (server, base) = start(settings).await;
    let client = reqwest::Client::new();
    let body = png(&test_set(), 0);

    // Far more concurrent requests than the server admits.
    let flood: Vec<_> = (0..120)
        .map(|_| {
            let request = post_png(&client, &base, body.clone());
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // Health and metrics answer while the flood is on.
    let ready = client
        .get(format!("{base}/v2/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(
        metrics_text(&client, &base)
            .await
            .contains("kiln_pending_requests")
    );

    let mut statuses = Vec::new();
    for request in flood {
        statuses.push(request.await.unwrap().unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "nothing was refused: {statuses:?}");
    assert!(statuses.contains(&200));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_latency_target_beyond_reach_sheds_with_retry_after_and_shows_its_choice() {
    // 10 µs: no batch computes within it, so the batcher runs batches of its largest size
    // (here 1) and refuses any request that would have to wait behind a full one.
    let repository = repository_with_lenet("lenet-fashion", |c| {
        no_preferred_sizes(c);
        set_batching(c, "max_batch_size", 1);
        set_in(c, "batching", "target_p99_ms", toml::Value::Float(0.01));
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let body = png(&test_set(), 0);
    // The first batch is measured; until then nothing is refused.
    let first = post_png(&client, &base, body.clone()).send().await.unwrap();
    assert_eq!(first.status(), 200);

    let flood: Vec<_> = (0..200)
        .map(|_| {
            let request = post_png(&client, &base, body.clone());
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let status = response.status().as_u16();
                (status, retry_after, response.text().await.unwrap())
            })
        })
        .collect();
    let mut refused = 0;
    let mut answered = 0;
    for request in flood {
        let (status, retry_after, body) = request.await.unwrap();
        match status {
            200 => answered += 1,
            429 => {
                refused += 1;
                let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
                assert!(seconds >= 1);
                assert!(body.contains("latency target"), "{body}");
            }
            other => panic!("status {other}: {body}"),
        }
    }
    assert!(
        refused > 0 && answered > 0,
        "{refused} refused, {answered} answered"
    );

    let config = get_json(&client, &format!("{base}/v2/models/lenet-fashion/config")).await;
    assert_eq!(config["latency_target"]["target_p99_ms"], 0.01, "{config}");
    assert_eq!(config["latency_target"]["objective"], "throughput");
    assert_eq!(config["latency_target"]["batch_size"], 1);
    assert_eq!(
        config["dynamic_batching"]["preferred_batch_size"],
        serde_json::json!([1])
    );
    let text = metrics_text(&client, &base).await;
    assert_eq!(
        metric(&text, &format!("kiln_batching_max_batch_size{LABELS}")),
        Some(1.0)
    );
    let share = metric(&text, &format!("kiln_batching_target_share{LABELS}"));
    assert!(share.is_some_and(|s| (0.2..=0.8).contains(&s)), "{share:?}");
    let rejected = "kiln_request_failure_total{backend=\"flex\",model=\"lenet-fashion\",reason=\"rejected\",version=\"1\"}";
    assert!(metric(&text, rejected).unwrap() >= refused as f64);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_target_the_configured_batching_is_what_the_config_and_gauges_show() {
    let repository = slow_repository(3);
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let config = get_json(&client, &format!("{base}/v2/models/lenet-fashion/config")).await;
    assert!(config.get("latency_target").is_none(), "{config}");
    assert_eq!(
        config["dynamic_batching"]["max_queue_delay_microseconds"],
        3_000
    );
    let text = metrics_text(&client, &base).await;
    assert_eq!(
        metric(&text, &format!("kiln_batching_queue_delay_seconds{LABELS}")),
        Some(0.003)
    );
    assert_eq!(
        metric(&text, &format!("kiln_batching_max_batch_size{LABELS}")),
        config["max_batch_size"].as_f64()
    );
    assert_eq!(
        metric(&text, &format!("kiln_batching_target_share{LABELS}")),
        None
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_every_accepted_request_and_refuses_new_ones() {
    let repository = slow_repository(400);
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let state = server.state().clone();
    let client = reqwest::Client::new();
    let data = test_set();

    let accepted: Vec<_> = (0..8)
        .map(|i| {
            let request = post_png(&client, &base, png(&data, i));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    while state.requests_in_flight() < 8 {
        tokio::task::yield_now().await;
    }
    let shutdown = tokio::spawn(server.shutdown());
    while !state.is_draining() {
        tokio::task::yield_now().await;
    }
    // While draining: not ready, and new work is refused with a clear 503.
    let ready = client
        .get(format!("{base}/v2/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let refused = post_png(&client, &base, png(&data, 9))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    // Answers while draining close their connection, so clients move on before the end.
    assert_eq!(refused.headers()["connection"], "close");
    let message: Value = refused.json().await.unwrap();
    assert!(message["error"].as_str().unwrap().contains("shutting down"));

    for request in accepted {
        assert_eq!(request.await.unwrap(), 200);
    }
    shutdown.await.unwrap().unwrap();
    assert!(
        client
            .get(format!("{base}/v2/health/live"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn api_keys_guard_inference_but_not_health_or_metrics() {
    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.api_keys = vec!["first-key".into(), "second-key".into()];
    let (server, base) = start(settings).await;
    let client = reqwest::Client::new();
    let body = png(&test_set(), 0);

    let missing = post_png(&client, &base, body.clone()).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = post_png(&client, &base, body.clone())
        .bearer_auth("first-ke")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = post_png(&client, &base, body.clone())
        .bearer_auth("second-key")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let metadata = client
        .get(format!("{base}/v2/models/lenet-fashion"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 401);

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
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await.unwrap();

    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.api_keys = vec!["k".into()];
    settings.auth_health = true;
    settings.auth_metrics = true;
    let (server, base) = start(settings).await;
    assert_eq!(
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(format!("{base}/v2/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let authorized = client
        .get(format!("{base}/metrics"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();

    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(key);
    let (server, _) = start(settings).await;
    let port = server.http_addr().port();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    assert_eq!(
        client
            .get(format!("{base}/v2/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let answer: Value = post_png(&client, &base, png(&test_set(), 0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["predictions"][0]["label"], "Ankle boot");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{port}/v2/health/live"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_disconnects_frees_its_place_at_once() {
    // One place in the queue, and a batch that waits 2 s to fill.
    let repository = repository_with_lenet("lenet-fashion", |c| {
        set_batching(c, "max_queue_size", 1);
        set_batching(c, "max_queue_delay_us", 2_000_000);
        no_preferred_sizes(c);
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let data = test_set();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(
        post_png(&impatient, &base, png(&data, 0))
            .send()
            .await
            .is_err()
    );

    // The server notices the closed connection and gives the place back.
    let client = reqwest::Client::new();
    let pending = format!("kiln_pending_requests{LABELS}");
    while metric(&metrics_text(&client, &base).await, &pending) != Some(0.0) {
        tokio::task::yield_now().await;
    }
    let text = metrics_text(&client, &base).await;
    let canceled = "kiln_request_failure_total{backend=\"flex\",model=\"lenet-fashion\",reason=\"canceled\",version=\"1\"}";
    assert_eq!(metric(&text, canceled), Some(1.0));
    // The next request is admitted, not refused; the abandoned one is never computed.
    let next = post_png(&client, &base, png(&data, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    let text = metrics_text(&client, &base).await;
    assert_eq!(
        metric(&text, &format!("kiln_inference_count_total{LABELS}")),
        Some(1.0)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn step_targets_bound_the_width_of_generation_and_caption_steps_and_show_it() {
    let repository = tempfile::tempdir().unwrap();
    // A target any step meets: the configured width, shown as the target's choice.
    add_model(repository.path(), "gru-web-en", "gru-web-en", |c| {
        set_in(c, "generation", "max_active_sequences", 7.into());
        set_in(c, "generation", "target_step_p99_ms", 3_600_000.0.into());
    });
    // A target no step meets: generations still all run, on the width the loop settles on.
    add_model(repository.path(), "gru-web-en", "gru-tight", |c| {
        set_in(c, "generation", "target_step_p99_ms", 0.001.into());
    });
    add_model(repository.path(), "gru-web-en", "gru-bad", |c| {
        set_in(c, "generation", "target_step_p99_ms", (-5.0).into());
    });
    add_model(repository.path(), "captioner-lstm", "captioner-lstm", |c| {
        set_in(c, "decoding", "max_active_hypotheses", 20.into());
        set_in(c, "decoding", "target_step_p99_ms", 3_600_000.0.into());
        set_in(c, "decoding", "min_encoder_batch_size", 4.into());
        set_in(c, "decoding", "max_encoder_wait_ms", 2.5.into());
    });
    add_model(repository.path(), "captioner-lstm", "captioner-bad", |c| {
        set_in(c, "decoding", "min_encoder_batch_size", 0.into());
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();

    for model in ["gru-web-en", "gru-tight"] {
        let generations: Vec<_> = (0..12)
            .map(|i| {
                let request = client
                    .post(format!("{base}/v1/models/{model}/generate"))
                    .json(&serde_json::json!({
                        "text": "and the king said", "max_tokens": 8 + i, "ignore_eos": true
                    }));
                tokio::spawn(async move {
                    let response = request.send().await.unwrap();
                    (
                        response.status().as_u16(),
                        response.json::<Value>().await.unwrap(),
                    )
                })
            })
            .collect();
        for (i, generation) in generations.into_iter().enumerate() {
            let (status, answer) = generation.await.unwrap();
            assert_eq!(status, 200, "{model}: {answer}");
            assert_eq!(answer["usage"]["completion_tokens"], 8 + i, "{answer}");
        }
    }
    let caption = client
        .post(format!("{base}/v1/models/captioner-lstm/caption"))
        .header("content-type", "image/png")
        .body(png(&test_set(), 0))
        .send()
        .await
        .unwrap();
    assert_eq!(caption.status(), 200);

    let config = |model: &'static str| {
        let client = client.clone();
        let url = format!("{base}/v2/models/{model}/config");
        async move { get_json(&client, &url).await }
    };
    let gauge = |text: &str, name: &str, model: &str| {
        metric(
            text,
            &format!("{name}{{backend=\"flex\",model=\"{model}\",version=\"1\"}}"),
        )
    };
    let bad = client
        .get(format!("{base}/v2/models/gru-bad/ready"))
        .send()
        .await
        .unwrap();
    // A target that is no number of milliseconds keeps the model from loading, as does
    // an encoder group of no images.
    assert_eq!(bad.status(), 503);
    let bad = client
        .get(format!("{base}/v2/models/captioner-bad/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 503);
    let generous = config("gru-web-en").await;
    assert_eq!(generous["step_target"]["target_step_p99_ms"], 3_600_000.0);
    assert_eq!(generous["step_target"]["max_step_width"], 7, "{generous}");
    let captioner = config("captioner-lstm").await;
    assert_eq!(
        captioner["step_target"]["max_step_width"], 20,
        "{captioner}"
    );
    // Images gather into encoder batches of 4 for at most 2.5 ms while captions decode.
    assert_eq!(
        captioner["dynamic_batching"]["preferred_batch_size"],
        serde_json::json!([4])
    );
    assert_eq!(
        captioner["dynamic_batching"]["max_queue_delay_microseconds"],
        2500
    );
    let text = metrics_text(&client, &base).await;
    assert_eq!(
        gauge(&text, "kiln_generation_max_active_sequences", "gru-web-en"),
        Some(7.0)
    );
    assert_eq!(
        gauge(
            &text,
            "kiln_caption_max_active_hypotheses",
            "captioner-lstm"
        ),
        Some(20.0)
    );
    // The loop updates its choice just after answering a round, so the last one may lag
    // the answers by a moment.
    let mut agreed = None;
    for _ in 0..100 {
        let tight = config("gru-tight").await["step_target"].clone();
        assert_eq!(tight["target_step_p99_ms"], 0.001);
        let width = tight["max_step_width"].as_u64().unwrap();
        let text = metrics_text(&client, &base).await;
        if gauge(&text, "kiln_generation_max_active_sequences", "gru-tight") == Some(width as f64) {
            agreed = Some(width);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let width = agreed.expect("the config and the gauge show the same width");
    assert!((1..=64).contains(&width), "{width}");
    server.shutdown().await.unwrap();
}
