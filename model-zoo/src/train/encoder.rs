//! The captioners' scene encoder trained alone, as a classifier: a 1×1 convolution scores
//! the ten classes at every region of the grid and the best region's scores are the
//! scene's. It measures how well the encoder can recognise an object wherever it is
//! (`examples/encoder_probe.rs`), and it pretrains the encoder: [`load_encoder`] reads one
//! so trained, or a trained captioner's, for a captioner to start from
//! (`kiln train captioner-… --encoder-from`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

use crate::error::{Result, ZooError};
use crate::models::captioner::{EncoderShape, SceneEncoder};
use crate::weights::load_burnpack_part;

pub use crate::data::fashion_mnist::CLASSES;

#[derive(Module, Debug)]
pub struct EncoderClassifier {
    encoder: SceneEncoder,
    head: Conv2d,
}

impl EncoderClassifier {
    /// The captioners' encoder of `shape` (64 channels on the grid in the bundled ones).
    pub fn new(shape: EncoderShape, device: &Device) -> Self {
        Self {
            encoder: SceneEncoder::new(shape, device),
            head: Conv2dConfig::new([shape.channels, CLASSES], [1, 1]).init(device),
        }
    }

    /// Class scores `[batch, 10]` of images `[batch, 3, 64, 64]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        best_region(self.head.forward(self.encoder.forward(images)))
    }

    /// The encoder's grid `[batch, channels, 8, 8]`.
    pub fn grid(&self, images: Tensor<4>) -> Tensor<4> {
        self.encoder.forward(images)
    }
}

/// Where a scene encoder's tensors sit in the files it can start from: a saved
/// [`EncoderClassifier`], or either captioner's weights.
const ENCODER_PREFIXES: [&str; 3] = ["encoder.", "Transformer.encoder.", "Lstm.encoder."];

/// The encoder saved at `path` (`.bpk`) — an [`EncoderClassifier`]'s, or a trained
/// captioner's (either decoder) — shaped as the captioner it is for. A file of another
/// shape fails with an error that names the tensor.
pub fn load_encoder(
    path: &std::path::Path,
    shape: EncoderShape,
    device: &Device,
) -> Result<SceneEncoder> {
    let mut encoder = SceneEncoder::new(shape, device);
    load_burnpack_part(&mut encoder, path, &ENCODER_PREFIXES)?;
    // Loading ignores tensors a module does not use, so an encoder with batch norm or more
    // grid layers would load into a plainer one, those parts dropped.
    let loads_as = |shape| {
        load_burnpack_part(
            &mut SceneEncoder::new(shape, device),
            path,
            &ENCODER_PREFIXES,
        )
        .is_ok()
    };
    let refused = |reason: String| ZooError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    if !shape.norm && loads_as(shape.with_norm(true)) {
        return Err(refused(
            "the encoder is batch-normed and the captioner's is not (train it with \
             --encoder-norm)"
                .into(),
        ));
    }
    if loads_as(shape.with_grid_layers(shape.grid_layers + 1)) {
        return Err(refused(format!(
            "the encoder has more grid layers than the captioner's {} (train it with \
             --encoder-grid-layers)",
            shape.grid_layers
        )));
    }
    Ok(encoder)
}

/// Scores per region `[batch, classes, rows, columns]` → the best region's for each class,
/// `[batch, classes]`.
pub fn best_region(scores: Tensor<4>) -> Tensor<2> {
    let [batch, classes, rows, columns] = scores.dims();
    scores
        .reshape([batch, classes, rows * columns])
        .max_dim(2)
        .reshape([batch, classes])
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::captioning::captioner::CaptionerArchitecture;
    use crate::models::captioner::{CaptionerConfig, EncoderShape};
    use crate::weights::save_burnpack;

    #[test]
    fn a_captioner_given_a_trained_encoder_computes_its_grid() {
        let device = Device::flex();
        let path = std::env::temp_dir().join(format!("kiln-encoder-{}.bpk", std::process::id()));
        let shape = EncoderShape::new(8).with_norm(true).with_grid_layers(1);
        let classifier = EncoderClassifier::new(shape, &device);
        save_burnpack(&classifier, &path).unwrap();
        let images = Tensor::<4>::random([2, 3, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
        let expected = classifier.grid(images.clone());
        let config = CaptionerConfig::new(20)
            .with_d_model(32)
            .with_channels(8)
            .with_encoder_norm(Some(true))
            .with_encoder_grid_layers(Some(1));
        assert_eq!(config.encoder_shape(), shape);
        for architecture in [
            CaptionerArchitecture::Lstm(config.clone()),
            CaptionerArchitecture::Transformer(config.clone()),
        ] {
            let net = architecture.init(&device);
            // Freshly initialised, its encoder is another.
            let apart = (net.grid(images.clone()) - expected.clone()).abs().max();
            assert!(apart.into_scalar::<f32>() > 1e-3);
            let net = net.with_encoder(load_encoder(&path, shape, &device).unwrap());
            net.grid(images.clone())
                .into_data()
                .assert_approx_eq::<f32>(&expected.clone().into_data(), Default::default());
        }
        // A trained captioner's encoder, of either decoder, starts another captioner.
        for architecture in [
            CaptionerArchitecture::Lstm(config.clone()),
            CaptionerArchitecture::Transformer(config.clone()),
        ] {
            let trained = architecture.init(&device);
            let captioner_path = path.with_extension("captioner.bpk");
            save_burnpack(&trained, &captioner_path).unwrap();
            let encoder = load_encoder(&captioner_path, shape, &device).unwrap();
            let other = CaptionerArchitecture::Lstm(config.clone())
                .init(&device)
                .with_encoder(encoder);
            other
                .grid(images.clone())
                .into_data()
                .assert_approx_eq::<f32>(
                    &trained.grid(images.clone()).into_data(),
                    Default::default(),
                );
            // Only now: loaded tensors read the file when first used.
            std::fs::remove_file(&captioner_path).unwrap();
        }
        // An encoder of another shape is refused, naming what does not fit.
        let error = load_encoder(
            &path,
            EncoderShape {
                channels: 16,
                ..shape
            },
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("conv"), "{error}");
        // A file holding no encoder is refused.
        let unrelated = path.with_extension("head.bpk");
        save_burnpack(&Conv2dConfig::new([8, 4], [1, 1]).init(&device), &unrelated).unwrap();
        let error = load_encoder(&unrelated, shape, &device)
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&unrelated).unwrap();
        assert!(error.contains("no tensors under"), "{error}");
        let error = load_encoder(&path, shape.with_norm(false), &device)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--encoder-norm"), "{error}");
        // Grid layers too few or too many: the file's are not silently dropped.
        for grid_layers in [0, 2] {
            let error = load_encoder(&path, shape.with_grid_layers(grid_layers), &device)
                .unwrap_err()
                .to_string();
            assert!(error.contains("grid"), "{grid_layers}: {error}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
