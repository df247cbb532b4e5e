//! Count-based baselines on the same token streams as the neural models: a unigram model
//! (add-one smoothed) and a bigram model interpolated with it, whose weight is tuned on the
//! validation split.

use std::collections::HashMap;

use super::tokenizer::BOS_ID;
use crate::eval::LanguageModelScore;

/// Unigram and bigram counts from training verses (`<bos> … <eos>` id sequences).
#[derive(Debug, Clone)]
pub struct NgramCounts {
    vocab_size: usize,
    unigram: Vec<u64>,
    total: u64,
    bigram: HashMap<u32, HashMap<u32, u64>>,
    context_totals: HashMap<u32, u64>,
}

/// Bigram weights tried when tuning on validation.
const LAMBDAS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

impl NgramCounts {
    pub fn fit(verses: &[Vec<u32>], vocab_size: usize) -> Self {
        let mut counts = NgramCounts {
            vocab_size,
            unigram: vec![0; vocab_size],
            total: 0,
            bigram: HashMap::new(),
            context_totals: HashMap::new(),
        };
        for verse in verses {
            for pair in verse.windows(2) {
                let (prev, next) = (pair[0], pair[1]);
                counts.unigram[next as usize] += 1;
                counts.total += 1;
                *counts
                    .bigram
                    .entry(prev)
                    .or_default()
                    .entry(next)
                    .or_default() += 1;
                *counts.context_totals.entry(prev).or_default() += 1;
            }
        }
        counts
    }

    /// P(next) with add-one smoothing.
    pub fn unigram_probability(&self, next: u32) -> f64 {
        (self.unigram[next as usize] + 1) as f64 / (self.total + self.vocab_size as u64) as f64
    }

    /// λ·P_ML(next | prev) + (1 − λ)·P_unigram(next).
    pub fn bigram_probability(&self, lambda: f64, prev: u32, next: u32) -> f64 {
        let context = self.context_totals.get(&prev).copied().unwrap_or(0);
        let ml = if context == 0 {
            0.0
        } else {
            let pair = self.bigram[&prev].get(&next).copied().unwrap_or(0);
            pair as f64 / context as f64
        };
        lambda * ml + (1.0 - lambda) * self.unigram_probability(next)
    }

    /// The interpolation weight with the lowest validation perplexity.
    pub fn tune_lambda(&self, validation: &[Vec<u32>]) -> f64 {
        LAMBDAS
            .into_iter()
            .map(|l| (l, self.score_bigram(l, validation).perplexity))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0.5, |(l, _)| l)
    }

    fn top_unigrams(&self, n: usize) -> Vec<u32> {
        let mut ranked: Vec<u32> = (0..self.vocab_size as u32)
            .filter(|&i| i != BOS_ID)
            .collect();
        ranked.sort_by_key(|&i| (std::cmp::Reverse(self.unigram[i as usize]), i));
        ranked.truncate(n);
        ranked
    }

    pub fn score_unigram(&self, verses: &[Vec<u32>]) -> LanguageModelScore {
        let top = self.top_unigrams(5);
        let mut score = LanguageModelScore::default();
        for verse in verses {
            for pair in verse.windows(2) {
                score.add(
                    self.unigram_probability(pair[1]).ln(),
                    rank_of(&top, pair[1]),
                );
            }
        }
        score.finish()
    }

    pub fn score_bigram(&self, lambda: f64, verses: &[Vec<u32>]) -> LanguageModelScore {
        let mut top_by_context: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut score = LanguageModelScore::default();
        for verse in verses {
            for pair in verse.windows(2) {
                let (prev, next) = (pair[0], pair[1]);
                let top = top_by_context
                    .entry(prev)
                    .or_insert_with(|| self.top5_after(lambda, prev));
                score.add(
                    self.bigram_probability(lambda, prev, next).ln(),
                    rank_of(top, next),
                );
            }
        }
        score.finish()
    }

    fn top5_after(&self, lambda: f64, prev: u32) -> Vec<u32> {
        // The five best are among the words seen after `prev` and the five most frequent
        // words overall: any other word scores below all of the latter.
        let mut ids: Vec<u32> = self.top_unigrams(5);
        if let Some(next) = self.bigram.get(&prev) {
            ids.extend(next.keys().copied());
        }
        ids.sort_unstable();
        ids.dedup();
        ids.sort_by(|&a, &b| {
            self.bigram_probability(lambda, prev, b)
                .total_cmp(&self.bigram_probability(lambda, prev, a))
                .then(a.cmp(&b))
        });
        ids.truncate(5);
        ids
    }
}

fn rank_of(top: &[u32], id: u32) -> Option<usize> {
    top.iter().position(|&t| t == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigram_beats_unigram_on_its_own_pattern() {
        // Vocabulary of 6: specials, then a b c; "a b c" repeated.
        let verses: Vec<Vec<u32>> = (0..50).map(|_| vec![1, 3, 4, 5, 2]).collect();
        let counts = NgramCounts::fit(&verses, 6);
        let total: f64 = (0..6).map(|n| counts.bigram_probability(0.7, 3, n)).sum();
        assert!(
            (total - 1.0).abs() < 1e-9,
            "bigram distribution sums to {total}"
        );
        let lambda = counts.tune_lambda(&verses);
        let bigram = counts.score_bigram(lambda, &verses);
        let unigram = counts.score_unigram(&verses);
        assert!(bigram.perplexity < unigram.perplexity);
        assert_eq!(bigram.top1, 1.0);
        assert_eq!(bigram.tokens, 200);
    }
}
