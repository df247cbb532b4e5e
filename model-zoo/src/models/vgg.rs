//! VGG (Simonyan & Zisserman, 2014), configuration A (VGG-11), without batch norm.

use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::blocks::{ConvShape, conv};

/// Output channels of VGG-11's convolutions, `None` where a 2×2 max-pool sits.
const VGG11_LAYOUT: [Option<usize>; 13] = [
    Some(64),
    None,
    Some(128),
    None,
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    None,
];

#[derive(Config, Debug)]
pub struct Vgg11Config {
    #[config(default = 1000)]
    pub num_classes: usize,
}

#[derive(Module, Debug)]
pub struct Vgg11 {
    convs: Vec<Conv2d>,
    pool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

/// torchvision's `features` Sequential interleaves each convolution with a ReLU (and some
/// with a pool): its n-th convolution sits at the position this remapping names.
pub fn torchvision_keys() -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut position = 0;
    let mut conv_index = 0;
    for layer in VGG11_LAYOUT {
        if layer.is_some() {
            keys.push((
                format!(r"^features\.{position}\."),
                format!("convs.{conv_index}."),
            ));
            conv_index += 1;
            position += 2; // the convolution and its ReLU
        } else {
            position += 1;
        }
    }
    for (position, name) in [(0, "fc1"), (3, "fc2"), (6, "fc3")] {
        keys.push((format!(r"^classifier\.{position}\."), format!("{name}.")));
    }
    keys
}

impl Vgg11Config {
    pub fn init(&self, device: &Device) -> Vgg11 {
        let mut convs = Vec::new();
        let mut channels = 3;
        for out in VGG11_LAYOUT.into_iter().flatten() {
            convs.push(conv(
                [channels, out],
                ConvShape::square(3).pad(1),
                true,
                device,
            ));
            channels = out;
        }
        Vgg11 {
            convs,
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
        let mut convs = self.convs.iter();
        let mut x = images;
        for layer in VGG11_LAYOUT {
            x = match layer {
                Some(_) => relu(convs.next().expect("one conv per layout entry").forward(x)),
                None => self.pool.forward(x),
            };
        }
        let x: Tensor<2> = self.avgpool.forward(x).flatten(1, 3); // [B, 25088]
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}
