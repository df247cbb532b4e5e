//! A ready-to-run image classifier: an architecture, its weights and the device it runs on.

use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
pub use kiln_kernels::softmax::softmax_in_place;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ZooError};
use crate::models::alexnet::{self, AlexNet, AlexNetConfig};
use crate::models::cpu::{self, Network, NetworkBuilder};
use crate::models::efficientnet_lite::{self, EfficientNetLite0, EfficientNetLite0Config};
use crate::models::googlenet::{self, GoogLeNet, GoogLeNetConfig};
use crate::models::inception_v3::{self, InceptionV3, InceptionV3Config};
use crate::models::lenet::{LeNet5, LeNet5Config};
use crate::models::resnet::{self, ResNet, ResNetConfig};
use crate::models::vgg::{self, Vgg11, Vgg11Config};
use crate::precision::Precision;
use crate::weights::{KeyRemap, load_weights, remaps};

/// The network a classifier model folder asks for, with its hyper-parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ClassifierArchitecture {
    #[serde(rename = "lenet5")]
    LeNet5(LeNet5Config),
    #[serde(rename = "alexnet")]
    AlexNet(ClassCount),
    #[serde(rename = "vgg11")]
    Vgg11(ClassCount),
    #[serde(rename = "googlenet")]
    GoogLeNet(InceptionSpec),
    #[serde(rename = "resnet")]
    ResNet(ResNetSpec),
    #[serde(rename = "inception-v3")]
    InceptionV3(InceptionSpec),
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0(ClassCount),
    /// PaddleOCR's text-direction classifier, generated from its ONNX file at build time.
    #[cfg(feature = "onnx")]
    #[serde(rename = "ppocr-text-direction")]
    PpOcrTextDirection,
    /// LeNet-5 that fails on purpose when an image's first pixel is white: it panics, and
    /// returns an error when the pixel is mid-grey. For testing fault isolation only.
    #[cfg(feature = "fault-injection")]
    #[serde(rename = "faulty-lenet5")]
    FaultyLeNet5(LeNet5Config),
}

/// How many classes a network tells apart: 1000 (ImageNet) unless said otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassCount {
    #[serde(default = "imagenet_classes")]
    pub num_classes: usize,
}

/// GoogLeNet and Inception v3: the class count, and whether to re-normalise
/// ImageNet-normalised input as torchvision's pretrained weights expect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InceptionSpec {
    #[serde(default = "imagenet_classes")]
    pub num_classes: usize,
    #[serde(default)]
    pub transform_input: bool,
}

/// A ResNet named by its depth: 18, 34, 50, 101 or 152.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetSpec {
    pub depth: usize,
    #[serde(default = "imagenet_classes")]
    pub num_classes: usize,
}

fn imagenet_classes() -> usize {
    1000
}

impl ResNetSpec {
    fn config(&self) -> Result<ResNetConfig> {
        ResNetConfig::of_depth(self.depth)
            .map(|c| c.with_num_classes(self.num_classes))
            .ok_or_else(|| {
                ZooError::InvalidInput(format!(
                    "ResNet depth must be 18, 34, 50, 101 or 152, not {}",
                    self.depth
                ))
            })
    }
}

impl ClassifierArchitecture {
    pub fn name(&self) -> &'static str {
        match self {
            ClassifierArchitecture::LeNet5(_) => "lenet5",
            ClassifierArchitecture::AlexNet(_) => "alexnet",
            ClassifierArchitecture::Vgg11(_) => "vgg11",
            ClassifierArchitecture::GoogLeNet(_) => "googlenet",
            ClassifierArchitecture::ResNet(_) => "resnet",
            ClassifierArchitecture::InceptionV3(_) => "inception-v3",
            ClassifierArchitecture::EfficientNetLite0(_) => "efficientnet-lite0",
            #[cfg(feature = "onnx")]
            ClassifierArchitecture::PpOcrTextDirection => "ppocr-text-direction",
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(_) => "faulty-lenet5",
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            ClassifierArchitecture::LeNet5(c) => c.num_classes,
            ClassifierArchitecture::AlexNet(c) => c.num_classes,
            ClassifierArchitecture::Vgg11(c) => c.num_classes,
            ClassifierArchitecture::GoogLeNet(c) => c.num_classes,
            ClassifierArchitecture::ResNet(c) => c.num_classes,
            ClassifierArchitecture::InceptionV3(c) => c.num_classes,
            ClassifierArchitecture::EfficientNetLite0(c) => c.num_classes,
            #[cfg(feature = "onnx")]
            ClassifierArchitecture::PpOcrTextDirection => 2,
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(c) => c.num_classes,
        }
    }

    /// Input channels the network's first layer takes.
    pub fn in_channels(&self) -> usize {
        match self {
            ClassifierArchitecture::LeNet5(c) => c.in_channels,
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(c) => c.in_channels,
            _ => 3,
        }
    }

    /// Input height and width the network needs, where it fixes them.
    pub fn fixed_input_size(&self) -> Option<(usize, usize)> {
        match self {
            ClassifierArchitecture::LeNet5(_) => Some((LeNet5::INPUT_SIZE, LeNet5::INPUT_SIZE)),
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(_) => {
                Some((LeNet5::INPUT_SIZE, LeNet5::INPUT_SIZE))
            }
            _ => None,
        }
    }

    /// Smallest input height and width the network's pooling and strides accept.
    pub fn min_input_size(&self) -> usize {
        match self {
            ClassifierArchitecture::AlexNet(_) => 63,
            ClassifierArchitecture::InceptionV3(_) => 75,
            ClassifierArchitecture::LeNet5(_) => LeNet5::INPUT_SIZE,
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(_) => LeNet5::INPUT_SIZE,
            _ => 32,
        }
    }

    /// Check what serde cannot: hyper-parameters with a fixed set of values.
    pub fn validate(&self) -> Result<()> {
        if let ClassifierArchitecture::ResNet(spec) = self {
            spec.config()?;
        }
        Ok(())
    }

    /// How keys in the checkpoints this architecture is published with map to its
    /// parameters: torchvision's layout, or `efficientnet_pytorch`'s for EfficientNet-Lite.
    pub fn checkpoint_keys(&self) -> Vec<KeyRemap> {
        match self {
            ClassifierArchitecture::AlexNet(_) => remaps(alexnet::TORCHVISION_KEYS),
            ClassifierArchitecture::Vgg11(_) => vgg::torchvision_keys(),
            ClassifierArchitecture::GoogLeNet(_) => remaps(googlenet::TORCHVISION_KEYS),
            ClassifierArchitecture::ResNet(_) => remaps(resnet::TORCHVISION_KEYS),
            ClassifierArchitecture::InceptionV3(_) => remaps(inception_v3::TORCHVISION_KEYS),
            ClassifierArchitecture::EfficientNetLite0(_) => {
                remaps(efficientnet_lite::EFFICIENTNET_PYTORCH_KEYS)
            }
            _ => Vec::new(),
        }
    }

    /// For a network generated from an ONNX file, that file: its weights are compiled in,
    /// and the model folder's weights must be the same file.
    pub fn compiled_source(&self) -> Option<&'static [u8]> {
        match self {
            #[cfg(feature = "onnx")]
            ClassifierArchitecture::PpOcrTextDirection => Some(kiln_onnx::text_direction::SOURCE),
            _ => None,
        }
    }

    /// Whether this is a test-only architecture that fails on purpose.
    pub fn fails_on_purpose(&self) -> bool {
        match self {
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(_) => true,
            _ => false,
        }
    }

    /// Build the network with fresh weights.
    pub fn init(&self, device: &Device) -> Result<ClassifierNet> {
        Ok(match self {
            ClassifierArchitecture::LeNet5(c) => ClassifierNet::LeNet5(c.init(device)),
            ClassifierArchitecture::AlexNet(c) => ClassifierNet::AlexNet(
                AlexNetConfig::new()
                    .with_num_classes(c.num_classes)
                    .init(device),
            ),
            ClassifierArchitecture::Vgg11(c) => ClassifierNet::Vgg11(
                Vgg11Config::new()
                    .with_num_classes(c.num_classes)
                    .init(device),
            ),
            ClassifierArchitecture::GoogLeNet(c) => ClassifierNet::GoogLeNet(
                GoogLeNetConfig::new()
                    .with_num_classes(c.num_classes)
                    .with_transform_input(c.transform_input)
                    .init(device),
            ),
            ClassifierArchitecture::ResNet(spec) => {
                ClassifierNet::ResNet(spec.config()?.init(device))
            }
            ClassifierArchitecture::InceptionV3(c) => ClassifierNet::InceptionV3(
                InceptionV3Config::new()
                    .with_num_classes(c.num_classes)
                    .with_transform_input(c.transform_input)
                    .init(device),
            ),
            ClassifierArchitecture::EfficientNetLite0(c) => ClassifierNet::EfficientNetLite0(
                EfficientNetLite0Config::new()
                    .with_num_classes(c.num_classes)
                    .init(device),
            ),
            #[cfg(feature = "onnx")]
            ClassifierArchitecture::PpOcrTextDirection => ClassifierNet::PpOcrTextDirection(
                kiln_onnx::text_direction::Model::from_embedded(device),
            ),
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(c) => ClassifierNet::LeNet5(c.init(device)),
        })
    }
}

/// One of the classification networks in the zoo.
// One value per model instance, built once at load: the size of the largest variant costs
// nothing on the request path.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ClassifierNet {
    LeNet5(LeNet5),
    AlexNet(AlexNet),
    Vgg11(Vgg11),
    GoogLeNet(GoogLeNet),
    ResNet(ResNet),
    InceptionV3(InceptionV3),
    EfficientNetLite0(EfficientNetLite0),
    #[cfg(feature = "onnx")]
    PpOcrTextDirection(kiln_onnx::text_direction::Model),
}

impl ClassifierNet {
    /// # Shapes
    /// - images: `[batch, channels, height, width]`
    /// - output: `[batch, classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            ClassifierNet::LeNet5(m) => m.forward(images),
            ClassifierNet::AlexNet(m) => m.forward(images),
            ClassifierNet::Vgg11(m) => m.forward(images),
            ClassifierNet::GoogLeNet(m) => m.forward(images),
            ClassifierNet::ResNet(m) => m.forward(images),
            ClassifierNet::InceptionV3(m) => m.forward(images),
            ClassifierNet::EfficientNetLite0(m) => m.forward(images),
            // The network ends in a softmax; its log-probabilities are logits whose softmax
            // gives those probabilities back.
            #[cfg(feature = "onnx")]
            ClassifierNet::PpOcrTextDirection(m) => {
                m.forward(images).clamp_min(f32::MIN_POSITIVE).log()
            }
        }
    }

    /// The network prepared for Kiln's CPU kernels (weights packed, batch norm folded,
    /// NHWC throughout), for `[channels, height, width]` input; `None` for architectures
    /// that run on Burn's ops alone.
    pub fn cpu_network(&self, input_shape: [usize; 3]) -> Option<Result<Network>> {
        let [c, h, w] = input_shape;
        let (mut builder, x) = NetworkBuilder::new(c, h, w);
        let logits = match self {
            ClassifierNet::LeNet5(m) => m.cpu_network(&mut builder, x),
            ClassifierNet::GoogLeNet(m) => m.cpu_network(&mut builder, x),
            ClassifierNet::ResNet(m) => m.cpu_network(&mut builder, x),
            ClassifierNet::EfficientNetLite0(m) => m.cpu_network(&mut builder, x),
            _ => return None,
        };
        Some(logits.and_then(|logits| Ok(builder.build(logits)?)))
    }
}

/// A classifier with loaded weights, bound to a device.
#[derive(Debug)]
pub struct ImageClassifier {
    net: ClassifierNet,
    device: Device,
    input_shape: [usize; 3],
    /// Fail on purpose on marked images (test-only architectures).
    faulty: bool,
    precision: Precision,
    /// Batch sizes a batch is padded up to (ascending); empty to run every size as it is.
    batch_buckets: Vec<usize>,
    /// The same network on Kiln's CPU kernels, which run it instead of Burn's ops when the
    /// device is the CPU and the precision f32.
    cpu: Option<Arc<Network>>,
}

impl ImageClassifier {
    /// Build `architecture`, load `weights` into it, and place it on `device`. Checkpoint
    /// keys are renamed by `key_remaps` first, then by the architecture's own table.
    pub fn load(
        architecture: &ClassifierArchitecture,
        weights: &Path,
        key_remaps: &[KeyRemap],
        input_shape: [usize; 3],
        device: &Device,
    ) -> Result<Self> {
        let [_, height, width] = input_shape;
        let min = architecture.min_input_size();
        if height < min || width < min {
            return Err(ZooError::InvalidInput(format!(
                "{} needs input of at least {min}×{min}, not {height}×{width}",
                architecture.name()
            )));
        }
        let mut net = architecture.init(device)?;
        match architecture.compiled_source() {
            Some(source) => check_compiled_source(source, weights)?,
            None => {
                let keys = [key_remaps, &architecture.checkpoint_keys()].concat();
                load_weights(&mut net, weights, &keys)?;
            }
        }
        let mut classifier = Self::from_net(net, input_shape, device);
        classifier.faulty = architecture.fails_on_purpose();
        Ok(classifier)
    }

    /// Wrap a network that already holds its weights.
    pub fn from_net(net: ClassifierNet, input_shape: [usize; 3], device: &Device) -> Self {
        let mut classifier = Self {
            net,
            device: device.clone(),
            input_shape,
            faulty: false,
            precision: Precision::F32,
            batch_buckets: Vec::new(),
            cpu: None,
        };
        classifier.prepare_cpu_network();
        classifier
    }

    /// Prepares the CPU kernels' copy of the network where they apply. Architectures
    /// without one, and a preparation that fails (a shape the kernels reject), keep
    /// Burn's ops, which compute the same logits.
    fn prepare_cpu_network(&mut self) {
        self.cpu = None;
        if !cpu::kernels_apply(&self.device) || self.precision != Precision::F32 {
            return;
        }
        if let Some(Ok(network)) = self.net.cpu_network(self.input_shape) {
            self.cpu = Some(Arc::new(network));
        }
    }

    /// Whether batches run on Kiln's CPU kernels rather than Burn's ops.
    pub fn uses_cpu_kernels(&self) -> bool {
        self.cpu.is_some()
    }

    /// Run on Burn's ops even where the CPU kernels apply (for comparisons).
    pub fn without_cpu_kernels(mut self) -> Self {
        self.cpu = None;
        self
    }

    /// Compute in `precision` from now on: parameters are cast once; inputs and logits are
    /// converted at the edges, so callers still pass and get f32.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        precision.check_supported(&self.device)?;
        self.net = precision.cast_module(self.net);
        self.precision = precision;
        self.prepare_cpu_network();
        Ok(self)
    }

    /// Pad each batch with blank images up to the smallest of `buckets` that holds it, so a
    /// backend that compiles kernels per shape sees only those sizes (all compiled during
    /// warm-up) instead of every size up to the largest batch.
    pub fn with_batch_buckets(mut self, mut buckets: Vec<usize>) -> Self {
        buckets.sort_unstable();
        buckets.dedup();
        self.batch_buckets = buckets;
        self
    }

    /// Write the network's weights as safetensors, under Burn's parameter names and layouts
    /// (a linear layer's weight is `[inputs, outputs]`), for tools outside Kiln.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let mut store = SafetensorsStore::from_file(path).overwrite(true);
        self.net
            .save_into(&mut store)
            .map_err(|e| ZooError::Weights {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Write the network's weights in Burn's burnpack format.
    pub fn save_burnpack(&self, path: &Path) -> Result<()> {
        crate::weights::save_burnpack(&self.net, path)
    }

    /// Number of f32 values in one input image.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Class probabilities for each image of a batch; each image is `[c, h, w]` flattened.
    pub fn classify_batch(&self, images: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let mut rows = self.logits_batch(images)?;
        rows.iter_mut().for_each(|row| softmax_in_place(row));
        Ok(rows)
    }

    /// Raw class scores (logits) for each image of a batch.
    pub fn logits_batch(&self, images: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let n = images.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let len = self.input_len();
        let mut flat = Vec::with_capacity(n * len);
        for (i, image) in images.iter().enumerate() {
            if image.len() != len {
                return Err(ZooError::InvalidInput(format!(
                    "image {i} has {} values, expected {len}",
                    image.len()
                )));
            }
            flat.extend_from_slice(image);
        }
        if self.faulty {
            inject_fault(images)?;
        }
        if let Some(cpu) = &self.cpu {
            let logits = cpu.run(&flat, n)?;
            let classes = cpu.output_len();
            return Ok(logits.chunks_exact(classes).map(<[f32]>::to_vec).collect());
        }
        let padded = padded_batch_size(n, &self.batch_buckets);
        flat.resize(padded * len, 0.0);
        let [c, h, w] = self.input_shape;
        let input = Tensor::<4>::from_data(TensorData::new(flat, [padded, c, h, w]), &self.device);
        let logits = self.net.forward(self.precision.cast(input)); // [padded, classes]
        let classes = logits.dims()[1];
        let values: Vec<f32> = Precision::F32
            .cast_from(self.precision, logits)
            .into_data()
            .try_into_vec()
            .map_err(|e| ZooError::InvalidInput(format!("backend returned bad data: {e:?}")))?;
        Ok(values
            .chunks_exact(classes)
            .take(n)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// The smallest bucket that holds `n`, or `n` itself when none does.
fn padded_batch_size(n: usize, buckets: &[usize]) -> usize {
    buckets.iter().copied().find(|&b| b >= n).unwrap_or(n)
}

/// Batch sizes worth compiling kernels for, up to `max_batch_size`: the powers of two below
/// it, and itself. A batch is padded by less than half its size.
pub fn batch_buckets(max_batch_size: usize) -> Vec<usize> {
    let mut buckets: Vec<usize> = std::iter::successors(Some(1usize), |b| b.checked_mul(2))
        .take_while(|&b| b < max_batch_size)
        .collect();
    buckets.push(max_batch_size.max(1));
    buckets
}

/// A network generated at build time carries its weights; its folder's weights file must be
/// the ONNX file it was generated from, so what the folder says is what is served.
fn check_compiled_source(source: &[u8], weights: &Path) -> Result<()> {
    let bytes = std::fs::read(weights).map_err(|e| ZooError::io(weights, e))?;
    if bytes != source {
        return Err(ZooError::Weights {
            path: weights.to_path_buf(),
            reason: "this network is compiled from another ONNX file; serving a different one \
                     needs a rebuild with it"
                .into(),
        });
    }
    Ok(())
}

/// The failures of the test-only faulty architecture, keyed by the first input value: a
/// white first pixel (normalised above 2) panics, a mid-grey one (between 0.5 and 1)
/// returns an error.
fn inject_fault(images: &[&[f32]]) -> Result<()> {
    for image in images {
        match image.first() {
            Some(&v) if v > 2.0 => panic!("fault injection: white first pixel"),
            Some(&v) if (0.5..1.0).contains(&v) => {
                return Err(ZooError::InvalidInput(
                    "fault injection: grey first pixel".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Indices of the `k` largest values, largest first (ties keep the lower index first).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let ranked = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Only the best k need ordering: select them first (linear), then sort those.
    if k < order.len() {
        order.select_nth_unstable_by(k, ranked);
        order.truncate(k);
    }
    order.sort_by(ranked);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::save_burnpack;

    /// Replaces every vector parameter (biases, batch-norm scales, shifts and running
    /// statistics) with values in [0.5, 1.5), so batch-norm folding is exercised.
    struct RandomVectors;

    impl burn::module::ModuleMapper for RandomVectors {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            if D != 1 {
                return param;
            }
            param.map(|t| {
                let device = t.device();
                Tensor::random(
                    t.shape(),
                    burn::tensor::Distribution::Uniform(0.5, 1.5),
                    &device,
                )
            })
        }
    }

    #[test]
    fn cpu_kernels_give_burns_logits() {
        let device = Device::flex();
        let imagenet_like = [3, 64, 72];
        let cases = [
            (
                ClassifierArchitecture::LeNet5(LeNet5Config::new()),
                [1, 28, 28],
            ),
            (
                ClassifierArchitecture::ResNet(ResNetSpec {
                    depth: 18,
                    num_classes: 20,
                }),
                imagenet_like,
            ),
            (
                ClassifierArchitecture::ResNet(ResNetSpec {
                    depth: 50,
                    num_classes: 20,
                }),
                imagenet_like,
            ),
            (
                ClassifierArchitecture::GoogLeNet(InceptionSpec {
                    num_classes: 20,
                    transform_input: true,
                }),
                imagenet_like,
            ),
            (
                ClassifierArchitecture::EfficientNetLite0(ClassCount { num_classes: 20 }),
                imagenet_like,
            ),
        ];
        for (architecture, shape) in cases {
            let net = architecture.init(&device).unwrap().map(&mut RandomVectors);
            let burn = ImageClassifier::from_net(net.clone(), shape, &device).without_cpu_kernels();
            let kernels = ImageClassifier::from_net(net, shape, &device);
            assert!(kernels.uses_cpu_kernels(), "{}", architecture.name());
            let len: usize = shape.iter().product();
            let images: Vec<Vec<f32>> = (0..3)
                .map(|i| {
                    (0..len)
                        .map(|j| ((j * 7 + i * 13) % 19) as f32 / 9.5 - 1.0)
                        .collect()
                })
                .collect();
            let images: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
            let expected = burn.logits_batch(&images).unwrap();
            let got = kernels.logits_batch(&images).unwrap();
            let scale = expected
                .iter()
                .flatten()
                .fold(1e-6f32, |m, v| m.max(v.abs()));
            for (e, g) in expected.iter().flatten().zip(got.iter().flatten()) {
                assert!(
                    (e - g).abs() <= 1e-4 * scale,
                    "{}: {g} where Burn gives {e} (logit scale {scale})",
                    architecture.name()
                );
            }
            // One image alone gives the same as in the batch.
            let single = kernels.logits_batch(&images[1..2]).unwrap();
            assert_eq!(single[0].len(), got[1].len());
        }
    }

    #[test]
    fn cpu_kernels_stay_off_where_they_do_not_apply() {
        let device = Device::flex();
        let vgg = ClassifierArchitecture::Vgg11(ClassCount { num_classes: 5 });
        let classifier =
            ImageClassifier::from_net(vgg.init(&device).unwrap(), [3, 32, 32], &device);
        assert!(!classifier.uses_cpu_kernels());
        let lenet = ClassifierArchitecture::LeNet5(LeNet5Config::new());
        let half = ImageClassifier::from_net(lenet.init(&device).unwrap(), [1, 28, 28], &device)
            .with_precision(Precision::Bf16);
        if let Ok(half) = half {
            assert!(
                !half.uses_cpu_kernels(),
                "reduced precision runs on Burn's ops"
            );
        }
    }

    #[test]
    fn top_k_orders_by_probability() {
        assert_eq!(top_k(&[0.1, 0.5, 0.2, 0.2], 3), vec![1, 2, 3]);
        assert_eq!(top_k(&[0.1], 5), vec![0]);
    }

    #[test]
    fn weights_round_trip_through_burnpack() {
        let device = Device::flex();
        let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
        let net = arch.init(&device).unwrap();
        let dir = std::env::temp_dir().join(format!("kiln-zoo-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.bpk");
        save_burnpack(&net, &path).unwrap();
        let original = ImageClassifier::from_net(net, [1, 28, 28], &device);
        let loaded = ImageClassifier::load(&arch, &path, &[], [1, 28, 28], &device).unwrap();
        let image = vec![0.3f32; 784];
        let a = original.classify_batch(&[&image]).unwrap();
        let b = loaded.classify_batch(&[&image]).unwrap();
        for (x, y) in a[0].iter().zip(&b[0]) {
            assert!((x - y).abs() < 1e-6);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn buckets_are_powers_of_two_and_the_largest_batch() {
        assert_eq!(batch_buckets(1), vec![1]);
        assert_eq!(batch_buckets(32), vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(batch_buckets(48), vec![1, 2, 4, 8, 16, 32, 48]);
        assert_eq!(padded_batch_size(3, &batch_buckets(48)), 4);
        assert_eq!(padded_batch_size(33, &batch_buckets(48)), 48);
        assert_eq!(padded_batch_size(49, &batch_buckets(48)), 49);
    }

    #[test]
    fn padded_batches_give_the_same_answers() {
        let device = Device::flex();
        let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
        let plain = ImageClassifier::from_net(arch.init(&device).unwrap(), [1, 28, 28], &device);
        let padded = ImageClassifier::from_net(plain.net.clone(), [1, 28, 28], &device)
            .with_batch_buckets(batch_buckets(8));
        let images: Vec<Vec<f32>> = (0..3).map(|i| vec![i as f32 / 3.0; 784]).collect();
        let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
        let a = plain.logits_batch(&refs).unwrap();
        let b = padded.logits_batch(&refs).unwrap();
        assert_eq!(b.len(), 3);
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn half_precision_stays_close_to_f32() {
        let device = Device::flex();
        let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
        let full = ImageClassifier::from_net(arch.init(&device).unwrap(), [1, 28, 28], &device);
        let image: Vec<f32> = (0..784).map(|i| (i % 17) as f32 / 17.0).collect();
        let reference = full.logits_batch(&[&image]).unwrap();
        for precision in [Precision::F16, Precision::Bf16] {
            let half = ImageClassifier::from_net(full.net.clone(), [1, 28, 28], &device)
                .with_precision(precision)
                .unwrap();
            let logits = half.logits_batch(&[&image]).unwrap();
            for (x, y) in reference[0].iter().zip(&logits[0]) {
                assert!((x - y).abs() < 0.05, "{precision}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn missing_weights_name_the_file() {
        let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
        let err = ImageClassifier::load(
            &arch,
            Path::new("/nope/w.bpk"),
            &[],
            [1, 28, 28],
            &Device::flex(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nope/w.bpk"));
    }
}
