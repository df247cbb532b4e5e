//! Loading a language model: the vocabulary and the network (one copy per next-word
//! executor, one for the generation loop), a warm-up, the next-word batcher and the
//! generation loop.

use std::sync::Arc;

use kiln_zoo::decode_batch::DecodeBatch;
use kiln_zoo::language_model::LanguageModel;
use kiln_zoo::text::tokenizer::{BOS_ID, EOS_ID, Tokenizer};

use super::LanguageModelRunner;
use super::config::LanguageModelConfig;
use super::generation::{Generator, SchedulerPolicy};
use super::metrics::GenerationMetrics;
use crate::batching::{Admission, BatchExecutor, Batcher, ExecutorError, StepController, StepLoop};
use crate::task::{LoadContext, LoadError, Loaded};

/// Builds the network again from its folder (after a panic).
type Reload = Box<dyn Fn() -> Result<LanguageModel, LoadError> + Send>;

/// Runs next-word batches on one copy of the model.
struct NextWordExecutor {
    model: LanguageModel,
    reload: Reload,
}

impl BatchExecutor<Vec<u32>, Vec<f32>> for NextWordExecutor {
    fn execute(&mut self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ExecutorError> {
        let prompts: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        self.model
            .next_token_log_probs(&prompts)
            .map_err(ExecutorError::new)
    }

    fn restart(&mut self) -> Result<(), ExecutorError> {
        self.model = (self.reload)().map_err(ExecutorError::new)?;
        tracing::info!("executor reloaded its language model");
        Ok(())
    }
}

/// Load a language-model folder and start its batcher and generation loop. Blocking: call
/// it off the async workers, inside a tokio runtime context.
pub fn load(
    context: &LoadContext<'_>,
    config: LanguageModelConfig,
) -> Result<Loaded<LanguageModelRunner>, LoadError> {
    let placement = context.placement.for_model(config.backend, config.device);
    let backend = placement.backend;
    let device = placement.open()?;
    let tokenizer = Tokenizer::load(&context.dir.join(&config.vocab))?;
    if tokenizer.vocab_size() != config.architecture.vocab_size() {
        return Err(LoadError::Mismatch(format!(
            "{} has {} tokens but the model's vocabulary is {}",
            config.vocab.display(),
            tokenizer.vocab_size(),
            config.architecture.vocab_size()
        )));
    }
    let architecture = config.architecture.clone();
    let weights = context.dir.join(&config.weights);
    let load = move || -> Result<LanguageModel, LoadError> {
        Ok(LanguageModel::load(&architecture, &weights, &device)?)
    };
    let reload = || -> Reload { Box::new(load.clone()) };
    let mut executors: Vec<Box<dyn BatchExecutor<Vec<u32>, Vec<f32>>>> = Vec::new();
    for _ in 0..config.instances {
        let model = load()?;
        warm_up(&model, config.batching.max_batch_size)?;
        executors.push(Box::new(NextWordExecutor {
            model,
            reload: reload(),
        }));
    }
    let metrics = context
        .metrics
        .for_model(context.name, &config.version, backend.name());
    let next_word = Batcher::spawn(
        context.name,
        config.batching.policy(),
        Admission::counted(config.batching.max_queue_size, metrics.pending_gauge()),
        executors,
        metrics.clone(),
    )
    .map_err(LoadError::Threads)?;
    let tokenizer = Arc::new(tokenizer);
    let g = &config.generation;
    let generator = Generator::new(
        load()?,
        reload(),
        tokenizer.clone(),
        SchedulerPolicy {
            max_active_sequences: g.max_active_sequences,
            continuous_batching: g.continuous_batching,
        },
        GenerationMetrics::new(&metrics),
    );
    // Generations count into the model's pending requests as next-word requests do.
    let generation = StepLoop::spawn(
        format!("kiln-generate-{}", context.name),
        generator,
        Admission::counted(g.max_queue_size, metrics.pending_gauge()),
        g.step_target()
            .map(|t| StepController::new(t, g.max_active_sequences)),
    )
    .map_err(LoadError::Threads)?;
    Ok(Loaded {
        backend,
        metrics: metrics.clone(),
        runner: LanguageModelRunner {
            config,
            tokenizer,
            next_word,
            generation,
            metrics,
        },
    })
}

/// Next-word passes at batch 1 and at the largest batch, and a prefill plus two decoding
/// steps, so a model that cannot run is caught before it reports ready.
fn warm_up(model: &LanguageModel, max_batch_size: usize) -> Result<(), LoadError> {
    let prompt = [BOS_ID, EOS_ID, BOS_ID];
    let fail = |e: kiln_zoo::ZooError| LoadError::WarmUp(e.to_string());
    for size in [1, max_batch_size] {
        let out = model
            .next_token_log_probs(&vec![&prompt[..]; size])
            .map_err(fail)?;
        if out.iter().flatten().any(|p| p.is_nan()) {
            return Err(LoadError::WarmUp("NaN outputs".into()));
        }
    }
    let (_, state) = model.prefill(&prompt).map_err(fail)?;
    let mut batch = DecodeBatch::new();
    batch.join(vec![(0, state)]).map_err(fail)?;
    model.decode(&mut batch, &[EOS_ID]).map_err(fail)?;
    model.decode(&mut batch, &[BOS_ID]).map_err(fail)?;
    Ok(())
}
