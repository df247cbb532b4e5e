//! What a generation tells its caller as it runs.

use crate::batching::InferError;

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// `max_tokens` generated, or the model's context is full.
    Length,
    /// The model ended the text (`<eos>`).
    EndOfText,
    /// A stop string would have appeared.
    StopSequence,
}

impl FinishReason {
    /// The name clients see (OpenAI's: "length" or "stop").
    pub fn label(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EndOfText | FinishReason::StopSequence => "stop",
        }
    }
}

/// What the loop sends a caller, in order: tokens, then one `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    Token {
        id: u32,
        text: String,
        logprob: f32,
        /// The likeliest tokens of the step, if asked for: id, text and log-probability.
        alternatives: Vec<(u32, String, f32)>,
    },
    Finished {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        text: String,
    },
    Failed(InferError),
}
