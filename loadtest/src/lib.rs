//! Kiln's load generator, in the manner of Triton's perf_analyzer.
//!
//! A [`plan::LoadPlan`] names the target, the request form (task routes, the Open Inference
//! Protocol over HTTP JSON, HTTP binary or gRPC) and the load levels (closed-loop
//! concurrency or open-loop request rates, Poisson or constant); [`payloads`] prepares the requests. [`runner::run_level`] drives one level:
//! a warm-up, then measurement windows repeated until throughput is stable, with
//! [`server_metrics`] read before and after to split server time into queue and compute.
//! [`report`] turns the results into a terminal table, CSV, JSON, an SVG plot and HDR
//! percentile distributions; [`plot`] draws runs compared against offered load.

pub mod inputs;
pub mod payloads;
pub mod plan;
pub mod plot;
pub mod report;
pub mod runner;
pub mod server_metrics;
pub mod stats;
