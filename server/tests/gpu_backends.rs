//! The GPU code paths, run where CI has no GPU: wgpu over Mesa's software Vulkan (lavapipe)
//! must give every bundled model's answers as the CPU backend does, half precision must keep
//! the f32 top-1 class, the device memory limit must cap the batch, and a real
//! `kiln serve --backend wgpu` must answer end to end; a CUDA build (`--features cuda`, where
//! it can be built) must say clearly when there is no CUDA device.
//!
//! Built with `--features wgpu` (scripts/gpu-test.sh); without it this file is empty.

#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;

use common::*;
use kiln_server::ServeSettings;
use kiln_server::repository::ModelConfig;
use kiln_zoo::captioning::captioner::{CaptionOptions, Captioner};
use kiln_zoo::classifier::batch_buckets;
use kiln_zoo::data::scenes::{SceneGenerator, SceneSplit};
use kiln_zoo::decode_batch::DecodeBatch;
use kiln_zoo::eval::{fashion_mnist_input, ranked_classes, top1_agreement};
use kiln_zoo::language_model::LanguageModel;
use kiln_zoo::precision::Precision;
use kiln_zoo::text::tokenizer::Tokenizer;
use kiln_zoo::{BackendKind, Device};

/// Largest difference allowed between a logit or log-probability computed on wgpu and on
/// flex: kernels fuse and reduce in other orders, so bit-equality is not expected.
const TOLERANCE: f32 = 1e-3;

fn flex() -> Device {
    BackendKind::Flex.device().unwrap()
}

fn wgpu() -> Device {
    BackendKind::Wgpu
        .device()
        .expect("install mesa-vulkan-drivers and libvulkan1")
}

fn bundled_models() -> Vec<(String, std::path::PathBuf, ModelConfig)> {
    let mut models: Vec<_> = std::fs::read_dir(bundled_repository())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|dir| dir.join("model.toml").exists())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let config = ModelConfig::read(&dir).unwrap();
            (name, dir, config)
        })
        .collect();
    models.sort_by(|a, b| a.0.cmp(&b.0));
    models
}

/// The largest difference between `a` and `b`, checked to be within [`TOLERANCE`].
fn assert_close(what: &str, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= TOLERANCE,
        "{what}: differs by {worst} (> {TOLERANCE})"
    );
    worst
}

#[test]
fn every_bundled_model_answers_on_wgpu_as_on_flex() {
    let (flex, wgpu) = (flex(), wgpu());
    eprintln!("wgpu adapter: {}", kiln_zoo::gpu::device_name(&wgpu));
    let test = test_set();
    let mut checked = Vec::new();
    for (name, dir, config) in bundled_models() {
        let mut worst = 0.0f32;
        match config {
            ModelConfig::Classify(config) => {
                // Padded to the buckets the server uses on wgpu, and a size that is none.
                let cpu = config.load_classifier(&dir, &flex).unwrap();
                let gpu = config
                    .load_classifier(&dir, &wgpu)
                    .unwrap()
                    .with_batch_buckets(batch_buckets(8));
                let images: Vec<Vec<f32>> = (0..5)
                    .map(|i| {
                        (0..cpu.input_len())
                            .map(|j| ((i * 37 + j * 11) % 256) as f32 / 255.0)
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
                let a = cpu.logits_batch(&refs).unwrap();
                let b = gpu.logits_batch(&refs).unwrap();
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    worst = worst.max(assert_close(&format!("{name} image {i}"), x, y));
                }
            }
            ModelConfig::LanguageModel(config) => {
                let tokenizer = Tokenizer::load(&dir.join(&config.vocab)).unwrap();
                let weights = dir.join(&config.weights);
                let cpu = LanguageModel::load(&config.architecture, &weights, &flex).unwrap();
                let gpu = LanguageModel::load(&config.architecture, &weights, &wgpu).unwrap();
                let prompts: Vec<Vec<u32>> = ["In the beginning", "And God said", "the"]
                    .iter()
                    .map(|p| tokenizer.encode(p))
                    .collect();
                let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
                let a = cpu.next_token_log_probs(&refs).unwrap();
                let b = gpu.next_token_log_probs(&refs).unwrap();
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    worst = worst.max(assert_close(&format!("{name} prompt {i}"), x, y));
                }
                // Two decoding steps of the prompts together (the Transformer's ring of
                // keys and values, written in place, and the fused attention).
                let generate = |lm: &LanguageModel| {
                    let mut batch = DecodeBatch::new();
                    let joining = prompts
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (i as u64, lm.prefill(p).unwrap().1))
                        .collect();
                    batch.join(joining).unwrap();
                    lm.decode(&mut batch, &[5, 6, 7]).unwrap();
                    lm.decode(&mut batch, &[8, 9, 10]).unwrap()
                };
                for (i, (x, y)) in generate(&cpu).iter().zip(&generate(&gpu)).enumerate() {
                    worst = worst.max(assert_close(&format!("{name} decoding {i}"), x, y));
                }
            }
            ModelConfig::Caption(config) => {
                let weights = dir.join(&config.weights);
                let cpu = Captioner::load(&config.architecture, &weights, &flex).unwrap();
                let gpu = Captioner::load(&config.architecture, &weights, &wgpu).unwrap();
                let scenes = SceneGenerator::new(&test, SceneSplit::Test)
                    .unwrap()
                    .scenes(4);
                let images: Vec<Vec<f32>> = scenes.iter().map(|s| s.input()).collect();
                let options = CaptionOptions {
                    beam_size: 2,
                    max_tokens: config.decoding.default_max_tokens,
                };
                let a = cpu.caption(&images, &options).unwrap();
                let b = gpu.caption(&images, &options).unwrap();
                for (x, y) in a.iter().zip(&b) {
                    assert_eq!(x.text, y.text, "{name}");
                    let what = format!("{name} score of '{}'", x.text);
                    worst = worst.max(assert_close(&what, &[x.score], &[y.score]));
                }
            }
        }
        eprintln!("{name}: largest difference wgpu vs flex {worst:.2e}");
        checked.push(name);
    }
    assert!(checked.len() >= 9, "only {checked:?}");
}

#[test]
fn half_precision_keeps_the_top1_class_on_the_test_set() {
    let dir = bundled_repository().join("lenet-fashion");
    let ModelConfig::Classify(config) = ModelConfig::read(&dir).unwrap() else {
        panic!("lenet-fashion is a classifier");
    };
    let test = test_set();
    let device = wgpu();
    let reference = ranked_classes(
        &config.load_classifier(&dir, &device).unwrap(),
        &test,
        &config.input,
        500,
    )
    .unwrap();
    let half = config
        .load_classifier(&dir, &device)
        .unwrap()
        .with_precision(Precision::F16)
        .unwrap();
    let ranked = ranked_classes(&half, &test, &config.input, 500).unwrap();
    let agreement = top1_agreement(&reference, &ranked);
    eprintln!(
        "f16 top-1 agrees with f32 on {:.2}% of 10,000 images",
        agreement * 100.0
    );
    assert!(agreement >= 0.99);

    // bf16: computed where the device can, refused with a reason where it cannot (Vulkan
    // devices often store bf16 without arithmetic on it).
    match config
        .load_classifier(&dir, &device)
        .unwrap()
        .with_precision(Precision::Bf16)
    {
        Ok(bf16) => {
            let ranked = ranked_classes(&bf16, &test, &config.input, 500).unwrap();
            let agreement = top1_agreement(&reference, &ranked);
            eprintln!("bf16 top-1 agrees with f32 on {:.2}%", agreement * 100.0);
            assert!(agreement >= 0.97);
        }
        Err(e) => {
            eprintln!("bf16 refused: {e}");
            assert!(e.to_string().contains("cannot compute in bf16"), "{e}");
        }
    }
}

#[test]
fn wgpu_adapters_are_chosen_by_index() {
    BackendKind::Wgpu.device_at(Some(0)).expect("adapter 0");
    let err = BackendKind::Wgpu
        .device_at(Some(99))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no adapter with index 99"), "{err}");
}

/// A device memory limit lowers the largest batch until the warm-up fits in it. Each server
/// is its own process, so each starts from an empty device.
#[tokio::test]
async fn the_device_memory_limit_caps_the_batch_size() {
    let repository_with_batch = |max_batch_size| {
        repository_with_lenet("lenet-fashion", move |c| {
            set_batching(c, "max_batch_size", max_batch_size);
            no_preferred_sizes(c);
        })
    };
    let client = reqwest::Client::new();
    // What the warm-up takes at batch 1 only, and at every size up to 256.
    let mut taken = Vec::new();
    for max_batch_size in [1, 256] {
        let repository = repository_with_batch(max_batch_size);
        let (mut child, base) = spawn_wgpu_kiln(repository.path(), &[]).await;
        assert_eq!(
            max_batch_size_of(&client, &base).await,
            max_batch_size as u64
        );
        let text = metrics_text(&client, &base).await;
        let bytes = metric(&text, "kiln_model_device_memory_bytes{backend=\"wgpu\"").unwrap();
        taken.push(bytes as u64);
        child.kill().await.unwrap();
    }
    let (one, all) = (taken[0], taken[1]);
    assert!(
        all >= one + (4 << 20),
        "batch 256 took {all} bytes, batch 1 {one}"
    );

    // A limit between the two: the largest batch is lowered, and requests are still served.
    let repository = repository_with_batch(256);
    let limit_mib = (((one + all) / 2) >> 20).to_string();
    let (mut child, base) =
        spawn_wgpu_kiln(repository.path(), &["--device-memory-limit-mb", &limit_mib]).await;
    let capped = max_batch_size_of(&client, &base).await;
    eprintln!(
        "warm-up took {one} bytes at batch 1 and {all} up to 256; \
         {limit_mib} MiB capped the batch at {capped}"
    );
    assert!(
        (1..256).contains(&capped),
        "max_batch_size {capped} under {limit_mib} MiB"
    );
    let answer = post_png(&client, &base, png(&test_set(), 0))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    child.kill().await.unwrap();

    // Not even one image fits: the model fails to load and says why.
    let mut settings = ServeSettings::for_tests(repository.path());
    settings.backend = BackendKind::Wgpu;
    settings.device_memory_limit_mb = Some(0);
    let (server, _) = start(settings).await;
    let index = kiln_server::v2::repository::index(server.state(), false).unwrap();
    assert_eq!(index[0].state, "UNAVAILABLE");
    assert!(
        index[0].reason.contains("device memory limit"),
        "{}",
        index[0].reason
    );
    server.shutdown().await.unwrap();
}

async fn max_batch_size_of(client: &reqwest::Client, base: &str) -> u64 {
    let config = get_json(client, &format!("{base}/v2/models/lenet-fashion/config")).await;
    config["max_batch_size"].as_u64().expect("max_batch_size")
}

async fn spawn_wgpu_kiln(repository: &Path, extra: &[&str]) -> (tokio::process::Child, String) {
    let mut args = vec!["--backend", "wgpu"];
    args.extend_from_slice(extra);
    let kiln = spawn_kiln(repository, &args).await;
    (kiln.child, kiln.base)
}

/// The real binary, built with wgpu: `kiln serve --backend wgpu` classifies an upload as the
/// CPU backend does, and leaves its compiled kernels in the kernel cache for the next start.
#[tokio::test]
async fn kiln_serve_on_wgpu_answers_end_to_end() {
    let repository = repository_with_lenet("lenet-fashion", |c| {
        c.insert("precision".into(), "f16".into());
    });
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let (mut child, base) =
        spawn_wgpu_kiln(repository.path(), &["--kernel-cache-dir", cache_dir]).await;
    let client = reqwest::Client::new();
    let data = test_set();
    let dir = bundled_repository().join("lenet-fashion");
    let ModelConfig::Classify(config) = ModelConfig::read(&dir).unwrap() else {
        unreachable!()
    };
    let cpu = config.load_classifier(&dir, &flex()).unwrap();
    let mut agreed = 0;
    for i in 0..20 {
        let answer: serde_json::Value = post_png(&client, &base, png(&data, i))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let served = answer["predictions"][0]["index"].as_u64().unwrap() as usize;
        let input = fashion_mnist_input(&data, i, &config.input).unwrap();
        let expected =
            kiln_zoo::classifier::top_k(&cpu.classify_batch(&[&input]).unwrap()[0], 1)[0];
        agreed += usize::from(served == expected);
    }
    assert!(
        agreed >= 19,
        "f16 on wgpu agreed with f32 on flex for {agreed} of 20 images"
    );
    let described = get_json(&client, &format!("{base}/v2/models/lenet-fashion")).await;
    assert_eq!(described["platform"], "burn-wgpu", "{described}");
    child.kill().await.unwrap();
    let cached = walk_files(cache.path());
    assert!(cached > 0, "nothing was written to the kernel cache");
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { walk_files(&p) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

/// A CUDA build runs where there is no CUDA: asking for it is a clear error, and
/// `kiln serve --backend cuda` exits at once saying so. Where an NVIDIA GPU is present the
/// device opens instead.
#[cfg(feature = "cuda")]
#[tokio::test]
async fn cuda_is_a_clear_error_without_an_nvidia_gpu() {
    if Path::new("/dev/nvidiactl").exists() {
        BackendKind::Cuda
            .device()
            .expect("an NVIDIA GPU is present");
        return;
    }
    let err = BackendKind::Cuda.device().unwrap_err().to_string();
    assert!(err.starts_with("no such device: CUDA"), "{err}");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "serve",
            "--backend",
            "cuda",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot start the cuda backend"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
