//! Arbitrary bytes as an IDX dataset file: parsed consistently or refused.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::idx_file(data));
