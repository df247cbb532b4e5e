//! A language model behind its two paths: next-word requests go through a dynamic batcher
//! (prompts of any length share a padded batch), generations through the continuous-batching
//! loop. Each path owns its own copy of the network.

use std::sync::Arc;

use kiln_zoo::classifier::top_k;
use kiln_zoo::language_model::LanguageModel;
use kiln_zoo::text::tokenizer::{BOS_ID, EOS, EOS_ID, Tokenizer, UNK_ID};
use tokio::time::Instant;

use crate::batching::{BatchExecutor, Batcher, ExecutorError, InferError};
use crate::generation::{GenerationJob, Generator};
use crate::repository::LanguageModelConfig;

/// One ranked next word.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct WordProbability {
    pub word: String,
    pub token_id: u32,
    pub probability: f32,
}

pub struct LanguageModelRunner {
    pub config: LanguageModelConfig,
    pub tokenizer: Arc<Tokenizer>,
    pub(super) next_word: Batcher<Vec<u32>, Vec<f32>>,
    pub(super) generator: Generator,
}

impl LanguageModelRunner {
    /// Longest sequence the network takes, if it has a limit.
    pub fn context_length(&self) -> Option<usize> {
        self.config.architecture.context_length()
    }

    /// `<bos>` and the prompt's tokens.
    pub fn encode_prompt(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode_prompt(text)
    }

    /// The word a token id stands for; the end of a verse is `<eos>`.
    pub fn token_text(&self, id: u32) -> &str {
        if id == EOS_ID {
            EOS
        } else {
            self.tokenizer.word(id)
        }
    }

    /// Log-probabilities of every token following `prompt`, through the next-word batcher.
    pub async fn log_probs(
        &self,
        prompt: Vec<u32>,
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, InferError> {
        self.next_word.infer_by(prompt, deadline).await
    }

    /// The `k` likeliest next words after `prompt` (ids from [`Self::encode_prompt`]).
    /// `<bos>` and `<unk>` are never offered; the end of a verse appears as `<eos>`.
    pub async fn next_words(
        &self,
        prompt: Vec<u32>,
        k: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<WordProbability>, InferError> {
        let log_probs = self.log_probs(prompt, deadline).await?;
        // Two extra cover `<bos>` and `<unk>`, which are never offered.
        Ok(top_k(&log_probs, k + 2)
            .into_iter()
            .map(|id| id as u32)
            .filter(|&id| id != BOS_ID && id != UNK_ID)
            .take(k)
            .map(|id| WordProbability {
                word: self.token_text(id).to_string(),
                token_id: id,
                probability: log_probs[id as usize].exp(),
            })
            .collect())
    }

    /// Hand a generation to the loop.
    pub fn generate(&self, job: GenerationJob) -> Result<(), InferError> {
        self.generator.submit(job)
    }
}

/// Runs next-word batches on one copy of the model.
pub(super) struct NextWordExecutor {
    pub model: LanguageModel,
    pub reload: Box<dyn Fn() -> Result<LanguageModel, String> + Send>,
}

impl BatchExecutor<Vec<u32>, Vec<f32>> for NextWordExecutor {
    fn execute(&mut self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ExecutorError> {
        let prompts: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        self.model
            .next_token_log_probs(&prompts)
            .map_err(|e| ExecutorError(e.to_string()))
    }

    fn restart(&mut self) -> Result<(), ExecutorError> {
        self.model = (self.reload)().map_err(ExecutorError)?;
        tracing::info!("executor reloaded its language model");
        Ok(())
    }
}
