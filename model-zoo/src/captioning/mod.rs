//! Image captioning: the caption vocabulary, step-by-step decoding of many hypotheses at
//! once, greedy and beam search, a loaded captioner, and caption metrics. The networks are
//! in `models::captioner`, the scenes they learn from in `data::scenes`.

pub mod captioner;
pub mod decoding;
pub mod metrics;
pub mod search;
pub mod vocabulary;
