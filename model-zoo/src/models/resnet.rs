//! ResNet (He et al., 2015) as torchvision builds it: basic blocks for ResNet-18/34,
//! bottlenecks with the stride on the 3×3 convolution ("v1.5") for ResNet-50 and deeper.

use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::blocks::{ConvShape, TORCH_BN_EPS, batch_norm, conv};
use super::cpu::{self, Activation, NetworkBuilder, Value};
use crate::error::Result;

#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Residual blocks in each of the four stages, e.g. `[2, 2, 2, 2]` for ResNet-18.
    pub blocks: [usize; 4],
    /// Bottleneck blocks (1×1, 3×3, 1×1 with 4× expansion) instead of two 3×3 convolutions.
    pub bottleneck: bool,
    #[config(default = 1000)]
    pub num_classes: usize,
}

impl ResNetConfig {
    /// ResNet-18, -34, -50, -101 or -152.
    pub fn of_depth(depth: usize) -> Option<Self> {
        let (blocks, bottleneck) = match depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            101 => ([3, 4, 23, 3], true),
            152 => ([3, 8, 36, 3], true),
            _ => return None,
        };
        Some(Self::new(blocks, bottleneck))
    }

    fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    pub fn init(&self, device: &Device) -> ResNet {
        let mut in_channels = 64;
        // Each stage doubles the width; its first block halves the resolution (except the
        // first stage's, after the max-pool).
        let mut stage = |index: usize| -> Vec<Residual> {
            let width = 64 << index;
            let out_channels = width * self.expansion();
            (0..self.blocks[index])
                .map(|i| {
                    let stride = if i == 0 && index > 0 { 2 } else { 1 };
                    let block =
                        Residual::new(in_channels, width, out_channels, stride, self, device);
                    in_channels = out_channels;
                    block
                })
                .collect()
        };
        let (layer1, layer2, layer3, layer4) = (stage(0), stage(1), stage(2), stage(3));
        ResNet {
            conv1: conv(
                [3, 64],
                ConvShape::square(7).stride(2).pad(3),
                false,
                device,
            ),
            bn1: batch_norm(64, TORCH_BN_EPS, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(512 * self.expansion(), self.num_classes).init(device),
        }
    }
}

/// The 1×1 convolution and batch norm that bring the shortcut to the block's output shape;
/// torchvision's `downsample` Sequential.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// A basic block (`conv3` absent) or a bottleneck block.
#[derive(Module, Debug)]
pub struct Residual {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<BatchNorm>,
    downsample: Option<Downsample>,
}

impl Residual {
    fn new(
        in_channels: usize,
        width: usize,
        out_channels: usize,
        stride: usize,
        config: &ResNetConfig,
        device: &Device,
    ) -> Self {
        let norm = |channels| batch_norm(channels, TORCH_BN_EPS, device);
        let downsample = (stride != 1 || in_channels != out_channels).then(|| Downsample {
            conv: conv(
                [in_channels, out_channels],
                ConvShape::square(1).stride(stride),
                false,
                device,
            ),
            bn: norm(out_channels),
        });
        let three_by_three = ConvShape::square(3).stride(stride).pad(1);
        if config.bottleneck {
            Self {
                conv1: conv([in_channels, width], ConvShape::square(1), false, device),
                bn1: norm(width),
                conv2: conv([width, width], three_by_three, false, device),
                bn2: norm(width),
                conv3: Some(conv(
                    [width, out_channels],
                    ConvShape::square(1),
                    false,
                    device,
                )),
                bn3: Some(norm(out_channels)),
                downsample,
            }
        } else {
            Self {
                conv1: conv([in_channels, width], three_by_three, false, device),
                bn1: norm(width),
                conv2: conv([width, width], ConvShape::square(3).pad(1), false, device),
                bn2: norm(width),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = self.bn2.forward(self.conv2.forward(y));
        let y = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => bn3.forward(conv3.forward(relu(y))),
            _ => y,
        };
        relu(y + shortcut)
    }

    /// [`Residual::forward`] for the CPU kernels: the shortcut is added inside the last
    /// convolution's epilogue.
    fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        let shortcut = match &self.downsample {
            Some(d) => b.conv(
                x,
                cpu::conv(&d.conv, Some(&d.bn), Activation::Identity)?,
                None,
            )?,
            None => x,
        };
        let y = b.conv(
            x,
            cpu::conv(&self.conv1, Some(&self.bn1), Activation::Relu)?,
            None,
        )?;
        Ok(match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let y = b.conv(
                    y,
                    cpu::conv(&self.conv2, Some(&self.bn2), Activation::Relu)?,
                    None,
                )?;
                b.conv(
                    y,
                    cpu::conv(conv3, Some(bn3), Activation::Relu)?,
                    Some(shortcut),
                )?
            }
            _ => b.conv(
                y,
                cpu::conv(&self.conv2, Some(&self.bn2), Activation::Relu)?,
                Some(shortcut),
            )?,
        })
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: MaxPool2d,
    layer1: Vec<Residual>,
    layer2: Vec<Residual>,
    layer3: Vec<Residual>,
    layer4: Vec<Residual>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
}

/// torchvision's `downsample` is a Sequential of the convolution and its batch norm.
pub const TORCHVISION_KEYS: &[(&str, &str)] = &[
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.bn."),
];

impl ResNet {
    /// The residual blocks of the four stages, in order.
    fn blocks(&self) -> impl Iterator<Item = &Residual> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }

    /// # Shapes
    /// - input: `[batch, 3, height, width]`
    /// - output: `[batch, num_classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(images)));
        let mut x = self.maxpool.forward(x);
        for block in self.blocks() {
            x = block.forward(x);
        }
        let x: Tensor<2> = self.avgpool.forward(x).flatten(1, 3);
        self.fc.forward(x)
    }

    /// [`ResNet::forward`] for the CPU kernels, from `x` to the logits.
    pub fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        let x = b.conv(
            x,
            cpu::conv(&self.conv1, Some(&self.bn1), Activation::Relu)?,
            None,
        )?;
        let mut x = b.pool(x, cpu::max_pool(&self.maxpool)?)?;
        for block in self.blocks() {
            x = block.cpu_network(b, x)?;
        }
        let x = b.global_average_pool(x)?;
        Ok(b.linear(x, cpu::linear(&self.fc, Activation::Identity)?)?)
    }
}
