//! Captioning through the real server with the committed captioners: held-out test scenes
//! (made of Fashion-MNIST test images the models never saw) captioned over HTTP and checked
//! against their ground truth, the search options, concurrent requests sharing batches, the
//! Open Inference Protocol route, the gRPC `Caption` RPC and bad input.

mod common;

use std::io::Cursor;

use base64::Engine;
use common::*;
use kiln_proto::kiln::v1 as kiln;
use kiln_proto::kiln::v1::tasks_client::TasksClient;
use kiln_zoo::captioning::metrics::score_captions;
use kiln_zoo::data::scenes::{CANVAS_SIDE, Scene, SceneGenerator, SceneSplit, SceneStyle};
use kiln_zoo::eval::CaptionFacts;
use serde_json::{Value, json};

const CAPTIONERS: [&str; 2] = ["captioner-lstm", "captioner-transformer"];

/// Scenes of each distribution the held-out test captions.
const HELD_OUT_PER_DISTRIBUTION: usize = 12;
/// Shares of facts the held-out test needs right: below what the weaker captioner gets on
/// these scenes (named 73 % for both, both named 47 % for the Transformer, relation 66 % for
/// the LSTM; README has `kiln eval`'s figures on 1,000 scenes of each kind), with room for a
/// few captions that another CPU's rounding turns, and far above a caption that ignores the
/// image (one class in ten, a pair's two about one in fifty, its arrangement one in eight).
const NAMED_AT_LEAST: f64 = 0.6;
const BOTH_NAMED_AT_LEAST: f64 = 0.15;
const RELATED_AT_LEAST: f64 = 0.5;

fn test_scenes(count: usize) -> Vec<Scene> {
    let images = test_set();
    SceneGenerator::new(&images, SceneSplit::Test)
        .unwrap()
        .scenes(count)
}

fn scene_png(scene: &Scene) -> Vec<u8> {
    let side = CANVAS_SIDE as u32;
    let image = image::RgbImage::from_raw(side, side, scene.pixels.clone()).unwrap();
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

async fn caption(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    query: &str,
    png: Vec<u8>,
) -> Value {
    let response = client
        .post(format!("{base}/v1/models/{model}/caption{query}"))
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Words as a caption writes them: spaced, commas attached.
fn joined(words: &[&str]) -> String {
    words.join(" ").replace(" ,", ",")
}

/// The answer's caption, checked against its words and score.
fn checked_caption(answer: &Value, model: &str) -> String {
    assert_eq!(answer["model"], model);
    assert_eq!(answer["model_version"], "1");
    let text = answer["caption"].as_str().unwrap().to_string();
    let words: Vec<&str> = answer["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["id"].as_u64().is_some());
            t["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(joined(&words), text);
    let score = answer["score"].as_f64().unwrap();
    assert!(score <= 0.0 && score.is_finite(), "{answer}");
    text
}

#[tokio::test]
async fn captions_held_out_scenes_like_their_ground_truth() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let scenes = test_scenes(40);
    let references: Vec<Vec<String>> = scenes.iter().map(Scene::references).collect();
    for model in CAPTIONERS {
        for beam in [1, 3] {
            let mut captions = Vec::new();
            for scene in &scenes {
                let query = format!("?beam_size={beam}");
                let answer = caption(&client, &base, model, &query, scene_png(scene)).await;
                captions.push(checked_caption(&answer, model));
            }
            let score = score_captions(
                captions
                    .iter()
                    .zip(&references)
                    .map(|(c, r)| (c.as_str(), r.iter().map(String::as_str))),
            );
            // `kiln eval` measures BLEU-4 78–83 and exact match 44–51 % on 1,000 such test
            // scenes (README), these 40 scenes 0.80–0.84 and 45–50 %; a model that ignored
            // the image would match none.
            assert!(
                score.bleu4 > 0.6 && score.exact_match >= 0.2,
                "{model}, beam {beam}: {score:?} for {captions:?}"
            );
        }
    }
    server.shutdown().await.unwrap();
}

/// Fixed held-out scenes of every distribution `kiln eval` reports (the training one, centred,
/// off-grid, small, large, grey on black, the old quarters), captioned over HTTP and checked
/// fact by fact: the single objects' classes, both classes of pairs, the pairs' arrangement.
#[tokio::test]
async fn names_and_places_objects_wherever_they_are_and_at_any_size() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let images = test_set();
    let styles = SceneStyle::all();
    for model in CAPTIONERS {
        let mut facts = CaptionFacts::default();
        let mut said = Vec::new();
        for style in &styles {
            let scenes = SceneGenerator::with_style(&images, SceneSplit::Test, style.clone())
                .unwrap()
                .scenes(HELD_OUT_PER_DISTRIBUTION);
            for scene in &scenes {
                let answer = caption(&client, &base, model, "", scene_png(scene)).await;
                let text = checked_caption(&answer, model);
                facts.add(scene, &text);
                said.push(format!("{}: {text} (truth: {})", style.name, scene.caption));
            }
        }
        let share = |part: usize, whole: usize| part as f64 / whole as f64;
        assert!(facts.singles >= 30 && facts.pairs >= 30, "{facts:?}");
        // `kiln eval` on 1,000 scenes per distribution: see README's captioner table.
        assert!(
            share(facts.named, facts.singles) >= NAMED_AT_LEAST
                && share(facts.both_named, facts.pairs) >= BOTH_NAMED_AT_LEAST
                && share(facts.related, facts.pairs) >= RELATED_AT_LEAST,
            "{model}: {facts:?}\n{}",
            said.join("\n")
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_input_form_and_protocol_gives_the_same_caption() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let scene = &test_scenes(3)[2];
    let png = scene_png(scene);
    for model in CAPTIONERS {
        let url = format!("{base}/v1/models/{model}/caption");
        let raw = checked_caption(
            &caption(&client, &base, model, "", png.clone()).await,
            model,
        );

        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        let from_base64: Value = client
            .post(&url)
            .json(&json!({ "image": b64 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows: Vec<Vec<[u8; 3]>> = scene
            .pixels
            .chunks(3 * CANVAS_SIDE)
            .map(|row| row.chunks(3).map(|p| [p[0], p[1], p[2]]).collect())
            .collect();
        let from_pixels: Value = client
            .post(&url)
            .json(&json!({ "pixels": rows, "beam_size": 1, "max_tokens": 30 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(png.clone())
                .file_name("scene.png")
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
        for answer in [&from_base64, &from_pixels, &multipart] {
            assert_eq!(checked_caption(answer, model), raw);
        }

        // The Open Inference Protocol: the same image as FP32 [1, 3, 64, 64].
        let input = scene.input();
        let v2: Value = client
            .post(format!("{base}/v2/models/{model}/infer"))
            .json(&json!({
                "inputs": [{"name": "input", "datatype": "FP32",
                            "shape": [1, 3, CANVAS_SIDE, CANVAS_SIDE], "data": input}],
                "outputs": [{"name": "caption"}, {"name": "score"}]
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v2["outputs"][0]["name"], "caption", "{v2}");
        assert_eq!(v2["outputs"][0]["datatype"], "BYTES");
        assert_eq!(v2["outputs"][0]["data"][0], raw.as_str());
        let score = v2["outputs"][1]["data"][0].as_f64().unwrap();
        let raw_score = from_base64["score"].as_f64().unwrap();
        assert!((score - raw_score).abs() < 1e-4, "{score} vs {raw_score}");

        let metadata: Value = client
            .get(format!("{base}/v2/models/{model}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["inputs"][0]["shape"], json!([-1, 3, 64, 64]));
        assert_eq!(metadata["outputs"][0]["name"], "caption");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_grpc_caption_rpc_answers_like_the_http_route() {
    let (server, base) = start_bundled().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tasks = TasksClient::new(channel);
    let client = reqwest::Client::new();
    let scene = &test_scenes(2)[1];
    for model in CAPTIONERS {
        let http = caption(&client, &base, model, "?beam_size=3", scene_png(scene)).await;
        let by_file = tasks
            .caption(kiln::CaptionRequest {
                model: model.into(),
                input: Some(kiln::caption_request::Input::Image(scene_png(scene))),
                beam_size: Some(3),
                max_tokens: None,
            })
            .await
            .unwrap()
            .into_inner();
        let by_pixels = tasks
            .caption(kiln::CaptionRequest {
                model: model.into(),
                input: Some(kiln::caption_request::Input::Pixels(kiln::Pixels {
                    height: CANVAS_SIDE as u32,
                    width: CANVAS_SIDE as u32,
                    channels: 3,
                    values: scene.pixels.clone(),
                })),
                beam_size: Some(3),
                max_tokens: Some(30),
            })
            .await
            .unwrap()
            .into_inner();
        for answer in [&by_file, &by_pixels] {
            assert_eq!(answer.model, model);
            assert_eq!(answer.caption, checked_caption(&http, model));
            let words: Vec<&str> = answer.tokens.iter().map(|t| t.text.as_str()).collect();
            assert_eq!(joined(&words), answer.caption);
            assert!((f64::from(answer.score) - http["score"].as_f64().unwrap()).abs() < 1e-4);
        }
        let refused = tasks
            .caption(kiln::CaptionRequest {
                model: model.into(),
                input: Some(kiln::caption_request::Input::Image(scene_png(scene))),
                beam_size: Some(0),
                max_tokens: None,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
    let wrong_task = tasks
        .caption(kiln::CaptionRequest {
            model: "lenet-fashion".into(),
            input: Some(kiln::caption_request::Input::Image(scene_png(scene))),
            beam_size: None,
            max_tokens: None,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_task.code(), tonic::Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_share_batches_and_get_their_own_captions() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let scenes = test_scenes(24);
    let model = "captioner-transformer";
    let mut alone = Vec::new();
    for scene in &scenes {
        alone.push(checked_caption(
            &caption(&client, &base, model, "?beam_size=2", scene_png(scene)).await,
            model,
        ));
    }
    let together = futures_util::future::join_all(scenes.iter().map(|scene| {
        let client = client.clone();
        let base = base.clone();
        async move { caption(&client, &base, model, "?beam_size=2", scene_png(scene)).await }
    }))
    .await;
    for (answer, expected) in together.iter().zip(&alone) {
        assert_eq!(&checked_caption(answer, model), expected);
    }

    let text = metrics_text(&client, &base).await;
    // Prometheus writes labels in name order.
    let labels = format!("backend=\"flex\",model=\"{model}\"");
    let stage = |name: &str, stage: &str| {
        metric(
            &text,
            &format!("{name}{{{labels},stage=\"{stage}\",version=\"1\"}}"),
        )
        .unwrap_or_else(|| panic!("{name} {stage} missing"))
    };
    // Every image went through the encoder once, in batches of any size.
    assert_eq!(stage("kiln_caption_stage_batch_size_sum", "encoder"), 48.0);
    assert!(stage("kiln_caption_stage_batch_size_count", "encoder") <= 48.0);
    assert!(stage("kiln_caption_stage_duration_seconds_count", "decoder") > 0.0);
    assert_eq!(
        metric(
            &text,
            &format!("kiln_inference_count_total{{{labels},version=\"1\"}}")
        ),
        Some(48.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("kiln_request_success_total{{{labels},version=\"1\"}}")
        ),
        Some(48.0)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn static_batching_gives_the_same_captions_as_continuous() {
    let repository = tempfile::tempdir().unwrap();
    for (name, continuous) in [("continuous", true), ("static", false)] {
        add_model(repository.path(), "captioner-lstm", name, |c| {
            set_in(c, "decoding", "continuous_batching", continuous.into());
        });
    }
    let (server, base) = start(kiln_server::ServeSettings::for_tests(repository.path())).await;
    let client = reqwest::Client::new();
    let scenes = test_scenes(16);
    let mut captions = Vec::new();
    for model in ["continuous", "static"] {
        let answers = futures_util::future::join_all(scenes.iter().map(|scene| {
            let client = client.clone();
            let base = base.clone();
            async move { caption(&client, &base, model, "?beam_size=2", scene_png(scene)).await }
        }))
        .await;
        captions.push(
            answers
                .iter()
                .map(|a| a["caption"].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(captions[0], captions[1]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let (server, base) = start_bundled().await;
    let client = reqwest::Client::new();
    let png = scene_png(&test_scenes(1)[0]);
    let status = |query: &'static str, model: &'static str| {
        let client = client.clone();
        let url = format!("{base}/v1/models/{model}/caption{query}");
        let png = png.clone();
        async move {
            let response = client
                .post(url)
                .header("content-type", "image/png")
                .body(png)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
            status
        }
    };
    for query in [
        "?beam_size=0",
        "?beam_size=17",
        "?max_tokens=0",
        "?max_tokens=5000",
        "?top_k=3",
    ] {
        assert_eq!(status(query, "captioner-lstm").await, 400, "{query}");
    }
    assert_eq!(status("?max_tokens=32", "captioner-transformer").await, 400);
    // A classifier does not caption, and a captioner does not classify.
    assert_eq!(status("", "lenet-fashion").await, 400);
    let response = client
        .post(format!("{base}/v1/models/captioner-lstm/classify"))
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(status("", "no-such-model").await, 404);

    let url = format!("{base}/v1/models/captioner-lstm/caption");
    let json_status = |body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        json_status(json!({"pixels": [[1, 2], [3, 4]], "top_k": 1})).await,
        400
    );
    assert_eq!(json_status(json!({"image": "not base64!"})).await, 400);
    assert_eq!(
        json_status(json!({"pixels": [[[1, 2, 3]], [[1, 2]]]})).await,
        422
    );
    let garbage = client
        .post(&url)
        .header("content-type", "image/png")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);

    // The server still captions after all that.
    let answer = caption(&client, &base, "captioner-lstm", "", png).await;
    checked_caption(&answer, "captioner-lstm");
    server.shutdown().await.unwrap();
}

/// `kiln eval` on a captioner, run as a user runs it: the fact table, then single objects
/// by class beside a reference classifier scored on their clean source images.
#[test]
fn kiln_eval_reports_single_objects_by_class_beside_a_reference_classifier() {
    let eval = |reference: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args([
                "eval",
                "captioner-lstm",
                "--scenes",
                "40",
                "--reference",
                reference,
            ])
            .arg("--model-repository")
            .arg(bundled_repository())
            .output()
            .unwrap()
    };
    let output = eval("lenet-fashion");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cells = |row: &str| -> Vec<String> {
        row.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let percent = |cell: &str| cell.trim_end_matches('%').parse::<f64>().unwrap();
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("Single objects"))
        .filter(|line| line.starts_with("| ") && !line.starts_with("| class"))
        .map(cells)
        .collect();
    let names: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    let mut expected = kiln_zoo::data::fashion_mnist::CLASS_NAMES.to_vec();
    expected.push("all");
    assert_eq!(names, expected, "{stdout}");
    let objects: Vec<usize> = rows.iter().map(|row| row[1].parse().unwrap()).collect();
    assert_eq!(objects[..10].iter().sum::<usize>(), objects[10], "{stdout}");
    // Every distribution's single objects: at least the 40 centred ones.
    assert!(objects[10] >= 40, "{stdout}");
    let all = &rows[10];
    // Far above chance for the captioner; LeNet on the clean sources nearer nine in ten.
    // A reference read at the wrong source images would score about one in ten.
    assert!(percent(&all[2]) >= 50.0, "{stdout}");
    assert!(percent(&all[4]) >= 75.0, "{stdout}");

    let refused = eval("captioner-transformer");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not an image classifier"), "{stderr}");
}
