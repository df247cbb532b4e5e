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

// The OpenAI-compatible API (its Python client is driven in tests/interop).

async fn send(
    client: &reqwest::Client,
    url: String,
    body: Value,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn openai_completions_are_the_native_generations() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    let native = |seed: u64| {
        post(
            &client,
            format!("{base}/v1/models/gru-web-en/generate"),
            json!({ "text": "In the beginning", "max_tokens": 10, "temperature": 1.0, "seed": seed }),
        )
    };
    let (_, five) = native(5).await;
    let (_, six) = native(6).await;
    let (status, answer) = post(
        &client,
        format!("{base}/v1/completions"),
        json!({ "model": "gru-web-en", "prompt": "In the beginning", "max_tokens": 10,
                "temperature": 1.0, "seed": 5, "n": 2, "logprobs": 2 }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["model"], "gru-web-en");
    // Choice j of a seeded request is the native generation with seed + j.
    assert_eq!(answer["choices"][0]["text"], five["text"]);
    assert_eq!(answer["choices"][1]["text"], six["text"]);
    assert_eq!(answer["choices"][1]["index"], 1);
    assert_eq!(answer["choices"][0]["finish_reason"], five["finish_reason"]);
    let logprobs = &answer["choices"][0]["logprobs"];
    let tokens: Vec<&str> = logprobs["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), five["text"].as_str().unwrap());
    for (i, top) in logprobs["top_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let top = top.as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 2, "{top:?}");
        // The alternatives are the step's likeliest tokens: none less likely than the pick.
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(best >= logprobs["token_logprobs"][i].as_f64().unwrap() - 1e-6);
    }
    let completion_tokens = five["usage"]["completion_tokens"].as_u64().unwrap()
        + six["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], completion_tokens);
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        five["usage"]["prompt_tokens"]
    );
    // Counted like every other request: two natives, then two choices.
    let text = metrics_text(&client, &base).await;
    let series = "{backend=\"flex\",model=\"gru-web-en\",version=\"1\"}";
    assert_eq!(
        metric(&text, &format!("kiln_request_success_total{series}")),
        Some(4.0)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_openai_chat_stream_sends_the_role_the_words_the_usage_and_done() {
    let (server, base) = start(ServeSettings::for_tests(bundled_repository())).await;
    let client = reqwest::Client::new();
    let body = |stream: bool| {
        json!({ "model": "lstm-web-en", "max_tokens": 12, "seed": 11, "stream": stream,
                "stream_options": { "include_usage": true },
                "messages": [{ "role": "user", "content": "The Lord is my shepherd" }] })
    };
    let (status, whole) = post(&client, format!("{base}/v1/chat/completions"), body(false)).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let reply = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!reply.is_empty() && !reply.starts_with(' '), "{reply:?}");
    let mut response = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = read_events(&mut response, 100).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, reply);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], whole["usage"]);
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(
        finish["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn openai_errors_and_keys_come_in_openais_shape() {
    let mut settings = ServeSettings::for_tests(bundled_repository());
    settings.api_keys = vec!["sk-kiln".into()];
    let (server, base) = start(settings).await;
    let client = reqwest::Client::new();
    let key = Some("sk-kiln");
    let completions = format!("{base}/v1/completions");
    let cases = [
        (
            json!({ "model": "no-such-model", "prompt": "a" }),
            404,
            None,
            Some("model_not_found"),
        ),
        (
            json!({ "model": "lenet-fashion", "prompt": "a" }),
            400,
            None,
            None,
        ),
        (
            json!({ "model": "gru-web-en", "prompt": "a", "max_tokens": 0 }),
            422,
            None,
            None,
        ),
        (
            json!({ "model": "gru-web-en", "prompt": "a", "n": 100 }),
            422,
            Some("n"),
            None,
        ),
        (
            json!({ "model": "gru-web-en", "prompt": [1, 2] }),
            400,
            Some("prompt"),
            None,
        ),
        (
            json!({ "model": "gru-web-en", "prompt": "a", "frequency_penalty": 1 }),
            400,
            Some("frequency_penalty"),
            None,
        ),
        (json!({ "prompt": "a" }), 400, None, None),
    ];
    for (body, status, param, code) in cases {
        let (got, answer) = send(&client, completions.clone(), body.clone(), key).await;
        assert_eq!(got, status, "{body}: {answer}");
        let error = &answer["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        assert!(error["type"].is_string(), "{answer}");
        assert_eq!(error["param"].as_str(), param, "{answer}");
        assert_eq!(error["code"].as_str(), code, "{answer}");
    }
    let (status, answer) = send(
        &client,
        format!("{base}/v1/chat/completions"),
        json!({ "model": "gru-web-en", "messages": [{ "role": "tool", "content": "x" }] }),
        key,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["param"].as_str()),
        (400, Some("messages"))
    );
    // Without the key: 401, in OpenAI's shape, on every route of this API.
    let (status, answer) = send(
        &client,
        completions,
        json!({ "model": "gru-web-en", "prompt": "a" }),
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["type"], "authentication_error");
    let models = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
    // With it, the language models and nothing else.
    let models: Value = client
        .get(format!("{base}/v1/models"))
        .bearer_auth("sk-kiln")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for model in LANGUAGE_MODELS {
        assert!(ids.contains(&model), "{ids:?}");
    }
    assert!(!ids.contains(&"lenet-fashion"), "{ids:?}");
    assert!(models["data"][0]["created"].as_u64().unwrap() > 1_700_000_000);
    server.shutdown().await.unwrap();
}
