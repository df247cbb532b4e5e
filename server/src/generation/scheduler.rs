//! The generation loop of one language model: a thread that owns a copy of the network and
//! runs iteration-level (continuous) batching. Between two decoding steps it drops
//! sequences whose caller has gone, prefills newly arrived prompts and lets them join; each
//! step then feeds one token to every running sequence in a single batch, each with its own
//! recurrent state or key/value cache. Without continuous batching a batch is admitted only
//! when the previous one has wholly finished (static batching, for comparison).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use kiln_zoo::language_model::{LanguageModel, SequenceState};
use kiln_zoo::text::tokenizer::{BOS_ID, EOS_ID, Tokenizer, UNK_ID};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::UnboundedSender;

use super::sampling::{SamplingParams, sample};
use super::{FinishReason, GenerationEvent, GenerationMetrics};
use crate::batching::{InferError, QueueSlots};

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
    pub events: UnboundedSender<GenerationEvent>,
}

/// How the loop schedules.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerPolicy {
    pub max_active_sequences: usize,
    pub continuous_batching: bool,
    pub max_queue_size: usize,
}

/// The handle requests go through.
#[derive(Debug)]
pub struct Generator {
    jobs: Sender<GenerationJob>,
    /// Jobs waiting or running.
    slots: QueueSlots,
}

impl Generator {
    /// Start the generation thread for `model`.
    pub fn spawn(
        name: &str,
        model: LanguageModel,
        tokenizer: Arc<Tokenizer>,
        policy: SchedulerPolicy,
        metrics: Arc<GenerationMetrics>,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = crossbeam_channel::unbounded();
        let slots = QueueSlots::new(policy.max_queue_size);
        let worker = Worker {
            model,
            tokenizer,
            policy,
            metrics,
            receiver,
            slots: slots.clone(),
            waiting: VecDeque::new(),
            active: Vec::new(),
        };
        std::thread::Builder::new()
            .name(format!("kiln-generate-{name}"))
            .spawn(move || worker.run())?;
        Ok(Self { jobs, slots })
    }

    /// Queue a job; refused when the queue is full or the loop has stopped.
    pub fn submit(&self, job: GenerationJob) -> Result<(), InferError> {
        self.slots.take()?;
        self.jobs.send(job).map_err(|_| {
            self.slots.release(1);
            InferError::ShuttingDown
        })
    }
}

/// A running sequence.
struct Sequence {
    job: GenerationJob,
    state: Option<SequenceState>,
    last_token: u32,
    generated: usize,
    text: String,
    rng: StdRng,
    last_token_at: Instant,
    started: Instant,
    finished: Option<FinishReason>,
}

struct Worker {
    model: LanguageModel,
    tokenizer: Arc<Tokenizer>,
    policy: SchedulerPolicy,
    metrics: Arc<GenerationMetrics>,
    receiver: Receiver<GenerationJob>,
    slots: QueueSlots,
    waiting: VecDeque<(GenerationJob, Instant)>,
    active: Vec<Sequence>,
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.active.is_empty() && self.waiting.is_empty() {
                match self.receiver.recv() {
                    Ok(job) => self.waiting.push_back((job, Instant::now())),
                    Err(_) => return, // every handle dropped and nothing left to run
                }
            }
            while let Ok(job) = self.receiver.try_recv() {
                self.waiting.push_back((job, Instant::now()));
            }
            self.drop_abandoned();
            self.admit();
            if !self.active.is_empty() {
                self.step();
            }
            self.metrics.active_sequences.set(self.active.len() as i64);
        }
    }

    /// Callers that went away (closed stream, timed-out request) free their slot.
    fn drop_abandoned(&mut self) {
        let before = self.active.len() + self.waiting.len();
        self.waiting.retain(|(job, _)| !job.events.is_closed());
        self.active.retain(|s| !s.job.events.is_closed());
        let dropped = before - self.active.len() - self.waiting.len();
        if dropped > 0 {
            self.metrics.canceled.inc_by(dropped as u64);
            self.slots.release(dropped);
        }
    }

    fn admit(&mut self) {
        if !self.policy.continuous_batching && !self.active.is_empty() {
            return;
        }
        while self.active.len() < self.policy.max_active_sequences {
            let Some((job, queued_at)) = self.waiting.pop_front() else {
                break;
            };
            self.metrics
                .queue_duration
                .observe(queued_at.elapsed().as_secs_f64());
            self.prefill(job, queued_at);
        }
    }

    fn prefill(&mut self, job: GenerationJob, queued_at: Instant) {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.model.prefill(&job.prompt)));
        self.metrics
            .prefill_duration
            .observe(started.elapsed().as_secs_f64());
        let (log_probs, state) = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => return self.fail_job(job, e.to_string()),
            Err(_) => return self.fail_job(job, "the model panicked during prefill".into()),
        };
        let rng = StdRng::seed_from_u64(job.seed);
        let mut sequence = Sequence {
            job,
            state: Some(state),
            last_token: BOS_ID,
            generated: 0,
            text: String::new(),
            rng,
            last_token_at: queued_at,
            started: queued_at,
            finished: None,
        };
        self.choose_next(&mut sequence, &log_probs);
        if sequence.finished.is_some() {
            self.finish(sequence);
        } else {
            self.active.push(sequence);
        }
    }

    fn step(&mut self) {
        let tokens: Vec<u32> = self.active.iter().map(|s| s.last_token).collect();
        let states: Vec<SequenceState> = self
            .active
            .iter_mut()
            .map(|s| s.state.take().expect("running sequences hold their state"))
            .collect();
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.model.decode(&tokens, states)));
        let compute = started.elapsed();
        let (log_probs, states) = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => return self.fail_active(e.to_string()),
            Err(_) => return self.fail_active("the model panicked during decoding".into()),
        };
        self.metrics.step(tokens.len(), compute);
        let mut still_running = Vec::with_capacity(self.active.len());
        for ((mut sequence, state), log_probs) in std::mem::take(&mut self.active)
            .into_iter()
            .zip(states)
            .zip(log_probs)
        {
            sequence.state = Some(state);
            self.choose_next(&mut sequence, &log_probs);
            if sequence.finished.is_some() {
                self.finish(sequence);
            } else {
                still_running.push(sequence);
            }
        }
        self.active = still_running;
    }

    /// Sample the next token, send it, and decide whether the sequence is done.
    fn choose_next(&self, sequence: &mut Sequence, log_probs: &[f32]) {
        let banned: &[u32] = if sequence.job.ignore_eos {
            &BANNED_WITH_EOS
        } else {
            &BANNED
        };
        let (token, logprob) = sample(log_probs, &sequence.job.sampling, banned, &mut sequence.rng);
        if token == EOS_ID {
            sequence.finished = Some(FinishReason::EndOfText);
            return;
        }
        let previous = if sequence.generated == 0 {
            sequence.job.prompt.last().copied()
        } else {
            Some(sequence.last_token)
        };
        let piece = self.tokenizer.continuation(previous, token);
        let candidate = format!("{}{piece}", sequence.text);
        if sequence
            .job
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
                .observe((now - sequence.started).as_secs_f64());
        } else {
            self.metrics
                .inter_token_latency
                .observe((now - sequence.last_token_at).as_secs_f64());
        }
        sequence.last_token_at = now;
        sequence.text = candidate;
        sequence.generated += 1;
        sequence.last_token = token;
        self.metrics.token();
        let _ = sequence.job.events.send(GenerationEvent::Token {
            id: token,
            text: piece,
            logprob,
        });
        let context_full = match (
            sequence
                .state
                .as_ref()
                .and_then(SequenceState::context_used),
            self.model.context_length(),
        ) {
            (Some(used), Some(limit)) => used >= limit,
            _ => false,
        };
        if sequence.generated >= sequence.job.max_tokens || context_full {
            sequence.finished = Some(FinishReason::Length);
        }
    }

    fn finish(&self, sequence: Sequence) {
        let reason = sequence.finished.unwrap_or(FinishReason::Length);
        self.metrics.finished(reason);
        let _ = sequence.job.events.send(GenerationEvent::Finished {
            reason,
            prompt_tokens: sequence.job.prompt.len() - 1,
            completion_tokens: sequence.generated,
            text: sequence.text,
        });
        self.slots.release(1);
    }

    fn fail_job(&self, job: GenerationJob, message: String) {
        tracing::error!("generation failed: {message}");
        self.metrics.failed.inc();
        let _ = job.events.send(GenerationEvent::Failed(message));
        self.slots.release(1);
    }

    fn fail_active(&mut self, message: String) {
        for sequence in std::mem::take(&mut self.active) {
            self.fail_job(sequence.job, message.clone());
        }
    }
}
