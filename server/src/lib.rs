//! Kiln's server: loads the models of a model repository, groups concurrent requests into
//! batches per model, and answers over HTTP and gRPC.
//!
//! A request enters through a protocol module — [`http`], [`openai`], [`grpc`], or the Open Inference
//! Protocol's shared core [`v2`] — which decodes the wire form and calls its task's entry
//! point in [`task`]. The task prepares the input and hands it to its model's
//! [`batching::Batcher`] (classification, next words) or [`batching::StepLoop`]
//! (generation, captioning); those admit it through one [`batching::Admission`] and run the
//! Burn model on their own threads. Answers travel back on channels; every stage records
//! into [`metrics`]. The [`registry`] holds the models by name and the server's lifecycle;
//! [`server::RunningServer`] ties it together. Dependencies point one way: protocols →
//! tasks → batching and registry → metrics.

pub mod auth;
pub mod batching;
pub mod cli;
pub mod commands;
pub mod energy;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod net;
pub mod openai;
pub mod placement;
pub mod playground;
pub mod registry;
pub mod repository;
pub mod server;
pub mod settings;
pub mod state;
pub mod task;
pub mod tls;
pub mod v2;

pub use error::{ErrorKind, KilnError};
pub use server::RunningServer;
pub use settings::ServeSettings;
