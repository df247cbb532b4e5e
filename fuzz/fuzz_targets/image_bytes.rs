//! Arbitrary bytes as an uploaded image: decoding must return an answer, never panic.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::image_bytes(data));
