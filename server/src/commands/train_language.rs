//! `kiln train <language model>`: fit the vocabulary on the training books, train the
//! network and write the model folder.

use kiln_zoo::text::corpus::{Corpus, Split};
use kiln_zoo::text::tokenizer::Tokenizer;
use kiln_zoo::train::lm::LanguageModelTraining;

use super::CommandError;
use super::language_presets::{LanguagePreset, VOCAB_SIZE};
use crate::cli::TrainArgs;
use crate::repository::{BatchingConfig, GenerationConfig, LanguageModelConfig, ModelConfig};

pub const WEIGHTS_FILE: &str = "weights.bpk";
pub const VOCAB_FILE: &str = "vocab.txt";

pub fn run(args: &TrainArgs, preset: &LanguagePreset) -> Result<(), CommandError> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("models/{}", preset.name).into());
    let corpus = Corpus::from_module(&args.sword_dir.join(preset.corpus))?;
    let tokenizer = Tokenizer::fit(corpus.train.iter().map(String::as_str), VOCAB_SIZE);
    let train = corpus.encoded(Split::Train, &tokenizer);
    let validation = corpus.encoded(Split::Validation, &tokenizer);
    println!(
        "{}: {} training verses ({} tokens), vocabulary {}",
        preset.name,
        train.len(),
        train.iter().map(Vec::len).sum::<usize>(),
        tokenizer.vocab_size()
    );
    let training = LanguageModelTraining {
        epochs: args.epochs.unwrap_or(preset.epochs),
        batch_size: args.batch_size.unwrap_or(32),
        window: preset.window,
        learning_rate: args.learning_rate.unwrap_or(preset.learning_rate),
        seed: args.seed,
        backend: args.backend,
        max_steps: args.max_steps,
        ..LanguageModelTraining::default()
    };
    let started = std::time::Instant::now();
    let model = training
        .run(&preset.architecture, &train, &validation, |r| {
            println!(
                "epoch {:>2}  steps {:>6}  loss {:.4}  validation perplexity {:.1}  top-1 {:.2}%  top-5 {:.2}%  ({:.0}s)",
                r.epoch,
                r.steps,
                r.mean_loss,
                r.validation.perplexity,
                r.validation.top1 * 100.0,
                r.validation.top5 * 100.0,
                started.elapsed().as_secs_f64()
            );
        })?;

    super::create_dir(&out)?;
    model.save(&out.join(WEIGHTS_FILE))?;
    tokenizer.save(&out.join(VOCAB_FILE))?;
    let config = ModelConfig::LanguageModel(LanguageModelConfig {
        version: "1".into(),
        weights: WEIGHTS_FILE.into(),
        vocab: VOCAB_FILE.into(),
        language: Some(preset.language.into()),
        corpus: Some(preset.corpus.into()),
        instances: 1,
        backend: None,
        device: None,
        architecture: preset.architecture.clone(),
        batching: BatchingConfig {
            max_batch_size: 32,
            max_queue_delay_us: 0,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1_024,
            ..BatchingConfig::default()
        },
        generation: GenerationConfig {
            max_prompt_tokens: preset.architecture.context_length().map_or(256, |c| c / 2),
            max_new_tokens: preset.architecture.context_length().map_or(256, |c| c / 2),
            ..GenerationConfig::default()
        },
    });
    config.write(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
