//! `kiln train`: train a model and write its folder into the model repository.

use super::CommandError;
use crate::cli::TrainArgs;

#[cfg(feature = "train")]
pub fn run(args: &TrainArgs) -> Result<(), CommandError> {
    use kiln_zoo::classifier::ClassifierArchitecture;
    use kiln_zoo::data::fashion_mnist::{CLASS_NAMES, FashionMnist, Split};
    use kiln_zoo::models::lenet::LeNet5Config;
    use kiln_zoo::train::lenet::LeNetTraining;
    use kiln_zoo::weights::save_burnpack;

    use crate::repository::{BatchingConfig, ClassifierConfig, ModelConfig};

    keep_freed_memory();
    if let Some(preset) = super::language_presets::preset(&args.model) {
        return super::train_language::run(args, &preset);
    }
    if let Some(architecture) = super::train_captioner::architecture(args) {
        return super::train_captioner::run(args, architecture);
    }
    if args.model != "lenet" {
        return Err(CommandError::Usage(format!(
            "unknown model '{}'; trainable: lenet, {}, captioner-lstm, captioner-transformer",
            args.model,
            super::language_presets::names().join(", ")
        )));
    }
    let out = &args
        .out
        .clone()
        .unwrap_or_else(|| "models/lenet-fashion".into());
    let spec = kiln_zoo::data::fashion_mnist::image_spec();
    let train = FashionMnist::load(&args.data_dir, Split::Train)?;
    let test = FashionMnist::load(&args.data_dir, Split::Test)?;
    let training = LeNetTraining {
        epochs: args.epochs.unwrap_or(12),
        batch_size: args.batch_size.unwrap_or(64),
        learning_rate: args.learning_rate.unwrap_or(1e-3),
        seed: args.seed,
        backend: args.backend,
        limit: args.limit,
    };
    let started = std::time::Instant::now();
    let model = training.run(&train, &test, &spec, |r| {
        println!(
            "epoch {:>2}  loss {:.4}  test top-1 {:.2}%  top-5 {:.2}%  ({:.0}s)",
            r.epoch,
            r.mean_loss,
            r.test.top1 * 100.0,
            r.test.top5 * 100.0,
            started.elapsed().as_secs_f64()
        );
    })?;

    super::create_dir(out)?;
    let net = kiln_zoo::classifier::ClassifierNet::LeNet5(model);
    save_burnpack(&net, &out.join("weights.bpk"))?;
    let labels = out.join("labels.txt");
    std::fs::write(&labels, CLASS_NAMES.join("\n") + "\n").map_err(|source| {
        CommandError::Write {
            path: labels,
            source,
        }
    })?;
    let config = ModelConfig::Classify(ClassifierConfig {
        version: "1".into(),
        weights: "weights.bpk".into(),
        key_remap: Vec::new(),
        labels: "labels.txt".into(),
        instances: 1,
        backend: None,
        device: None,
        precision: Default::default(),
        architecture: ClassifierArchitecture::LeNet5(LeNet5Config::new()),
        input: spec,
        batching: BatchingConfig {
            max_batch_size: 64,
            max_queue_delay_us: 0,
            preferred_batch_sizes: vec![32, 64],
            max_queue_size: 1_024,
            ..BatchingConfig::default()
        },
    });
    config.write(out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Restarts training with glibc keeping freed memory for reuse
/// ([`kiln_zoo::train::heap`]), and says which allocator settings it runs with.
#[cfg(feature = "train")]
fn keep_freed_memory() {
    use kiln_zoo::train::heap::{TUNABLES_VARIABLE, restart_keeping_freed_memory};
    if let Err(e) = restart_keeping_freed_memory() {
        tracing::warn!(
            "training goes on with the allocator as it is: cannot restart with its tunables set: {e}"
        );
    }
    if let Some(tunables) = std::env::var_os(TUNABLES_VARIABLE) {
        tracing::info!(
            "training with {TUNABLES_VARIABLE}={}",
            tunables.to_string_lossy()
        );
    }
}

#[cfg(not(feature = "train"))]
pub fn run(_args: &TrainArgs) -> Result<(), CommandError> {
    Err(CommandError::Usage(
        "this binary was built without training; rebuild with `--features train`".into(),
    ))
}
