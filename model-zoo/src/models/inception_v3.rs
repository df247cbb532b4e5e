//! Inception v3 (Szegedy et al., 2015) as torchvision builds it. The auxiliary classifier
//! only matters in training and is left out; its keys in a checkpoint are ignored.

use burn::nn::pool::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, AvgPool2d, AvgPool2dConfig, MaxPool2d,
    MaxPool2dConfig,
};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::blocks::{BasicConv2d, ConvShape, imagenet_to_half_range};

#[derive(Config, Debug)]
pub struct InceptionV3Config {
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Re-normalise ImageNet-normalised input as torchvision's pretrained weights expect.
    #[config(default = false)]
    pub transform_input: bool,
}

const ONE: ConvShape = ConvShape::square(1);
const THREE: ConvShape = ConvShape::square(3);
const THREE_PADDED: ConvShape = ConvShape::square(3).pad(1);
const THREE_STRIDE_TWO: ConvShape = ConvShape::square(3).stride(2);

fn basic(channels: [usize; 2], shape: ConvShape, device: &Device) -> BasicConv2d {
    BasicConv2d::new(channels, shape, device)
}

fn max_pool_3x3_stride_2() -> MaxPool2d {
    MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init()
}

/// 3×3 average pooling that keeps the spatial size (padding counts as zeros, as in PyTorch).
fn same_avg_pool_3x3() -> AvgPool2d {
    AvgPool2dConfig::new([3, 3])
        .with_strides([1, 1])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init()
}

fn chain(convs: [&BasicConv2d; 3], x: Tensor<4>) -> Tensor<4> {
    convs.iter().fold(x, |x, c| c.forward(x))
}

/// Mixed_5b–5d: 1×1, 5×5, double 3×3 and pooled branches at 35×35.
#[derive(Module, Debug)]
pub struct InceptionA {
    branch1x1: BasicConv2d,
    branch5x5_1: BasicConv2d,
    branch5x5_2: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3: BasicConv2d,
    branch_pool: BasicConv2d,
    pool: AvgPool2d,
}

impl InceptionA {
    fn new(input: usize, pool_features: usize, device: &Device) -> Self {
        Self {
            branch1x1: basic([input, 64], ONE, device),
            branch5x5_1: basic([input, 48], ONE, device),
            branch5x5_2: basic([48, 64], ConvShape::square(5).pad(2), device),
            branch3x3dbl_1: basic([input, 64], ONE, device),
            branch3x3dbl_2: basic([64, 96], THREE_PADDED, device),
            branch3x3dbl_3: basic([96, 96], THREE_PADDED, device),
            branch_pool: basic([input, pool_features], ONE, device),
            pool: same_avg_pool_3x3(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self
            .branch5x5_2
            .forward(self.branch5x5_1.forward(x.clone()));
        let b3 = chain(
            [
                &self.branch3x3dbl_1,
                &self.branch3x3dbl_2,
                &self.branch3x3dbl_3,
            ],
            x.clone(),
        );
        let bp = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

/// Mixed_6a: grid reduction 35×35 → 17×17.
#[derive(Module, Debug)]
pub struct InceptionB {
    branch3x3: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3: BasicConv2d,
    pool: MaxPool2d,
}

impl InceptionB {
    fn new(input: usize, device: &Device) -> Self {
        Self {
            branch3x3: basic([input, 384], THREE_STRIDE_TWO, device),
            branch3x3dbl_1: basic([input, 64], ONE, device),
            branch3x3dbl_2: basic([64, 96], THREE_PADDED, device),
            branch3x3dbl_3: basic([96, 96], THREE_STRIDE_TWO, device),
            pool: max_pool_3x3_stride_2(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3.forward(x.clone());
        let b3dbl = chain(
            [
                &self.branch3x3dbl_1,
                &self.branch3x3dbl_2,
                &self.branch3x3dbl_3,
            ],
            x.clone(),
        );
        let bp = self.pool.forward(x);
        Tensor::cat(vec![b3, b3dbl, bp], 1)
    }
}

/// Mixed_6b–6e: factorised 7×7 convolutions (1×7 then 7×1) at 17×17.
#[derive(Module, Debug)]
pub struct InceptionC {
    branch1x1: BasicConv2d,
    branch7x7_1: BasicConv2d,
    branch7x7_2: BasicConv2d,
    branch7x7_3: BasicConv2d,
    branch7x7dbl_1: BasicConv2d,
    branch7x7dbl_2: BasicConv2d,
    branch7x7dbl_3: BasicConv2d,
    branch7x7dbl_4: BasicConv2d,
    branch7x7dbl_5: BasicConv2d,
    branch_pool: BasicConv2d,
    pool: AvgPool2d,
}

impl InceptionC {
    fn new(input: usize, c7: usize, device: &Device) -> Self {
        let (row, column) = (ConvShape::rect(1, 7), ConvShape::rect(7, 1));
        Self {
            branch1x1: basic([input, 192], ONE, device),
            branch7x7_1: basic([input, c7], ONE, device),
            branch7x7_2: basic([c7, c7], row, device),
            branch7x7_3: basic([c7, 192], column, device),
            branch7x7dbl_1: basic([input, c7], ONE, device),
            branch7x7dbl_2: basic([c7, c7], column, device),
            branch7x7dbl_3: basic([c7, c7], row, device),
            branch7x7dbl_4: basic([c7, c7], column, device),
            branch7x7dbl_5: basic([c7, 192], row, device),
            branch_pool: basic([input, 192], ONE, device),
            pool: same_avg_pool_3x3(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b7 = chain(
            [&self.branch7x7_1, &self.branch7x7_2, &self.branch7x7_3],
            x.clone(),
        );
        let b7dbl = chain(
            [
                &self.branch7x7dbl_1,
                &self.branch7x7dbl_2,
                &self.branch7x7dbl_3,
            ],
            x.clone(),
        );
        let b7dbl = self
            .branch7x7dbl_5
            .forward(self.branch7x7dbl_4.forward(b7dbl));
        let bp = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![b1, b7, b7dbl, bp], 1)
    }
}

/// Mixed_7a: grid reduction 17×17 → 8×8.
#[derive(Module, Debug)]
pub struct InceptionD {
    branch3x3_1: BasicConv2d,
    branch3x3_2: BasicConv2d,
    branch7x7x3_1: BasicConv2d,
    branch7x7x3_2: BasicConv2d,
    branch7x7x3_3: BasicConv2d,
    branch7x7x3_4: BasicConv2d,
    pool: MaxPool2d,
}

impl InceptionD {
    fn new(input: usize, device: &Device) -> Self {
        Self {
            branch3x3_1: basic([input, 192], ONE, device),
            branch3x3_2: basic([192, 320], THREE_STRIDE_TWO, device),
            branch7x7x3_1: basic([input, 192], ONE, device),
            branch7x7x3_2: basic([192, 192], ConvShape::rect(1, 7), device),
            branch7x7x3_3: basic([192, 192], ConvShape::rect(7, 1), device),
            branch7x7x3_4: basic([192, 192], THREE_STRIDE_TWO, device),
            pool: max_pool_3x3_stride_2(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self
            .branch3x3_2
            .forward(self.branch3x3_1.forward(x.clone()));
        let b7 = chain(
            [
                &self.branch7x7x3_1,
                &self.branch7x7x3_2,
                &self.branch7x7x3_3,
            ],
            x.clone(),
        );
        let b7 = self.branch7x7x3_4.forward(b7);
        let bp = self.pool.forward(x);
        Tensor::cat(vec![b3, b7, bp], 1)
    }
}

/// Mixed_7b–7c: expanded filter banks (1×3 and 3×1 side by side) at 8×8.
#[derive(Module, Debug)]
pub struct InceptionE {
    branch1x1: BasicConv2d,
    branch3x3_1: BasicConv2d,
    branch3x3_2a: BasicConv2d,
    branch3x3_2b: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3a: BasicConv2d,
    branch3x3dbl_3b: BasicConv2d,
    branch_pool: BasicConv2d,
    pool: AvgPool2d,
}

impl InceptionE {
    fn new(input: usize, device: &Device) -> Self {
        let (row, column) = (ConvShape::rect(1, 3), ConvShape::rect(3, 1));
        Self {
            branch1x1: basic([input, 320], ONE, device),
            branch3x3_1: basic([input, 384], ONE, device),
            branch3x3_2a: basic([384, 384], row, device),
            branch3x3_2b: basic([384, 384], column, device),
            branch3x3dbl_1: basic([input, 448], ONE, device),
            branch3x3dbl_2: basic([448, 384], THREE_PADDED, device),
            branch3x3dbl_3a: basic([384, 384], row, device),
            branch3x3dbl_3b: basic([384, 384], column, device),
            branch_pool: basic([input, 192], ONE, device),
            pool: same_avg_pool_3x3(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b3 = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(
            vec![
                self.branch3x3_2a.forward(b3.clone()),
                self.branch3x3_2b.forward(b3),
            ],
            1,
        );
        let b3dbl = self
            .branch3x3dbl_2
            .forward(self.branch3x3dbl_1.forward(x.clone()));
        let b3dbl = Tensor::cat(
            vec![
                self.branch3x3dbl_3a.forward(b3dbl.clone()),
                self.branch3x3dbl_3b.forward(b3dbl),
            ],
            1,
        );
        let bp = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![b1, b3, b3dbl, bp], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionV3 {
    conv2d_1a_3x3: BasicConv2d,
    conv2d_2a_3x3: BasicConv2d,
    conv2d_2b_3x3: BasicConv2d,
    conv2d_3b_1x1: BasicConv2d,
    conv2d_4a_3x3: BasicConv2d,
    mixed_5b: InceptionA,
    mixed_5c: InceptionA,
    mixed_5d: InceptionA,
    mixed_6a: InceptionB,
    mixed_6b: InceptionC,
    mixed_6c: InceptionC,
    mixed_6d: InceptionC,
    mixed_6e: InceptionC,
    mixed_7a: InceptionD,
    mixed_7b: InceptionE,
    mixed_7c: InceptionE,
    pool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
    transform_input: bool,
}

/// torchvision names the top-level layers in CamelCase (`Conv2d_1a_3x3`, `Mixed_5b`).
pub const TORCHVISION_KEYS: &[(&str, &str)] = &[
    (r"^Conv2d_(\w+?)\.", "conv2d_$1."),
    (r"^Mixed_(\w+?)\.", "mixed_$1."),
];

impl InceptionV3Config {
    pub fn init(&self, device: &Device) -> InceptionV3 {
        InceptionV3 {
            conv2d_1a_3x3: basic([3, 32], THREE_STRIDE_TWO, device),
            conv2d_2a_3x3: basic([32, 32], THREE, device),
            conv2d_2b_3x3: basic([32, 64], THREE_PADDED, device),
            conv2d_3b_1x1: basic([64, 80], ONE, device),
            conv2d_4a_3x3: basic([80, 192], THREE, device),
            mixed_5b: InceptionA::new(192, 32, device),
            mixed_5c: InceptionA::new(256, 64, device),
            mixed_5d: InceptionA::new(288, 64, device),
            mixed_6a: InceptionB::new(288, device),
            mixed_6b: InceptionC::new(768, 128, device),
            mixed_6c: InceptionC::new(768, 160, device),
            mixed_6d: InceptionC::new(768, 160, device),
            mixed_6e: InceptionC::new(768, 192, device),
            mixed_7a: InceptionD::new(768, device),
            mixed_7b: InceptionE::new(1280, device),
            mixed_7c: InceptionE::new(2048, device),
            pool: max_pool_3x3_stride_2(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(2048, self.num_classes).init(device),
            transform_input: self.transform_input,
        }
    }
}

impl InceptionV3 {
    /// # Shapes
    /// - input: `[batch, 3, height, width]` (299×299 for ImageNet weights; at least 75×75)
    /// - output: `[batch, num_classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = if self.transform_input {
            imagenet_to_half_range(images)
        } else {
            images
        };
        let x = chain(
            [
                &self.conv2d_1a_3x3,
                &self.conv2d_2a_3x3,
                &self.conv2d_2b_3x3,
            ],
            x,
        );
        let x = self.pool.forward(x);
        let x = self.conv2d_4a_3x3.forward(self.conv2d_3b_1x1.forward(x));
        let x = self.pool.forward(x);
        let x = self.mixed_5b.forward(x);
        let x = self.mixed_5c.forward(x);
        let x = self.mixed_5d.forward(x);
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6b.forward(x);
        let x = self.mixed_6c.forward(x);
        let x = self.mixed_6d.forward(x);
        let x = self.mixed_6e.forward(x);
        let x = self.mixed_7a.forward(x);
        let x = self.mixed_7b.forward(x);
        let x = self.mixed_7c.forward(x);
        let x: Tensor<2> = self.avgpool.forward(x).flatten(1, 3);
        self.fc.forward(x)
    }
}
