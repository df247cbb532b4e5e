//! Arbitrary bytes as an uploaded image: decoding must return an answer, never panic.
#![no_main]

use kiln_server::http::input::decode_image_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut spec = kiln_zoo::data::fashion_mnist::image_spec();
    // Keep memory bounded: a small pixel limit, as an operator might configure.
    spec.max_pixels = 1 << 20;
    if let Ok(input) = decode_image_bytes(&spec, data) {
        assert_eq!(input.len(), spec.input_len());
    }
});
