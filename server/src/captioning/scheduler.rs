//! The captioning loop of one model: a thread that owns the captioner and batches both
//! stages. Between two decoding steps it drops requests whose caller has gone or whose
//! deadline passed, encodes the newly arrived images together in one encoder batch, and
//! lets their searches join; each step then feeds one token to every live hypothesis of
//! every request in a single decoder batch, each hypothesis with its own state.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use kiln_zoo::captioning::captioner::{Caption, CaptionOptions, Captioner};
use kiln_zoo::captioning::search::CaptionSearch;
use tokio::sync::oneshot;

use super::CaptionMetrics;
use crate::batching::{BatchObserver, InferError, QueueSlots};

/// How the loop schedules.
#[derive(Debug, Clone, Copy)]
pub struct CaptionPolicy {
    /// Most images encoded together.
    pub max_encoder_batch_size: usize,
    /// Most hypotheses decoded together; a request reserves its `beam_size`.
    pub max_active_hypotheses: usize,
    /// Requests waiting or running beyond which new ones are refused.
    pub max_queue_size: usize,
}

/// One captioning request.
struct CaptionJob {
    /// The image as the captioner takes it, `[3, 64, 64]`.
    image: Vec<f32>,
    options: CaptionOptions,
    deadline: Option<tokio::time::Instant>,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Caption, InferError>>,
}

/// The handle requests go through.
pub struct CaptionScheduler {
    jobs: Sender<CaptionJob>,
    /// Jobs waiting or running.
    slots: QueueSlots,
}

impl CaptionScheduler {
    /// Start the captioning thread for `captioner`.
    pub fn spawn(
        name: &str,
        captioner: Captioner,
        policy: CaptionPolicy,
        metrics: Arc<CaptionMetrics>,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = crossbeam_channel::unbounded();
        let slots = QueueSlots::new(policy.max_queue_size);
        let worker = Worker {
            captioner,
            policy,
            metrics,
            receiver,
            slots: slots.clone(),
            waiting: VecDeque::new(),
            active: Vec::new(),
        };
        std::thread::Builder::new()
            .name(format!("kiln-caption-{name}"))
            .spawn(move || worker.run())?;
        Ok(Self { jobs, slots })
    }

    /// Caption one preprocessed image. Refused when the queue is full; a request still
    /// waiting at `deadline` is dropped before it is encoded.
    pub async fn caption(
        &self,
        image: Vec<f32>,
        options: CaptionOptions,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Caption, InferError> {
        self.slots.take()?;
        let (reply, answer) = oneshot::channel();
        let job = CaptionJob {
            image,
            options,
            deadline,
            queued_at: Instant::now(),
            reply,
        };
        if self.jobs.send(job).is_err() {
            self.slots.release(1);
            return Err(InferError::ShuttingDown);
        }
        answer.await.unwrap_or(Err(InferError::ShuttingDown))
    }
}

/// A request being decoded.
struct Running {
    search: CaptionSearch,
    reply: oneshot::Sender<Result<Caption, InferError>>,
    /// Hypotheses it may hold at once: its beam.
    reserved: usize,
}

struct Worker {
    captioner: Captioner,
    policy: CaptionPolicy,
    metrics: Arc<CaptionMetrics>,
    receiver: Receiver<CaptionJob>,
    slots: QueueSlots,
    waiting: VecDeque<CaptionJob>,
    active: Vec<Running>,
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.active.is_empty() && self.waiting.is_empty() {
                match self.receiver.recv() {
                    Ok(job) => self.enqueue(job),
                    Err(_) => return, // every handle dropped and nothing left to run
                }
            }
            while let Ok(job) = self.receiver.try_recv() {
                self.enqueue(job);
            }
            self.drop_abandoned();
            self.admit();
            if !self.active.is_empty() {
                self.step();
            }
            self.metrics.active_hypotheses.set(
                self.active
                    .iter()
                    .map(|r| r.search.live_count())
                    .sum::<usize>() as i64,
            );
        }
    }

    fn enqueue(&mut self, job: CaptionJob) {
        self.metrics.model.admitted();
        self.waiting.push_back(job);
    }

    /// Callers that went away free their place; requests past their deadline while still
    /// waiting are answered with the deadline error.
    fn drop_abandoned(&mut self) {
        let now = tokio::time::Instant::now();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for job in std::mem::take(&mut self.waiting) {
            if job.reply.is_closed() {
                self.release();
            } else if job.deadline.is_some_and(|d| d <= now) {
                self.answer(job.reply, Err(InferError::DeadlineExceeded));
            } else {
                kept.push_back(job);
            }
        }
        self.waiting = kept;
        let before = self.active.len();
        self.active.retain(|r| !r.reply.is_closed());
        for _ in self.active.len()..before {
            self.release();
        }
    }

    /// Encode as many waiting images as the decoder has room for, in one batch.
    fn admit(&mut self) {
        let mut reserved: usize = self.active.iter().map(|r| r.reserved).sum();
        let mut admitted = Vec::new();
        while admitted.len() < self.policy.max_encoder_batch_size {
            let Some(job) = self.waiting.front() else {
                break;
            };
            let beam = job.options.beam_size;
            // A request always runs when nothing else does, whatever its beam.
            let alone = self.active.is_empty() && admitted.is_empty();
            if reserved + beam > self.policy.max_active_hypotheses && !alone {
                break;
            }
            reserved += beam;
            admitted.push(self.waiting.pop_front().expect("a job was at the front"));
        }
        if admitted.is_empty() {
            return;
        }
        for job in &admitted {
            self.metrics.model.dequeued(job.queued_at.elapsed());
        }
        let images: Vec<Vec<f32>> = admitted
            .iter_mut()
            .map(|j| std::mem::take(&mut j.image))
            .collect();
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.captioner.start(&images)));
        let compute = started.elapsed();
        let states = match outcome {
            Ok(Ok(states)) => states,
            Ok(Err(e)) => return self.fail(admitted.into_iter().map(|j| j.reply), e.to_string()),
            Err(_) => {
                let message = "the model panicked while encoding".to_string();
                return self.fail(admitted.into_iter().map(|j| j.reply), message);
            }
        };
        self.metrics.encoded(images.len(), compute);
        for (job, state) in admitted.into_iter().zip(states) {
            self.active.push(Running {
                search: CaptionSearch::new(state, job.options),
                reply: job.reply,
                reserved: job.options.beam_size,
            });
        }
    }

    fn step(&mut self) {
        let started = Instant::now();
        let searches = self.active.iter_mut().map(|r| &mut r.search);
        let outcome = catch_unwind(AssertUnwindSafe(|| self.captioner.step_searches(searches)));
        let compute = started.elapsed();
        match outcome {
            Ok(Ok(hypotheses)) => self.metrics.decoded(hypotheses, compute),
            Ok(Err(e)) => return self.fail_active(e.to_string()),
            Err(_) => return self.fail_active("the model panicked while decoding".into()),
        }
        let mut still_running = Vec::with_capacity(self.active.len());
        for running in std::mem::take(&mut self.active) {
            if running.search.is_done() {
                let caption = running.search.caption(self.captioner.vocabulary());
                self.answer(running.reply, Ok(caption));
            } else {
                still_running.push(running);
            }
        }
        self.active = still_running;
    }

    fn answer(
        &self,
        reply: oneshot::Sender<Result<Caption, InferError>>,
        result: Result<Caption, InferError>,
    ) {
        let _ = reply.send(result);
        self.release();
    }

    fn release(&self) {
        self.metrics.model.released();
        self.slots.release(1);
    }

    fn fail(
        &self,
        replies: impl IntoIterator<Item = oneshot::Sender<Result<Caption, InferError>>>,
        message: String,
    ) {
        tracing::error!("captioning failed: {message}");
        for reply in replies {
            self.answer(reply, Err(InferError::Backend(message.clone())));
        }
    }

    fn fail_active(&mut self, message: String) {
        let active = std::mem::take(&mut self.active);
        self.fail(active.into_iter().map(|r| r.reply), message);
    }
}
