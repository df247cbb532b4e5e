//! A ready-to-run image classifier: an architecture, its weights and the device it runs on.

use std::path::Path;

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ZooError};
use crate::models::lenet::{LeNet5, LeNet5Config};

/// The network a classifier model folder asks for, with its hyper-parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ClassifierArchitecture {
    #[serde(rename = "lenet5")]
    LeNet5(LeNet5Config),
    /// LeNet-5 that fails on purpose when an image's first pixel is white: it panics, and
    /// returns an error when the pixel is mid-grey. For testing fault isolation only.
    #[cfg(feature = "fault-injection")]
    #[serde(rename = "faulty-lenet5")]
    FaultyLeNet5(LeNet5Config),
}

impl ClassifierArchitecture {
    pub fn name(&self) -> &'static str {
        match self {
            ClassifierArchitecture::LeNet5(_) => "lenet5",
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(_) => "faulty-lenet5",
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            ClassifierArchitecture::LeNet5(c) => c.num_classes,
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
    pub fn init(&self, device: &Device) -> ClassifierNet {
        match self {
            ClassifierArchitecture::LeNet5(c) => ClassifierNet::LeNet5(c.init(device)),
            #[cfg(feature = "fault-injection")]
            ClassifierArchitecture::FaultyLeNet5(c) => ClassifierNet::LeNet5(c.init(device)),
        }
    }
}

/// One of the classification networks in the zoo.
#[derive(Module, Debug)]
pub enum ClassifierNet {
    LeNet5(LeNet5),
}

impl ClassifierNet {
    /// # Shapes
    /// - images: `[batch, channels, height, width]`
    /// - output: `[batch, classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            ClassifierNet::LeNet5(m) => m.forward(images),
        }
    }
}

/// Load weights saved in Burn's burnpack format into `module`. Missing or mis-shaped tensors
/// are an error that names them.
pub fn load_burnpack<M: ModuleSnapshot>(module: &mut M, path: &Path) -> Result<()> {
    let fail = |reason: String| ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("file not found".into()));
    }
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| fail(e.to_string()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        let missing: Vec<_> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        let errors: Vec<_> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(fail(format!(
            "missing tensors {missing:?}; errors {errors:?}"
        )));
    }
    Ok(())
}

/// Save a module's weights in burnpack format, replacing any existing file.
pub fn save_burnpack<M: ModuleSnapshot>(module: &M, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true);
    module.save_into(&mut store).map_err(|e| ZooError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// A classifier with loaded weights, bound to a device.
#[derive(Debug)]
pub struct ImageClassifier {
    net: ClassifierNet,
    device: Device,
    input_shape: [usize; 3],
    /// Fail on purpose on marked images (test-only architectures).
    faulty: bool,
}

impl ImageClassifier {
    /// Build `architecture`, load `weights` into it, and place it on `device`.
    pub fn load(
        architecture: &ClassifierArchitecture,
        weights: &Path,
        input_shape: [usize; 3],
        device: &Device,
    ) -> Result<Self> {
        let mut net = architecture.init(device);
        load_burnpack(&mut net, weights)?;
        let mut classifier = Self::from_net(net, input_shape, device);
        classifier.faulty = architecture.fails_on_purpose();
        Ok(classifier)
    }

    /// Wrap a network that already holds its weights.
    pub fn from_net(net: ClassifierNet, input_shape: [usize; 3], device: &Device) -> Self {
        Self {
            net,
            device: device.clone(),
            input_shape,
            faulty: false,
        }
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

    /// Number of f32 values in one input image.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Class probabilities for each image of a batch; each image is `[c, h, w]` flattened.
    pub fn classify_batch(&self, images: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
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
        let [c, h, w] = self.input_shape;
        let input = Tensor::<4>::from_data(TensorData::new(flat, [n, c, h, w]), &self.device);
        let probabilities = softmax(self.net.forward(input), 1); // [n, classes]
        let classes = probabilities.dims()[1];
        let values: Vec<f32> = probabilities
            .into_data()
            .try_into_vec()
            .map_err(|e| ZooError::InvalidInput(format!("backend returned bad data: {e:?}")))?;
        Ok(values.chunks_exact(classes).map(<[f32]>::to_vec).collect())
    }
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

    #[test]
    fn top_k_orders_by_probability() {
        assert_eq!(top_k(&[0.1, 0.5, 0.2, 0.2], 3), vec![1, 2, 3]);
        assert_eq!(top_k(&[0.1], 5), vec![0]);
    }

    #[test]
    fn weights_round_trip_through_burnpack() {
        let device = Device::flex();
        let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
        let net = arch.init(&device);
        let dir = std::env::temp_dir().join(format!("kiln-zoo-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.bpk");
        save_burnpack(&net, &path).unwrap();
        let original = ImageClassifier::from_net(net, [1, 28, 28], &device);
        let loaded = ImageClassifier::load(&arch, &path, [1, 28, 28], &device).unwrap();
        let image = vec![0.3f32; 784];
        let a = original.classify_batch(&[&image]).unwrap();
        let b = loaded.classify_batch(&[&image]).unwrap();
        for (x, y) in a[0].iter().zip(&b[0]) {
            assert!((x - y).abs() < 1e-6);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_weights_name_the_file() {
        let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
        let err = ImageClassifier::load(
            &arch,
            Path::new("/nope/w.bpk"),
            [1, 28, 28],
            &Device::flex(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nope/w.bpk"));
    }
}
