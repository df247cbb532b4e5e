//! The HTTP/REST body of an Open Inference Protocol `infer` call, without I/O: JSON tensors
//! and the binary tensor data extension (a JSON header of `Inference-Header-Content-Length`
//! bytes followed by raw tensor bytes). Pure functions, so they can be fuzzed directly.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::KilnError;
use crate::v2::infer::{RequestedOutput, timeout_micros};
use crate::v2::tensor::{DataType, InputTensor, OutputTensor, TensorData};

/// Header giving the length of the JSON part of a body that carries binary tensor data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A decoded `infer` request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedInfer {
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    pub outputs: Vec<RequestedOutput>,
    /// How each requested output should be sent back, in the same order: binary or JSON.
    pub binary: Vec<bool>,
    /// Whether outputs not listed (all of them, when none are) go back as binary.
    pub binary_by_default: bool,
    /// The request's own `timeout` parameter (microseconds), if it set one.
    pub timeout: Option<Duration>,
}

/// An inference request: the JSON body, or the JSON header of a binary body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferRequestJson {
    /// Echoed in the response.
    #[serde(default)]
    id: Option<String>,
    /// `binary_data_output: true` sends every output as binary data; `timeout` (microseconds)
    /// shortens the request's deadline.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson>,
    /// The outputs wanted; none means all of them.
    #[serde(default)]
    outputs: Vec<RequestedOutputJson>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    /// UINT8, INT32, INT64, FP32 or BYTES.
    datatype: String,
    /// `binary_data_size`: the tensor's bytes follow the JSON header instead of `data`.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: Map<String, Value>,
    /// The elements, flat or nested, row-major; strings for BYTES.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RequestedOutputJson {
    name: String,
    /// `classification: k` for the top k classes; `binary_data: true` for raw bytes.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: Map<String, Value>,
}

/// An inference response, or the JSON header of a binary one.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponseJson {
    model_name: String,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputJson>,
}

#[derive(Debug, Serialize, ToSchema)]
struct OutputJson {
    name: String,
    datatype: &'static str,
    shape: Vec<usize>,
    /// `binary_data_size` when the tensor's bytes follow the JSON header.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryDataSize>,
    /// The elements, flat and row-major, when sent as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    data: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
struct BinaryDataSize {
    binary_data_size: usize,
}

/// Decode a body; `header_length` is the `Inference-Header-Content-Length` value, if sent.
pub fn decode_infer(body: &[u8], header_length: Option<usize>) -> Result<DecodedInfer, KilnError> {
    let (header, mut binary) = match header_length {
        Some(n) => body.split_at_checked(n).ok_or_else(|| {
            KilnError::bad_input(format!(
                "{HEADER_LENGTH} is {n} but the body is only {} bytes",
                body.len()
            ))
        })?,
        None => (body, &[][..]),
    };
    let request: InferRequestJson = serde_json::from_slice(header)
        .map_err(|e| KilnError::bad_input(format!("invalid inference request JSON: {e}")))?;
    if request.inputs.is_empty() {
        return Err(KilnError::bad_input("the request has no inputs"));
    }
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let datatype = DataType::parse(&input.datatype)?;
        let data = match (input.parameters.get("binary_data_size"), &input.data) {
            (Some(size), None) => {
                let size = size.as_u64().ok_or_else(|| {
                    KilnError::bad_input("binary_data_size must be a non-negative integer")
                })? as usize;
                let (raw, rest) = binary.split_at_checked(size).ok_or_else(|| {
                    KilnError::bad_input(format!(
                        "input '{}' claims {size} bytes of binary data but fewer follow the header",
                        input.name
                    ))
                })?;
                binary = rest;
                TensorData::from_raw(datatype, raw)?
            }
            (None, Some(data)) => TensorData::from_json(datatype, data)?,
            (Some(_), Some(_)) => {
                return Err(KilnError::bad_input(format!(
                    "input '{}' has both \"data\" and binary_data_size",
                    input.name
                )));
            }
            (None, None) => {
                return Err(KilnError::bad_input(format!(
                    "input '{}' has no \"data\" and no binary_data_size",
                    input.name
                )));
            }
        };
        inputs.push(InputTensor::new(input.name, &input.shape, data)?);
    }
    if !binary.is_empty() {
        return Err(KilnError::bad_input(format!(
            "{} bytes of binary data follow the header that no input claims",
            binary.len()
        )));
    }
    let binary_by_default = flag(&request.parameters, "binary_data_output")?.unwrap_or(false);
    let timeout = match request.parameters.get("timeout") {
        None => None,
        Some(us) => Some(timeout_micros(us.as_u64())?),
    };
    let mut outputs = Vec::with_capacity(request.outputs.len());
    let mut binary = Vec::with_capacity(request.outputs.len());
    for output in request.outputs {
        let classification =
            match output.parameters.get("classification") {
                None => None,
                Some(k) => Some(k.as_u64().ok_or_else(|| {
                    KilnError::bad_input("classification must be a positive integer")
                })? as usize),
            };
        binary.push(flag(&output.parameters, "binary_data")?.unwrap_or(binary_by_default));
        outputs.push(RequestedOutput {
            name: output.name,
            classification,
        });
    }
    Ok(DecodedInfer {
        id: request.id,
        inputs,
        outputs,
        binary,
        binary_by_default,
        timeout,
    })
}

fn flag(parameters: &Map<String, Value>, name: &str) -> Result<Option<bool>, KilnError> {
    parameters
        .get(name)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| KilnError::bad_input(format!("{name} must be true or false")))
        })
        .transpose()
}

/// An encoded answer: the body and, when it carries binary data, the JSON header's length.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedInfer {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encode the outputs; `binary[i]` says whether output `i` goes as raw bytes.
pub fn encode_infer(
    model: &str,
    version: &str,
    id: Option<&str>,
    outputs: &[OutputTensor],
    binary: impl Fn(usize) -> bool,
) -> EncodedInfer {
    let mut raw = Vec::new();
    let mut any_binary = false;
    let tensors = outputs
        .iter()
        .enumerate()
        .map(|(i, output)| {
            let (parameters, data) = if binary(i) {
                any_binary = true;
                let bytes = output.data.to_raw();
                let size = bytes.len();
                raw.extend_from_slice(&bytes);
                (
                    Some(BinaryDataSize {
                        binary_data_size: size,
                    }),
                    None,
                )
            } else {
                (None, Some(output.data.to_json()))
            };
            OutputJson {
                name: output.name.clone(),
                datatype: output.data.datatype().name(),
                shape: output.shape.clone(),
                parameters,
                data,
            }
        })
        .collect();
    let header = InferResponseJson {
        model_name: model.to_string(),
        model_version: version.to_string(),
        id: id.map(str::to_string),
        outputs: tensors,
    };
    let mut body = serde_json::to_vec(&header).expect("serialisable");
    if !any_binary {
        return EncodedInfer {
            body,
            header_length: None,
        };
    }
    let header_length = body.len();
    body.extend_from_slice(&raw);
    EncodedInfer {
        body,
        header_length: Some(header_length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_inputs_and_requested_outputs() {
        let body = br#"{"id":"r1","inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[[0.5,1]]}],
            "outputs":[{"name":"probabilities","parameters":{"classification":3,"binary_data":true}}]}"#;
        let d = decode_infer(body, None).unwrap();
        assert_eq!(d.id.as_deref(), Some("r1"));
        assert_eq!(d.inputs[0].data, TensorData::Fp32(vec![0.5, 1.0]));
        assert_eq!(d.outputs[0].classification, Some(3));
        assert_eq!(d.binary, vec![true]);
        assert!(!d.binary_by_default);
    }

    #[test]
    fn binary_inputs_follow_the_header_in_order() {
        let header = br#"{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":13}}],
            "parameters":{"binary_data_output":true}}"#;
        let data = TensorData::Bytes(vec![b"in".to_vec(), b"the".to_vec()]);
        let mut body = header.to_vec();
        body.extend(data.to_raw());
        let d = decode_infer(&body, Some(header.len())).unwrap();
        assert_eq!(d.inputs[0].data, data);
        assert!(d.binary_by_default);
        // A header length past the body, a short tail and an unclaimed tail are refused.
        assert!(decode_infer(&body, Some(body.len() + 1)).is_err());
        assert!(decode_infer(&body[..body.len() - 1], Some(header.len())).is_err());
        let mut extra = body.clone();
        extra.push(0);
        assert!(decode_infer(&extra, Some(header.len())).is_err());
    }

    #[test]
    fn shape_and_type_mismatches_are_refused() {
        let wrong_count =
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#;
        assert!(decode_infer(wrong_count, None).is_err());
        let fp16 = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}"#;
        assert!(decode_infer(fp16, None).is_err());
        assert!(decode_infer(br#"{"inputs":[]}"#, None).is_err());
        assert!(decode_infer(b"not json", None).is_err());
    }

    #[test]
    fn binary_outputs_are_appended_after_the_header() {
        let outputs = [
            OutputTensor {
                name: "a".into(),
                shape: vec![1, 2],
                data: TensorData::Fp32(vec![1.0, 2.0]),
            },
            OutputTensor {
                name: "b".into(),
                shape: vec![1],
                data: TensorData::Bytes(vec![b"x".to_vec()]),
            },
        ];
        let json_only = encode_infer("m", "1", Some("q"), &outputs, |_| false);
        assert_eq!(json_only.header_length, None);
        let v: Value = serde_json::from_slice(&json_only.body).unwrap();
        assert_eq!(v["outputs"][0]["data"], json!([1.0, 2.0]));
        assert_eq!(v["outputs"][1]["data"], json!(["x"]));
        assert_eq!(v["id"], "q");

        let mixed = encode_infer("m", "1", None, &outputs, |i| i == 0);
        let n = mixed.header_length.unwrap();
        let v: Value = serde_json::from_slice(&mixed.body[..n]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&mixed.body[n..], &outputs[0].data.to_raw()[..]);
    }
}
