//! Property tests of the request decoders: any input gives a model-sized input or a clear
//! error, never a panic.

use kiln_server::http::input::{decode_image_bytes, decode_json_input};
use proptest::prelude::*;

fn spec() -> kiln_zoo::image_input::ImageSpec {
    let mut spec = kiln_zoo::data::fashion_mnist::image_spec();
    spec.max_pixels = 1 << 16;
    spec
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_image_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let spec = spec();
        if let Ok(input) = decode_image_bytes(&spec, &bytes) {
            prop_assert_eq!(input.len(), spec.input_len());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_json_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let spec = spec();
        match decode_json_input(&spec, &bytes) {
            Ok((input, _)) => prop_assert_eq!(input.len(), spec.input_len()),
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn pixels_are_accepted_exactly_when_28_by_28_and_in_range(
        height in 27usize..30,
        width in 27usize..30,
        value in prop_oneof![Just(f32::NAN), Just(f32::INFINITY), -10.0f32..300.0],
    ) {
        let rows = vec![vec![value; width]; height];
        let body = serde_json::to_vec(&serde_json::json!({ "pixels": rows })).unwrap();
        let result = decode_json_input(&spec(), &body);
        // serde_json writes NaN and infinities as null, which is not a number.
        let valid = height == 28 && width == 28 && value.is_finite() && (0.0..=255.0).contains(&value);
        prop_assert_eq!(result.is_ok(), valid, "{:?}", result.err());
    }
}

#[test]
fn invalid_utf8_in_json_is_a_clear_error() {
    let err = decode_json_input(&spec(), b"{\"image\": \"\xff\xfe\"}").unwrap_err();
    assert!(err.message.contains("invalid JSON body"), "{}", err.message);
}
