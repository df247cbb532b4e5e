//! `kiln export`: a classifier's weights as safetensors, so the same network can be rebuilt
//! elsewhere (the peer servers of the benchmarks run it through ONNX), or as burnpack, so an
//! imported checkpoint is converted once instead of at every start.

use kiln_zoo::BackendKind;

use crate::cli::ExportArgs;
use crate::repository::ModelConfig;

pub fn run(args: &ExportArgs) -> Result<(), String> {
    let dir = args.model_repository.join(&args.model);
    let ModelConfig::Classify(config) = ModelConfig::read(&dir)? else {
        return Err(format!("{} is not a classifier", args.model));
    };
    let device = BackendKind::default().device().map_err(|e| e.to_string())?;
    let classifier = config.load_classifier(&dir, &device)?;
    let path = match (&args.safetensors, &args.burnpack) {
        (Some(path), _) => {
            classifier
                .save_safetensors(path)
                .map_err(|e| e.to_string())?;
            path
        }
        (None, Some(path)) => {
            classifier.save_burnpack(path).map_err(|e| e.to_string())?;
            path
        }
        (None, None) => return Err("say where to write: --safetensors or --burnpack".into()),
    };
    println!("wrote {}", path.display());
    Ok(())
}
