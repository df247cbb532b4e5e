//! EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants for mobile accelerators): the
//! EfficientNet inverted-residual backbone with ReLU6 instead of swish and without
//! squeeze-and-excitation, TensorFlow's "same" padding (asymmetric on stride 2) and batch
//! norm epsilon 1e-3. Parameter names follow the widespread `efficientnet_pytorch` layout
//! (`_conv_stem`, `_blocks.N._depthwise_conv`, …) in which converted weights are published.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::blocks::batch_norm;
use super::cpu::{self, Activation, NetworkBuilder, Value};
use crate::error::Result;

const BN_EPS: f64 = 1e-3;

/// One stage of the backbone: how many blocks, their kernel, the first block's stride,
/// the expansion ratio and the output channels.
struct Stage {
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: usize,
    channels: usize,
}

/// EfficientNet-B0's stages, which Lite0 keeps unscaled.
const LITE0_STAGES: [Stage; 7] = [
    Stage {
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 1,
        channels: 16,
    },
    Stage {
        repeats: 2,
        kernel: 3,
        stride: 2,
        expand: 6,
        channels: 24,
    },
    Stage {
        repeats: 2,
        kernel: 5,
        stride: 2,
        expand: 6,
        channels: 40,
    },
    Stage {
        repeats: 3,
        kernel: 3,
        stride: 2,
        expand: 6,
        channels: 80,
    },
    Stage {
        repeats: 3,
        kernel: 5,
        stride: 1,
        expand: 6,
        channels: 112,
    },
    Stage {
        repeats: 4,
        kernel: 5,
        stride: 2,
        expand: 6,
        channels: 192,
    },
    Stage {
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 6,
        channels: 320,
    },
];
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

#[derive(Config, Debug)]
pub struct EfficientNetLite0Config {
    #[config(default = 1000)]
    pub num_classes: usize,
}

fn same_conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .init(device)
}

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// Inverted residual ("MBConv"): 1×1 expansion, depthwise convolution, 1×1 projection,
/// with a skip connection where the shape is kept.
#[derive(Module, Debug)]
pub struct MbConv {
    expand_conv: Option<Conv2d>,
    bn0: Option<BatchNorm>,
    depthwise_conv: Conv2d,
    bn1: BatchNorm,
    project_conv: Conv2d,
    bn2: BatchNorm,
    skip: bool,
}

impl MbConv {
    fn new(input: usize, stage: &Stage, stride: usize, device: &Device) -> Self {
        let hidden = input * stage.expand;
        let expands = stage.expand != 1;
        Self {
            expand_conv: expands.then(|| same_conv([input, hidden], 1, 1, 1, device)),
            bn0: expands.then(|| batch_norm(hidden, BN_EPS, device)),
            depthwise_conv: same_conv([hidden, hidden], stage.kernel, stride, hidden, device),
            bn1: batch_norm(hidden, BN_EPS, device),
            project_conv: same_conv([hidden, stage.channels], 1, 1, 1, device),
            bn2: batch_norm(stage.channels, BN_EPS, device),
            skip: stride == 1 && input == stage.channels,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match (&self.expand_conv, &self.bn0) {
            (Some(conv), Some(bn)) => relu6(bn.forward(conv.forward(x.clone()))),
            _ => x.clone(),
        };
        let y = relu6(self.bn1.forward(self.depthwise_conv.forward(y)));
        let y = self.bn2.forward(self.project_conv.forward(y));
        if self.skip { y + x } else { y }
    }

    /// [`MbConv::forward`] for the CPU kernels: the skip is added in the projection's
    /// epilogue.
    fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        let y = match (&self.expand_conv, &self.bn0) {
            (Some(conv), Some(bn)) => {
                b.conv(x, cpu::conv(conv, Some(bn), Activation::Relu6)?, None)?
            }
            _ => x,
        };
        let y = b.conv(
            y,
            cpu::conv(&self.depthwise_conv, Some(&self.bn1), Activation::Relu6)?,
            None,
        )?;
        let project = cpu::conv(&self.project_conv, Some(&self.bn2), Activation::Identity)?;
        Ok(b.conv(y, project, self.skip.then_some(x))?)
    }
}

#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    conv_stem: Conv2d,
    bn0: BatchNorm,
    blocks: Vec<MbConv>,
    conv_head: Conv2d,
    bn1: BatchNorm,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
}

/// `efficientnet_pytorch` marks its attributes private with a leading underscore.
pub const EFFICIENTNET_PYTORCH_KEYS: &[(&str, &str)] = &[(r"(^|\.)_", "$1")];

impl EfficientNetLite0Config {
    pub fn init(&self, device: &Device) -> EfficientNetLite0 {
        let mut blocks = Vec::new();
        let mut channels = STEM_CHANNELS;
        for stage in &LITE0_STAGES {
            for i in 0..stage.repeats {
                let stride = if i == 0 { stage.stride } else { 1 };
                blocks.push(MbConv::new(channels, stage, stride, device));
                channels = stage.channels;
            }
        }
        EfficientNetLite0 {
            conv_stem: same_conv([3, STEM_CHANNELS], 3, 2, 1, device),
            bn0: batch_norm(STEM_CHANNELS, BN_EPS, device),
            blocks,
            conv_head: same_conv([channels, HEAD_CHANNELS], 1, 1, 1, device),
            bn1: batch_norm(HEAD_CHANNELS, BN_EPS, device),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(HEAD_CHANNELS, self.num_classes).init(device),
        }
    }
}

impl EfficientNetLite0 {
    /// # Shapes
    /// - input: `[batch, 3, height, width]` (224×224 for ImageNet weights)
    /// - output: `[batch, num_classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        let x = relu6(self.bn1.forward(self.conv_head.forward(x)));
        let x: Tensor<2> = self.avgpool.forward(x).flatten(1, 3);
        self.fc.forward(x)
    }

    /// [`EfficientNetLite0::forward`] for the CPU kernels, from `x` to the logits.
    pub fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        let x = b.conv(
            x,
            cpu::conv(&self.conv_stem, Some(&self.bn0), Activation::Relu6)?,
            None,
        )?;
        let x = self
            .blocks
            .iter()
            .try_fold(x, |x, block| block.cpu_network(b, x))?;
        let x = b.conv(
            x,
            cpu::conv(&self.conv_head, Some(&self.bn1), Activation::Relu6)?,
            None,
        )?;
        let x = b.global_average_pool(x)?;
        Ok(b.linear(x, cpu::linear(&self.fc, Activation::Identity)?)?)
    }
}
