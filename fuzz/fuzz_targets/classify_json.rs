//! Arbitrary bytes as a JSON classify body: an input of the model's size or a clear error.
#![no_main]

use kiln_server::http::input::decode_json_input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut spec = kiln_zoo::data::fashion_mnist::image_spec();
    spec.max_pixels = 1 << 20;
    match decode_json_input(&spec, data) {
        Ok((input, _)) => {
            assert_eq!(input.len(), spec.input_len());
            assert!(input.iter().all(|v| v.is_finite()));
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
