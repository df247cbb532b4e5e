//! Arbitrary bytes as a generate or next-word body, and arbitrary text as a prompt: a plan
//! within the model's limits or a clear error, never a panic.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::generate_json(data));
