//! The batcher actor: admission, the queue, and batch formation.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::admission::Admission;
use super::controller::{Choice, Controller, LatencyTarget};
use super::executor::{BatchExecutor, spawn_executor};
use super::job::{Batch, Job};
use super::{BatchObserver, BatchPolicy, InferError};

/// A queued request: await [`Submitted::wait`] for its answer. Dropping it withdraws the
/// request: the batcher drops the job, and so gives its place back, at once.
pub struct Submitted<O> {
    reply: Option<oneshot::Receiver<Result<O, InferError>>>,
    withdrawn: Arc<Notify>,
}

impl<O> Submitted<O> {
    pub async fn wait(mut self) -> Result<O, InferError> {
        let reply = self
            .reply
            .take()
            .expect("a submitted request is awaited once");
        reply.await.unwrap_or(Err(InferError::ShuttingDown))
    }
}

impl<O> Drop for Submitted<O> {
    fn drop(&mut self) {
        if self.reply.is_some() {
            self.withdrawn.notify_one();
        }
    }
}

/// The handle through which requests reach one model's batcher. Cheap to clone.
pub struct Batcher<I, O> {
    // Unbounded because places are counted by `admission`; the only jobs beyond it are
    // ones whose callers left, which the batcher discards as it reaches them.
    jobs: mpsc::UnboundedSender<Job<I, O>>,
    admission: Admission,
    withdrawn: Arc<Notify>,
    settings: Settings,
    /// Told of the corrections that answered requests make to the target's share.
    observer: Arc<dyn BatchObserver>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            admission: self.admission.clone(),
            withdrawn: self.withdrawn.clone(),
            settings: self.settings.clone(),
            observer: self.observer.clone(),
        }
    }
}

/// Where batch size and delay come from: the configuration, or a latency-target controller
/// shared by the handles (admission), the former (choice) and the executors (measurements).
#[derive(Clone)]
enum Settings {
    Fixed(Choice),
    Controlled(Arc<Mutex<Controller>>),
}

impl Settings {
    fn new(policy: &BatchPolicy, instances: usize) -> Self {
        match policy.target {
            Some(target) => Settings::Controlled(Arc::new(Mutex::new(Controller::new(
                target,
                policy.max_batch_size,
                instances,
            )))),
            None => Settings::Fixed(Choice {
                batch_size: policy.max_batch_size,
                queue_delay: policy.max_queue_delay,
            }),
        }
    }

    fn current(&self) -> Choice {
        match self {
            Settings::Fixed(choice) => *choice,
            Settings::Controlled(controller) => lock(controller).choice(),
        }
    }
}

/// The controller holds only numbers, each update complete before the next: a panic
/// elsewhere while it was locked leaves nothing half-written.
fn lock(controller: &Mutex<Controller>) -> MutexGuard<'_, Controller> {
    controller
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Feeds the controller each batch's time from leaving the queue to its answers, which is
/// what the requests behind it wait for: the forward pass, and the hand-over to the
/// executor thread, which a busy machine can stretch well beyond the forward pass.
struct Measuring {
    controller: Arc<Mutex<Controller>>,
    observer: Arc<dyn BatchObserver>,
}

impl BatchObserver for Measuring {
    fn dequeued(&self, waited: Duration) {
        self.observer.dequeued(waited);
    }

    fn executed(&self, size: usize, compute: Duration) {
        self.observer.executed(size, compute);
    }

    fn answered(&self, size: usize, since_formed: Duration) {
        lock(&self.controller).executed(size, since_formed);
        self.observer.answered(size, since_formed);
    }

    fn chose(&self, choice: Choice) {
        self.observer.chose(choice);
    }

    fn target_share(&self, share: f64) {
        self.observer.target_share(share);
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start the batcher task and one executor thread per executor, admitting through
    /// `admission` (its limit is the queue's size). Must be called within a tokio runtime.
    /// The batcher and its threads stop once every handle is dropped and the queue has
    /// drained.
    pub fn spawn(
        name: &str,
        policy: BatchPolicy,
        admission: Admission,
        executors: Vec<Box<dyn BatchExecutor<I, O>>>,
        observer: Arc<dyn BatchObserver>,
    ) -> std::io::Result<Self> {
        assert!(
            !executors.is_empty(),
            "a batcher needs at least one executor"
        );
        assert!(policy.max_batch_size > 0 && admission.limit() > 0);
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (batches_tx, batches_rx) = crossbeam_channel::bounded(executors.len());
        let idle_executors = Arc::new(Semaphore::new(executors.len()));
        let settings = Settings::new(&policy, executors.len());
        let measured: Arc<dyn BatchObserver> = match &settings {
            Settings::Fixed(_) => observer.clone(),
            Settings::Controlled(controller) => Arc::new(Measuring {
                controller: controller.clone(),
                observer: observer.clone(),
            }),
        };
        for (i, executor) in executors.into_iter().enumerate() {
            spawn_executor(
                format!("kiln-exec-{name}-{i}"),
                executor,
                batches_rx.clone(),
                measured.clone(),
            )?;
        }
        let withdrawn = Arc::new(Notify::new());
        let choice = settings.current();
        observer.chose(choice);
        if let Settings::Controlled(controller) = &settings {
            observer.target_share(lock(controller).target_share());
        }
        let former = BatchFormer {
            name: name.to_string(),
            policy,
            settings: settings.clone(),
            choice,
            logged: choice,
            jobs: jobs_rx,
            pending: VecDeque::new(),
            batches: batches_tx,
            idle_executors,
            observer: observer.clone(),
            withdrawn: withdrawn.clone(),
        };
        tokio::spawn(former.run());
        Ok(Self {
            jobs: jobs_tx,
            admission,
            withdrawn,
            settings,
            observer,
        })
    }

    /// Queue `input` and wait for its result. A full queue is refused at once. Dropping the
    /// returned future withdraws the request: it is skipped if it has not run yet.
    pub async fn infer(&self, input: I) -> Result<O, InferError> {
        self.infer_by(input, None).await
    }

    /// Like [`infer`](Self::infer), but a request still queued at `deadline` is dropped
    /// before compute and answered with [`InferError::DeadlineExceeded`].
    pub async fn infer_by(&self, input: I, deadline: Option<Instant>) -> Result<O, InferError> {
        self.submit_by(input, deadline)?.wait().await
    }

    /// Queue `input`; the answer arrives through the returned [`Submitted`].
    pub fn submit(&self, input: I) -> Result<Submitted<O>, InferError> {
        self.submit_by(input, None)
    }

    /// Queue `input` with an optional deadline.
    pub fn submit_by(
        &self,
        input: I,
        deadline: Option<Instant>,
    ) -> Result<Submitted<O>, InferError> {
        if let Settings::Controlled(controller) = &self.settings {
            lock(controller).admit(Instant::now(), self.admission.taken())?;
        }
        let permit = self.admission.try_admit()?;
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            input,
            reply,
            enqueued: Instant::now(),
            deadline,
            permit,
        };
        self.jobs.send(job).map_err(|_| InferError::ShuttingDown)?;
        Ok(Submitted {
            reply: Some(receiver),
            withdrawn: self.withdrawn.clone(),
        })
    }

    /// Whether `count` more requests would be admitted now, so that a request the batcher
    /// would refuse is refused before its input is decoded. Counts no arrival; the requests
    /// are admitted (or not) when submitted.
    pub fn check_room(&self, count: usize) -> Result<(), InferError> {
        if let Settings::Controlled(controller) = &self.settings {
            let ahead = self.admission.taken() + count.saturating_sub(1);
            lock(controller).check(Instant::now(), ahead)?;
        }
        Ok(())
    }

    /// A request that reached its task at `arrived` has its answer: under a latency target,
    /// its latency corrects the share of the target the batching decisions may spend.
    /// Callers measure from as early as they can, so that time the batcher does not see
    /// (decoding the input, being woken with the answer) counts.
    pub fn answered(&self, arrived: Instant) {
        if let Settings::Controlled(controller) = &self.settings {
            let now = Instant::now();
            let share = lock(controller).answered(now, now.saturating_duration_since(arrived));
            if let Some(share) = share {
                tracing::debug!(
                    share = format_args!("{share:.2}"),
                    "latency feedback: the batching budget's share of the target changed"
                );
                self.observer.target_share(share);
            }
        }
    }

    /// Requests queued or running.
    pub fn pending(&self) -> usize {
        self.admission.taken()
    }

    /// The batch size and queue delay in use now, and the target they were chosen for.
    pub fn settings(&self) -> (Choice, Option<LatencyTarget>) {
        match &self.settings {
            Settings::Fixed(choice) => (*choice, None),
            Settings::Controlled(controller) => {
                let controller = lock(controller);
                (controller.choice(), Some(controller.target()))
            }
        }
    }
}

/// The actor that owns the queue and decides when a batch leaves.
struct BatchFormer<I, O> {
    /// The model's name, for the log.
    name: String,
    policy: BatchPolicy,
    settings: Settings,
    /// The batch size and delay for the batch being formed.
    choice: Choice,
    /// The choice last logged.
    logged: Choice,
    jobs: mpsc::UnboundedReceiver<Job<I, O>>,
    /// Jobs taken off the channel, oldest first.
    pending: VecDeque<Job<I, O>>,
    batches: crossbeam_channel::Sender<Batch<I, O>>,
    idle_executors: Arc<Semaphore>,
    observer: Arc<dyn BatchObserver>,
    /// Woken when a caller withdraws its request.
    withdrawn: Arc<Notify>,
}

impl<I: Send + 'static, O: Send + 'static> BatchFormer<I, O> {
    async fn run(mut self) {
        let mut open = true;
        while open || !self.pending.is_empty() {
            if self.pending.is_empty() {
                match self.jobs.recv().await {
                    Some(job) => self.pending.push_back(job),
                    None => break,
                }
            }
            self.update_choice();
            open = self.gather_until_due().await;
            let busy = match self.wait_for_executor(&mut open).await {
                Some(permit) => permit,
                None => break,
            };
            let jobs = self.take_batch();
            if jobs.is_empty() {
                continue;
            }
            let batch = Batch {
                jobs,
                _busy: busy,
                formed: std::time::Instant::now(),
            };
            if self.batches.send(batch).is_err() {
                break;
            }
        }
        // Executors are gone or the last handle dropped: answer whatever is still queued.
        for job in self.pending.drain(..) {
            let _ = job.reply.send(Err(InferError::ShuttingDown));
        }
    }

    /// Ask the controller, if any, for the size and delay of the next batch.
    fn update_choice(&mut self) {
        let Settings::Controlled(controller) = &self.settings else {
            return;
        };
        let choice = lock(controller).choose(Instant::now());
        if choice != self.choice {
            self.observer.chose(choice);
        }
        // Under load the largest feasible batch hunts between neighbours from batch to batch:
        // the gauges follow it, the log only its notable moves.
        if choice.replaces_logged(&mut self.logged) {
            tracing::info!(
                model = %self.name,
                batch_size = choice.batch_size,
                queue_delay_us = choice.queue_delay.as_micros() as u64,
                "batching choice changed"
            );
        }
        self.choice = choice;
    }

    fn is_due_by_size(&self) -> bool {
        let len = self.pending.len();
        len >= self.choice.batch_size || self.policy.preferred_batch_sizes.contains(&len)
    }

    /// Take arrivals until the batch is full, reaches a preferred size, or the oldest job has
    /// waited `max_queue_delay`. Returns false when no more jobs can ever arrive.
    async fn gather_until_due(&mut self) -> bool {
        while !self.is_due_by_size() {
            let Some(oldest) = self.pending.front() else {
                return true;
            };
            let deadline = oldest.enqueued + self.choice.queue_delay;
            // Tokio rounds timers up to the next millisecond; once the deadline has passed,
            // take only what has already arrived instead of sleeping.
            if Instant::now() >= deadline {
                return self.take_arrived();
            }
            tokio::select! {
                biased;
                job = self.jobs.recv() => match job {
                    Some(job) => self.pending.push_back(job),
                    None => return false,
                },
                _ = self.withdrawn.notified() => self.drop_withdrawn(),
                _ = sleep_until(deadline) => break,
            }
        }
        true
    }

    /// Move jobs that are already waiting in the channel into the batch, up to its maximum.
    /// Returns false when no more jobs can ever arrive.
    fn take_arrived(&mut self) -> bool {
        while !self.is_due_by_size() {
            match self.jobs.try_recv() {
                Ok(job) => self.pending.push_back(job),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Wait for an idle executor; jobs arriving meanwhile join the batch up to its maximum.
    async fn wait_for_executor(&mut self, open: &mut bool) -> Option<OwnedSemaphorePermit> {
        loop {
            let room = *open && self.pending.len() < self.choice.batch_size;
            tokio::select! {
                biased;
                permit = self.idle_executors.clone().acquire_owned() => return permit.ok(),
                _ = self.withdrawn.notified() => self.drop_withdrawn(),
                job = self.jobs.recv(), if room => match job {
                    Some(job) => self.pending.push_back(job),
                    None => *open = false,
                },
            }
        }
    }

    /// Drop the queued jobs whose callers went away, giving their places back.
    fn drop_withdrawn(&mut self) {
        self.pending.retain(|job| !job.is_abandoned());
    }

    /// Up to the chosen batch size of the oldest jobs that are within their deadline and whose
    /// callers are still waiting.
    fn take_batch(&mut self) -> Vec<Job<I, O>> {
        let mut batch = Vec::with_capacity(self.choice.batch_size.min(self.pending.len()));
        let now = Instant::now();
        while batch.len() < self.choice.batch_size {
            let Some(job) = self.pending.pop_front() else {
                break;
            };
            if job.deadline.is_some_and(|d| d <= now) {
                let Job { reply, permit, .. } = job;
                drop(permit);
                let _ = reply.send(Err(InferError::DeadlineExceeded));
                continue;
            }
            if job.is_abandoned() {
                continue;
            }
            self.observer.dequeued(job.enqueued.elapsed());
            batch.push(job);
        }
        batch
    }
}
