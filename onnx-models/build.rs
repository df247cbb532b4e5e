//! Turns each bundled ONNX model into Burn code (and its weights into the binary).

use burn_onnx::{LoadStrategy, ModelGen};

const MODELS: &[&str] = &["../models/text-direction/model.onnx"];

fn main() {
    for model in MODELS {
        println!("cargo:rerun-if-changed={model}");
    }
    let mut generator = ModelGen::new();
    for model in MODELS {
        generator.input(model);
    }
    generator
        .out_dir("onnx/")
        .load_strategy(LoadStrategy::Embedded)
        .run_from_script();
}
