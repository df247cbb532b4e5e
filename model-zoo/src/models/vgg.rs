//! VGG (Simonyan & Zisserman, 2014), configuration A (VGG-11), without batch norm.

use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::blocks::{ConvShape, conv};

/// Output channels of VGG-11's convolutions, in stages that each end in a 2×2 max-pool.
const VGG11_STAGES: [&[usize]; 5] = [&[64], &[128], &[256, 256], &[512, 512], &[512, 512]];

#[derive(Config, Debug)]
pub struct Vgg11Config {
    #[config(default = 1000)]
    pub num_classes: usize,
}

#[derive(Module, Debug)]
pub struct Vgg11 {
    stages: Vec<Vec<Conv2d>>,
    pool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

/// torchvision keeps every layer in one `features` Sequential, each convolution followed by
/// a ReLU and each stage by a pool: its n-th convolution sits at the position this
/// remapping names.
pub fn torchvision_keys() -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut position = 0;
    for (stage, convs) in VGG11_STAGES.iter().enumerate() {
        for conv in 0..convs.len() {
            keys.push((
                format!(r"^features\.{position}\."),
                format!("stages.{stage}.{conv}."),
            ));
            position += 2; // the convolution and its ReLU
        }
        position += 1; // the pool
    }
    for (position, name) in [(0, "fc1"), (3, "fc2"), (6, "fc3")] {
        keys.push((format!(r"^classifier\.{position}\."), format!("{name}.")));
    }
    keys
}

impl Vgg11Config {
    pub fn init(&self, device: &Device) -> Vgg11 {
        let mut channels = 3;
        let stages = VGG11_STAGES
            .iter()
            .map(|outs| {
                outs.iter()
                    .map(|&out| {
                        let layer =
                            conv([channels, out], ConvShape::square(3).pad(1), true, device);
                        channels = out;
                        layer
                    })
                    .collect()
            })
            .collect();
        Vgg11 {
            stages,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            avgpool: AdaptiveAvgPool2dConfig::new([7, 7]).init(),
            fc1: LinearConfig::new(512 * 7 * 7, 4096).init(device),
            fc2: LinearConfig::new(4096, 4096).init(device),
            fc3: LinearConfig::new(4096, self.num_classes).init(device),
        }
    }
}

impl Vgg11 {
    /// # Shapes
    /// - input: `[batch, 3, height, width]`, height and width at least 32
    /// - output: `[batch, num_classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.stages.iter().fold(images, |x, convs| {
            let x = convs.iter().fold(x, |x, conv| relu(conv.forward(x)));
            self.pool.forward(x)
        });
        let x: Tensor<2> = self.avgpool.forward(x).flatten(1, 3); // [B, 25088]
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}
