//! Arbitrary bytes as an Open Inference Protocol `infer` body (JSON, or JSON header plus
//! binary tensor data) and as raw tensor contents: tensors that fill their shapes or a clear
//! error, never a panic; raw data that decodes encodes back to the same bytes.
#![no_main]

use kiln_server::http::v2_codec::{decode_infer, encode_infer};
use kiln_server::v2::tensor::{DataType, OutputTensor, TensorData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
            assert!(encoded.header_length.is_some_and(|n| n <= encoded.body.len()));
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
});
