//! `POST /v1/models/{model}/classify`: an image in (raw PNG/JPEG/WebP body, multipart upload,
//! or JSON with base64 bytes or raw pixels), the top-k classes out.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use kiln_zoo::image_input::ImageSpec;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::deadline::{body_error, request_timeout};
use super::input::{self, ClassifyJson, DecodedInput};
use super::openapi::{ErrorBody, FileBytes};
use crate::deadline::within_deadline;
use crate::error::{ErrorKind, KilnError};
use crate::registry::Prediction;
use crate::tasks::{class_count, decode_off_thread_if_large};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyQuery {
    top_k: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClassifyResponse {
    model: String,
    model_version: String,
    predictions: Vec<Prediction>,
}

/// A multipart upload: the field `image` or `file`, else the first one.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImageUpload {
    image: FileBytes,
}

#[utoipa::path(post, path = "/v1/models/{model}/classify", tag = "Tasks",
    params(("model" = String, Path, description = "model name"),
           ("top_k" = Option<usize>, Query, description = "classes to return (default 5)"),
           ("kiln-timeout-ms" = Option<u64>, Header, description = "deadline in milliseconds")),
    request_body(description = "a PNG, JPEG or WebP image: raw bytes, a multipart upload, or JSON", content(
        (FileBytes = "image/png"),
        (FileBytes = "image/jpeg"),
        (FileBytes = "image/webp"),
        (ImageUpload = "multipart/form-data"),
        (ClassifyJson = "application/json"))),
    responses(
        (status = 200, description = "the likeliest classes, most likely first", body = ClassifyResponse),
        (status = 400, description = "not an image, or a malformed body", body = ErrorBody),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 413, description = "body or image too large", body = ErrorBody),
        (status = 415, description = "unsupported content type", body = ErrorBody),
        (status = 422, description = "pixels of the wrong size", body = ErrorBody),
        (status = 429, description = "queue full", body = ErrorBody),
        (status = 504, description = "deadline passed", body = ErrorBody)))]
pub async fn classify(
    State(state): State<AppState>,
    Path(model): Path<String>,
    query: Result<Query<ClassifyQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<ClassifyResponse>, KilnError> {
    let handle = &state.ready_model(&model)?;
    let timeout = request_timeout(&request, state.default_timeout());
    let predictions = within_deadline(handle, timeout, |deadline| async move {
        let Query(query) = query.map_err(|e| KilnError::bad_input(e.body_text()))?;
        let classifier = handle.classifier()?;
        let (input, body_top_k) = read_input(classifier.input_spec(), request).await?;
        let k = class_count(query.top_k.or(body_top_k), classifier.labels.len())?;
        classifier
            .classify(input, k, Some(deadline))
            .await
            .map_err(KilnError::from)
    })
    .await?;
    Ok(Json(ClassifyResponse {
        model: handle.name.clone(),
        model_version: handle.version().to_string(),
        predictions,
    }))
}

/// The preprocessed image and any `top_k` carried in the body.
async fn read_input(spec: &ImageSpec, request: Request) -> Result<DecodedInput, KilnError> {
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
            off_thread_if_large(spec, bytes, image_only).await
        }
        "application/json" => {
            let body = read_body(request).await?;
            off_thread_if_large(spec, body, input::decode_json_input).await
        }
        m if m.starts_with("image/") || m == "application/octet-stream" => {
            let body = read_body(request).await?;
            off_thread_if_large(spec, body, image_only).await
        }
        other => Err(KilnError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "content type '{other}' is not supported; send image/png, image/jpeg, image/webp, multipart/form-data or application/json"
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

fn image_only(spec: &ImageSpec, bytes: &[u8]) -> Result<DecodedInput, KilnError> {
    Ok((input::decode_image_bytes(spec, bytes)?, None))
}

/// Run a body decoder, off the async workers when the body is large.
async fn off_thread_if_large(
    spec: &ImageSpec,
    body: Bytes,
    decode: fn(&ImageSpec, &[u8]) -> Result<DecodedInput, KilnError>,
) -> Result<DecodedInput, KilnError> {
    let spec = spec.clone();
    decode_off_thread_if_large(body.len(), move || decode(&spec, &body)).await
}
