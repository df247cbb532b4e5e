//! LeNet-5 (LeCun et al., 1998) with the modern ReLU + max-pool choices.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

use super::cpu::{self, Activation, NetworkBuilder, Value};
use crate::error::Result;

/// Hyper-parameters of LeNet-5.
#[derive(Config, Debug)]
pub struct LeNet5Config {
    /// Number of output classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Input channels (1 for grayscale).
    #[config(default = 1)]
    pub in_channels: usize,
}

/// The classic 5×5 conv → pool → 5×5 conv → pool → 120 → 84 → classes network.
///
/// The 28×28 input is zero-padded by 2 on each side, which reproduces the original 32×32
/// input size, so the second pooling leaves a 16×5×5 feature map.
#[derive(Module, Debug)]
pub struct LeNet5 {
    conv1: Conv2d,
    pool1: MaxPool2d,
    conv2: Conv2d,
    pool2: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    activation: Relu,
}

impl LeNet5Config {
    /// Build the network with freshly initialised weights on `device`.
    pub fn init(&self, device: &Device) -> LeNet5 {
        LeNet5 {
            conv1: Conv2dConfig::new([self.in_channels, 6], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            pool1: MaxPool2dConfig::new([2, 2]).init(),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            pool2: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(16 * 5 * 5, 120).init(device),
            fc2: LinearConfig::new(120, 84).init(device),
            fc3: LinearConfig::new(84, self.num_classes).init(device),
            activation: Relu::new(),
        }
    }
}

impl LeNet5 {
    /// Input height and width the network expects.
    pub const INPUT_SIZE: usize = 28;

    /// Class logits for a batch of images.
    ///
    /// # Shapes
    /// - input: `[batch, channels, 28, 28]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.activation.forward(self.conv1.forward(images)); // [B, 6, 28, 28]
        let x = self.pool1.forward(x); // [B, 6, 14, 14]
        let x = self.activation.forward(self.conv2.forward(x)); // [B, 16, 10, 10]
        let x = self.pool2.forward(x); // [B, 16, 5, 5]
        let x: Tensor<2> = x.flatten(1, 3); // [B, 400]
        let x = self.activation.forward(self.fc1.forward(x)); // [B, 120]
        let x = self.activation.forward(self.fc2.forward(x)); // [B, 84]
        self.fc3.forward(x) // [B, num_classes]
    }

    /// [`LeNet5::forward`] for the CPU kernels, from `x` to the logits.
    pub fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        let x = b.conv(x, cpu::conv(&self.conv1, None, Activation::Relu)?, None)?;
        let x = b.pool(x, cpu::max_pool(&self.pool1)?)?;
        let x = b.conv(x, cpu::conv(&self.conv2, None, Activation::Relu)?, None)?;
        let x = b.pool(x, cpu::max_pool(&self.pool2)?)?;
        let [h, w, c] = b.size(x);
        let x = b.linear(
            x,
            cpu::linear_after_flatten(&self.fc1, [c, h, w], Activation::Relu)?,
        )?;
        let x = b.linear(x, cpu::linear(&self.fc2, Activation::Relu)?)?;
        Ok(b.linear(x, cpu::linear(&self.fc3, Activation::Identity)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_shape_matches_documentation() {
        let device = Device::flex();
        let model = LeNet5Config::new().init(&device);
        let logits = model.forward(Tensor::zeros([3, 1, 28, 28], &device));
        assert_eq!(logits.dims(), [3, 10]);
    }
}
