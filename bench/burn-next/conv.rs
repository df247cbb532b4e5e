//! Burn's flex conv2d timed on ResNet-50's and EfficientNet-Lite0's layer shapes (batch 1 unless
//! named `_b8`): median of 20 calls after 3 warm-up calls, one CSV line per shape. Built
//! against Burn 0.22.1 (burn-022/) and the 0.23 pre-release (burn-023/) by run.sh.

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use std::time::Instant;

struct Case {
    name: &'static str,
    input: [usize; 4],
    weight: [usize; 4],
    stride: usize,
    pad: usize,
    groups: usize,
}

fn main() {
    let device = Device::flex();
    let c = |name, input, weight, stride, pad, groups| Case {
        name,
        input,
        weight,
        stride,
        pad,
        groups,
    };
    let cases = [
        c("stem", [1, 3, 224, 224], [64, 3, 7, 7], 2, 3, 1),
        c("resnet_3x3_56", [1, 64, 56, 56], [64, 64, 3, 3], 1, 1, 1),
        c("resnet_3x3_14", [1, 256, 14, 14], [256, 256, 3, 3], 1, 1, 1),
        c("resnet_3x3_s2", [1, 128, 56, 56], [128, 128, 3, 3], 2, 1, 1),
        c("pointwise_56", [1, 256, 56, 56], [64, 256, 1, 1], 1, 0, 1),
        c("pointwise_s2", [1, 512, 28, 28], [1024, 512, 1, 1], 2, 0, 1),
        c(
            "depthwise_3x3_112",
            [1, 96, 112, 112],
            [96, 1, 3, 3],
            2,
            1,
            96,
        ),
        c(
            "depthwise_5x5_14",
            [1, 672, 14, 14],
            [672, 1, 5, 5],
            1,
            2,
            672,
        ),
        c("resnet_3x3_56_b8", [8, 64, 56, 56], [64, 64, 3, 3], 1, 1, 1),
        c(
            "depthwise_3x3_112_b8",
            [8, 96, 112, 112],
            [96, 1, 3, 3],
            2,
            1,
            96,
        ),
    ];
    println!("shape,ms");
    for case in cases.iter() {
        let x = Tensor::<4>::random(case.input, Distribution::Default, &device);
        let w = Tensor::<4>::random(case.weight, Distribution::Default, &device);
        let b = Tensor::<1>::random([case.weight[0]], Distribution::Default, &device);
        let opts = ConvOptions::new([case.stride; 2], [case.pad; 2], [1, 1], case.groups);
        // Inputs materialised before timing.
        let _ = x.clone().into_data();
        let _ = w.clone().into_data();
        let _ = b.clone().into_data();
        let run = || {
            let y = conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone());
            y.into_data()
        };
        for _ in 0..3 {
            std::hint::black_box(run());
        }
        let mut times = Vec::with_capacity(20);
        for _ in 0..20 {
            let t = Instant::now();
            std::hint::black_box(run());
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = (times[9] + times[10]) / 2.0;
        println!("{},{:.3}", case.name, med);
    }
}
