//! The committed LeNet-5 weights load into the architecture and reach the accuracy the
//! README states on the full Fashion-MNIST test set.

use std::path::Path;

use burn::prelude::Device;
use kiln_zoo::classifier::{ClassifierArchitecture, ImageClassifier};
use kiln_zoo::data::fashion_mnist::{self, FashionMnist, Split};
use kiln_zoo::eval::evaluate_fashion_mnist;
use kiln_zoo::models::lenet::LeNet5Config;

fn weights() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/lenet-fashion/weights.bpk")
}

#[test]
fn shipped_weights_reach_89_percent_on_the_test_set() {
    let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
    let spec = fashion_mnist::image_spec();
    let classifier =
        ImageClassifier::load(&arch, &weights(), &[], spec.shape(), &Device::flex()).unwrap();
    let test = FashionMnist::load(Path::new(fashion_mnist::DEFAULT_DIR), Split::Test).unwrap();
    let accuracy = evaluate_fashion_mnist(&classifier, &test, &spec, 1000).unwrap();
    assert_eq!(accuracy.samples, 10_000);
    assert!(accuracy.top1 >= 0.89, "top-1 {:.4}", accuracy.top1);
}

#[test]
fn weights_for_another_shape_are_refused_with_the_tensor_name() {
    let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new().with_num_classes(7));
    let err =
        ImageClassifier::load(&arch, &weights(), &[], [1, 28, 28], &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("fc3"), "{err}");
}

#[test]
fn batched_outputs_equal_single_outputs() {
    let arch = ClassifierArchitecture::LeNet5(LeNet5Config::new());
    let spec = fashion_mnist::image_spec();
    let classifier =
        ImageClassifier::load(&arch, &weights(), &[], spec.shape(), &Device::flex()).unwrap();
    let test = FashionMnist::load(Path::new(fashion_mnist::DEFAULT_DIR), Split::Test).unwrap();
    let inputs: Vec<Vec<f32>> = (0..16)
        .map(|i| kiln_zoo::eval::fashion_mnist_input(&test, i, &spec).unwrap())
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let batched = classifier.classify_batch(&refs).unwrap();
    for (i, input) in inputs.iter().enumerate() {
        let single = classifier.classify_batch(&[input]).unwrap();
        for (a, b) in single[0].iter().zip(&batched[i]) {
            assert!((a - b).abs() < 1e-5, "image {i}: {a} vs {b}");
        }
    }
}

#[cfg(feature = "train")]
#[test]
fn a_short_training_run_learns() {
    use kiln_zoo::train::lenet::LeNetTraining;
    let dir = Path::new(fashion_mnist::DEFAULT_DIR);
    let train = FashionMnist::load(dir, Split::Train).unwrap();
    let test = FashionMnist::load(dir, Split::Test).unwrap();
    let training = LeNetTraining {
        epochs: 2,
        limit: Some(3_000),
        ..LeNetTraining::default()
    };
    let mut reports = Vec::new();
    training
        .run(&train, &test, &fashion_mnist::image_spec(), |r| {
            reports.push(*r)
        })
        .unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports[1].mean_loss < reports[0].mean_loss, "{reports:?}");
    // Ten classes: chance is 10 %.
    assert!(reports[1].test.top1 > 0.6, "{reports:?}");
}
