//! Captioning on the step loop: a thread that owns the captioner and batches both stages.
//! Starting requests encodes their images together in one encoder batch and opens their
//! searches; each step then feeds one token to every live hypothesis of every request in a
//! single decoder batch, their states kept stacked from step to step.

use std::collections::VecDeque;
use std::time::Instant;

use kiln_zoo::captioning::captioner::{Caption, CaptionOptions, Captioner};
use kiln_zoo::captioning::decoding::HypothesisBatch;
use kiln_zoo::captioning::search::CaptionSearch;
use tokio::sync::oneshot;

use super::metrics::CaptionMetrics;
use crate::batching::{ExecutorError, InferError, Running, StepModel, Waiting};
use crate::task::LoadError;

/// How the loop schedules.
#[derive(Debug, Clone, Copy)]
pub struct CaptionPolicy {
    /// Most images encoded together.
    pub max_encoder_batch_size: usize,
    /// Most hypotheses decoded together; a request reserves its `beam_size`.
    pub max_active_hypotheses: usize,
    /// Let requests join between steps; when false a batch runs until all of it is done.
    pub continuous_batching: bool,
}

/// One captioning request.
pub struct CaptionJob {
    /// The image as the captioner takes it, `[3, 64, 64]`.
    pub image: Vec<f32>,
    pub options: CaptionOptions,
    pub reply: oneshot::Sender<Result<Caption, InferError>>,
}

/// The captioner behind the loop.
pub struct CaptionDecoder {
    pub captioner: Captioner,
    pub reload: Box<dyn Fn() -> Result<Captioner, LoadError> + Send>,
    pub policy: CaptionPolicy,
    pub metrics: CaptionMetrics,
    /// The running searches' hypotheses, their states stacked from one step to the next.
    batch: HypothesisBatch,
}

impl CaptionDecoder {
    pub fn new(
        captioner: Captioner,
        reload: Box<dyn Fn() -> Result<Captioner, LoadError> + Send>,
        policy: CaptionPolicy,
        metrics: CaptionMetrics,
    ) -> Self {
        Self {
            captioner,
            reload,
            policy,
            metrics,
            batch: HypothesisBatch::new(),
        }
    }
}

impl StepModel for CaptionDecoder {
    type Request = CaptionJob;
    type State = CaptionSearch;

    /// As many waiting images as the decoder has room for, up to one encoder batch; a
    /// request always runs when nothing else does, whatever its beam.
    fn room(
        &self,
        running: &[Running<Self>],
        waiting: &VecDeque<Waiting<CaptionJob>>,
        width_limit: usize,
    ) -> usize {
        if !self.policy.continuous_batching && !running.is_empty() {
            return 0;
        }
        let limit = self.policy.max_active_hypotheses.min(width_limit);
        let mut reserved: usize = running.iter().map(|r| r.request.options.beam_size).sum();
        let mut count = 0;
        for job in waiting.iter().take(self.policy.max_encoder_batch_size) {
            let beam = job.request.options.beam_size;
            let alone = running.is_empty() && count == 0;
            if reserved + beam > limit && !alone {
                break;
            }
            reserved += beam;
            count += 1;
        }
        count
    }

    fn start(
        &mut self,
        joining: &mut [Waiting<CaptionJob>],
    ) -> Result<Vec<CaptionSearch>, ExecutorError> {
        for job in joining.iter() {
            self.metrics.model.record_queued(job.queued_at.elapsed());
        }
        let images: Vec<Vec<f32>> = joining
            .iter_mut()
            .map(|j| std::mem::take(&mut j.request.image))
            .collect();
        let started = Instant::now();
        let ids = self
            .captioner
            .start(&mut self.batch, &images)
            .map_err(ExecutorError::new)?;
        self.metrics.encoded(images.len(), started.elapsed());
        Ok(ids
            .into_iter()
            .zip(joining.iter())
            .map(|(id, job)| CaptionSearch::new(id, job.request.options))
            .collect())
    }

    fn step(&mut self, running: &mut [Running<Self>]) -> Result<(), ExecutorError> {
        let started = Instant::now();
        let hypotheses = self
            .captioner
            .step_searches(&mut self.batch, running, |r| &mut r.state)
            .map_err(ExecutorError::new)?;
        self.metrics.decoded(hypotheses, started.elapsed());
        Ok(())
    }

    fn is_done(&self, running: &Running<Self>) -> bool {
        running.state.is_done()
    }

    fn finish(&self, request: CaptionJob, search: CaptionSearch) {
        let caption = search.caption(self.captioner.vocabulary());
        let _ = request.reply.send(Ok(caption));
    }

    fn reload(&mut self) -> Result<(), ExecutorError> {
        // The batch's states came from the captioner that failed; its searches failed too.
        self.batch = HypothesisBatch::new();
        self.captioner = (self.reload)().map_err(ExecutorError::new)?;
        Ok(())
    }

    fn is_abandoned(&self, request: &CaptionJob) -> bool {
        request.reply.is_closed()
    }

    fn fail(&self, request: CaptionJob, error: InferError) {
        let _ = request.reply.send(Err(error));
    }

    fn width(&self, running: &[Running<Self>]) -> usize {
        running.iter().map(|r| r.state.live_count()).sum()
    }

    fn observe(&self, running: &[Running<Self>], width_limit: usize) {
        self.metrics
            .active_hypotheses
            .set(self.width(running) as f64);
        self.metrics
            .max_active_hypotheses
            .set(self.policy.max_active_hypotheses.min(width_limit) as f64);
    }
}
