//! Both captioners learn from composed scenes, and a trained one saves, loads and captions
//! the same way again.

#![cfg(feature = "train")]

use std::path::Path;

use burn::prelude::Tensor;
use burn::tensor::Distribution;
use kiln_zoo::captioning::captioner::{CaptionOptions, Captioner, CaptionerArchitecture};
use kiln_zoo::captioning::vocabulary::CaptionVocabulary;
use kiln_zoo::data::fashion_mnist::{self, FashionMnist, Split};
use kiln_zoo::data::scenes::{Scene, SceneGenerator, SceneSplit};
use kiln_zoo::models::captioner::CaptionerConfig;
use kiln_zoo::train::captioner::CaptionerTraining;
use kiln_zoo::train::encoder::EncoderClassifier;
use kiln_zoo::weights::{load_weights, save_burnpack};

fn small(config: CaptionerConfig) -> CaptionerConfig {
    config
        .with_d_model(48)
        .with_channels(16)
        .with_layers(1)
        .with_d_ff(96)
}

fn short_run(architecture: &CaptionerArchitecture) -> (Vec<f64>, Captioner, Vec<Scene>) {
    let train = FashionMnist::load(Path::new(fashion_mnist::DEFAULT_DIR), Split::Train).unwrap();
    let validation = SceneGenerator::new(&train, SceneSplit::Validation)
        .unwrap()
        .scenes(32);
    let training = CaptionerTraining {
        epochs: 3,
        scenes_per_epoch: 384,
        batch_size: 32,
        ..CaptionerTraining::default()
    };
    let mut losses = Vec::new();
    let mut generator = SceneGenerator::new(&train, SceneSplit::Train).unwrap();
    let captioner = training
        .run(architecture, &mut generator, &validation, |report| {
            assert_eq!(report.validation.text.samples, 32);
            losses.push(report.mean_loss);
        })
        .unwrap();
    (losses, captioner, validation)
}

#[test]
fn both_captioners_learn_and_reload() {
    let vocabulary = CaptionVocabulary.len();
    // Batch norm and a grid layer, as the CPU kernels fold and run them.
    let normed = small(CaptionerConfig::new(vocabulary))
        .with_encoder_norm(Some(true))
        .with_encoder_grid_layers(Some(1));
    for architecture in [
        CaptionerArchitecture::Lstm(small(CaptionerConfig::new(vocabulary))),
        CaptionerArchitecture::Transformer(small(CaptionerConfig::new(vocabulary))),
        CaptionerArchitecture::Lstm(normed),
    ] {
        let (losses, captioner, validation) = short_run(&architecture);
        assert!(losses[2] < losses[0], "{}: {losses:?}", architecture.name());

        let dir = std::env::temp_dir().join(format!(
            "kiln-{}-{}",
            architecture.name(),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let weights = dir.join("weights.bpk");
        captioner.save(&weights).unwrap();
        let reloaded = Captioner::load(&architecture, &weights, &kiln_zoo::Device::flex()).unwrap();
        let images: Vec<Vec<f32>> = validation.iter().take(4).map(Scene::input).collect();
        let options = CaptionOptions {
            beam_size: 3,
            max_tokens: 20,
        };
        let captions = captioner.caption(&images, &options).unwrap();
        assert_eq!(captions, reloaded.caption(&images, &options).unwrap());
        // Trained batch norm (running statistics moved) folded into the CPU kernels'
        // convolutions encodes as Burn's ops do, to rounding.
        assert!(reloaded.uses_cpu_kernels());
        let burn = reloaded.without_cpu_kernels();
        for (kernels, burn) in captions
            .iter()
            .zip(burn.caption(&images, &options).unwrap())
        {
            assert_eq!(kernels.tokens, burn.tokens);
            assert!(
                (kernels.score - burn.score).abs() < 1e-4,
                "{kernels:?} vs {burn:?}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn training_starts_from_a_pretrained_encoder() {
    let device = kiln_zoo::Device::flex();
    let config = small(CaptionerConfig::new(CaptionVocabulary.len())).with_encoder_norm(Some(true));
    let shape = config.encoder_shape();
    let architecture = CaptionerArchitecture::Transformer(config);
    let dir = std::env::temp_dir().join(format!("kiln-pretrained-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pretrained = dir.join("encoder.bpk");
    let classifier = EncoderClassifier::new(shape, &device);
    save_burnpack(&classifier, &pretrained).unwrap();

    let train = FashionMnist::load(Path::new(fashion_mnist::DEFAULT_DIR), Split::Train).unwrap();
    let mut generator = SceneGenerator::new(&train, SceneSplit::Train).unwrap();
    let training = CaptionerTraining {
        epochs: 0,
        encoder: Some(pretrained),
        ..CaptionerTraining::default()
    };
    let captioner = training
        .run(&architecture, &mut generator, &[], |_| {})
        .unwrap();
    let weights = dir.join("weights.bpk");
    captioner.save(&weights).unwrap();

    // The captioner saved computes the pretrained encoder's grid.
    let mut net = architecture.init(&device);
    load_weights(&mut net, &weights, &[]).unwrap();
    let images = Tensor::<4>::random([2, 3, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
    net.grid(images.clone())
        .into_data()
        .assert_approx_eq::<f32>(&classifier.grid(images).into_data(), Default::default());
    std::fs::remove_dir_all(dir).unwrap();
}
