//! Decoding request bodies into model input, without I/O: the JSON forms of an image
//! (base64 bytes or raw pixels) and encoded image bytes. Kept pure so fuzzers and property
//! tests can drive them directly.

use base64::Engine;
use kiln_zoo::image_input::ImageSpec;
use serde::Deserialize;

use crate::error::KilnError;

/// A decoded request: the model input and any `top_k` the body carried.
pub type DecodedInput = (Vec<f32>, Option<usize>);

/// Model input and any `top_k` carried in a JSON classify body.
pub fn decode_json_input(spec: &ImageSpec, body: &[u8]) -> Result<DecodedInput, KilnError> {
    let json: ClassifyJson = serde_json::from_slice(body)
        .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")))?;
    Ok((image_input(spec, json.image, json.pixels)?, json.top_k))
}

/// Model input and the search options carried in a JSON caption body.
pub fn decode_caption_json(
    spec: &ImageSpec,
    body: &[u8],
) -> Result<(Vec<f32>, CaptionBodyOptions), KilnError> {
    let json: CaptionJson = serde_json::from_slice(body)
        .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")))?;
    let options = CaptionBodyOptions {
        beam_size: json.beam_size,
        max_tokens: json.max_tokens,
    };
    Ok((image_input(spec, json.image, json.pixels)?, options))
}

/// The image of a JSON body: exactly one of base64 bytes and raw pixels.
fn image_input(
    spec: &ImageSpec,
    image: Option<String>,
    pixels: Option<Pixels>,
) -> Result<Vec<f32>, KilnError> {
    match (image, pixels) {
        (Some(b64), None) => decode_image_bytes(spec, &decode_base64(&b64)?),
        (None, Some(pixels)) => pixels_to_input(spec, pixels),
        _ => Err(KilnError::bad_input(
            "send exactly one of \"image\" (base64) and \"pixels\"",
        )),
    }
}

/// Model input from encoded image bytes (PNG, JPEG or WebP).
pub fn decode_image_bytes(spec: &ImageSpec, bytes: &[u8]) -> Result<Vec<f32>, KilnError> {
    spec.decode(bytes).map_err(KilnError::from)
}

/// The JSON form of a classify request: exactly one of `image` and `pixels`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyJson {
    /// Base64 PNG/JPEG/WebP bytes, optionally as a `data:` URL.
    image: Option<String>,
    /// Pixel values 0–255: rows of grey values, or rows of `[r, g, b]`.
    pixels: Option<Pixels>,
    top_k: Option<usize>,
}

/// The JSON form of a caption request: exactly one of `image` and `pixels`, and the
/// search options.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptionJson {
    /// Base64 PNG/JPEG/WebP bytes, optionally as a `data:` URL.
    image: Option<String>,
    /// Pixel values 0–255: rows of grey values, or rows of `[r, g, b]`.
    pixels: Option<Pixels>,
    /// Hypotheses kept while searching (1 is greedy).
    beam_size: Option<usize>,
    /// Most words in the caption.
    max_tokens: Option<usize>,
}

/// Search options a caption body may carry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CaptionBodyOptions {
    pub beam_size: Option<usize>,
    pub max_tokens: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Pixels {
    Gray(Vec<Vec<f32>>),
    Color(Vec<Vec<Vec<f32>>>),
}

fn decode_base64(text: &str) -> Result<Vec<u8>, KilnError> {
    let payload = match text.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data,
        _ => text,
    };
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| KilnError::bad_input(format!("\"image\" is not valid base64: {e}")))
}

fn pixels_to_input(spec: &ImageSpec, pixels: Pixels) -> Result<Vec<f32>, KilnError> {
    let ragged = || KilnError::unprocessable("\"pixels\" rows must all have the same length");
    let (height, width, channels, flat) = match pixels {
        Pixels::Gray(rows) => {
            let width = rows.first().map_or(0, Vec::len);
            if rows.iter().any(|r| r.len() != width) {
                return Err(ragged());
            }
            (
                rows.len(),
                width,
                1,
                rows.into_iter().flatten().collect::<Vec<_>>(),
            )
        }
        Pixels::Color(rows) => {
            let width = rows.first().map_or(0, Vec::len);
            let channels = rows.first().and_then(|r| r.first()).map_or(0, Vec::len);
            if rows
                .iter()
                .any(|r| r.len() != width || r.iter().any(|p| p.len() != channels))
            {
                return Err(ragged());
            }
            (
                rows.len(),
                width,
                channels,
                rows.into_iter().flatten().flatten().collect(),
            )
        }
    };
    spec.from_pixels(height, width, channels, &flat)
        .map_err(KilnError::from)
}
