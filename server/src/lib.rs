//! Kiln's server: loads the models of a model repository, groups concurrent requests into
//! batches per model, and answers over HTTP and gRPC.
//!
//! A request enters through [`http`], is decoded and validated there, and goes to its
//! model's [`batching::Batcher`]; the batcher forms batches and hands them to executor
//! threads that own the Burn model. Answers travel back on a oneshot channel. Every stage
//! records into [`metrics`]. [`server::RunningServer`] ties it together.

pub mod auth;
pub mod batching;
pub mod captioning;
pub mod cli;
pub mod commands;
pub mod deadline;
pub mod energy;
pub mod error;
pub mod generation;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod placement;
pub mod registry;
pub mod repository;
pub mod server;
pub mod settings;
pub mod state;
pub mod tasks;
pub mod tls;
pub mod v2;

pub use error::{ErrorKind, KilnError};
pub use server::RunningServer;
pub use settings::ServeSettings;
