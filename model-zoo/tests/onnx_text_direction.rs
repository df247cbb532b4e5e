//! The text-direction network generated from its ONNX file at build time: served from the
//! model folder that names that file, refused from one that names another.
#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};

use kiln_zoo::Device;
use kiln_zoo::classifier::{ClassifierArchitecture, ImageClassifier};
use kiln_zoo::image_input::ImageSpec;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn spec() -> ImageSpec {
    let text = std::fs::read_to_string(repo("models/text-direction/model.toml")).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    config["input"].clone().try_into().unwrap()
}

#[test]
fn tells_upright_text_from_upside_down() {
    let spec = spec();
    let classifier = ImageClassifier::load(
        &ClassifierArchitecture::PpOcrTextDirection,
        &repo("models/text-direction/model.onnx"),
        &[],
        spec.shape(),
        &Device::flex(),
    )
    .unwrap();
    let upright = spec
        .decode(&std::fs::read(repo("examples/text-lines/upright.png")).unwrap())
        .unwrap();
    let turned = spec
        .decode(&std::fs::read(repo("examples/text-lines/upside-down.png")).unwrap())
        .unwrap();
    let probabilities = classifier.classify_batch(&[&upright, &turned]).unwrap();
    assert!(probabilities[0][0] > 0.9, "{probabilities:?}");
    assert!(probabilities[1][1] > 0.9, "{probabilities:?}");
}

#[test]
fn another_onnx_file_is_refused() {
    let err = ImageClassifier::load(
        &ClassifierArchitecture::PpOcrTextDirection,
        &repo("models/lenet-fashion/weights.bpk"),
        &[],
        [3, 48, 192],
        &Device::flex(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("another ONNX file"), "{err}");
}
