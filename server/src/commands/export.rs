//! `kiln export`: a classifier's weights as safetensors, so the same network can be rebuilt
//! elsewhere (the peer servers of the benchmarks run it through ONNX), or as burnpack, so an
//! imported checkpoint is converted once instead of at every start.

use kiln_zoo::BackendKind;

use super::CommandError;
use crate::cli::ExportArgs;
use crate::repository::ModelConfig;

pub fn run(args: &ExportArgs) -> Result<(), CommandError> {
    let dir = args.model_repository.join(&args.model);
    let ModelConfig::Classify(config) = ModelConfig::read(&dir)? else {
        return Err(CommandError::Usage(format!(
            "{} is not a classifier",
            args.model
        )));
    };
    let device = BackendKind::default().device()?;
    let classifier = config.load_classifier(&dir, &device)?;
    let path = match (&args.safetensors, &args.burnpack) {
        (Some(path), _) => {
            classifier.save_safetensors(path)?;
            path
        }
        (None, Some(path)) => {
            classifier.save_burnpack(path)?;
            path
        }
        (None, None) => {
            return Err(CommandError::Usage(
                "say where to write: --safetensors or --burnpack".into(),
            ));
        }
    };
    println!("wrote {}", path.display());
    Ok(())
}
