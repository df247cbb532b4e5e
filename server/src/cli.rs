//! Command-line interface of the `kiln` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::settings::ServeSettings;

/// Kiln: an inference server for Burn models, with dynamic batching and Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every model in the model repository over HTTP.
    Serve(ServeSettings),
    /// Train a model and write it into the model repository (needs the `train` feature).
    Train(TrainArgs),
    /// Report a model's accuracy on its test set.
    Eval(EvalArgs),
    /// Write a classifier's weights as safetensors, for other frameworks and peer servers.
    Export(ExportArgs),
    /// Exit 0 if the server answers ready (`GET /v2/health/ready`), 1 otherwise: a health
    /// check for containers, which need no HTTP client for it.
    Health(HealthArgs),
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The server's HTTP address, as given to `kiln serve`; a wildcard address is asked on
    /// loopback. Plain HTTP: a server with TLS needs a client that speaks it.
    #[arg(long, env = "KILN_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    pub http_addr: SocketAddr,
    /// Seconds to wait for the connection and for the answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout_secs: f64,
    /// Sent as a bearer token, for a server started with `--auth-health`.
    #[arg(long, env = "KILN_HEALTH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Model name (a folder of the model repository).
    pub model: String,
    #[arg(long, env = "KILN_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,
    /// Write safetensors under Burn's parameter names and layouts, for tools outside Kiln.
    #[arg(long, required_unless_present = "burnpack")]
    pub safetensors: Option<PathBuf>,
    /// Write Burn's burnpack format, which Kiln loads fastest: converts an imported
    /// PyTorch or safetensors checkpoint once.
    #[arg(long, conflicts_with = "safetensors")]
    pub burnpack: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// What to train: `lenet` (LeNet-5 on Fashion-MNIST), a language model
    /// (lstm-web-en, gru-web-en, rnn-web-en, transformer-web-en, lstm-rv-es) or a
    /// captioner of composed Fashion-MNIST scenes (captioner-lstm, captioner-transformer).
    pub model: String,
    /// Folder holding the Fashion-MNIST `*-ubyte.gz` files.
    #[arg(long, default_value = kiln_zoo::data::fashion_mnist::DEFAULT_DIR)]
    pub data_dir: PathBuf,
    /// Folder holding the SWORD zText modules (language models).
    #[arg(long, default_value = kiln_zoo::text::sword::DEBIAN_MODULES_DIR)]
    pub sword_dir: PathBuf,
    /// Model folder to write (weights, labels or vocabulary, and model.toml);
    /// `models/<model>` by default (`models/lenet-fashion` for lenet).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Epochs (default: 12 for lenet, the preset's for language models).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images or token windows per step (default: 64 for lenet, 32 for language models).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (default: 1e-3 for lenet, the preset's for language models).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on the first N shuffled images only (lenet).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Scenes drawn per epoch (captioners; default 20,000).
    #[arg(long)]
    pub scenes: Option<usize>,
    /// Stop after this many optimiser steps (language models).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Backend to train on.
    #[arg(long, default_value = "flex")]
    pub backend: kiln_zoo::BackendKind,
    /// Captioners: continue training from these weights (e.g. the model folder's
    /// weights.bpk) instead of from scratch.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Captioners: start the encoder from one trained alone as a classifier (the file
    /// `examples/encoder_probe.rs current[-bn] … SAVE_TO` writes) or from a trained
    /// captioner's weights (either kind), in place of the fresh or resumed encoder; its
    /// shape must match, `--encoder-norm` included.
    #[arg(long)]
    pub encoder_from: Option<PathBuf>,
    /// Captioners: weight of the auxiliary loss that teaches the encoder which classes and
    /// colours a scene holds (0 turns it off).
    #[arg(long, default_value_t = 1.0)]
    pub presence_weight: f32,
    /// Captioners: batch norm after each of the encoder's stage convolutions (written to
    /// model.toml as `encoder_norm = true`).
    #[arg(long)]
    pub encoder_norm: bool,
    /// Captioners: 3×3 convolutions on the encoder's 8×8 grid before its context
    /// convolution (written to model.toml as `encoder_grid_layers`; 0 writes nothing).
    #[arg(long, default_value_t = 0)]
    pub encoder_grid_layers: usize,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model name (a folder of the model repository).
    #[arg(default_value = "lenet-fashion")]
    pub model: String,
    #[arg(long, env = "KILN_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,
    /// Folder holding the Fashion-MNIST `*-ubyte.gz` files.
    #[arg(long, default_value = kiln_zoo::data::fashion_mnist::DEFAULT_DIR)]
    pub data_dir: PathBuf,
    /// Folder holding the SWORD zText modules (language models).
    #[arg(long, default_value = kiln_zoo::text::sword::DEBIAN_MODULES_DIR)]
    pub sword_dir: PathBuf,
    #[arg(long, env = "KILN_BACKEND", default_value = "flex")]
    pub backend: kiln_zoo::BackendKind,
    /// Device index on the backend (its default device when unset).
    #[arg(long, env = "KILN_DEVICE")]
    pub device: Option<usize>,
    /// Classifiers: also score the model in this precision (f16, bf16) and report how often
    /// its top-1 class agrees with f32's.
    #[arg(long)]
    pub precision: Option<kiln_zoo::precision::Precision>,
    /// Captioners: test scenes per distribution.
    #[arg(long, default_value_t = kiln_zoo::eval::CAPTION_TEST_SCENES)]
    pub scenes: usize,
    /// Captioners: a Fashion-MNIST classifier of the repository (e.g. lenet-fashion) scored
    /// on the clean source images of the same single objects, class by class.
    #[arg(long)]
    pub reference: Option<String>,
}
