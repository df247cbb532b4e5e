//! Building blocks shared by the ImageNet-class CNNs, named as torchvision names them so
//! torchvision checkpoints load with few key remappings.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::cpu::{self, Activation};
use crate::error::Result;

/// BatchNorm epsilon of torchvision's `BasicConv2d` (GoogLeNet, Inception v3).
pub const BASIC_CONV_BN_EPS: f64 = 1e-3;
/// PyTorch's default BatchNorm epsilon (ResNet).
pub const TORCH_BN_EPS: f64 = 1e-5;

/// Geometry of one convolution: kernel, stride and symmetric padding as `[height, width]`.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub kernel: [usize; 2],
    pub stride: usize,
    pub padding: [usize; 2],
}

impl ConvShape {
    /// A square `k`×`k` kernel with stride 1 and no padding.
    pub const fn square(k: usize) -> Self {
        Self {
            kernel: [k, k],
            stride: 1,
            padding: [0, 0],
        }
    }

    pub const fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    pub const fn pad(mut self, padding: usize) -> Self {
        self.padding = [padding, padding];
        self
    }

    /// A `height`×`width` kernel padded to keep the spatial size (Inception's 1×7 and 7×1).
    pub const fn rect(height: usize, width: usize) -> Self {
        Self {
            kernel: [height, width],
            stride: 1,
            padding: [height / 2, width / 2],
        }
    }
}

/// A convolution laid out as PyTorch's `nn.Conv2d` with the given geometry.
pub fn conv(channels: [usize; 2], shape: ConvShape, bias: bool, device: &Device) -> Conv2d {
    let [ph, pw] = shape.padding;
    Conv2dConfig::new(channels, shape.kernel)
        .with_stride([shape.stride, shape.stride])
        .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
        .with_bias(bias)
        .init(device)
}

pub fn batch_norm(channels: usize, epsilon: f64, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(epsilon)
        .init(device)
}

/// Convolution without bias, batch norm, ReLU: torchvision's `BasicConv2d`
/// (keys `conv.weight`, `bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var`).
#[derive(Module, Debug)]
pub struct BasicConv2d {
    conv: Conv2d,
    bn: BatchNorm,
}

impl BasicConv2d {
    pub fn new(channels: [usize; 2], shape: ConvShape, device: &Device) -> Self {
        Self {
            conv: conv(channels, shape, false, device),
            bn: batch_norm(channels[1], BASIC_CONV_BN_EPS, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }

    pub fn out_channels(&self) -> usize {
        self.conv.weight.dims()[0]
    }

    /// The same layer for the CPU kernels.
    pub fn cpu_conv(&self) -> Result<kiln_kernels::conv::Conv2d> {
        cpu::conv(&self.conv, Some(&self.bn), Activation::Relu)
    }
}

/// The per-channel affine map of [`imagenet_to_half_range`], as `(scale, shift)`.
pub fn imagenet_to_half_range_affine() -> (Vec<f32>, Vec<f32>) {
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    (0..3)
        .map(|c| (STD[c] / 0.5, (MEAN[c] - 0.5) / 0.5))
        .unzip()
}

/// torchvision's `transform_input` for GoogLeNet and Inception v3: re-normalises an input
/// normalised with ImageNet's mean and std to the `(x - 0.5) / 0.5` the original Google
/// weights were trained on.
pub fn imagenet_to_half_range(x: Tensor<4>) -> Tensor<4> {
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let channels = x.chunk(3, 1);
    let rescaled = channels
        .into_iter()
        .enumerate()
        .map(|(c, channel)| {
            channel
                .mul_scalar(STD[c] / 0.5)
                .add_scalar((MEAN[c] - 0.5) / 0.5)
        })
        .collect();
    Tensor::cat(rescaled, 1)
}
