//! Loading a captioner: its weights onto the device, a warm-up, and its captioning loop.

use std::time::Duration;

use kiln_zoo::captioning::captioner::{CaptionOptions, Captioner};

use super::CaptionerRunner;
use super::config::CaptionerModelConfig;
use super::decoding::{CaptionDecoder, CaptionPolicy};
use super::metrics::CaptionMetrics;
use crate::batching::{Admission, StepController, StepLoop};
use crate::task::{LoadContext, LoadError, Loaded};

/// Load a captioner folder and start its loop. Blocking: call it off the async workers.
pub fn load(
    context: &LoadContext<'_>,
    config: CaptionerModelConfig,
) -> Result<Loaded<CaptionerRunner>, LoadError> {
    let placement = context.placement.for_model(config.backend, config.device);
    let backend = placement.backend;
    let device = placement.open()?;
    let architecture = config.architecture.clone();
    let weights = context.dir.join(&config.weights);
    let load = move || -> Result<Captioner, LoadError> {
        Ok(Captioner::load(&architecture, &weights, &device)?)
    };
    let captioner = load()?;
    let max_tokens_limit = captioner.max_tokens_limit();
    warm_up(&captioner, &config)?;
    let metrics = context
        .metrics
        .for_model(context.name, &config.version, backend.name());
    let d = &config.decoding;
    let decoder = CaptionDecoder::new(
        captioner,
        Box::new(load),
        CaptionPolicy {
            max_encoder_batch_size: d.max_encoder_batch_size,
            min_encoder_batch_size: d.min_encoder_batch_size,
            max_encoder_wait: Duration::from_secs_f64(d.max_encoder_wait_ms / 1e3),
            max_active_hypotheses: d.max_active_hypotheses,
            continuous_batching: d.continuous_batching,
        },
        CaptionMetrics::new(&metrics),
    );
    let decoding = StepLoop::spawn(
        format!("kiln-caption-{}", context.name),
        decoder,
        Admission::counted(d.max_queue_size, metrics.pending_gauge()),
        d.step_target()
            .map(|t| StepController::new(t, d.max_active_hypotheses)),
    )
    .map_err(LoadError::Threads)?;
    Ok(Loaded {
        backend,
        metrics: metrics.clone(),
        runner: CaptionerRunner {
            config,
            max_tokens_limit,
            decoding,
            metrics,
        },
    })
}

/// Captions of one image and of a full encoder batch, by beam search, so a model that
/// cannot run is caught before it reports ready.
fn warm_up(captioner: &Captioner, config: &CaptionerModelConfig) -> Result<(), LoadError> {
    let image = vec![0.0; config.input.shape().iter().product()];
    let options = CaptionOptions {
        beam_size: 2,
        max_tokens: 4.min(captioner.max_tokens_limit()),
    };
    for size in [1, config.decoding.max_encoder_batch_size] {
        let captions = captioner
            .caption(&vec![image.clone(); size], &options)
            .map_err(|e| LoadError::WarmUp(e.to_string()))?;
        if captions.iter().any(|c| !c.score.is_finite()) {
            return Err(LoadError::WarmUp("non-finite scores".into()));
        }
    }
    Ok(())
}
