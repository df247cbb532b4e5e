//! GoogLeNet / Inception v1 (Szegedy et al., 2014) as torchvision builds it: batch norm in
//! every convolution, and a 3×3 (not 5×5) convolution in the third branch, as torchvision's
//! ImageNet weights expect. The auxiliary classifiers only matter in training and are left
//! out; their keys in a checkpoint are ignored.

use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::blocks::{
    BasicConv2d, ConvShape, imagenet_to_half_range, imagenet_to_half_range_affine,
};
use super::cpu::{self, NetworkBuilder, Value};
use crate::error::Result;

#[derive(Config, Debug)]
pub struct GoogLeNetConfig {
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Re-normalise ImageNet-normalised input as torchvision's pretrained weights expect.
    #[config(default = false)]
    pub transform_input: bool,
}

/// Four parallel branches whose outputs are concatenated along the channels.
#[derive(Module, Debug)]
pub struct Inception {
    branch1: BasicConv2d,
    branch2: Vec<BasicConv2d>,
    branch3: Vec<BasicConv2d>,
    branch4: BasicConv2d,
    pool: MaxPool2d,
}

impl Inception {
    /// Channel counts as in the paper's table 1: input, 1×1, 3×3 reduce, 3×3, "5×5" reduce,
    /// "5×5", pool projection.
    fn new(c: [usize; 7], device: &Device) -> Self {
        let [input, ch1, ch3_reduce, ch3, ch5_reduce, ch5, pool_proj] = c;
        let one = ConvShape::square(1);
        let three = ConvShape::square(3).pad(1);
        Self {
            branch1: BasicConv2d::new([input, ch1], one, device),
            branch2: vec![
                BasicConv2d::new([input, ch3_reduce], one, device),
                BasicConv2d::new([ch3_reduce, ch3], three, device),
            ],
            branch3: vec![
                BasicConv2d::new([input, ch5_reduce], one, device),
                BasicConv2d::new([ch5_reduce, ch5], three, device),
            ],
            branch4: BasicConv2d::new([input, pool_proj], one, device),
            pool: ceil_max_pool(3, 1, 1),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let chain = |convs: &[BasicConv2d], x: Tensor<4>| convs.iter().fold(x, |x, c| c.forward(x));
        let b1 = self.branch1.forward(x.clone());
        let b2 = chain(&self.branch2, x.clone());
        let b3 = chain(&self.branch3, x.clone());
        let b4 = self.branch4.forward(self.pool.forward(x));
        Tensor::cat(vec![b1, b2, b3, b4], 1)
    }

    /// [`Inception::forward`] for the CPU kernels: each branch's last convolution writes
    /// straight into its channels of the concatenation.
    fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        let [h, w, _] = b.size(x);
        let last = |convs: &[BasicConv2d]| convs.last().map_or(0, BasicConv2d::out_channels);
        let channels = [
            self.branch1.out_channels(),
            last(&self.branch2),
            last(&self.branch3),
            self.branch4.out_channels(),
        ];
        let out = b.concatenation(h, w, channels.iter().sum());
        let mut offset = 0;
        b.conv_into(x, self.branch1.cpu_conv()?, out, offset)?;
        offset += channels[0];
        for (branch, width) in [(&self.branch2, channels[1]), (&self.branch3, channels[2])] {
            let Some((last, first)) = branch.split_last() else {
                continue;
            };
            let y = first.iter().try_fold(x, |y, c| -> Result<Value> {
                Ok(b.conv(y, c.cpu_conv()?, None)?)
            })?;
            b.conv_into(y, last.cpu_conv()?, out, offset)?;
            offset += width;
        }
        let pooled = b.pool(x, cpu::max_pool(&self.pool)?)?;
        b.conv_into(pooled, self.branch4.cpu_conv()?, out, offset)?;
        Ok(out)
    }
}

/// torchvision's max-pools round the output size up.
fn ceil_max_pool(kernel: usize, stride: usize, padding: usize) -> MaxPool2d {
    MaxPool2dConfig::new([kernel, kernel])
        .with_strides([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_ceil_mode(true)
        .init()
}

#[derive(Module, Debug)]
pub struct GoogLeNet {
    conv1: BasicConv2d,
    conv2: BasicConv2d,
    conv3: BasicConv2d,
    inception3a: Inception,
    inception3b: Inception,
    inception4a: Inception,
    inception4b: Inception,
    inception4c: Inception,
    inception4d: Inception,
    inception4e: Inception,
    inception5a: Inception,
    inception5b: Inception,
    pool: MaxPool2d,
    last_pool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
    transform_input: bool,
}

/// torchvision's fourth branch is a Sequential of the pool (position 0) and the convolution.
pub const TORCHVISION_KEYS: &[(&str, &str)] = &[(r"\.branch4\.1\.", ".branch4.")];

impl GoogLeNetConfig {
    pub fn init(&self, device: &Device) -> GoogLeNet {
        let inception = |c| Inception::new(c, device);
        GoogLeNet {
            conv1: BasicConv2d::new([3, 64], ConvShape::square(7).stride(2).pad(3), device),
            conv2: BasicConv2d::new([64, 64], ConvShape::square(1), device),
            conv3: BasicConv2d::new([64, 192], ConvShape::square(3).pad(1), device),
            inception3a: inception([192, 64, 96, 128, 16, 32, 32]),
            inception3b: inception([256, 128, 128, 192, 32, 96, 64]),
            inception4a: inception([480, 192, 96, 208, 16, 48, 64]),
            inception4b: inception([512, 160, 112, 224, 24, 64, 64]),
            inception4c: inception([512, 128, 128, 256, 24, 64, 64]),
            inception4d: inception([512, 112, 144, 288, 32, 64, 64]),
            inception4e: inception([528, 256, 160, 320, 32, 128, 128]),
            inception5a: inception([832, 256, 160, 320, 32, 128, 128]),
            inception5b: inception([832, 384, 192, 384, 48, 128, 128]),
            pool: ceil_max_pool(3, 2, 0),
            last_pool: ceil_max_pool(2, 2, 0),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(1024, self.num_classes).init(device),
            transform_input: self.transform_input,
        }
    }
}

impl GoogLeNet {
    /// # Shapes
    /// - input: `[batch, 3, height, width]` (224×224 for ImageNet weights)
    /// - output: `[batch, num_classes]` logits
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = if self.transform_input {
            imagenet_to_half_range(images)
        } else {
            images
        };
        let x = self.pool.forward(self.conv1.forward(x));
        let x = self.conv3.forward(self.conv2.forward(x));
        let x = self.pool.forward(x);
        let x = self.inception3b.forward(self.inception3a.forward(x));
        let x = self.pool.forward(x);
        let x = [
            &self.inception4a,
            &self.inception4b,
            &self.inception4c,
            &self.inception4d,
            &self.inception4e,
        ]
        .iter()
        .fold(x, |x, block| block.forward(x));
        let x = self.last_pool.forward(x);
        let x = self.inception5b.forward(self.inception5a.forward(x));
        let x: Tensor<2> = self.avgpool.forward(x).flatten(1, 3);
        self.fc.forward(x)
    }

    /// [`GoogLeNet::forward`] for the CPU kernels, from `x` to the logits.
    pub fn cpu_network(&self, b: &mut NetworkBuilder, x: Value) -> Result<Value> {
        if self.transform_input {
            let (scale, shift) = imagenet_to_half_range_affine();
            b.input_affine(scale, shift)?;
        }
        let pool = cpu::max_pool(&self.pool)?;
        let x = b.conv(x, self.conv1.cpu_conv()?, None)?;
        let x = b.pool(x, pool)?;
        let x = b.conv(x, self.conv2.cpu_conv()?, None)?;
        let x = b.conv(x, self.conv3.cpu_conv()?, None)?;
        let x = b.pool(x, pool)?;
        let x = self.inception3a.cpu_network(b, x)?;
        let x = self.inception3b.cpu_network(b, x)?;
        let mut x = b.pool(x, pool)?;
        for block in [
            &self.inception4a,
            &self.inception4b,
            &self.inception4c,
            &self.inception4d,
            &self.inception4e,
        ] {
            x = block.cpu_network(b, x)?;
        }
        let x = b.pool(x, cpu::max_pool(&self.last_pool)?)?;
        let x = self.inception5a.cpu_network(b, x)?;
        let x = self.inception5b.cpu_network(b, x)?;
        let x = b.global_average_pool(x)?;
        Ok(b.linear(x, cpu::linear(&self.fc, cpu::Activation::Identity)?)?)
    }
}
