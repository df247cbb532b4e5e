//! `kiln eval`: a model of the repository scored on its held-out test set — accuracy for
//! classifiers, perplexity and next-word accuracy (beside unigram and bigram baselines on
//! the same split and vocabulary) for language models, and for captioners the facts their
//! captions get right and BLEU-4 on test scenes of the training and shifted distributions.

use std::path::Path;

use kiln_zoo::captioning::captioner::{CaptionOptions, Captioner};
use kiln_zoo::data::fashion_mnist::{CLASS_NAMES, FashionMnist, Split as ImageSplit};
use kiln_zoo::data::scenes::{SceneGenerator, SceneSplit, SceneStyle};
use kiln_zoo::eval::{
    LanguageModelScore, SceneCaptionScore, SingleObjectClasses, accuracy, evaluate_captioner,
    ranked_classes, share, top1_agreement,
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

/// `part / whole` as a table cell ("78.7%"), or "–" for an empty whole.
fn percent(part: usize, whole: usize) -> String {
    share(part, whole).map_or_else(|| "–".to_string(), |s| format!("{:.1}%", s * 100.0))
}

/// One row of the captioner table: a distribution's test scenes under one search.
fn caption_row(style: &str, search: &str, score: &SceneCaptionScore) {
    let facts = &score.facts;
    println!(
        "| {style:<13} | {search:<6} | {:>6} | {:>6} | {:>6} | {:>8} | {:>6.2} | {:>6.2}% |",
        percent(facts.named, facts.singles),
        percent(facts.coloured, facts.singles),
        percent(facts.both_named, facts.pairs),
        percent(facts.related, facts.pairs),
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
    let reference = match &args.reference {
        Some(name) => Some((name, reference_answers(args, name, &images, &device)?)),
        None => None,
    };
    let mut classes = SingleObjectClasses::default();
    println!(
        "{}: {} test scenes (Fashion-MNIST test images) per distribution; \
         named and colour over single objects, both named and relation over pairs, \
         BLEU-4 and exact match over all against every phrasing",
        args.model, args.scenes
    );
    println!("| scenes        | search |  named | colour |   both | relation | BLEU-4 |   exact |");
    println!("|---------------|--------|-------:|-------:|-------:|---------:|-------:|--------:|");
    for (index, style) in SceneStyle::all().into_iter().enumerate() {
        let scenes = SceneGenerator::with_style(&images, SceneSplit::Test, style.clone())?
            .scenes(args.scenes);
        // Beam search on the training distribution only: it is 3× the work per scene.
        let beams: &[usize] = if index == 0 { &[1, 3] } else { &[1] };
        for &beam_size in beams {
            let options = CaptionOptions {
                beam_size,
                max_tokens: config.decoding.default_max_tokens,
            };
            let answers = reference.as_ref().map(|(_, answers)| answers.as_slice());
            let score = evaluate_captioner(&captioner, &scenes, 64, &options, answers)?;
            let search = if beam_size == 1 {
                classes.merge(&score.classes);
                "greedy".to_string()
            } else {
                format!("beam {beam_size}")
            };
            caption_row(style.name, &search, &score);
        }
    }
    println!();
    class_table(&classes, reference.as_ref().map(|(name, _)| name.as_str()));
    Ok(())
}

/// The top class a repository's Fashion-MNIST classifier gives every image of `images`.
fn reference_answers(
    args: &EvalArgs,
    name: &str,
    images: &FashionMnist,
    device: &kiln_zoo::Device,
) -> Result<Vec<usize>, CommandError> {
    let dir = args.model_repository.join(name);
    let ModelConfig::Classify(config) = ModelConfig::read(&dir)? else {
        return Err(CommandError::Usage(format!(
            "--reference {name}: not an image classifier"
        )));
    };
    let classifier = config.load_classifier(&dir, device)?;
    let ranked = ranked_classes(&classifier, images, &config.input, 500)?;
    Ok(ranked.iter().map(|best| best[0]).collect())
}

/// Single objects of every distribution (greedy search) by their true class: how often
/// their caption names them, what it calls them instead, and beside it the reference
/// classifier on their clean source images.
fn class_table(classes: &SingleObjectClasses, reference: Option<&str>) {
    let said_name = |said: usize| {
        if said == SingleObjectClasses::UNCLEAR {
            "no one class"
        } else {
            CLASS_NAMES[said]
        }
    };
    println!("Single objects of every distribution (greedy), by class:");
    let mut header = format!(
        "| class       | objects |  named | {:<49} |",
        "called instead (share of the class)"
    );
    let mut rule = format!("|-------------|--------:|-------:|{}|", "-".repeat(51));
    if let Some(name) = reference {
        header += &format!(" {name} on the source | named where {name} is right |");
        rule += "------:|------:|";
    }
    println!("{header}\n{rule}");
    let row = |class: &str, [objects, named, right, named_where_right]: [usize; 4], instead| {
        print!(
            "| {class:<11} | {objects:>7} | {:>6} | {instead:<49} |",
            percent(named, objects)
        );
        if reference.is_some() {
            print!(
                " {:>6} | {:>6} |",
                percent(right, objects),
                percent(named_where_right, right)
            );
        }
        println!();
    };
    let mut totals = [0usize; 4];
    for (truth, class_name) in CLASS_NAMES.iter().enumerate() {
        let objects = classes.objects(truth);
        let instead: Vec<String> = classes
            .mistakes(truth)
            .iter()
            .take(3)
            .map(|&(said, count)| format!("{} {}", said_name(said), percent(count, objects)))
            .collect();
        let counts = [
            objects,
            classes.named(truth),
            classes.reference_right[truth],
            classes.named_where_reference_right[truth],
        ];
        row(class_name, counts, instead.join(", "));
        for (total, add) in totals.iter_mut().zip(counts) {
            *total += add;
        }
    }
    row("all", totals, String::new());
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
