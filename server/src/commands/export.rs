//! `kiln export`: a classifier's weights as safetensors, so the same network can be rebuilt
//! elsewhere (the peer servers of the benchmarks run it through ONNX).

use kiln_zoo::BackendKind;
use kiln_zoo::classifier::ImageClassifier;

use crate::cli::ExportArgs;
use crate::repository::ModelConfig;

pub fn run(args: &ExportArgs) -> Result<(), String> {
    let dir = args.model_repository.join(&args.model);
    let ModelConfig::Classify(config) = ModelConfig::read(&dir)? else {
        return Err(format!("{} is not a classifier", args.model));
    };
    let device = BackendKind::default().device().map_err(|e| e.to_string())?;
    let classifier = ImageClassifier::load(
        &config.architecture,
        &dir.join(&config.weights),
        config.input.shape(),
        &device,
    )
    .map_err(|e| e.to_string())?;
    classifier
        .save_safetensors(&args.safetensors)
        .map_err(|e| e.to_string())?;
    println!("wrote {}", args.safetensors.display());
    Ok(())
}
