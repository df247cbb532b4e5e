//! The search for one image's caption, one decoding step at a time. A search hands out the
//! last token of each live hypothesis, takes back the step's log-probabilities, keeps the
//! `beam_size` best continuations and says which hypothesis each extends, so the decoder
//! states (kept stacked in a `HypothesisBatch`) can follow. The caller decides what to
//! batch each step with, so many searches share one decoder pass.

use super::captioner::{Caption, CaptionOptions};
use super::vocabulary::{BOS, CaptionVocabulary, EOS};

/// A partial or finished caption.
#[derive(Debug, Clone)]
struct Hypothesis {
    /// `<bos>`, the words so far, and `<eos>` once finished.
    tokens: Vec<u32>,
    /// Sum of the log-probabilities of the tokens after `<bos>`.
    score: f32,
}

/// Greedy (a beam of one) or beam search for one image.
#[derive(Debug)]
pub struct CaptionSearch {
    /// The search's rows in its `HypothesisBatch`.
    id: u64,
    options: CaptionOptions,
    live: Vec<Hypothesis>,
    finished: Vec<Hypothesis>,
    /// Words predicted so far by each live hypothesis.
    steps: usize,
}

impl CaptionSearch {
    /// A search whose image was encoded into the rows of `id` (see
    /// `HypothesisBatch::start`).
    pub fn new(id: u64, options: CaptionOptions) -> Self {
        Self {
            id,
            options,
            live: vec![Hypothesis {
                tokens: vec![BOS],
                score: 0.0,
            }],
            finished: Vec::new(),
            steps: 0,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn is_done(&self) -> bool {
        self.live.is_empty()
    }

    /// Hypotheses the next step will run (at most `beam_size`).
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The last token of every live hypothesis, in order, for the next step.
    pub fn last_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.live
            .iter()
            .map(|h| *h.tokens.last().expect("a hypothesis starts with <bos>"))
    }

    /// Take the step's log-probabilities for the hypotheses
    /// [`last_tokens`](Self::last_tokens) gave, in the same order, and keep the best
    /// continuations; returns, for each live hypothesis after the step, the hypothesis
    /// before it that it extends.
    pub fn advance(&mut self, log_probs: &[Vec<f32>]) -> Vec<usize> {
        debug_assert_eq!(log_probs.len(), self.live.len());
        let live = std::mem::take(&mut self.live);
        if self.steps == self.options.max_tokens {
            // Out of words: every caption still open ends here.
            for (mut hypothesis, log_probs) in live.into_iter().zip(log_probs) {
                hypothesis.score += log_probs[EOS as usize];
                hypothesis.tokens.push(EOS);
                self.finished.push(hypothesis);
            }
            return Vec::new();
        }
        let beam = self.options.beam_size;
        let mut candidates: Vec<(f32, usize, u32)> = Vec::new();
        for (row, (hypothesis, log_probs)) in live.iter().zip(log_probs).enumerate() {
            for (token, log_prob) in best(log_probs, beam) {
                candidates.push((hypothesis.score + log_prob, row, token));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut next = Vec::with_capacity(beam);
        let mut parents = Vec::with_capacity(beam);
        for (score, row, token) in candidates.into_iter().take(beam) {
            let mut tokens = live[row].tokens.clone();
            tokens.push(token);
            let hypothesis = Hypothesis { tokens, score };
            if token == EOS {
                self.finished.push(hypothesis);
            } else {
                next.push(hypothesis);
                parents.push(row);
            }
        }
        self.steps += 1;
        if self.finished.len() < beam {
            self.live = next;
            parents
        } else {
            Vec::new()
        }
    }

    /// The best finished caption; call once [`is_done`](Self::is_done).
    pub fn caption(self, vocabulary: &CaptionVocabulary) -> Caption {
        let chosen = self
            .finished
            .into_iter()
            .max_by(|a, b| normalised(a).total_cmp(&normalised(b)))
            .expect("a finished search holds at least one caption");
        let tokens: Vec<u32> = chosen.tokens[1..]
            .iter()
            .copied()
            .take_while(|&t| t != EOS)
            .collect();
        Caption {
            text: vocabulary.decode(&tokens),
            tokens,
            score: chosen.score,
        }
    }
}

/// The `count` most likely tokens of one distribution, best first.
pub(crate) fn best(log_probs: &[f32], count: usize) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = log_probs
        .iter()
        .enumerate()
        .map(|(token, &p)| (token as u32, p))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(count);
    ranked
}

/// Score per predicted token, so longer captions are not penalised for their length.
fn normalised(hypothesis: &Hypothesis) -> f32 {
    hypothesis.score / (hypothesis.tokens.len() - 1) as f32
}
