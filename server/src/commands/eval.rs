//! `kiln eval`: accuracy of a model of the repository on its test set.

use kiln_zoo::classifier::ImageClassifier;
use kiln_zoo::data::fashion_mnist::{FashionMnist, Split};
use kiln_zoo::eval::evaluate_fashion_mnist;

use crate::cli::EvalArgs;
use crate::repository::ModelConfig;

pub fn run(args: &EvalArgs) -> Result<(), String> {
    let dir = args.model_repository.join(&args.model);
    let config = ModelConfig::read(&dir)?;
    let device = args.backend.device().map_err(|e| e.to_string())?;
    let classifier = ImageClassifier::load(
        &config.architecture,
        &dir.join(&config.weights),
        config.input.shape(),
        &device,
    )
    .map_err(|e| e.to_string())?;
    let test = FashionMnist::load(&args.data_dir, Split::Test).map_err(|e| e.to_string())?;
    let accuracy = evaluate_fashion_mnist(&classifier, &test, &config.input, 500)
        .map_err(|e| e.to_string())?;
    println!(
        "{}: Fashion-MNIST test set, {} images: top-1 {:.2}%, top-5 {:.2}%",
        args.model,
        accuracy.samples,
        accuracy.top1 * 100.0,
        accuracy.top5 * 100.0
    );
    Ok(())
}
