//! Language models: the next word after a text, and generated continuations. Entry points:
//! [`LanguageModelRunner::next_words`] (the likeliest next words),
//! [`LanguageModelRunner::log_probs`] (whole next-token distributions, for the Open
//! Inference Protocol) and [`LanguageModelRunner::generate`] (a [`GenerationStream`]).
//! Next-word requests go through a dynamic batcher (prompts of any length share a padded
//! batch), generations through the step loop; each path owns its own copy of the network.

mod config;
mod events;
mod generation;
mod load;
mod metrics;
pub mod request;
pub mod sampling;
mod stream;

use std::sync::Arc;

use kiln_zoo::classifier::top_k;
use kiln_zoo::text::tokenizer::{BOS_ID, EOS, EOS_ID, Tokenizer, UNK_ID};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::Instant;

pub use self::metrics::GenerationMetrics;
pub use config::{GenerationConfig, LanguageModelConfig};
pub use events::{FinishReason, GenerationEvent};
pub use generation::GenerationJob;
pub use load::load;
pub use request::{GenerateRequest, GenerationPlan, NextWordRequest, StopStrings};
pub use stream::{
    Alternative, DeadlineScope, GeneratedToken, Generation, GenerationDeadline, GenerationStream,
    GenerationSummary, StreamItem, generation_stopped,
};

use self::request::{check_prompt_length, next_word_count};
use crate::batching::{Batcher, Choice, LatencyTarget, Permit, StepLoop, StepTarget};
use crate::error::KilnError;
use crate::metrics::{ModelMetrics, RequestRecord};
use crate::task::failure_reason;

/// One ranked next word.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct WordProbability {
    pub word: String,
    pub token_id: u32,
    pub probability: f32,
}

/// The likeliest next words after a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct NextWords {
    /// Tokens of the prompt, without `<bos>`.
    pub prompt_tokens: usize,
    pub predictions: Vec<WordProbability>,
}

/// A prompt as a protocol delivers it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    /// Ids of `vocab.txt`, after which the model predicts.
    TokenIds(Vec<i64>),
}

/// A language model behind its next-word batcher and its generation loop.
pub struct LanguageModelRunner {
    pub config: LanguageModelConfig,
    pub tokenizer: Arc<Tokenizer>,
    next_word: Batcher<Vec<u32>, Vec<f32>>,
    generation: StepLoop<GenerationJob>,
    metrics: Arc<ModelMetrics>,
}

impl LanguageModelRunner {
    pub fn metrics(&self) -> &Arc<ModelMetrics> {
        &self.metrics
    }

    /// The batch size and delay the next-word batcher uses now, and its latency target.
    pub fn batching(&self) -> (Choice, Option<LatencyTarget>) {
        self.next_word.settings()
    }

    /// The generation loop's step target and the width it allows now, when it has one.
    pub fn step_target(&self) -> Option<(StepTarget, usize)> {
        self.generation.step_target()
    }

    /// The word a token id stands for; the end of a verse is `<eos>`.
    pub fn token_text(&self, id: u32) -> &str {
        if id == EOS_ID {
            EOS
        } else {
            self.tokenizer.word(id)
        }
    }

    /// The `top_k` (default 5) likeliest next words after `text`. `<bos>` and `<unk>` are
    /// never offered; the end of a verse appears as `<eos>`.
    pub async fn next_words(
        &self,
        text: &str,
        top_k_words: Option<usize>,
        deadline: Instant,
    ) -> Result<NextWords, KilnError> {
        let arrived = Instant::now();
        let k = next_word_count(top_k_words)?;
        let prompt = self.encode(&Prompt::Text(text.to_string()))?;
        let prompt_tokens = prompt.len() - 1;
        let log_probs = self.next_word.infer_by(prompt, Some(deadline)).await?;
        self.next_word.answered(arrived);
        // Two extra cover `<bos>` and `<unk>`, which are never offered.
        let predictions = top_k(&log_probs, k + 2)
            .into_iter()
            .map(|id| id as u32)
            .filter(|&id| id != BOS_ID && id != UNK_ID)
            .take(k)
            .map(|id| WordProbability {
                word: self.token_text(id).to_string(),
                token_id: id,
                probability: log_probs[id as usize].exp(),
            })
            .collect();
        Ok(NextWords {
            prompt_tokens,
            predictions,
        })
    }

    /// Log-probabilities of every token following each prompt, batched together.
    pub async fn log_probs(
        &self,
        prompts: Vec<Prompt>,
        deadline: Instant,
    ) -> Result<Vec<Vec<f32>>, KilnError> {
        let arrived = Instant::now();
        let prompts = prompts
            .iter()
            .map(|p| self.encode(p))
            .collect::<Result<Vec<_>, _>>()?;
        let log_probs = futures_util::future::try_join_all(
            prompts
                .into_iter()
                .map(|prompt| self.next_word.infer_by(prompt, Some(deadline))),
        )
        .await?;
        self.next_word.answered(arrived);
        Ok(log_probs)
    }

    /// Start a checked generation; its tokens arrive through the returned stream, which
    /// also holds the request's `record`, its deadline and the server's in-flight permit. A
    /// generation still queued at the deadline is dropped unstarted.
    pub fn generate(
        &self,
        plan: GenerationPlan,
        record: RequestRecord,
        deadline: Option<GenerationDeadline>,
        in_flight: Option<Permit>,
    ) -> Result<GenerationStream, KilnError> {
        match self.submit(plan, deadline) {
            Ok(receiver) => Ok(GenerationStream::new(receiver, record, deadline, in_flight)),
            Err(e) => {
                record.finish(Some(failure_reason(e.kind)));
                Err(e)
            }
        }
    }

    fn submit(
        &self,
        plan: GenerationPlan,
        deadline: Option<GenerationDeadline>,
    ) -> Result<UnboundedReceiver<GenerationEvent>, KilnError> {
        let prompt = self.encode(&Prompt::Text(plan.text))?;
        let (events, receiver) = unbounded_channel();
        let job = GenerationJob {
            prompt,
            max_tokens: plan.max_tokens,
            sampling: plan.sampling,
            seed: plan.seed.unwrap_or_else(rand::random),
            stop: plan.stop,
            ignore_eos: plan.ignore_eos,
            top_logprobs: plan.top_logprobs.min(request::MAX_TOP_LOGPROBS),
            events,
        };
        self.generation.submit(job, deadline.map(|d| d.at))?;
        Ok(receiver)
    }

    /// `<bos>` and the prompt's tokens, checked against the model's limits.
    fn encode(&self, prompt: &Prompt) -> Result<Vec<u32>, KilnError> {
        let tokens = match prompt {
            Prompt::Text(text) => self.tokenizer.encode_prompt(text),
            Prompt::TokenIds(ids) => self.ids_prompt(ids)?,
        };
        check_prompt_length(
            tokens.len(),
            &self.config.generation,
            self.config.context_length(),
        )?;
        Ok(tokens)
    }

    /// `<bos>` and token ids checked against the vocabulary.
    fn ids_prompt(&self, ids: &[i64]) -> Result<Vec<u32>, KilnError> {
        let vocab = self.tokenizer.vocab_size();
        std::iter::once(Ok(BOS_ID))
            .chain(ids.iter().map(|&id| {
                usize::try_from(id)
                    .ok()
                    .filter(|&i| i < vocab)
                    .map(|i| i as u32)
                    .ok_or_else(|| {
                        KilnError::unprocessable(format!(
                            "token id {id} is outside this model's vocabulary of {vocab}"
                        ))
                    })
            }))
            .collect()
    }
}
