//! The batcher actor: admission, the queue, and batch formation.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::executor::{Batch, BatchExecutor, spawn_executor};
use super::{BatchObserver, BatchPolicy, InferError};

/// A request admitted to a model's queue.
pub(super) struct Job<I, O> {
    pub input: I,
    pub reply: oneshot::Sender<Result<O, InferError>>,
    pub enqueued: Instant,
    /// After this the request is answered with `DeadlineExceeded` instead of being run.
    pub deadline: Option<Instant>,
}

/// A place in the queue, held by the caller: it is given back the moment the caller has
/// its answer or goes away, which lets another request in.
struct Admission {
    _permit: OwnedSemaphorePermit,
    observer: Arc<dyn BatchObserver>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.observer.released();
    }
}

/// A queued request: await [`Submitted::wait`] for its answer; dropping it withdraws the
/// request and frees its place in the queue at once.
pub struct Submitted<O> {
    reply: oneshot::Receiver<Result<O, InferError>>,
    _admission: Admission,
}

impl<O> Submitted<O> {
    pub async fn wait(self) -> Result<O, InferError> {
        self.reply.await.unwrap_or(Err(InferError::ShuttingDown))
    }
}

/// The handle through which requests reach one model's batcher. Cheap to clone.
pub struct Batcher<I, O> {
    // Unbounded because places are counted by `admission`; the only jobs beyond it are
    // ones whose callers left, which the batcher discards as it reaches them.
    jobs: mpsc::UnboundedSender<Job<I, O>>,
    admission: Arc<Semaphore>,
    max_queue_size: usize,
    observer: Arc<dyn BatchObserver>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            admission: self.admission.clone(),
            max_queue_size: self.max_queue_size,
            observer: self.observer.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start the batcher task and one executor thread per executor. Must be called within a
    /// tokio runtime. The batcher and its threads stop once every handle is dropped and the
    /// queue has drained.
    pub fn spawn(
        name: &str,
        policy: BatchPolicy,
        executors: Vec<Box<dyn BatchExecutor<I, O>>>,
        observer: Arc<dyn BatchObserver>,
    ) -> std::io::Result<Self> {
        assert!(
            !executors.is_empty(),
            "a batcher needs at least one executor"
        );
        assert!(policy.max_batch_size > 0 && policy.max_queue_size > 0);
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (batches_tx, batches_rx) = crossbeam_channel::bounded(executors.len());
        let idle_executors = Arc::new(Semaphore::new(executors.len()));
        for (i, executor) in executors.into_iter().enumerate() {
            spawn_executor(
                format!("kiln-exec-{name}-{i}"),
                executor,
                batches_rx.clone(),
                observer.clone(),
            )?;
        }
        let former = BatchFormer {
            policy: policy.clone(),
            jobs: jobs_rx,
            pending: VecDeque::new(),
            batches: batches_tx,
            idle_executors,
            observer: observer.clone(),
        };
        tokio::spawn(former.run());
        Ok(Self {
            jobs: jobs_tx,
            admission: Arc::new(Semaphore::new(policy.max_queue_size)),
            max_queue_size: policy.max_queue_size,
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
        let permit = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| InferError::Overloaded(self.max_queue_size))?;
        self.observer.admitted();
        let admission = Admission {
            _permit: permit,
            observer: self.observer.clone(),
        };
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            input,
            reply,
            enqueued: Instant::now(),
            deadline,
        };
        self.jobs.send(job).map_err(|_| InferError::ShuttingDown)?;
        Ok(Submitted {
            reply: receiver,
            _admission: admission,
        })
    }

    /// Requests queued or running.
    pub fn pending(&self) -> usize {
        self.max_queue_size - self.admission.available_permits()
    }
}

/// The actor that owns the queue and decides when a batch leaves.
struct BatchFormer<I, O> {
    policy: BatchPolicy,
    jobs: mpsc::UnboundedReceiver<Job<I, O>>,
    /// Jobs taken off the channel, oldest first.
    pending: VecDeque<Job<I, O>>,
    batches: crossbeam_channel::Sender<Batch<I, O>>,
    idle_executors: Arc<Semaphore>,
    observer: Arc<dyn BatchObserver>,
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
            open = self.gather_until_due().await;
            let busy = match self.wait_for_executor(&mut open).await {
                Some(permit) => permit,
                None => break,
            };
            let jobs = self.take_batch();
            if jobs.is_empty() {
                continue;
            }
            if self.batches.send(Batch { jobs, _busy: busy }).is_err() {
                break;
            }
        }
        // Executors are gone or the last handle dropped: answer whatever is still queued.
        for job in self.pending.drain(..) {
            let _ = job.reply.send(Err(InferError::ShuttingDown));
        }
    }

    fn is_due_by_size(&self) -> bool {
        let len = self.pending.len();
        len >= self.policy.max_batch_size || self.policy.preferred_batch_sizes.contains(&len)
    }

    /// Take arrivals until the batch is full, reaches a preferred size, or the oldest job has
    /// waited `max_queue_delay`. Returns false when no more jobs can ever arrive.
    async fn gather_until_due(&mut self) -> bool {
        let Some(oldest) = self.pending.front() else {
            return true;
        };
        let deadline = oldest.enqueued + self.policy.max_queue_delay;
        while !self.is_due_by_size() {
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
            let room = *open && self.pending.len() < self.policy.max_batch_size;
            tokio::select! {
                biased;
                permit = self.idle_executors.clone().acquire_owned() => return permit.ok(),
                job = self.jobs.recv(), if room => match job {
                    Some(job) => self.pending.push_back(job),
                    None => *open = false,
                },
            }
        }
    }

    /// Up to `max_batch_size` of the oldest jobs that are within their deadline and whose
    /// callers are still waiting.
    fn take_batch(&mut self) -> Vec<Job<I, O>> {
        let mut batch = Vec::with_capacity(self.policy.max_batch_size.min(self.pending.len()));
        let now = Instant::now();
        while batch.len() < self.policy.max_batch_size {
            let Some(job) = self.pending.pop_front() else {
                break;
            };
            if job.deadline.is_some_and(|d| d <= now) {
                self.observer.expired();
                let _ = job.reply.send(Err(InferError::DeadlineExceeded));
                continue;
            }
            if job.reply.is_closed() {
                self.observer.abandoned();
                continue;
            }
            self.observer.dequeued(job.enqueued.elapsed());
            batch.push(job);
        }
        batch
    }
}
