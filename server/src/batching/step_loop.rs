//! The step loop: one thread that owns a model and advances many requests together, one
//! step at a time (iteration-level batching). Text generation and captioning both run on it.
//!
//! Between two steps the loop takes new arrivals, drops requests whose caller went away,
//! answers queued requests whose deadline passed, and lets the model start as many waiting
//! requests as it has room for (prefill, encoding); each step then advances every running
//! request in one batch. A panic fails the requests it touched, and the model is reloaded
//! before the next step, since its state can no longer be trusted. Every request holds its
//! admission [`Permit`] until it leaves the loop, so the queue's limit and the model's
//! `kiln_pending_requests` count queued and running requests alike. With a [`StepTarget`]
//! a [`StepController`] decides how many rows (sequences, hypotheses) may share a step and
//! how many requests may start in one round.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::InferError;
use super::admission::{Admission, Permit};
use super::controller::moved_notably;
use super::executor::{ExecutorError, panic_message};
use super::step_target::{StepController, StepTarget};

/// A model that advances many requests together, one step at a time.
pub trait StepModel: Send + Sized + 'static {
    type Request: Send + 'static;
    /// What a running request carries between steps (recurrent state, KV cache, beams).
    type State: Send + 'static;

    /// How many of the waiting requests, front first, may start now beside `running`, the
    /// step holding at most `width_limit` rows (its latency target's choice; without one,
    /// `usize::MAX`).
    fn room(
        &self,
        running: &[Running<Self>],
        waiting: &VecDeque<Waiting<Self::Request>>,
        width_limit: usize,
    ) -> usize;
    /// Rows a step over `running` computes (sequences, hypotheses).
    fn width(&self, running: &[Running<Self>]) -> usize {
        running.len()
    }
    /// Start `joining` (prefill a prompt, encode images): one state per request.
    fn start(
        &mut self,
        joining: &mut [Waiting<Self::Request>],
    ) -> Result<Vec<Self::State>, ExecutorError>;
    /// Advance every running request by one step.
    fn step(&mut self, running: &mut [Running<Self>]) -> Result<(), ExecutorError>;
    /// Whether a request has its answer.
    fn is_done(&self, running: &Running<Self>) -> bool;
    /// Answer a request that is done.
    fn finish(&self, request: Self::Request, state: Self::State);
    /// Build the model again after a panic.
    fn reload(&mut self) -> Result<(), ExecutorError>;
    /// Whether the request's caller stopped listening.
    fn is_abandoned(&self, request: &Self::Request) -> bool;
    /// Answer a request with `error` instead of a result.
    fn fail(&self, request: Self::Request, error: InferError);
    /// Requests dropped because their callers went away.
    fn abandoned(&self, _count: usize) {}
    /// The running batch and the width limit after each round (gauges).
    fn observe(&self, _running: &[Running<Self>], _width_limit: usize) {}
}

/// A request waiting to start.
pub struct Waiting<R> {
    pub request: R,
    pub queued_at: Instant,
    deadline: Option<tokio::time::Instant>,
    permit: Permit,
}

/// A request between its start and its answer.
pub struct Running<M: StepModel> {
    pub request: M::Request,
    pub state: M::State,
    _permit: Permit,
}

/// The handle requests go through. Cheap to clone; the loop's thread stops once every
/// handle is dropped and nothing is left to run.
pub struct StepLoop<R> {
    jobs: Sender<Waiting<R>>,
    admission: Admission,
    target: Option<StepTarget>,
    /// The width the loop's target allows now (with a target).
    width_limit: Arc<AtomicUsize>,
}

impl<R> Clone for StepLoop<R> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            admission: self.admission.clone(),
            target: self.target,
            width_limit: self.width_limit.clone(),
        }
    }
}

impl<R: Send + 'static> StepLoop<R> {
    /// Start the loop's thread, named `thread`, owning `model`; requests are admitted
    /// through `admission`. With `target`, the rows a step holds are chosen to meet it.
    pub fn spawn<M: StepModel<Request = R>>(
        thread: String,
        model: M,
        admission: Admission,
        target: Option<StepController>,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = crossbeam_channel::unbounded();
        let width_limit = Arc::new(AtomicUsize::new(
            target.as_ref().map_or(usize::MAX, |c| c.width_limit()),
        ));
        let handle = Self {
            jobs,
            admission,
            target: target.as_ref().map(|c| c.target()),
            width_limit: width_limit.clone(),
        };
        let worker = Worker {
            model,
            receiver,
            waiting: VecDeque::new(),
            running: Vec::new(),
            logged_width_limit: width_limit.load(Ordering::Relaxed),
            controller: target,
            width_limit,
        };
        std::thread::Builder::new()
            .name(thread)
            .spawn(move || worker.run())?;
        Ok(handle)
    }

    /// The loop's target and the width it allows now, when it has one.
    pub fn step_target(&self) -> Option<(StepTarget, usize)> {
        let target = self.target?;
        Some((target, self.width_limit.load(Ordering::Relaxed)))
    }

    /// Queue a request; refused at once when the queue is full or the loop has stopped. A
    /// request still waiting at `deadline` is answered with the deadline error, unstarted.
    pub fn submit(
        &self,
        request: R,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), InferError> {
        let permit = self.admission.try_admit()?;
        let waiting = Waiting {
            request,
            queued_at: Instant::now(),
            deadline,
            permit,
        };
        self.jobs
            .send(waiting)
            .map_err(|_| InferError::ShuttingDown)
    }

    /// Requests waiting or running.
    pub fn pending(&self) -> usize {
        self.admission.taken()
    }
}

struct Worker<M: StepModel> {
    model: M,
    receiver: Receiver<Waiting<M::Request>>,
    waiting: VecDeque<Waiting<M::Request>>,
    running: Vec<Running<M>>,
    controller: Option<StepController>,
    width_limit: Arc<AtomicUsize>,
    /// The width limit last logged.
    logged_width_limit: usize,
}

impl<M: StepModel> Worker<M> {
    fn run(mut self) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.receiver.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return, // every handle dropped and nothing left to run
                }
            }
            self.waiting.extend(self.receiver.try_iter());
            self.sweep();
            self.admit();
            if !self.running.is_empty() {
                let width = self.model.width(&self.running);
                let started = Instant::now();
                self.step();
                self.stepped(width, started.elapsed());
            }
            self.model.observe(&self.running, self.limit());
        }
    }

    fn limit(&self) -> usize {
        self.controller
            .as_ref()
            .map_or(usize::MAX, |c| c.width_limit())
    }

    fn stepped(&mut self, width: usize, took: std::time::Duration) {
        if let Some(controller) = &mut self.controller {
            controller.stepped(width, took);
            let limit = controller.width_limit();
            self.width_limit.store(limit, Ordering::Relaxed);
            // Against the last width logged, so that a slow drift is logged once it adds up
            // and hunting between neighbours never is.
            if moved_notably(self.logged_width_limit, limit) {
                self.logged_width_limit = limit;
                let target_ms = controller.target().step_p99.as_secs_f64() * 1e3;
                tracing::info!(width_limit = limit, target_ms, "step width limit changed");
            }
        }
    }

    /// Drop requests whose callers went away; answer queued ones whose deadline passed.
    fn sweep(&mut self) {
        let now = tokio::time::Instant::now();
        let before = self.waiting.len() + self.running.len();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        let mut expired = 0;
        for job in std::mem::take(&mut self.waiting) {
            if self.model.is_abandoned(&job.request) {
                continue;
            }
            if job.deadline.is_some_and(|d| d <= now) {
                expired += 1;
                let Waiting {
                    request, permit, ..
                } = job;
                drop(permit);
                self.model.fail(request, InferError::DeadlineExceeded);
                continue;
            }
            kept.push_back(job);
        }
        self.waiting = kept;
        let model = &self.model;
        self.running.retain(|r| !model.is_abandoned(&r.request));
        let abandoned = before - expired - self.waiting.len() - self.running.len();
        if abandoned > 0 {
            self.model.abandoned(abandoned);
        }
    }

    fn admit(&mut self) {
        let joiners = self
            .controller
            .as_ref()
            .map_or(usize::MAX, |c| c.join_limit());
        let count = self
            .model
            .room(&self.running, &self.waiting, self.limit())
            .min(joiners)
            .min(self.waiting.len());
        if count == 0 {
            return;
        }
        let mut joining: Vec<_> = self.waiting.drain(..count).collect();
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.model.start(&mut joining)));
        if let Some(controller) = &mut self.controller {
            controller.started(count, started.elapsed());
        }
        let states = match self.outcome(outcome, "starting requests") {
            Ok(states) if states.len() == joining.len() => states,
            Ok(states) => {
                let error = wrong_count(states.len(), joining.len());
                return self.fail_all(joining.into_iter().map(|w| w.request), error);
            }
            Err(error) => return self.fail_all(joining.into_iter().map(|w| w.request), error),
        };
        for (waiting, state) in joining.into_iter().zip(states) {
            let running = Running {
                request: waiting.request,
                state,
                _permit: waiting.permit,
            };
            if self.model.is_done(&running) {
                self.finish(running);
            } else {
                self.running.push(running);
            }
        }
    }

    fn step(&mut self) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.model.step(&mut self.running)));
        if let Err(error) = self.outcome(outcome, "a step") {
            let running = std::mem::take(&mut self.running);
            return self.fail_all(running.into_iter().map(|r| r.request), error);
        }
        let (done, still_running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| self.model.is_done(r));
        self.running = still_running;
        for running in done {
            self.finish(running);
        }
    }

    /// Answer a request that is done; its place is free by the time the caller has it.
    fn finish(&self, running: Running<M>) {
        let Running {
            request,
            state,
            _permit,
        } = running;
        drop(_permit);
        self.model.finish(request, state);
    }

    fn fail_all(&self, requests: impl IntoIterator<Item = M::Request>, error: InferError) {
        for request in requests {
            self.model.fail(request, error.clone());
        }
    }

    /// A model call's result as an answer for its requests; after a panic the model is
    /// reloaded first.
    fn outcome<T>(
        &mut self,
        outcome: std::thread::Result<Result<T, ExecutorError>>,
        during: &str,
    ) -> Result<T, InferError> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the model failed {during}");
                Err(InferError::Backend(e.0))
            }
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(%message, "the model panicked {during}; reloading it");
                match catch_unwind(AssertUnwindSafe(|| self.model.reload())) {
                    Ok(Ok(())) => tracing::info!("model reloaded"),
                    Ok(Err(e)) => tracing::error!(error = %e, "model reload failed"),
                    Err(p) => {
                        tracing::error!(message = %panic_message(&p), "model reload panicked")
                    }
                }
                Err(InferError::Backend(message))
            }
        }
    }
}

fn wrong_count(got: usize, expected: usize) -> InferError {
    InferError::Backend(format!(
        "model returned {got} states for {expected} requests"
    ))
}
