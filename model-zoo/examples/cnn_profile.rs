//! Where a CNN's time goes on Kiln's CPU kernels: every layer timed over many batches,
//! summed by kernel, heaviest first (random weights; the arithmetic does not depend on
//! them).
//!
//! ```sh
//! cargo run --release -p kiln-zoo --features flex-parallel --example cnn_profile -- \
//!     resnet50|googlenet|efficientnet-lite0|lenet5 [BATCH] [RUNS]
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use burn::prelude::Device;
use kiln_zoo::classifier::{ClassCount, ClassifierArchitecture, InceptionSpec, ResNetSpec};
use kiln_zoo::models::lenet::LeNet5Config;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("resnet50", String::as_str);
    let batch: usize = args.get(1).and_then(|b| b.parse().ok()).unwrap_or(1);
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(20);
    let (architecture, shape) = match name {
        "resnet50" => (
            ClassifierArchitecture::ResNet(ResNetSpec {
                depth: 50,
                num_classes: 1000,
            }),
            [3, 224, 224],
        ),
        "googlenet" => (
            ClassifierArchitecture::GoogLeNet(InceptionSpec {
                num_classes: 1000,
                transform_input: false,
            }),
            [3, 224, 224],
        ),
        "efficientnet-lite0" => (
            ClassifierArchitecture::EfficientNetLite0(ClassCount { num_classes: 1000 }),
            [3, 224, 224],
        ),
        "lenet5" => (
            ClassifierArchitecture::LeNet5(LeNet5Config::new()),
            [1, 28, 28],
        ),
        other => {
            eprintln!("unknown network {other}: resnet50, googlenet, efficientnet-lite0 or lenet5");
            return ExitCode::FAILURE;
        }
    };
    let device = Device::flex();
    let network = match architecture.init(&device).map(|net| net.cpu_network(shape)) {
        Ok(Some(Ok(network))) => network,
        Ok(Some(Err(e))) | Err(e) => {
            eprintln!("cannot prepare {name}: {e}");
            return ExitCode::FAILURE;
        }
        Ok(None) => {
            eprintln!("{name} has no CPU-kernel graph");
            return ExitCode::FAILURE;
        }
    };
    let len: usize = shape.iter().product();
    let images: Vec<f32> = (0..batch * len)
        .map(|i| (i % 255) as f32 / 128.0 - 1.0)
        .collect();
    // Warm-up: buffers allocated, caches and the thread pool up.
    for _ in 0..3 {
        network.run(&images, batch).expect("runs");
    }
    let mut by_kernel: HashMap<String, (usize, Duration)> = HashMap::new();
    let mut total = Duration::ZERO;
    for run in 0..runs {
        let (_, layers) = network.run_profiled(&images, batch).expect("runs");
        for (kernel, time) in layers {
            let entry = by_kernel.entry(kernel).or_default();
            if run == 0 {
                entry.0 += 1;
            }
            entry.1 += time;
            total += time;
        }
    }
    let mut rows: Vec<_> = by_kernel.into_iter().collect();
    rows.sort_by_key(|(_, (_, time))| std::cmp::Reverse(*time));
    let per_batch_ms = |d: Duration| d.as_secs_f64() * 1e3 / runs as f64;
    println!(
        "{name}, batch {batch}, {runs} runs: {:.2} ms per batch, {:.1} images/s",
        per_batch_ms(total),
        batch as f64 * runs as f64 / total.as_secs_f64()
    );
    println!();
    println!("| kernel | layers | ms per batch | share |");
    println!("|---|---:|---:|---:|");
    for (kernel, (layers, time)) in rows {
        println!(
            "| {kernel} | {layers} | {:.2} | {:.1} % |",
            per_batch_ms(time),
            100.0 * time.as_secs_f64() / total.as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}
