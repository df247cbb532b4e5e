//! What each fuzz target asserts about one input, written once: `cargo fuzz` calls these from
//! `fuzz_targets/`, and `server/tests/fuzz_corpus.rs` replays every input kept under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through them on stable Rust.

// Each fuzz target calls one of these; the replay test calls them all.
#![allow(dead_code)]

use kiln_server::http::input::{decode_caption_json, decode_image_bytes, decode_json_input};
use kiln_server::http::v2_codec::{decode_infer, encode_infer};
use kiln_server::repository::GenerationConfig;
use kiln_server::task::language::request::{decode_generate, decode_next_word};
use kiln_server::v2::tensor::{DataType, OutputTensor, TensorData};
use kiln_zoo::data::idx::parse_idx;
use kiln_zoo::text::tokenizer::Tokenizer;

/// What a fuzz target checks of one input.
pub type Check = fn(&[u8]);

/// The fuzz targets by name, as `cargo fuzz list` names them.
pub const TARGETS: [(&str, Check); 5] = [
    ("classify_json", classify_json),
    ("generate_json", generate_json),
    ("idx_file", idx_file),
    ("image_bytes", image_bytes),
    ("v2_infer_body", v2_infer_body),
];

/// Arbitrary bytes as a JSON classify or caption body: an input of the model's size or a
/// clear error.
pub fn classify_json(data: &[u8]) {
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
}

/// Arbitrary bytes as a generate or next-word body, and arbitrary text as a prompt: a plan
/// within the model's limits or a clear error, never a panic.
pub fn generate_json(data: &[u8]) {
    let limits = GenerationConfig::default();
    match decode_generate(data, &limits, data.first() == Some(&b' ')) {
        Ok(plan) => {
            assert!((1..=limits.max_new_tokens).contains(&plan.max_tokens));
            assert!(plan.sampling.temperature >= 0.0);
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
    if let Ok((_, k)) = decode_next_word(data) {
        assert!(k >= 1);
    }
    let text = String::from_utf8_lossy(data);
    let tokenizer = Tokenizer::fit([text.as_ref()], 50);
    let ids = tokenizer.encode_prompt(&text);
    let _ = tokenizer.decode(&ids);
}

/// Arbitrary bytes as an IDX dataset file: parsed consistently or refused.
pub fn idx_file(data: &[u8]) {
    if let Ok(array) = parse_idx(data) {
        assert_eq!(array.dims.iter().product::<usize>(), array.data.len());
    }
}

/// Arbitrary bytes as an uploaded image: decoding must return an answer, never panic.
pub fn image_bytes(data: &[u8]) {
    let mut spec = kiln_zoo::data::fashion_mnist::image_spec();
    // Keep memory bounded: a small pixel limit, as an operator might configure.
    spec.max_pixels = 1 << 20;
    if let Ok(input) = decode_image_bytes(&spec, data) {
        assert_eq!(input.len(), spec.input_len());
    }
}

/// Arbitrary bytes as an Open Inference Protocol `infer` body (JSON, or JSON header plus
/// binary tensor data) and as raw tensor contents: tensors that fill their shapes or a clear
/// error, never a panic; raw data that decodes encodes back to the same bytes.
pub fn v2_infer_body(data: &[u8]) {
    let header_length = match data.first() {
        Some(&n) if n % 2 == 1 => Some(usize::from(n) * 4 % data.len().max(1)),
        _ => None,
    };
    match decode_infer(data, header_length) {
        Ok(decoded) => {
            assert!(!decoded.inputs.is_empty());
            assert_eq!(decoded.outputs.len(), decoded.binary.len());
            let outputs: Vec<OutputTensor> = decoded
                .inputs
                .into_iter()
                .map(|input| {
                    assert_eq!(input.data.len(), input.shape.iter().product::<usize>());
                    OutputTensor {
                        name: input.name,
                        shape: input.shape,
                        data: input.data,
                    }
                })
                .collect();
            let encoded = encode_infer("m", "1", decoded.id.as_deref(), &outputs, |i| i % 2 == 0);
            assert!(
                encoded
                    .header_length
                    .is_some_and(|n| n <= encoded.body.len())
            );
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
    for datatype in [
        DataType::Uint8,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp32,
        DataType::Bytes,
    ] {
        if let Ok(tensor) = TensorData::from_raw(datatype, data) {
            assert_eq!(tensor.to_raw(), data);
        }
    }
}
