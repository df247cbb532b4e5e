//! The language-model routes through real HTTP with the shipped weights: next-word,
//! generation as JSON and as a Server-Sent Events stream, batching that never changes an
//! answer, disconnects that stop generation, and limits that answer 4xx.

mod common;

use std::time::Duration;

use common::{
    add_model, bundled_repository, metric, metrics_text, ranked_probabilities, set_batching,
    set_in, start,
};
use kiln_server::ServeSettings;
use serde_json::{Value, json};

const LANGUAGE_MODELS: [&str; 5] = [
    "lstm-web-en",
    "gru-web-en",
    "rnn-web-en",
    "transformer-web-en",
    "lstm-rv-es",
];

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn words(answer: &Value) -> Vec<String> {
    answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["word"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_shipped_language_model_predicts_plausible_next_words() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    for model in LANGUAGE_MODELS {
        // The phrase recurs hundreds of times in both Bibles: every model must know it.
        let text = if model.ends_with("-es") {
            "y los hijos de"
        } else {
            "and the children of"
        };
        let (status, answer) = post(
            &client,
            format!("{base}/v1/models/{model}/next-word"),
            json!({ "text": text, "top_k": 5 }),
        )
        .await;
        assert_eq!(status, 200, "{model}: {answer}");
        let probabilities = ranked_probabilities(&answer, 5);
        assert!(probabilities.iter().sum::<f64>() <= 1.0 + 1e-4);
        let expected = "israel";
        assert!(
            words(&answer).contains(&expected.to_string()),
            "{model}: {:?}",
            words(&answer)
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn batched_next_words_equal_unbatched() {
    let repository = tempfile::tempdir().unwrap();
    for model in ["lstm-web-en", "transformer-web-en"] {
        add_model(repository.path(), model, model, |config| {
            // A long window gathers the concurrent requests into shared batches.
            set_batching(config, "max_queue_delay_us", 50_000);
            set_batching(config, "max_batch_size", 16);
        });
    }
    let (server, base) = start(ServeSettings::for_tests(repository.path().to_path_buf())).await;
    let client = reqwest::Client::new();
    let prompts = [
        "In the beginning",
        "The Lord is my shepherd",
        "Jesus",
        "And it came to pass, when the king of Israel heard these words, that he",
        "Blessed are the",
        "",
        "For God so loved the world",
        "He said to them,",
    ];
    for model in ["lstm-web-en", "transformer-web-en"] {
        let url = format!("{base}/v1/models/{model}/next-word");
        let mut alone = Vec::new();
        for text in prompts {
            alone.push(
                post(&client, url.clone(), json!({ "text": text, "top_k": 10 }))
                    .await
                    .1,
            );
        }
        let together = futures_util::future::join_all(
            prompts
                .iter()
                .map(|text| post(&client, url.clone(), json!({ "text": text, "top_k": 10 }))),
        )
        .await;
        for ((a, (status, t)), text) in alone.iter().zip(&together).zip(prompts) {
            assert_eq!(*status, 200);
            assert_eq!(words(a), words(t), "{model} '{text}'");
            for (pa, pt) in a["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .zip(t["predictions"].as_array().unwrap())
            {
                let (x, y) = (
                    pa["probability"].as_f64().unwrap(),
                    pt["probability"].as_f64().unwrap(),
                );
                assert!((x - y).abs() < 1e-5, "{model} '{text}': {x} vs {y}");
            }
        }
    }
    let text = metrics_text(&client, &base).await;
    let batches = metric(
        &text,
        "kiln_inference_exec_count_total{backend=\"flex\",model=\"lstm-web-en\"",
    )
    .unwrap();
    let items = metric(
        &text,
        "kiln_inference_count_total{backend=\"flex\",model=\"lstm-web-en\"",
    )
    .unwrap();
    assert!(
        items > batches,
        "requests were never batched: {items} items in {batches} batches"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn greedy_generation_is_deterministic_and_independent_of_batch_mates() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    for model in ["lstm-web-en", "transformer-web-en"] {
        let url = format!("{base}/v1/models/{model}/generate");
        let prompts = [
            "In the beginning",
            "The Lord said to Moses,",
            "Jesus answered",
            "Blessed",
        ];
        let body = |text: &str| json!({ "text": text, "max_tokens": 12, "temperature": 0 });
        let mut alone = Vec::new();
        for text in prompts {
            let (status, answer) = post(&client, url.clone(), body(text)).await;
            assert_eq!(status, 200, "{answer}");
            let tokens = answer["tokens"].as_array().unwrap();
            let joined: String = tokens.iter().map(|t| t["text"].as_str().unwrap()).collect();
            assert_eq!(joined, answer["text"].as_str().unwrap());
            assert_eq!(
                answer["usage"]["completion_tokens"].as_u64().unwrap() as usize,
                tokens.len()
            );
            assert!(["length", "stop"].contains(&answer["finish_reason"].as_str().unwrap()));
            alone.push(answer["text"].clone());
        }
        let together = futures_util::future::join_all(
            prompts.iter().map(|t| post(&client, url.clone(), body(t))),
        )
        .await;
        for (a, (_, t)) in alone.iter().zip(&together) {
            assert_eq!(a, &t["text"], "{model}");
        }
        // Sampling with a seed repeats; different seeds explore.
        let seeded = |seed: u64| json!({ "text": "And", "max_tokens": 20, "temperature": 1.0, "seed": seed, "ignore_eos": true });
        let first = post(&client, url.clone(), seeded(7)).await.1;
        let again = post(&client, url.clone(), seeded(7)).await.1;
        assert_eq!(first["text"], again["text"]);
        assert_eq!(first["usage"]["completion_tokens"], 20);
    }
    server.shutdown().await.unwrap();
}

/// Reads SSE `data:` payloads from a streaming response until `[DONE]` or `limit` events.
async fn read_events(response: &mut reqwest::Response, limit: usize) -> Vec<String> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    while events.len() < limit {
        let Some(chunk) = response.chunk().await.unwrap() else {
            break;
        };
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    events.push(data.to_string());
                }
            }
        }
        if events.last().is_some_and(|e| e == "[DONE]") {
            break;
        }
    }
    events
}

#[tokio::test]
async fn streamed_generation_sends_each_token_then_the_summary() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    let mut response = client
        .post(format!("{base}/v1/models/gru-web-en/generate"))
        .header("accept", "text/event-stream")
        .json(&json!({ "text": "The Lord is my shepherd", "max_tokens": 15, "seed": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_events(&mut response, 100).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let summary: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    let tokens: Vec<Value> = events[..events.len() - 2]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let joined: String = tokens
        .iter()
        .map(|t| t["token"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, summary["text"].as_str().unwrap());
    assert_eq!(
        summary["usage"]["completion_tokens"].as_u64().unwrap() as usize,
        tokens.len()
    );
    assert!(!tokens.is_empty() && tokens.len() <= 15);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_disconnects_stops_its_generation() {
    let repository = tempfile::tempdir().unwrap();
    add_model(repository.path(), "rnn-web-en", "rnn-web-en", |config| {
        set_in(
            config,
            "generation",
            "max_new_tokens",
            toml::Value::Integer(1_000_000),
        );
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path().to_path_buf())).await;
    let client = reqwest::Client::new();
    let mut response = client
        .post(format!("{base}/v1/models/rnn-web-en/generate"))
        .json(
            &json!({ "text": "And", "max_tokens": 1_000_000, "stream": true, "ignore_eos": true }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(read_events(&mut response, 3).await.len(), 3);
    drop(response);
    let series = "{backend=\"flex\",model=\"rnn-web-en\",version=\"1\"}";
    let mut stopped = false;
    for _ in 0..200 {
        let text = metrics_text(&client, &base).await;
        let canceled =
            metric(&text, &format!("kiln_generation_canceled_total{series}")).unwrap_or(0.0);
        let active =
            metric(&text, &format!("kiln_generation_active_sequences{series}")).unwrap_or(1.0);
        if canceled == 1.0 && active == 0.0 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(stopped, "the generation kept running after its client left");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn limits_and_wrong_tasks_are_client_errors() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    let long_prompt = "word ".repeat(400);
    let cases = [
        (
            "lstm-web-en/generate",
            json!({ "text": "a", "max_tokens": 100_000 }),
            422,
        ),
        ("lstm-web-en/generate", json!({ "text": long_prompt }), 422),
        (
            "transformer-web-en/next-word",
            json!({ "text": "word ".repeat(130) }),
            422,
        ),
        (
            "lstm-web-en/generate",
            json!({ "text": "a", "top_p": 1.5 }),
            422,
        ),
        (
            "lstm-web-en/next-word",
            json!({ "text": "a", "top_k": 0 }),
            422,
        ),
        ("lstm-web-en/next-word", json!({ "prompt": "a" }), 400),
        ("lstm-web-en/generate", json!("just a string"), 400),
        ("lenet-fashion/next-word", json!({ "text": "a" }), 400),
        ("missing-model/generate", json!({ "text": "a" }), 404),
    ];
    for (route, body, expected) in cases {
        let (status, answer) = post(&client, format!("{base}/v1/models/{route}"), body).await;
        assert_eq!(status, expected, "{route}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{route}: {answer}"
        );
    }
    let response = client
        .post(format!("{base}/v1/models/lstm-web-en/classify"))
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // The transformer stops at the end of its context rather than failing.
    let (status, answer) = post(
        &client,
        format!("{base}/v1/models/transformer-web-en/generate"),
        json!({ "text": "word ".repeat(60), "max_tokens": 64, "ignore_eos": true }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["finish_reason"], "length");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn generation_metrics_are_exported() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        format!("{base}/v1/models/lstm-web-en/generate"),
        json!({ "text": "In the beginning", "max_tokens": 8, "ignore_eos": true }),
    )
    .await;
    assert_eq!(status, 200);
    let text = metrics_text(&client, &base).await;
    let series = "{backend=\"flex\",model=\"lstm-web-en\",version=\"1\"}";
    assert_eq!(
        metric(&text, &format!("kiln_generated_tokens_total{series}")),
        Some(8.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("kiln_time_to_first_token_seconds_count{series}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("kiln_inter_token_latency_seconds_count{series}")
        ),
        Some(7.0)
    );
    assert!(metric(&text, &format!("kiln_generated_tokens_per_second{series}")).unwrap() > 0.0);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_streamed_generation_counts_as_in_flight_until_it_ends() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    let mut response = client
        .post(format!("{base}/v1/models/gru-web-en/generate"))
        .json(&json!({ "text": "in the beginning", "max_tokens": 256, "ignore_eos": true, "stream": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(read_events(&mut response, 1).await.len(), 1);
    assert_eq!(server.state().requests_in_flight(), 1);
    drop(response);
    // The server sees the disconnect at its next write; then the permit is back.
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        while server.state().requests_in_flight() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(released.is_ok(), "the stream's permit was never released");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_running_generation_counts_in_the_pending_requests() {
    // A generation that would run for minutes, so it is surely running while looked at.
    let repository = tempfile::tempdir().unwrap();
    add_model(repository.path(), "gru-web-en", "gru-web-en", |c| {
        set_in(
            c,
            "generation",
            "max_new_tokens",
            toml::Value::Integer(1_000_000),
        );
    });
    let (server, base) = start(ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let mut response = client
        .post(format!("{base}/v1/models/gru-web-en/generate"))
        .json(&json!({ "text": "in the beginning", "max_tokens": 1_000_000, "ignore_eos": true, "stream": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(read_events(&mut response, 1).await.len(), 1);
    let pending = "kiln_pending_requests{backend=\"flex\",model=\"gru-web-en\",version=\"1\"}";
    assert_eq!(
        metric(&metrics_text(&client, &base).await, pending),
        Some(1.0)
    );
    drop(response);
    // The loop drops the generation at its next step once the server sees the disconnect.
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        while metric(&metrics_text(&client, &base).await, pending) != Some(0.0) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "the generation's place was never given back"
    );
    server.shutdown().await.unwrap();
}
