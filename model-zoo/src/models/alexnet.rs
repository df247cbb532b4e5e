//! AlexNet (Krizhevsky et al., 2012) in torchvision's single-tower form.

use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::blocks::{ConvShape, conv};

#[derive(Config, Debug)]
pub struct AlexNetConfig {
    #[config(default = 1000)]
    pub num_classes: usize,
}

/// Five convolutions and three fully connected layers; dropout is inactive at inference.
#[derive(Module, Debug)]
pub struct AlexNet {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    conv4: Conv2d,
    conv5: Conv2d,
    pool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
    fc6: Linear,
    fc7: Linear,
    fc8: Linear,
}

/// torchvision keeps the layers in `nn.Sequential`s, so their keys carry the position of
/// each layer among ReLUs, pools and dropouts.
pub const TORCHVISION_KEYS: &[(&str, &str)] = &[
    (r"^features\.0\.", "conv1."),
    (r"^features\.3\.", "conv2."),
    (r"^features\.6\.", "conv3."),
    (r"^features\.8\.", "conv4."),
    (r"^features\.10\.", "conv5."),
    (r"^classifier\.1\.", "fc6."),
    (r"^classifier\.4\.", "fc7."),
    (r"^classifier\.6\.", "fc8."),
];

impl AlexNetConfig {
    pub fn init(&self, device: &Device) -> AlexNet {
        AlexNet {
            conv1: conv(
                [3, 64],
                ConvShape::square(11).stride(4).pad(2),
                true,
                device,
            ),
            conv2: conv([64, 192], ConvShape::square(5).pad(2), true, device),
            conv3: conv([192, 384], ConvShape::square(3).pad(1), true, device),
            conv4: conv([384, 256], ConvShape::square(3).pad(1), true, device),
            conv5: conv([256, 256], ConvShape::square(3).pad(1), true, device),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            avgpool: AdaptiveAvgPool2dConfig::new([6, 6]).init(),
            fc6: LinearConfig::new(256 * 6 * 6, 4096).init(device),
            fc7: LinearConfig::new(4096, 4096).init(device),
            fc8: LinearConfig::new(4096, self.num_classes).init(device),
        }
    }
}

impl AlexNet {
    /// # Shapes
    /// - input: `[batch, 3, height, width]`, height and width at least 63
    /// - output: `[batch, num_classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(images)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x = relu(self.conv3.forward(x));
        let x = relu(self.conv4.forward(x));
        let x = self.pool.forward(relu(self.conv5.forward(x)));
        let x: Tensor<2> = self.avgpool.forward(x).flatten(1, 3); // [B, 9216]
        let x = relu(self.fc6.forward(x));
        let x = relu(self.fc7.forward(x));
        self.fc8.forward(x)
    }
}
