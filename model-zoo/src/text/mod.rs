//! Text for the language models: reading SWORD Bible modules, stripping their markup,
//! splitting them into train/validation/test by book, the word tokenizer, and count-based
//! baselines to measure the neural models against.

pub mod corpus;
pub mod ngram;
pub mod osis;
pub mod sword;
pub mod tokenizer;
