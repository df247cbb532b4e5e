//! `kiln eval`: a model of the repository scored on its held-out test set — accuracy for
//! classifiers, perplexity and next-word accuracy (beside unigram and bigram baselines on
//! the same split and vocabulary) for language models, and for captioners the facts their
//! captions get right and BLEU-4 on test scenes of the training and shifted distributions.

use std::path::Path;

use kiln_zoo::captioning::captioner::{CaptionOptions, Captioner};
use kiln_zoo::data::fashion_mnist::{FashionMnist, Split as ImageSplit};
use kiln_zoo::data::scenes::{SceneGenerator, SceneSplit, SceneStyle};
use kiln_zoo::eval::{
    LanguageModelScore, SceneCaptionScore, accuracy, evaluate_captioner, ranked_classes, share,
    top1_agreement,
};
use kiln_zoo::language_model::LanguageModel;
use kiln_zoo::precision::Precision;
use kiln_zoo::text::corpus::{Corpus, Split};
use kiln_zoo::text::ngram::NgramCounts;
use kiln_zoo::text::tokenizer::Tokenizer;

use super::CommandError;
use crate::cli::EvalArgs;
use crate::repository::{CaptionerModelConfig, ClassifierConfig, LanguageModelConfig, ModelConfig};

pub fn run(args: &EvalArgs) -> Result<(), CommandError> {
    let dir = args.model_repository.join(&args.model);
    match ModelConfig::read(&dir)? {
        ModelConfig::Classify(config) => eval_classifier(args, &dir, &config),
        ModelConfig::LanguageModel(config) => eval_language_model(args, &dir, &config),
        ModelConfig::Caption(config) => eval_captioner(args, &dir, &config),
    }
}

/// Test scenes of each distribution a captioner is scored on.
pub const CAPTION_TEST_SCENES: usize = 1_000;

/// One row of the captioner table: a distribution's test scenes under one search.
fn caption_row(style: &str, search: &str, score: &SceneCaptionScore) {
    let facts = &score.facts;
    let cell = |part, whole| {
        share(part, whole).map_or_else(|| "–".to_string(), |s| format!("{:.1}%", s * 100.0))
    };
    println!(
        "| {style:<13} | {search:<6} | {:>6} | {:>6} | {:>6} | {:>8} | {:>6.2} | {:>6.2}% |",
        cell(facts.named, facts.singles),
        cell(facts.coloured, facts.singles),
        cell(facts.both_named, facts.pairs),
        cell(facts.related, facts.pairs),
        score.text.bleu4 * 100.0,
        score.text.exact_match * 100.0
    );
}

fn eval_captioner(
    args: &EvalArgs,
    dir: &Path,
    config: &CaptionerModelConfig,
) -> Result<(), CommandError> {
    let device = args.backend.device_at(args.device)?;
    let captioner = Captioner::load(&config.architecture, &dir.join(&config.weights), &device)?;
    let images = FashionMnist::load(&args.data_dir, ImageSplit::Test)?;
    println!(
        "{}: {CAPTION_TEST_SCENES} test scenes (Fashion-MNIST test images) per distribution; \
         named and colour over single objects, both named and relation over pairs, \
         BLEU-4 and exact match over all against every phrasing",
        args.model
    );
    println!("| scenes        | search |  named | colour |   both | relation | BLEU-4 |   exact |");
    println!("|---------------|--------|-------:|-------:|-------:|---------:|-------:|--------:|");
    for (index, style) in SceneStyle::all().into_iter().enumerate() {
        let scenes = SceneGenerator::with_style(&images, SceneSplit::Test, style.clone())?
            .scenes(CAPTION_TEST_SCENES);
        // Beam search on the training distribution only: it is 3× the work per scene.
        let beams: &[usize] = if index == 0 { &[1, 3] } else { &[1] };
        for &beam_size in beams {
            let options = CaptionOptions {
                beam_size,
                max_tokens: config.decoding.default_max_tokens,
            };
            let score = evaluate_captioner(&captioner, &scenes, 64, &options)?;
            let search = if beam_size == 1 {
                "greedy".to_string()
            } else {
                format!("beam {beam_size}")
            };
            caption_row(style.name, &search, &score);
        }
    }
    Ok(())
}

fn eval_classifier(
    args: &EvalArgs,
    dir: &Path,
    config: &ClassifierConfig,
) -> Result<(), CommandError> {
    let device = args.backend.device_at(args.device)?;
    let test = FashionMnist::load(&args.data_dir, ImageSplit::Test)?;
    let mut precisions = vec![config.precision];
    if let Some(other) = args.precision.filter(|p| *p != config.precision) {
        precisions.push(other);
    }
    let mut rankings: Vec<(Precision, Vec<Vec<usize>>)> = Vec::new();
    for precision in precisions {
        let classifier = config
            .load_classifier(dir, &device)?
            .with_precision(precision)?;
        let ranked = ranked_classes(&classifier, &test, &config.input, 500)?;
        let accuracy = accuracy(&ranked, &test);
        println!(
            "{} ({}, {precision}): Fashion-MNIST test set, {} images: top-1 {:.2}%, top-5 {:.2}%",
            args.model,
            args.backend,
            accuracy.samples,
            accuracy.top1 * 100.0,
            accuracy.top5 * 100.0
        );
        if let Some((reference, first)) = rankings.first() {
            println!(
                "top-1 agreement of {precision} with {reference}: {:.2}%",
                top1_agreement(first, &ranked) * 100.0
            );
        }
        rankings.push((precision, ranked));
    }
    Ok(())
}

fn eval_language_model(
    args: &EvalArgs,
    dir: &Path,
    config: &LanguageModelConfig,
) -> Result<(), CommandError> {
    let corpus_name = config
        .corpus
        .as_deref()
        .ok_or_else(|| CommandError::Usage("model.toml names no `corpus` to evaluate on".into()))?;
    let device = args.backend.device_at(args.device)?;
    let model = LanguageModel::load(&config.architecture, &dir.join(&config.weights), &device)?;
    let tokenizer = Tokenizer::load(&dir.join(&config.vocab))?;
    let corpus = Corpus::from_module(&args.sword_dir.join(corpus_name))?;
    let train = corpus.encoded(Split::Train, &tokenizer);
    let validation = corpus.encoded(Split::Validation, &tokenizer);
    let test = corpus.encoded(Split::Test, &tokenizer);

    let counts = NgramCounts::fit(&train, tokenizer.vocab_size());
    let lambda = counts.tune_lambda(&validation);
    let row = |name: &str, s: &LanguageModelScore| {
        println!(
            "| {name:<28} | {:>10.1} | {:>6.2}% | {:>6.2}% |",
            s.perplexity,
            s.top1 * 100.0,
            s.top5 * 100.0
        );
    };
    let score = model.score(&test, 64)?;
    println!(
        "{}: {corpus_name} test books, {} verses, {} tokens predicted",
        args.model,
        test.len(),
        score.tokens
    );
    println!("| model                        | perplexity |  top-1 |  top-5 |");
    println!("|------------------------------|-----------:|-------:|-------:|");
    row(&args.model, &score);
    row("unigram (add-one)", &counts.score_unigram(&test));
    row(
        &format!("bigram (λ = {lambda:.1})"),
        &counts.score_bigram(lambda, &test),
    );
    Ok(())
}
