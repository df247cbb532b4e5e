//! The JSON forms of an image request (base64 bytes or raw pixels, beside the route's
//! options), parsed into the task's [`ImageInput`] without I/O; and the same carried through
//! to model input, so fuzzers and property tests can drive the whole decoding directly.

use base64::Engine;
use kiln_zoo::image_input::ImageSpec;
use serde::Deserialize;

use crate::error::KilnError;
use crate::task::caption::CaptionRequestOptions;
use crate::task::image::ImageInput;

/// The image of a JSON classify body and any `top_k` it carried.
pub fn parse_classify_json(body: &[u8]) -> Result<(ImageInput, Option<usize>), KilnError> {
    let json: ClassifyJson = parse(body)?;
    Ok((image_input(json.image, json.pixels)?, json.top_k))
}

/// The image of a JSON caption body and the search options it carried.
pub fn parse_caption_json(body: &[u8]) -> Result<(ImageInput, CaptionRequestOptions), KilnError> {
    let json: CaptionJson = parse(body)?;
    let options = CaptionRequestOptions {
        beam_size: json.beam_size,
        max_tokens: json.max_tokens,
    };
    Ok((image_input(json.image, json.pixels)?, options))
}

/// Model input and any `top_k` carried in a JSON classify body.
pub fn decode_json_input(
    spec: &ImageSpec,
    body: &[u8],
) -> Result<(Vec<f32>, Option<usize>), KilnError> {
    let (image, top_k) = parse_classify_json(body)?;
    Ok((image.prepare(spec)?, top_k))
}

/// Model input and the search options carried in a JSON caption body.
pub fn decode_caption_json(
    spec: &ImageSpec,
    body: &[u8],
) -> Result<(Vec<f32>, CaptionRequestOptions), KilnError> {
    let (image, options) = parse_caption_json(body)?;
    Ok((image.prepare(spec)?, options))
}

/// Model input from encoded image bytes (PNG, JPEG or WebP).
pub fn decode_image_bytes(spec: &ImageSpec, bytes: &[u8]) -> Result<Vec<f32>, KilnError> {
    ImageInput::Encoded(bytes.to_vec()).prepare(spec)
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, KilnError> {
    serde_json::from_slice(body)
        .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")))
}

/// The image of a JSON body: exactly one of base64 bytes and raw pixels.
fn image_input(image: Option<String>, pixels: Option<Pixels>) -> Result<ImageInput, KilnError> {
    match (image, pixels) {
        (Some(b64), None) => Ok(ImageInput::Encoded(decode_base64(&b64)?)),
        (None, Some(pixels)) => pixels_input(pixels),
        _ => Err(KilnError::bad_input(
            "send exactly one of \"image\" (base64) and \"pixels\"",
        )),
    }
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

fn pixels_input(pixels: Pixels) -> Result<ImageInput, KilnError> {
    let ragged = || KilnError::unprocessable("\"pixels\" rows must all have the same length");
    let (height, width, channels, values) = match pixels {
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
    Ok(ImageInput::Pixels {
        height,
        width,
        channels,
        values,
    })
}
