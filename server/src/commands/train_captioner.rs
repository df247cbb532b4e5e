//! `kiln train captioner-lstm | captioner-transformer`: train a captioner on composed
//! scenes and write its model folder.

use std::path::PathBuf;

use kiln_zoo::captioning::captioner::CaptionerArchitecture;
use kiln_zoo::captioning::vocabulary::CaptionVocabulary;
use kiln_zoo::data::fashion_mnist::{FashionMnist, Split};
use kiln_zoo::data::scenes::{SceneGenerator, SceneSplit, image_spec};
use kiln_zoo::eval::share;
use kiln_zoo::models::captioner::CaptionerConfig;
use kiln_zoo::train::captioner::CaptionerTraining;

use super::CommandError;
use crate::cli::TrainArgs;
use crate::repository::{CaptionDecodingConfig, CaptionerModelConfig, ModelConfig};

pub const WEIGHTS_FILE: &str = "weights.bpk";
/// Validation scenes captioned after every epoch.
const VALIDATION_SCENES: usize = 500;

/// The architecture `args.model` names, when it is a trainable captioner.
pub fn architecture(args: &TrainArgs) -> Option<CaptionerArchitecture> {
    let config = CaptionerConfig::new(CaptionVocabulary.len())
        .with_encoder_norm(args.encoder_norm.then_some(true))
        .with_encoder_grid_layers(
            (args.encoder_grid_layers > 0).then_some(args.encoder_grid_layers),
        );
    match args.model.as_str() {
        "captioner-lstm" => Some(CaptionerArchitecture::Lstm(config)),
        "captioner-transformer" => Some(CaptionerArchitecture::Transformer(config)),
        _ => None,
    }
}

pub fn run(args: &TrainArgs, architecture: CaptionerArchitecture) -> Result<(), CommandError> {
    let name = architecture.name();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("models").join(name));
    let images = FashionMnist::load(&args.data_dir, Split::Train)?;
    let mut train = SceneGenerator::new(&images, SceneSplit::Train)?;
    let validation =
        SceneGenerator::new(&images, SceneSplit::Validation)?.scenes(VALIDATION_SCENES);
    let defaults = CaptionerTraining::default();
    let training = CaptionerTraining {
        epochs: args.epochs.unwrap_or(defaults.epochs),
        scenes_per_epoch: args.scenes.unwrap_or(defaults.scenes_per_epoch),
        batch_size: args.batch_size.unwrap_or(defaults.batch_size),
        learning_rate: args.learning_rate.unwrap_or(defaults.learning_rate),
        seed: args.seed,
        backend: args.backend,
        resume: args.resume.clone(),
        encoder: args.encoder_from.clone(),
        presence_weight: args.presence_weight,
        ..defaults
    };
    let started = std::time::Instant::now();
    let captioner = training.run(&architecture, &mut train, &validation, |r| {
        let facts = &r.validation.facts;
        let percent = |part, whole| share(part, whole).map_or(0.0, |s| s * 100.0);
        println!(
            "epoch {:>2}  loss {:.4}  validation BLEU-4 {:.2}  exact {:.2}%  named {:.1}%  \
             both named {:.1}%  relation {:.1}%  ({:.0}s)",
            r.epoch,
            r.mean_loss,
            r.validation.text.bleu4 * 100.0,
            r.validation.text.exact_match * 100.0,
            percent(facts.named, facts.singles),
            percent(facts.both_named, facts.pairs),
            percent(facts.related, facts.pairs),
            started.elapsed().as_secs_f64()
        );
    })?;

    super::create_dir(&out)?;
    captioner.save(&out.join(WEIGHTS_FILE))?;
    let config = ModelConfig::Caption(CaptionerModelConfig {
        version: "1".into(),
        weights: WEIGHTS_FILE.into(),
        backend: None,
        device: None,
        architecture,
        input: image_spec(),
        decoding: CaptionDecodingConfig::default(),
    });
    config.write(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
