//! One decoding step of the bundled LSTM captioner (greedy: one hypothesis per image) per
//! number of rows, on Kiln's CPU kernels (`flex-kernels`) and on Burn's own ops (`flex`):
//! the cost per hypothesis-step that `kiln_caption_stage_duration_seconds{stage="decoder"}`
//! reports under load.
//!
//! `cargo bench -p kiln-zoo --bench caption_step`

use std::hint::black_box;
use std::path::Path;

use burn::prelude::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_zoo::captioning::captioner::{Captioner, CaptionerArchitecture};
use kiln_zoo::captioning::decoding::HypothesisBatch;
use kiln_zoo::captioning::vocabulary::BOS;

fn lstm_step(c: &mut Criterion) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/captioner-lstm");
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(folder.join("model.toml")).expect("model.toml"))
            .expect("model.toml parses");
    let architecture: CaptionerArchitecture = manifest["architecture"]
        .clone()
        .try_into()
        .expect("a captioner architecture");
    let device = Device::flex();
    let load = || Captioner::load(&architecture, &folder.join("weights.bpk"), &device).unwrap();
    let variants = [
        ("flex-kernels", load()),
        ("flex", load().without_cpu_kernels()),
    ];
    let image: Vec<f32> = (0..3 * 64 * 64).map(|i| (i % 251) as f32 / 251.0).collect();
    for (variant, captioner) in &variants {
        let mut group = c.benchmark_group(format!("caption-step/lstm/{variant}"));
        for rows in [1usize, 16, 64] {
            let mut batch = HypothesisBatch::new();
            captioner
                .start(&mut batch, &vec![image.clone(); rows])
                .unwrap();
            let tokens = vec![BOS; rows];
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_function(format!("rows-{rows}"), |b| {
                b.iter(|| black_box(captioner.step_rows(&mut batch, black_box(&tokens)).unwrap()))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, lstm_step);
criterion_main!(benches);
