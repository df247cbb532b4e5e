//! Text generation on the step loop: a thread that owns a copy of the network and runs
//! iteration-level (continuous) batching. Starting a request prefills its prompt and picks
//! its first token; each step then feeds one token to every running sequence in a single
//! batch, each with its own recurrent state or key/value cache. Without continuous batching
//! a batch is admitted only when the previous one has wholly finished (static batching, for
//! comparison).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use kiln_zoo::classifier::top_k;
use kiln_zoo::decode_batch::DecodeBatch;
use kiln_zoo::language_model::{LanguageModel, SequenceState};
use kiln_zoo::text::tokenizer::{BOS_ID, EOS, EOS_ID, Tokenizer, UNK_ID};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::UnboundedSender;

use super::events::{FinishReason, GenerationEvent};
use super::metrics::GenerationMetrics;
use super::sampling::{SamplingParams, sample};
use crate::batching::{ExecutorError, InferError, Running, StepModel, Waiting};

/// Tokens never generated: `<bos>` only starts a prompt and `<unk>` is not a word.
const BANNED: [u32; 2] = [BOS_ID, UNK_ID];
const BANNED_WITH_EOS: [u32; 3] = [BOS_ID, UNK_ID, EOS_ID];

/// One generation request.
#[derive(Debug)]
pub struct GenerationJob {
    /// `<bos>` and the prompt's tokens.
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub seed: u64,
    /// Generation ends before any of these strings would appear in the text.
    pub stop: Vec<String>,
    /// Never end at `<eos>`: only `max_tokens`, a stop string or the context end it.
    pub ignore_eos: bool,
    /// How many of the likeliest alternatives to send beside each token.
    pub top_logprobs: usize,
    pub events: UnboundedSender<GenerationEvent>,
}

/// How the loop schedules.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerPolicy {
    pub max_active_sequences: usize,
    pub continuous_batching: bool,
}

/// A running sequence's state.
pub struct Sequence {
    /// The sequence's row in the decode batch.
    id: u64,
    /// The prefill's state, until the sequence joins the decode batch at its first step.
    joining: Option<SequenceState>,
    /// Tokens the model has read: the prompt, then one per step.
    read: usize,
    last_token: u32,
    generated: usize,
    text: String,
    rng: StdRng,
    last_token_at: Instant,
    started: Instant,
    finished: Option<FinishReason>,
}

/// The network behind the generation loop, with what it needs to pick and spell tokens.
pub struct Generator {
    pub model: LanguageModel,
    pub reload: Box<dyn Fn() -> Result<LanguageModel, crate::task::LoadError> + Send>,
    pub tokenizer: Arc<Tokenizer>,
    pub policy: SchedulerPolicy,
    pub metrics: GenerationMetrics,
    /// The running sequences' states, stacked from one step to the next.
    batch: DecodeBatch,
    /// The id the last sequence got.
    next_id: u64,
}

impl StepModel for Generator {
    type Request = GenerationJob;
    type State = Sequence;

    fn room(
        &self,
        running: &[Running<Self>],
        _waiting: &VecDeque<Waiting<GenerationJob>>,
        width_limit: usize,
    ) -> usize {
        if !self.policy.continuous_batching && !running.is_empty() {
            return 0;
        }
        self.policy
            .max_active_sequences
            .min(width_limit)
            .saturating_sub(running.len())
    }

    fn start(
        &mut self,
        joining: &mut [Waiting<GenerationJob>],
    ) -> Result<Vec<Sequence>, ExecutorError> {
        let mut sequences = Vec::with_capacity(joining.len());
        for waiting in joining.iter() {
            let job = &waiting.request;
            self.metrics
                .queue_duration
                .record(waiting.queued_at.elapsed().as_secs_f64());
            let started = Instant::now();
            let (probs, state) = self
                .model
                .prefill(&job.prompt)
                .map_err(ExecutorError::new)?;
            self.metrics
                .prefill_duration
                .record(started.elapsed().as_secs_f64());
            self.next_id += 1;
            let mut sequence = Sequence {
                id: self.next_id,
                joining: Some(state),
                read: job.prompt.len(),
                last_token: BOS_ID,
                generated: 0,
                text: String::new(),
                rng: StdRng::seed_from_u64(job.seed),
                last_token_at: waiting.queued_at,
                started: waiting.queued_at,
                finished: None,
            };
            self.choose_next(job, &mut sequence, &probs);
            sequences.push(sequence);
        }
        Ok(sequences)
    }

    fn step(&mut self, running: &mut [Running<Self>]) -> Result<(), ExecutorError> {
        let rows: HashMap<u64, usize> = running
            .iter()
            .enumerate()
            .map(|(i, r)| (r.state.id, i))
            .collect();
        // Rows of sequences that left go; sequences that started since join.
        self.batch.retain(|id| rows.contains_key(&id));
        let joining = running
            .iter_mut()
            .filter_map(|r| r.state.joining.take().map(|s| (r.state.id, s)))
            .collect();
        self.batch.join(joining).map_err(ExecutorError::new)?;
        if self.batch.len() != running.len() {
            return Err(ExecutorError(format!(
                "{} sequences running but {} in the decode batch",
                running.len(),
                self.batch.len()
            )));
        }
        let order: Vec<usize> = self.batch.ids().iter().map(|id| rows[id]).collect();
        let tokens: Vec<u32> = order.iter().map(|&i| running[i].state.last_token).collect();
        let started = Instant::now();
        let probs = self
            .model
            .decode(&mut self.batch, &tokens)
            .map_err(ExecutorError::new)?;
        self.metrics.step(tokens.len(), started.elapsed());
        for (&i, probs) in order.iter().zip(probs) {
            let r = &mut running[i];
            r.state.read += 1;
            self.choose_next(&r.request, &mut r.state, &probs);
        }
        Ok(())
    }

    fn is_done(&self, running: &Running<Self>) -> bool {
        running.state.finished.is_some()
    }

    fn finish(&self, request: GenerationJob, state: Sequence) {
        let reason = state.finished.unwrap_or(FinishReason::Length);
        self.metrics.finished(reason);
        let _ = request.events.send(GenerationEvent::Finished {
            reason,
            prompt_tokens: request.prompt.len() - 1,
            completion_tokens: state.generated,
            text: state.text,
        });
    }

    fn reload(&mut self) -> Result<(), ExecutorError> {
        // The batch's states came from the model that failed; its sequences were failed too.
        self.batch = DecodeBatch::new();
        self.model = (self.reload)().map_err(ExecutorError::new)?;
        Ok(())
    }

    fn is_abandoned(&self, request: &GenerationJob) -> bool {
        request.events.is_closed()
    }

    fn fail(&self, request: GenerationJob, error: InferError) {
        if matches!(error, InferError::Backend(_)) {
            self.metrics.failed.increment(1);
        }
        let _ = request.events.send(GenerationEvent::Failed(error));
    }

    fn abandoned(&self, count: usize) {
        self.metrics.canceled.increment(count as u64);
    }

    fn observe(&self, running: &[Running<Self>], width_limit: usize) {
        self.metrics.active_sequences.set(running.len() as f64);
        self.metrics
            .max_active_sequences
            .set(self.policy.max_active_sequences.min(width_limit) as f64);
    }
}

impl Generator {
    pub fn new(
        model: LanguageModel,
        reload: Box<dyn Fn() -> Result<LanguageModel, crate::task::LoadError> + Send>,
        tokenizer: Arc<Tokenizer>,
        policy: SchedulerPolicy,
        metrics: GenerationMetrics,
    ) -> Self {
        Self {
            model,
            reload,
            tokenizer,
            policy,
            metrics,
            batch: DecodeBatch::new(),
            next_id: 0,
        }
    }

    /// Sample the next token from the model's next-token probabilities, send it, and
    /// decide whether the sequence is done.
    fn choose_next(&self, job: &GenerationJob, sequence: &mut Sequence, probs: &[f32]) {
        let banned: &[u32] = if job.ignore_eos {
            &BANNED_WITH_EOS
        } else {
            &BANNED
        };
        let (token, logprob) = sample(probs, &job.sampling, banned, &mut sequence.rng);
        if token == EOS_ID {
            sequence.finished = Some(FinishReason::EndOfText);
            return;
        }
        let previous = if sequence.generated == 0 {
            job.prompt.last().copied()
        } else {
            Some(sequence.last_token)
        };
        let piece = self.tokenizer.continuation(previous, token);
        let candidate = format!("{}{piece}", sequence.text);
        if job
            .stop
            .iter()
            .any(|s| !s.is_empty() && candidate.contains(s.as_str()))
        {
            sequence.finished = Some(FinishReason::StopSequence);
            return;
        }
        let now = Instant::now();
        if sequence.generated == 0 {
            self.metrics
                .time_to_first_token
                .record((now - sequence.started).as_secs_f64());
        } else {
            self.metrics
                .inter_token_latency
                .record((now - sequence.last_token_at).as_secs_f64());
        }
        sequence.last_token_at = now;
        sequence.text = candidate;
        sequence.generated += 1;
        sequence.last_token = token;
        self.metrics.tokens.increment(1);
        let alternatives = self.alternatives(job.top_logprobs, previous, probs, banned);
        let _ = job.events.send(GenerationEvent::Token {
            id: token,
            text: piece,
            logprob,
            alternatives,
        });
        let context_full = self
            .model
            .context_length()
            .is_some_and(|limit| sequence.read >= limit);
        if sequence.generated >= job.max_tokens || context_full {
            sequence.finished = Some(FinishReason::Length);
        }
    }

    /// The `count` likeliest tokens a step could have chosen (never a banned one), each
    /// with the text it would have added.
    fn alternatives(
        &self,
        count: usize,
        previous: Option<u32>,
        probs: &[f32],
        banned: &[u32],
    ) -> Vec<(u32, String, f32)> {
        if count == 0 {
            return Vec::new();
        }
        top_k(probs, count + banned.len())
            .into_iter()
            .map(|id| id as u32)
            .filter(|id| !banned.contains(id))
            .take(count)
            .map(|id| {
                let text = if id == EOS_ID {
                    EOS.to_string()
                } else {
                    self.tokenizer.continuation(previous, id)
                };
                (id, text, probs[id as usize].ln())
            })
            .collect()
    }
}
