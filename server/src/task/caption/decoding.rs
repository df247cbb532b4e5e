//! Captioning on the step loop: a thread that owns the captioner and batches both stages.
//! Starting requests encodes their images together in one encoder batch and opens their
//! searches; each step then feeds one token to every live hypothesis of every request in a
//! single decoder batch, their states kept in slots from step to step.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
    /// While captions are decoding, images wait to be encoded until this many can join
    /// together, or the oldest has waited `max_encoder_wait`.
    pub min_encoder_batch_size: usize,
    pub max_encoder_wait: Duration,
    /// Most hypotheses decoded together; a request reserves its `beam_size`.
    pub max_active_hypotheses: usize,
    /// Let requests join between steps; when false a batch runs until all of it is done.
    pub continuous_batching: bool,
}

impl CaptionPolicy {
    /// Whether `count` joiners, all there is room for of `waiting`, wait for more to gather
    /// into one encoder batch: only while other captions are decoding (so the loop goes on
    /// and looks again after the step), when more would fit, and until the oldest has
    /// waited `max_encoder_wait`.
    fn gathers(&self, decoding: bool, count: usize, waiting: usize, oldest_wait: Duration) -> bool {
        let all_that_wait = count == waiting.min(self.max_encoder_batch_size);
        decoding
            && count < self.min_encoder_batch_size
            && all_that_wait
            && oldest_wait < self.max_encoder_wait
    }
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
    /// The running searches' hypotheses, their states in slots from one step to the next.
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
        let oldest_wait = waiting
            .front()
            .map_or(Duration::ZERO, |oldest| oldest.queued_at.elapsed());
        if self
            .policy
            .gathers(!running.is_empty(), count, waiting.len(), oldest_wait)
        {
            0
        } else {
            count
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CaptionPolicy {
        CaptionPolicy {
            max_encoder_batch_size: 32,
            min_encoder_batch_size: 8,
            max_encoder_wait: Duration::from_millis(5),
            max_active_hypotheses: 128,
            continuous_batching: true,
        }
    }

    #[test]
    fn a_small_group_gathers_only_while_captions_decode_and_not_past_the_wait() {
        let policy = policy();
        let short = Duration::from_millis(1);
        // Three waiting, room for all, captions decoding: they wait for more.
        assert!(policy.gathers(true, 3, 3, short));
        // Nothing decoding: the loop would idle, so they start at once.
        assert!(!policy.gathers(false, 3, 3, short));
        // The oldest has waited long enough.
        assert!(!policy.gathers(true, 3, 3, Duration::from_millis(5)));
        // Enough to fill the group.
        assert!(!policy.gathers(true, 8, 8, short));
        assert!(!policy.gathers(true, 8, 20, short));
        // Room for only two of five: waiting gathers nothing more, they start.
        assert!(!policy.gathers(true, 2, 5, short));
        // A group of one is the smallest: nothing ever waits.
        let eager = CaptionPolicy {
            min_encoder_batch_size: 1,
            ..policy
        };
        assert!(!eager.gathers(true, 1, 1, short));
    }
}
