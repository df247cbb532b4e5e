//! The task calls behind both `/v1` over HTTP and the `kiln.v1` gRPC service, so the two
//! protocols check and run requests the same way; [`text_input`] decodes and checks the
//! language-model requests.

pub mod text_input;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::Instant;

use self::text_input::{GenerationPlan, check_prompt_length};
use crate::error::{ErrorKind, KilnError};
use crate::generation::{GenerationEvent, GenerationJob};
use crate::registry::{LanguageModelRunner, WordProbability};

/// Decoding inputs this large takes long enough to stall an async worker.
const INLINE_DECODE_LIMIT: usize = 256 * 1024;

/// Decode `input_bytes` worth of input with `decode`: inline when small, on the blocking
/// pool when large. Every protocol's image decoding goes through here.
pub async fn decode_off_thread_if_large<T: Send + 'static>(
    input_bytes: usize,
    decode: impl FnOnce() -> Result<T, KilnError> + Send + 'static,
) -> Result<T, KilnError> {
    if input_bytes <= INLINE_DECODE_LIMIT {
        return decode();
    }
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|_| KilnError::new(ErrorKind::Internal, "decoding the request failed"))?
}

/// Classes returned when the caller does not say.
pub const DEFAULT_CLASSES: usize = 5;

/// How many classes to return out of `classes`.
pub fn class_count(requested: Option<usize>, classes: usize) -> Result<usize, KilnError> {
    match requested {
        Some(0) => Err(KilnError::bad_input("top_k must be at least 1")),
        Some(k) => Ok(k.min(classes)),
        None => Ok(DEFAULT_CLASSES.min(classes)),
    }
}

/// The `k` likeliest next words after `text`, and how many tokens the prompt had.
pub async fn next_words(
    lm: &LanguageModelRunner,
    text: &str,
    k: usize,
    deadline: Instant,
) -> Result<(usize, Vec<WordProbability>), KilnError> {
    let prompt = lm.encode_prompt(text);
    check_prompt_length(prompt.len(), &lm.config.generation, lm.context_length())?;
    let tokens = prompt.len() - 1;
    let words = lm.next_words(prompt, k, Some(deadline)).await?;
    Ok((tokens, words))
}

/// Hand a checked generation to the model's loop; its events arrive on the receiver.
/// Dropping the receiver stops the generation.
pub fn start_generation(
    lm: &LanguageModelRunner,
    plan: GenerationPlan,
) -> Result<UnboundedReceiver<GenerationEvent>, KilnError> {
    let prompt = lm.encode_prompt(&plan.text);
    check_prompt_length(prompt.len(), &lm.config.generation, lm.context_length())?;
    let (sender, receiver) = unbounded_channel();
    lm.generate(GenerationJob {
        prompt,
        max_tokens: plan.max_tokens,
        sampling: plan.sampling,
        seed: plan.seed.unwrap_or_else(rand::random),
        stop: plan.stop,
        ignore_eos: plan.ignore_eos,
        events: sender,
    })?;
    Ok(receiver)
}

/// Error for a generation whose loop went away before it finished.
pub fn generation_stopped() -> KilnError {
    KilnError::new(ErrorKind::NotReady, "the model stopped generating")
}
