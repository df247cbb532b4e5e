//! The Open Inference Protocol (KServe V2) over HTTP against the shipped models: `infer` on
//! JSON and binary tensors agreeing with the task routes, the classification extension,
//! configuration, statistics, the model repository extension, and errors.

mod common;

use common::{add_model, png, post_png, start, test_set};
use kiln_server::ServeSettings;
use kiln_zoo::image_input::ImageSpec;
use serde_json::{Value, json};

/// A repository with the bundled LeNet and one language model.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    add_model(dir.path(), "lenet-fashion", "lenet-fashion", |_| {});
    add_model(dir.path(), "lstm-web-en", "lstm-web-en", |_| {});
    dir
}

async fn post_json(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// A body of a JSON header and binary tensor data, with its header length.
fn binary_body(header: Value, data: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(&header).unwrap();
    let length = body.len();
    body.extend_from_slice(data);
    (body, length)
}

#[tokio::test]
async fn infer_on_pixels_files_and_preprocessed_tensors_agrees_with_classify() {
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let client = reqwest::Client::new();
    let data = test_set();
    let url = format!("{base}/v2/models/lenet-fashion/infer");

    // Two images as UINT8 pixels [N, H, W, C] in JSON.
    let pixels: Vec<u8> = [0, 1]
        .iter()
        .flat_map(|&i| data.image(i).to_vec())
        .collect();
    let (status, answer) = post_json(
        &client,
        url.clone(),
        json!({
            "id": "pixels",
            "inputs": [{ "name": "input", "shape": [2, 28, 28, 1], "datatype": "UINT8", "data": pixels }],
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], "pixels");
    assert_eq!(answer["model_name"], "lenet-fashion");
    assert_eq!(answer["model_version"], "1");
    let output = &answer["outputs"][0];
    assert_eq!(output["name"], "probabilities");
    assert_eq!(output["datatype"], "FP32");
    assert_eq!(output["shape"], json!([2, 10]));
    let probabilities = floats(&output["data"]);

    // The task route gives the same probability for image 0's top class.
    let classify: Value = post_png(&client, &base, png(&data, 0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let top = &classify["predictions"][0];
    let index = top["index"].as_u64().unwrap() as usize;
    assert!((probabilities[index] - top["probability"].as_f64().unwrap() as f32).abs() < 1e-5);

    // The same images preprocessed on the client, as FP32 [N, C, H, W].
    let spec: ImageSpec = ImageSpec {
        channels: 1,
        height: 28,
        width: 28,
        mean: vec![0.286],
        std: vec![0.353],
        max_pixels: 40_000_000,
        resize_shorter: None,
    };
    let preprocessed: Vec<f32> = [0, 1]
        .iter()
        .flat_map(|&i| {
            let hwc: Vec<f32> = data.image(i).iter().map(|&p| f32::from(p)).collect();
            spec.from_pixels(28, 28, 1, &hwc).unwrap()
        })
        .collect();
    let (status, answer) = post_json(
        &client,
        url.clone(),
        json!({ "inputs": [{ "name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": preprocessed }] }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let again = floats(&answer["outputs"][0]["data"]);
    for (a, b) in probabilities.iter().zip(&again) {
        assert!((a - b).abs() < 1e-5);
    }

    // The raw logits on request, beside the probabilities; softmax turns one into the other.
    let (status, answer) = post_json(
        &client,
        url.clone(),
        json!({
            "inputs": [{ "name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": preprocessed }],
            "outputs": [{ "name": "logits" }, { "name": "probabilities" }],
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outputs"][0]["name"], "logits");
    let mut logits = floats(&answer["outputs"][0]["data"]);
    assert_eq!(logits.len(), 20);
    logits
        .chunks_mut(10)
        .for_each(kiln_zoo::classifier::softmax_in_place);
    for (a, b) in probabilities.iter().zip(&logits) {
        assert!((a - b).abs() < 1e-5);
    }
    assert_eq!(floats(&answer["outputs"][1]["data"]), again);

    // PNG files as binary BYTES, answered with the classification extension in binary.
    let files = kiln_server::v2::tensor::TensorData::Bytes(vec![png(&data, 0), png(&data, 1)]);
    let raw = files.to_raw();
    let (body, length) = binary_body(
        json!({
            "inputs": [{ "name": "input", "shape": [2], "datatype": "BYTES",
                         "parameters": { "binary_data_size": raw.len() } }],
            "outputs": [{ "name": "probabilities",
                          "parameters": { "classification": 2, "binary_data": true } }],
        }),
        &raw,
    );
    let response = client
        .post(url.clone())
        .header("inference-header-content-length", length)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let header: Value = serde_json::from_slice(&bytes[..header_length]).unwrap();
    assert_eq!(header["outputs"][0]["datatype"], "BYTES");
    assert_eq!(header["outputs"][0]["shape"], json!([2, 2]));
    let classes = kiln_server::v2::tensor::TensorData::from_raw(
        kiln_server::v2::tensor::DataType::Bytes,
        &bytes[header_length..],
    )
    .unwrap();
    let kiln_server::v2::tensor::TensorData::Bytes(classes) = classes else {
        panic!("not BYTES");
    };
    // "<probability>:<index>:<label>", the best class first.
    let first = String::from_utf8(classes[0].clone()).unwrap();
    let parts: Vec<&str> = first.split(':').collect();
    assert_eq!(parts[1], index.to_string(), "{first}");
    assert_eq!(parts[2], top["label"].as_str().unwrap());
    assert!((parts[0].parse::<f32>().unwrap() - probabilities[index]).abs() < 1e-5);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn language_models_take_text_or_token_ids() {
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v2/models/lstm-web-en/infer");
    let (status, answer) = post_json(
        &client,
        url.clone(),
        json!({
            "inputs": [{ "name": "text", "shape": [1], "datatype": "BYTES", "data": ["and the children of"] }],
            "outputs": [{ "name": "log_probabilities", "parameters": { "classification": 5 } }],
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let top: Vec<String> = answer["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().rsplit(':').next().unwrap().to_string())
        .collect();
    assert!(top.contains(&"israel".to_string()), "{top:?}");

    // The same prompt as token ids gives the same distribution.
    let vocab =
        kiln_zoo::text::tokenizer::Tokenizer::load(&repo.path().join("lstm-web-en/vocab.txt"))
            .unwrap();
    let ids: Vec<i64> = vocab
        .encode("and the children of")
        .into_iter()
        .map(i64::from)
        .collect();
    let (_, by_text) = post_json(
        &client,
        url.clone(),
        json!({ "inputs": [{ "name": "text", "shape": [1], "datatype": "BYTES", "data": ["and the children of"] }] }),
    )
    .await;
    let (status, by_ids) = post_json(
        &client,
        url.clone(),
        json!({ "inputs": [{ "name": "token_ids", "shape": [1, ids.len()], "datatype": "INT64", "data": ids }] }),
    )
    .await;
    assert_eq!(status, 200, "{by_ids}");
    assert_eq!(
        by_ids["outputs"][0]["shape"],
        json!([1, vocab.vocab_size()])
    );
    let (a, b) = (
        floats(&by_text["outputs"][0]["data"]),
        floats(&by_ids["outputs"][0]["data"]),
    );
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_clear_client_errors() {
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let client = reqwest::Client::new();
    let lenet = format!("{base}/v2/models/lenet-fashion/infer");
    let pixels = |shape: Value, n: usize| json!({ "inputs": [{ "name": "input", "shape": shape, "datatype": "UINT8", "data": vec![0; n] }] });
    let cases = [
        (lenet.clone(), pixels(json!([1, 28, 28]), 784), 422),
        (lenet.clone(), pixels(json!([1, 28, 28, 1]), 783), 400),
        (
            lenet.clone(),
            json!({ "inputs": [{ "name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"] }] }),
            400,
        ),
        (
            lenet.clone(),
            json!({ "inputs": [{ "name": "input", "shape": [1], "datatype": "FP16", "data": [0] }] }),
            400,
        ),
        (
            lenet.clone(),
            json!({ "inputs": [{ "name": "input", "shape": [1], "datatype": "BYTES", "data": ["not a png"] }] }),
            400,
        ),
        (
            lenet.clone(),
            json!({ "inputs": [{ "name": "input", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": vec![0; 784] }],
                    "outputs": [{ "name": "scores" }] }),
            400,
        ),
        (
            format!("{base}/v2/models/lstm-web-en/infer"),
            json!({ "inputs": [{ "name": "token_ids", "shape": [1, 1], "datatype": "INT64", "data": [999999] }] }),
            422,
        ),
        (
            format!("{base}/v2/models/lenet-fashion/versions/7/infer"),
            pixels(json!([1, 28, 28, 1]), 784),
            404,
        ),
        (
            format!("{base}/v2/models/missing/infer"),
            pixels(json!([1, 28, 28, 1]), 784),
            404,
        ),
        (
            lenet.clone(),
            json!({ "inputs": [{ "name": "input", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": vec![0; 784] }],
                    "parameters": { "timeout": 0 } }),
            400,
        ),
        // The request's own timeout (microseconds) passes before any batch can answer.
        (
            lenet.clone(),
            json!({ "inputs": [{ "name": "input", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": vec![0; 784] }],
                    "parameters": { "timeout": 1 } }),
            504,
        ),
    ];
    for (url, body, expected) in cases {
        let (status, answer) = post_json(&client, url.clone(), body.clone()).await;
        assert_eq!(status, expected, "{url} {body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    let truncated = client
        .post(lenet)
        .header("inference-header-content-length", "5000")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(truncated.status(), 400);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata_config_and_statistics_describe_each_model() {
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let response = client.get(path).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (_, server_meta) = get(format!("{base}/v2")).await;
    assert!(
        server_meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );

    let (status, meta) = get(format!("{base}/v2/models/lstm-web-en/versions/1")).await;
    assert_eq!(status, 200);
    assert_eq!(
        meta["inputs"][0],
        json!({ "name": "text", "datatype": "BYTES", "shape": [-1] })
    );

    let (_, config) = get(format!("{base}/v2/models/lenet-fashion/config")).await;
    assert_eq!(config["max_batch_size"], 64);
    assert_eq!(config["input"][0]["data_type"], "TYPE_FP32");
    assert_eq!(config["input"][0]["dims"], json!([1, 28, 28]));
    assert_eq!(config["output"][0]["label_filename"], "labels.txt");

    let (status, _) = get(format!("{base}/v2/models/lenet-fashion/versions/1/ready")).await;
    assert_eq!(status, 200);
    let (status, _) = get(format!("{base}/v2/models/lenet-fashion/versions/2/ready")).await;
    assert_eq!(status, 404);

    let request = json!({ "inputs": [{ "name": "input", "shape": [3, 28, 28, 1], "datatype": "UINT8", "data": vec![0; 3 * 784] }] });
    let (status, _) = post_json(
        &client,
        format!("{base}/v2/models/lenet-fashion/infer"),
        request,
    )
    .await;
    assert_eq!(status, 200);
    let (_, stats) = get(format!("{base}/v2/models/lenet-fashion/stats")).await;
    let model = &stats["model_stats"][0];
    assert_eq!(model["name"], "lenet-fashion");
    assert_eq!(model["inference_count"], 3);
    assert_eq!(model["inference_stats"]["success"]["count"], 1);
    assert!(
        model["inference_stats"]["compute_infer"]["ns"]
            .as_u64()
            .unwrap()
            > 0
    );
    let batched: u64 = model["batch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_size"].as_u64().unwrap() * b["compute_infer"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(batched, 3);
    let (_, all) = get(format!("{base}/v2/models/stats")).await;
    assert_eq!(all["model_stats"].as_array().unwrap().len(), 2);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn models_unload_and_load_through_the_repository_extension() {
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let client = reqwest::Client::new();
    let index = || async {
        client
            .post(format!("{base}/v2/repository/index"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let ready = || async {
        client
            .get(format!("{base}/v2/models/lenet-fashion/ready"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        index().await,
        json!([
            { "name": "lenet-fashion", "version": "1", "state": "READY" },
            { "name": "lstm-web-en", "version": "1", "state": "READY" },
        ])
    );
    let unload = client
        .post(format!("{base}/v2/repository/models/lenet-fashion/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(unload.status(), 200);
    assert_eq!(ready().await, 404);
    assert_eq!(index().await[0]["state"], "UNAVAILABLE");
    let ready_only: Value = client
        .post(format!("{base}/v2/repository/index"))
        .json(&json!({ "ready": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready_only.as_array().unwrap().len(), 1);

    let load = client
        .post(format!("{base}/v2/repository/models/lenet-fashion/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(load.status(), 200);
    assert_eq!(ready().await, 200);
    let missing = client
        .post(format!("{base}/v2/repository/models/nothing-here/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let with_config = client
        .post(format!("{base}/v2/repository/models/lenet-fashion/load"))
        .json(&json!({ "parameters": { "config": "{}" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(with_config.status(), 400);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_the_server_serves() {
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let client = reqwest::Client::new();
    let document: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(document["info"]["title"], "Kiln");
    let paths = document["paths"].as_object().unwrap();
    for expected in [
        "/v1/models/{model}/classify",
        "/v1/models/{model}/caption",
        "/v1/models/{model}/next-word",
        "/v1/models/{model}/generate",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
        "/v2/repository/index",
        "/v2/health/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    assert!(document["components"]["schemas"]["GenerateRequest"].is_object());
    // Every documented operation reaches a handler: never the fallback nor 405.
    for (path, operations) in paths {
        let url = format!(
            "{base}{}",
            path.replace("{model}", "lenet-fashion")
                .replace("{version}", "1")
        );
        for method in operations.as_object().unwrap().keys() {
            let request = match method.as_str() {
                "get" => client.get(&url),
                "post" => client.post(&url),
                other => panic!("unexpected method {other} for {path}"),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            assert!(!body.contains("no such route"), "{method} {path}: {body}");
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn compressed_request_bodies_are_decoded_within_the_size_limit() {
    use std::io::Write;
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let client = reqwest::Client::new();
    let gzip = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let body = json!({ "inputs": [{ "name": "text", "shape": [1], "datatype": "BYTES",
                                    "data": ["and the children of"] }] });
    let response = client
        .post(format!("{base}/v2/models/lstm-web-en/infer"))
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gzip(body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // 20 MB of spaces compress to a few kB; decompressed they pass the 16 MiB limit.
    let bomb = gzip(&vec![b' '; 20 * 1024 * 1024]);
    assert!(bomb.len() < 100_000);
    let response = client
        .post(format!("{base}/v2/models/lstm-web-en/infer"))
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    server.shutdown().await.unwrap();
}
