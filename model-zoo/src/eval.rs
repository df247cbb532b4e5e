//! Held-out evaluation of classifiers and captioners.

use crate::captioning::captioner::{CaptionOptions, Captioner};
use crate::captioning::metrics::{CaptionScore, score_captions};
use crate::classifier::{ImageClassifier, top_k};
use crate::data::fashion_mnist::FashionMnist;
use crate::data::scenes::Scene;
use crate::error::Result;
use crate::image_input::ImageSpec;

/// Top-1 and top-5 accuracy over a labelled set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    pub samples: usize,
    pub top1: f64,
    pub top5: f64,
}

/// Evaluate a classifier on every image of a Fashion-MNIST split, `batch_size` at a time.
pub fn evaluate_fashion_mnist(
    classifier: &ImageClassifier,
    data: &FashionMnist,
    spec: &ImageSpec,
    batch_size: usize,
) -> Result<Accuracy> {
    let ranked = ranked_classes(classifier, data, spec, batch_size)?;
    Ok(accuracy(&ranked, data))
}

/// Top-1 and top-5 accuracy of rankings of a split's images (in order) against its labels.
pub fn accuracy(ranked: &[Vec<usize>], data: &FashionMnist) -> Accuracy {
    let (mut top1, mut top5) = (0usize, 0usize);
    for (i, best) in ranked.iter().enumerate() {
        top1 += usize::from(best[0] == data.label(i));
        top5 += usize::from(best.contains(&data.label(i)));
    }
    let n = ranked.len().max(1) as f64;
    Accuracy {
        samples: ranked.len(),
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
    }
}

/// The five most probable classes of every image of a split, best first.
pub fn ranked_classes(
    classifier: &ImageClassifier,
    data: &FashionMnist,
    spec: &ImageSpec,
    batch_size: usize,
) -> Result<Vec<Vec<usize>>> {
    let mut ranked = Vec::with_capacity(data.len());
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let inputs = chunk
            .iter()
            .map(|&i| fashion_mnist_input(data, i, spec))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        for probabilities in classifier.classify_batch(&refs)? {
            ranked.push(top_k(&probabilities, 5));
        }
    }
    Ok(ranked)
}

/// Share of images whose top-1 class is the same in both rankings (e.g. f16 against f32).
pub fn top1_agreement(a: &[Vec<usize>], b: &[Vec<usize>]) -> f64 {
    let agreed = a.iter().zip(b).filter(|(x, y)| x[0] == y[0]).count();
    agreed as f64 / a.len().min(b.len()).max(1) as f64
}

/// Model input for image `index`, preprocessed exactly as the server preprocesses uploads.
pub fn fashion_mnist_input(
    data: &FashionMnist,
    index: usize,
    spec: &ImageSpec,
) -> Result<Vec<f32>> {
    let pixels: Vec<f32> = data.image(index).iter().map(|&p| f32::from(p)).collect();
    spec.from_pixels(28, 28, 1, &pixels)
}

/// Perplexity and next-word accuracy of a language model over a token stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LanguageModelScore {
    /// Tokens predicted.
    pub tokens: usize,
    pub perplexity: f64,
    pub top1: f64,
    pub top5: f64,
    #[serde(skip)]
    log_prob_sum: f64,
    #[serde(skip)]
    top1_hits: usize,
    #[serde(skip)]
    top5_hits: usize,
}

impl LanguageModelScore {
    /// Count one predicted token: its natural-log probability and its rank among the
    /// model's five best guesses (`None` when it is not among them).
    pub fn add(&mut self, log_prob: f64, rank: Option<usize>) {
        self.tokens += 1;
        self.log_prob_sum += log_prob;
        self.top1_hits += usize::from(rank == Some(0));
        self.top5_hits += usize::from(rank.is_some_and(|r| r < 5));
    }

    /// Fill in the averages from the counts.
    pub fn finish(mut self) -> Self {
        let n = self.tokens.max(1) as f64;
        self.perplexity = (-self.log_prob_sum / n).exp();
        self.top1 = self.top1_hits as f64 / n;
        self.top5 = self.top5_hits as f64 / n;
        self
    }
}

/// Captions of `scenes` scored against every phrasing of their true captions.
pub fn evaluate_captioner(
    captioner: &Captioner,
    scenes: &[Scene],
    batch_size: usize,
    options: &CaptionOptions,
) -> Result<CaptionScore> {
    let mut predicted = Vec::with_capacity(scenes.len());
    for chunk in scenes.chunks(batch_size.max(1)) {
        let images: Vec<Vec<f32>> = chunk.iter().map(Scene::input).collect();
        predicted.extend(captioner.caption(&images, options)?);
    }
    let references: Vec<Vec<String>> = scenes.iter().map(Scene::references).collect();
    Ok(score_captions(predicted.iter().zip(&references).map(
        |(caption, references)| (caption.text.as_str(), references.iter().map(String::as_str)),
    )))
}
