//! Image captioning: the caption vocabulary, a loaded captioner with greedy and beam
//! search, and caption metrics. The networks are in `models::captioner`, the scenes they
//! learn from in `data::scenes`.

pub mod captioner;
pub mod metrics;
pub mod vocabulary;
