//! Raw LeNet-5 throughput (images/s) per batch size on every backend compiled in; on the
//! CPU both on Kiln's CPU kernels (`flex-kernels`) and on Burn's own ops (`flex`).
//!
//! `cargo bench -p kiln-zoo --bench lenet` (add `--features ndarray` to compare ndarray).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_zoo::BackendKind;
use kiln_zoo::classifier::{ClassifierArchitecture, ImageClassifier};
use kiln_zoo::models::lenet::LeNet5Config;

fn lenet_forward(c: &mut Criterion) {
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/lenet-fashion/weights.bpk");
    let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
    let image: Vec<f32> = (0..784).map(|i| (i % 255) as f32 / 255.0).collect();
    for backend in BackendKind::compiled() {
        let device = backend.device().expect("compiled backend");
        let load = || {
            ImageClassifier::load(&arch, &weights, &[], [1, 28, 28], &device).expect("weights load")
        };
        let classifier = load();
        let mut variants = vec![];
        if classifier.uses_cpu_kernels() {
            variants.push((format!("{backend}-kernels"), classifier));
            variants.push((backend.to_string(), load().without_cpu_kernels()));
        } else {
            variants.push((backend.to_string(), classifier));
        }
        for (variant, classifier) in &variants {
            let mut group = c.benchmark_group(format!("lenet5/{variant}"));
            for batch in [1usize, 8, 32, 64] {
                let inputs: Vec<&[f32]> = vec![image.as_slice(); batch];
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_function(format!("batch-{batch}"), |b| {
                    b.iter(|| black_box(classifier.classify_batch(black_box(&inputs)).unwrap()))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, lenet_forward);
criterion_main!(benches);
