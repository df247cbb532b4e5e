//! How well a scene encoder alone recognises one object anywhere: trains encoder variants
//! with a classification head (a 1×1 convolution scores the ten classes at every region,
//! the best region counts) on single-object scenes of the training distribution, and
//! reports accuracy on validation scenes and on each shifted test distribution after each
//! epoch.
//!
//! ```sh
//! cargo run --release -p kiln-zoo --features flex-parallel,train --example encoder_probe -- \
//!     VARIANT [EPOCHS] [SCENES_PER_EPOCH] [SAVE_TO]
//! ```
//!
//! VARIANT: `current` (the captioners' encoder), `wide` (128 channels in the last stage),
//! `deep` (two convolutions in the 2nd and 3rd stages), `grid` (the captioners' stages, then
//! two 128-channel convolutions on the 8×8 grid), each also with batch norm (`-bn`).
//! SAVE_TO, a `.bpk` file, keeps the trained probe. The `current` variants are the
//! captioners' own encoder with its classifier (`kiln_zoo::train::encoder`), so
//! `kiln train captioner-… --encoder-from SAVE_TO` starts a captioner from that encoder (the
//! decoder fresh).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLoss;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use kiln_zoo::captioning::vocabulary::CaptionVocabulary;
use kiln_zoo::data::fashion_mnist::{self, FashionMnist, Split};
use kiln_zoo::data::scenes::{CANVAS_SIDE, Scene, SceneGenerator, SceneSplit, SceneStyle};
use kiln_zoo::models::captioner::{CaptionerConfig, EncoderShape};
use kiln_zoo::train::encoder::{CLASSES, EncoderClassifier, best_region};
use kiln_zoo::weights::save_burnpack;

#[derive(Module, Debug)]
struct Stage {
    convs: Vec<Conv2d>,
    norms: Vec<BatchNorm>,
}

/// An encoder variant of the probe's own: stages of convolutions, each stage pooled, then
/// the residual context convolution, as in the captioners' encoder; scored as
/// [`EncoderClassifier`] scores.
#[derive(Module, Debug)]
struct Stages {
    stages: Vec<Stage>,
    /// Convolutions on the grid, after the last pooling: more depth per region at little
    /// cost, as the grid has 64 places.
    grid: Stage,
    context: Conv2d,
    head: Conv2d,
    pool: MaxPool2d,
    activation: Relu,
}

#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per run: boxing would buy nothing
enum Probe {
    /// The captioners' encoder itself.
    Captioners(EncoderClassifier),
    Variant(Stages),
}

fn conv(input: usize, output: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([input, output], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(device)
}

fn stages(widths: &[&[usize]], grid: &[usize], norm: bool, device: &Device) -> Probe {
    let mut input = 3;
    let mut stage = |widths: &[usize]| {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for &width in widths {
            convs.push(conv(input, width, device));
            if norm {
                norms.push(BatchNormConfig::new(width).init(device));
            }
            input = width;
        }
        Stage { convs, norms }
    };
    let stages = widths.iter().map(|widths| stage(widths)).collect();
    let grid = stage(grid);
    Probe::Variant(Stages {
        stages,
        grid,
        context: conv(input, input, device),
        head: Conv2dConfig::new([input, CLASSES], [1, 1]).init(device),
        pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        activation: Relu::new(),
    })
}

impl Stage {
    fn forward(&self, mut x: Tensor<4>, activation: &Relu) -> Tensor<4> {
        for (index, conv) in self.convs.iter().enumerate() {
            x = conv.forward(x);
            if let Some(norm) = self.norms.get(index) {
                x = norm.forward(x);
            }
            x = activation.forward(x);
        }
        x
    }
}

impl Stages {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for stage in &self.stages {
            x = self.pool.forward(stage.forward(x, &self.activation));
        }
        let x = self.grid.forward(x, &self.activation);
        let x = x.clone() + self.activation.forward(self.context.forward(x));
        best_region(self.head.forward(x))
    }
}

impl Probe {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Probe::Captioners(classifier) => classifier.forward(images),
            Probe::Variant(stages) => stages.forward(images),
        }
    }
}

fn batch(scenes: &[Scene], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let pixels: Vec<f32> = scenes.iter().flat_map(Scene::input).collect();
    let labels: Vec<i64> = scenes.iter().map(|s| s.objects[0].label as i64).collect();
    (
        Tensor::from_data(
            TensorData::new(pixels, [scenes.len(), 3, CANVAS_SIDE, CANVAS_SIDE]),
            device,
        ),
        Tensor::from_data(TensorData::new(labels, [scenes.len()]), device),
    )
}

fn accuracy(model: &Probe, scenes: &[Scene], device: &Device) -> f64 {
    let mut right = 0usize;
    for chunk in scenes.chunks(100) {
        let (images, labels) = batch(chunk, device);
        let predicted = model.forward(images).argmax(1).reshape([chunk.len()]);
        right += predicted.equal(labels).int().sum().into_scalar::<i64>() as usize;
    }
    right as f64 / scenes.len() as f64
}

fn single(style: SceneStyle) -> SceneStyle {
    SceneStyle {
        object_weights: [1, 0, 0, 0],
        ..style
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As `kiln train` does: glibc keeps freed memory, so steps do not page-fault it back.
    if let Err(e) = kiln_zoo::train::heap::restart_keeping_freed_memory() {
        eprintln!(
            "going on with the allocator as it is: cannot restart with its tunables set: {e}"
        );
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let variant = args.first().map_or("current", String::as_str);
    let epochs: usize = args.get(1).map_or(Ok(4), |n| n.parse())?;
    let per_epoch: usize = args.get(2).map_or(Ok(20_000), |n| n.parse())?;
    let save_to = args.get(3).map(std::path::PathBuf::from);
    let device = Device::flex();
    device.seed(42);
    let inference = device.clone();
    let device = device.autodiff();
    // The captioners' grid channels, as their config sets them.
    let shape = EncoderShape::new(CaptionerConfig::new(CaptionVocabulary.len()).channels);
    let mut model = match variant {
        "current" => Probe::Captioners(EncoderClassifier::new(shape, &device)),
        "current-bn" => Probe::Captioners(EncoderClassifier::new(shape.with_norm(true), &device)),
        "current-grid-bn" => Probe::Captioners(EncoderClassifier::new(
            shape.with_norm(true).with_grid_layers(2),
            &device,
        )),
        "wide" => stages(&[&[32], &[64], &[128]], &[], false, &device),
        "wide-bn" => stages(&[&[32], &[64], &[128]], &[], true, &device),
        "deep" => stages(&[&[32], &[32, 64], &[64, 128]], &[], false, &device),
        "deep-bn" => stages(&[&[32], &[32, 64], &[64, 128]], &[], true, &device),
        "grid" => stages(&[&[32], &[64], &[64]], &[128, 128], false, &device),
        "grid-bn" => stages(&[&[32], &[64], &[64]], &[128, 128], true, &device),
        other => return Err(format!("unknown variant {other}").into()),
    };
    let dir = std::path::Path::new(fashion_mnist::DEFAULT_DIR);
    let train_images = FashionMnist::load(dir, Split::Train)?;
    let test_images = FashionMnist::load(dir, Split::Test)?;
    let mut train = SceneGenerator::with_style(
        &train_images,
        SceneSplit::Train,
        single(SceneStyle::training()),
    )?;
    let validation = SceneGenerator::with_style(
        &train_images,
        SceneSplit::Validation,
        single(SceneStyle::training()),
    )?
    .scenes(2_000);
    let shifted: Vec<(String, Vec<Scene>)> = SceneStyle::shifted()
        .into_iter()
        .map(|style| {
            let name = style.name.to_string();
            let scenes = SceneGenerator::with_style(&test_images, SceneSplit::Test, single(style))
                .map(|mut g| g.scenes(1_000));
            scenes.map(|s| (name, s))
        })
        .collect::<Result<_, _>>()?;

    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLoss::new(None, &device);
    for epoch in 1..=epochs {
        let started = std::time::Instant::now();
        let lr = if epoch > epochs * 3 / 4 { 5e-4 } else { 2e-3 };
        let mut loss_sum = 0.0;
        let scenes = train.scenes(per_epoch);
        for chunk in scenes.chunks(64) {
            let (images, labels) = batch(chunk, &device);
            let loss = loss_fn.forward(model.forward(images), labels);
            loss_sum += f64::from(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
        }
        let valid = model.valid();
        let mut line = format!(
            "{variant} epoch {epoch}: loss {:.3}, validation {:.1}%",
            loss_sum / scenes.chunks(64).len() as f64,
            100.0 * accuracy(&valid, &validation, &inference)
        );
        for (name, scenes) in &shifted {
            line.push_str(&format!(
                ", {name} {:.1}%",
                100.0 * accuracy(&valid, scenes, &inference)
            ));
        }
        println!("{line} ({:.0} s)", started.elapsed().as_secs_f64());
    }
    if let Some(path) = save_to {
        // The module inside, so that its keys are the classifier's (`encoder.…`).
        match model.valid() {
            Probe::Captioners(classifier) => save_burnpack(&classifier, &path)?,
            Probe::Variant(stages) => save_burnpack(&stages, &path)?,
        }
        println!("saved to {}", path.display());
    }
    Ok(())
}
