//! Ready-made requests, one per input, for each request form: task-route bodies, Open
//! Inference Protocol bodies (JSON or binary), and gRPC `ModelInfer` messages.

use base64::Engine;
use kiln_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use kiln_proto::inference::{InferParameter, ModelInferRequest, infer_parameter};
use serde_json::json;

use crate::inputs::ImageInput;
use crate::plan::RequestForm;

/// Classes (or next words) asked of a text model through the classification extension, as
/// the next-word route answers by default.
const TEXT_CLASSES: i64 = 5;

/// One request, ready to send again and again.
#[derive(Debug, Clone)]
pub enum Payload {
    Http {
        body: bytes::Bytes,
        content_type: &'static str,
        /// `Inference-Header-Content-Length` of a binary V2 body.
        header_length: Option<usize>,
    },
    Grpc(ModelInferRequest),
}

/// The payloads of one level, sent in turn.
#[derive(Debug, Clone)]
pub struct Payloads {
    pub items: Vec<Payload>,
}

/// What a model takes through the Open Inference Protocol, from its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct V2Target {
    pub model: String,
    pub input: String,
    pub output: String,
    /// The model takes text (a BYTES input named `text`) rather than images.
    pub text: bool,
}

impl V2Target {
    /// Read `GET /v2/models/{model}` metadata.
    pub fn from_metadata(model: &str, metadata: &serde_json::Value) -> Result<Self, String> {
        let name = |tensors: &serde_json::Value| {
            tensors[0]["name"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| format!("the metadata of '{model}' lists no tensors: {metadata}"))
        };
        let input = name(&metadata["inputs"])?;
        Ok(Self {
            model: model.to_string(),
            text: input == "text" && metadata["inputs"][0]["datatype"] == "BYTES",
            output: name(&metadata["outputs"])?,
            input,
        })
    }
}

impl Payloads {
    /// One JSON body per prompt, for the next-word or generate form.
    pub fn text(prompts: &[String], form: RequestForm, max_tokens: usize) -> Self {
        let items = prompts
            .iter()
            .map(|text| {
                let body = match form {
                    RequestForm::Generate => json!({
                        "text": text,
                        "max_tokens": max_tokens,
                        "ignore_eos": true,
                    }),
                    _ => json!({ "text": text }),
                };
                json_payload(&body)
            })
            .collect();
        Self { items }
    }

    /// One classify or caption body per image: its raw bytes, or base64 in JSON.
    pub fn new(inputs: &[ImageInput], form: RequestForm) -> Self {
        let items = inputs
            .iter()
            .map(|input| match form {
                RequestForm::HttpBinary | RequestForm::Caption => Payload::Http {
                    body: bytes::Bytes::from(input.bytes.clone()),
                    content_type: input.content_type,
                    header_length: None,
                },
                _ => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&input.bytes);
                    json_payload(&json!({ "image": b64 }))
                }
            })
            .collect();
        Self { items }
    }

    /// Open Inference Protocol requests for `target`: each prompt (text models) or image as
    /// one request. Images go as pixels in `v2-json`, as their encoded files in `v2-binary`
    /// and `grpc`.
    pub fn v2(
        target: &V2Target,
        form: RequestForm,
        images: &[ImageInput],
        prompts: &[String],
    ) -> Result<Self, String> {
        let items = if target.text {
            prompts
                .iter()
                .map(|p| v2_request(target, form, V2Input::Bytes(p.as_bytes())))
                .collect()
        } else if form == RequestForm::V2Json {
            images
                .iter()
                .map(|image| {
                    let (shape, pixels) = decode_pixels(image)?;
                    Ok(v2_request(target, form, V2Input::Pixels(shape, pixels)))
                })
                .collect::<Result<_, String>>()?
        } else {
            images
                .iter()
                .map(|image| v2_request(target, form, V2Input::Bytes(&image.bytes)))
                .collect()
        };
        Ok(Self { items })
    }
}

fn json_payload(body: &serde_json::Value) -> Payload {
    Payload::Http {
        body: bytes::Bytes::from(body.to_string()),
        content_type: "application/json",
        header_length: None,
    }
}

/// Shape of the one BYTES element of a request: a batch of one, one element each — what
/// Kiln takes (`[N]` or `[N, 1]`) and what a batching Triton model with dims `[1]` takes.
const BYTES_SHAPE: [i64; 2] = [1, 1];

enum V2Input<'a> {
    /// One BYTES element: a prompt or an encoded image.
    Bytes(&'a [u8]),
    /// UINT8 pixels `[1, H, W, C]`.
    Pixels([usize; 4], Vec<u8>),
}

fn v2_request(target: &V2Target, form: RequestForm, input: V2Input<'_>) -> Payload {
    let classes = target.text.then_some(TEXT_CLASSES);
    match form {
        RequestForm::Grpc => {
            let V2Input::Bytes(element) = input else {
                unreachable!("gRPC payloads carry BYTES")
            };
            let mut raw = (element.len() as u32).to_le_bytes().to_vec();
            raw.extend_from_slice(element);
            let parameters = classes
                .map(|k| {
                    let k = InferParameter {
                        parameter_choice: Some(infer_parameter::ParameterChoice::Int64Param(k)),
                    };
                    [("classification".to_string(), k)].into()
                })
                .unwrap_or_default();
            Payload::Grpc(ModelInferRequest {
                model_name: target.model.clone(),
                inputs: vec![InferInputTensor {
                    name: target.input.clone(),
                    datatype: "BYTES".into(),
                    shape: BYTES_SHAPE.to_vec(),
                    ..Default::default()
                }],
                outputs: vec![InferRequestedOutputTensor {
                    name: target.output.clone(),
                    parameters,
                }],
                raw_input_contents: vec![raw],
                ..Default::default()
            })
        }
        _ => {
            let mut output = json!({ "name": target.output });
            if let Some(k) = classes {
                output["parameters"] = json!({ "classification": k });
            }
            match input {
                V2Input::Bytes(element) if form == RequestForm::V2Binary => {
                    let header = json!({
                        "inputs": [{ "name": target.input, "shape": BYTES_SHAPE, "datatype": "BYTES",
                                     "parameters": { "binary_data_size": element.len() + 4 } }],
                        "outputs": [output],
                    });
                    let mut body = header.to_string().into_bytes();
                    let header_length = body.len();
                    body.extend_from_slice(&(element.len() as u32).to_le_bytes());
                    body.extend_from_slice(element);
                    Payload::Http {
                        body: bytes::Bytes::from(body),
                        content_type: "application/octet-stream",
                        header_length: Some(header_length),
                    }
                }
                V2Input::Bytes(element) => json_payload(&json!({
                    "inputs": [{ "name": target.input, "shape": BYTES_SHAPE, "datatype": "BYTES",
                                 "data": [String::from_utf8_lossy(element)] }],
                    "outputs": [output],
                })),
                V2Input::Pixels(shape, pixels) => json_payload(&json!({
                    "inputs": [{ "name": target.input, "shape": shape, "datatype": "UINT8",
                                 "data": pixels }],
                    "outputs": [output],
                })),
            }
        }
    }
}

/// An image's pixels, grey images as one channel and others as RGB.
fn decode_pixels(image: &ImageInput) -> Result<([usize; 4], Vec<u8>), String> {
    let decoded = image::load_from_memory(&image.bytes)
        .map_err(|e| format!("cannot decode {}: {e}", image.name))?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    Ok(if decoded.color().has_color() {
        ([1, h, w, 3], decoded.to_rgb8().into_raw())
    } else {
        ([1, h, w, 1], decoded.to_luma8().into_raw())
    })
}
