//! Arbitrary bytes as a JSON classify or caption body: an input of the model's size or a
//! clear error.
#![no_main]

use kiln_server::http::input::{decode_caption_json, decode_json_input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut grey = kiln_zoo::data::fashion_mnist::image_spec();
    grey.max_pixels = 1 << 20;
    let mut colour = kiln_zoo::data::scenes::image_spec();
    colour.max_pixels = 1 << 20;
    let outcomes = [
        decode_json_input(&grey, data).map(|(input, _)| (input, grey.input_len())),
        decode_caption_json(&colour, data).map(|(input, _)| (input, colour.input_len())),
    ];
    for outcome in outcomes {
        match outcome {
            Ok((input, len)) => {
                assert_eq!(input.len(), len);
                assert!(input.iter().all(|v| v.is_finite()));
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
    }
});
