//! `POST /v1/models/{model}/classify`: an image in (raw PNG/JPEG body, multipart upload,
//! or JSON with base64 bytes or raw pixels), the top-k classes out.

use std::time::Duration;

use tokio::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use base64::Engine;
use kiln_zoo::image_input::ImageSpec;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::error::{ErrorKind, KilnError};
use crate::metrics::FailureReason;
use crate::registry::Prediction;

/// Classes returned when the caller does not say.
const DEFAULT_TOP_K: usize = 5;

/// Decoding big images takes long enough that it belongs off the async workers.
const INLINE_DECODE_LIMIT: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyQuery {
    top_k: Option<usize>,
}

/// The JSON form of a classify request: exactly one of `image` and `pixels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyJson {
    /// Base64 PNG/JPEG bytes, optionally as a `data:` URL.
    image: Option<String>,
    /// Pixel values 0–255: rows of grey values, or rows of `[r, g, b]`.
    pixels: Option<Pixels>,
    top_k: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Pixels {
    Gray(Vec<Vec<f32>>),
    Color(Vec<Vec<Vec<f32>>>),
}

#[derive(Debug, Serialize)]
pub struct ClassifyResponse {
    model: String,
    model_version: String,
    predictions: Vec<Prediction>,
}

pub async fn classify(
    State(state): State<AppState>,
    Path(model): Path<String>,
    query: Result<Query<ClassifyQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<ClassifyResponse>, KilnError> {
    let handle = state.ready_model(&model)?;
    let record = handle.metrics.start_request();
    let timeout = request_timeout(&request, state.default_timeout());
    let outcome = async {
        let timeout = timeout?;
        let deadline = Instant::now() + timeout;
        let work = async {
            let Query(query) = query.map_err(|e| KilnError::bad_input(e.body_text()))?;
            let (input, body_top_k) = read_input(handle.input_spec(), request).await?;
            let k = pick_top_k(query.top_k.or(body_top_k), handle.labels.len())?;
            handle
                .classify(input, k, Some(deadline))
                .await
                .map_err(KilnError::from)
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| Err(deadline_error(timeout)))
    }
    .await;
    record.finish(outcome.as_ref().err().map(|e| failure_reason(e.kind)));
    Ok(Json(ClassifyResponse {
        model: handle.name.clone(),
        model_version: handle.version().to_string(),
        predictions: outcome?,
    }))
}

/// Header through which a caller sets its own deadline, in milliseconds.
pub const TIMEOUT_HEADER: &str = "kiln-timeout-ms";

fn request_timeout(request: &Request, default: Duration) -> Result<Duration, KilnError> {
    let Some(value) = request.headers().get(TIMEOUT_HEADER) else {
        return Ok(default);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            KilnError::bad_input(format!(
                "{TIMEOUT_HEADER} must be a positive number of milliseconds"
            ))
        })
}

fn deadline_error(timeout: Duration) -> KilnError {
    KilnError::new(
        ErrorKind::DeadlineExceeded,
        format!(
            "the request did not finish within its {} ms deadline",
            timeout.as_millis()
        ),
    )
}

fn failure_reason(kind: ErrorKind) -> FailureReason {
    match kind {
        ErrorKind::Overloaded => FailureReason::Rejected,
        ErrorKind::DeadlineExceeded => FailureReason::Timeout,
        ErrorKind::Internal | ErrorKind::NotReady => FailureReason::Backend,
        _ => FailureReason::Invalid,
    }
}

fn pick_top_k(requested: Option<usize>, classes: usize) -> Result<usize, KilnError> {
    match requested {
        Some(0) => Err(KilnError::bad_input("top_k must be at least 1")),
        Some(k) => Ok(k.min(classes)),
        None => Ok(DEFAULT_TOP_K.min(classes)),
    }
}

/// The preprocessed image and any `top_k` carried in the body.
async fn read_input(
    spec: &ImageSpec,
    request: Request,
) -> Result<(Vec<f32>, Option<usize>), KilnError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_ascii_lowercase();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    match mime.as_str() {
        "multipart/form-data" => {
            let multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| KilnError::bad_input(e.body_text()))?;
            let bytes = first_file(multipart).await?;
            Ok((decode_image(spec, bytes).await?, None))
        }
        "application/json" => {
            let body = read_body(request).await?;
            let json: ClassifyJson = serde_json::from_slice(&body)
                .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")))?;
            let input = match (json.image, json.pixels) {
                (Some(b64), None) => decode_image(spec, decode_base64(&b64)?).await?,
                (None, Some(pixels)) => pixels_to_input(spec, pixels)?,
                _ => {
                    return Err(KilnError::bad_input(
                        "send exactly one of \"image\" (base64) and \"pixels\"",
                    ));
                }
            };
            Ok((input, json.top_k))
        }
        m if m.starts_with("image/") || m == "application/octet-stream" => {
            let body = read_body(request).await?;
            Ok((decode_image(spec, body).await?, None))
        }
        other => Err(KilnError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "content type '{other}' is not supported; send image/png, image/jpeg, multipart/form-data or application/json"
            ),
        )),
    }
}

async fn read_body(request: Request) -> Result<Bytes, KilnError> {
    let body = Bytes::from_request(request, &())
        .await
        .map_err(body_error)?;
    if body.is_empty() {
        return Err(KilnError::bad_input("the request body is empty"));
    }
    Ok(body)
}

fn body_error(rejection: BytesRejection) -> KilnError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        KilnError::new(
            ErrorKind::TooLarge,
            "the request body exceeds the size limit",
        )
    } else {
        KilnError::bad_input(rejection.body_text())
    }
}

/// The bytes of the upload: the field named `image` or `file`, else the first one.
async fn first_file(mut multipart: Multipart) -> Result<Bytes, KilnError> {
    let mut first = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let wanted = matches!(field.name(), Some("image" | "file"));
        let bytes = field.bytes().await.map_err(multipart_error)?;
        if wanted {
            return Ok(bytes);
        }
        first.get_or_insert(bytes);
    }
    first.ok_or_else(|| KilnError::bad_input("the multipart body has no image field"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> KilnError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        KilnError::new(
            ErrorKind::TooLarge,
            "the request body exceeds the size limit",
        )
    } else {
        KilnError::bad_input(e.body_text())
    }
}

fn decode_base64(text: &str) -> Result<Bytes, KilnError> {
    let payload = match text.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data,
        _ => text,
    };
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map(Bytes::from)
        .map_err(|e| KilnError::bad_input(format!("\"image\" is not valid base64: {e}")))
}

async fn decode_image(spec: &ImageSpec, bytes: Bytes) -> Result<Vec<f32>, KilnError> {
    if bytes.len() <= INLINE_DECODE_LIMIT {
        return spec.decode(&bytes).map_err(KilnError::from);
    }
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || spec.decode(&bytes))
        .await
        .map_err(|_| KilnError::new(ErrorKind::Internal, "image decoding failed"))?
        .map_err(KilnError::from)
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
