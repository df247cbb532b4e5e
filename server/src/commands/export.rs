//! `kiln export`: a classifier's weights as safetensors, so the same network can be rebuilt
//! elsewhere (the peer servers of the benchmarks run it through ONNX).

use super::eval::load_classifier;
use kiln_zoo::BackendKind;

use crate::cli::ExportArgs;
use crate::repository::ModelConfig;

pub fn run(args: &ExportArgs) -> Result<(), String> {
    let dir = args.model_repository.join(&args.model);
    let ModelConfig::Classify(config) = ModelConfig::read(&dir)? else {
        return Err(format!("{} is not a classifier", args.model));
    };
    let classifier = load_classifier(&dir, &config, BackendKind::default())?;
    classifier
        .save_safetensors(&args.safetensors)
        .map_err(|e| e.to_string())?;
    println!("wrote {}", args.safetensors.display());
    Ok(())
}
