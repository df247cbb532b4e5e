//! Arbitrary bytes as a JSON classify or caption body: an input of the model's size or a
//! clear error.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::classify_json(data));
