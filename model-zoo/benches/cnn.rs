//! Raw ImageNet-class CNN throughput (images/s) at batch 1, 8 and 32 on every backend
//! compiled in: ResNet-50 and EfficientNet-Lite0 at 224×224. Weights are seeded at random;
//! the arithmetic does not depend on their values.
//!
//! `cargo bench -p kiln-zoo --bench cnn` (add `--features flex-parallel` for Burn's
//! multi-threaded kernels). `bench/peers/cnn_torch.py` measures PyTorch and onnxruntime
//! on the same networks.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_zoo::BackendKind;
use kiln_zoo::classifier::{
    ClassCount, ClassifierArchitecture, ImageClassifier, InceptionSpec, ResNetSpec,
};

fn cnn_forward(c: &mut Criterion) {
    let networks = [
        (
            "resnet50",
            ClassifierArchitecture::ResNet(ResNetSpec {
                depth: 50,
                num_classes: 1000,
            }),
        ),
        (
            "googlenet",
            ClassifierArchitecture::GoogLeNet(InceptionSpec {
                num_classes: 1000,
                transform_input: false,
            }),
        ),
        (
            "efficientnet-lite0",
            ClassifierArchitecture::EfficientNetLite0(ClassCount { num_classes: 1000 }),
        ),
    ];
    let image: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| (i % 255) as f32 / 128.0 - 1.0)
        .collect();
    for backend in BackendKind::compiled() {
        let device = backend.device().expect("compiled backend");
        for (name, architecture) in &networks {
            let net = architecture.init(&device).expect("architecture");
            let with_kernels = ImageClassifier::from_net(net.clone(), [3, 224, 224], &device);
            let mut variants = vec![];
            if with_kernels.uses_cpu_kernels() {
                let burn_ops =
                    ImageClassifier::from_net(net, [3, 224, 224], &device).without_cpu_kernels();
                variants.push((format!("{backend}-kernels"), with_kernels));
                variants.push((backend.to_string(), burn_ops));
            } else {
                variants.push((backend.to_string(), with_kernels));
            }
            for (variant, classifier) in &variants {
                let mut group = c.benchmark_group(format!("{name}/{variant}"));
                group.sample_size(10);
                group.measurement_time(Duration::from_secs(20));
                for batch in [1usize, 8, 32] {
                    let inputs: Vec<&[f32]> = vec![image.as_slice(); batch];
                    group.throughput(Throughput::Elements(batch as u64));
                    group.bench_function(format!("batch-{batch}"), |b| {
                        b.iter(|| black_box(classifier.logits_batch(black_box(&inputs)).unwrap()))
                    });
                }
                group.finish();
            }
        }
    }
}

criterion_group!(benches, cnn_forward);
criterion_main!(benches);
