//! Arbitrary bytes as an Open Inference Protocol `infer` body (JSON, or JSON header plus
//! binary tensor data) and as raw tensor contents: tensors that fill their shapes or a clear
//! error, never a panic; raw data that decodes encodes back to the same bytes.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::v2_infer_body(data));
