//! Reading an image request body, in any of the forms the image routes take: raw
//! PNG/JPEG/WebP bytes, a multipart upload, or JSON (base64 bytes or raw pixels, with the
//! route's own options beside them).

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use kiln_zoo::image_input::ImageSpec;

use super::deadline::body_error;
use super::input;
use crate::error::{ErrorKind, KilnError};
use crate::tasks::decode_off_thread_if_large;

/// Decodes a JSON body into the model input and the route's options.
pub type JsonDecoder<O> = fn(&ImageSpec, &[u8]) -> Result<(Vec<f32>, O), KilnError>;

/// The preprocessed image, and the options the body carried when it is JSON (`json`
/// decodes that form); an image file or upload carries none.
pub async fn read_image_body<O: Default + Send + 'static>(
    spec: &ImageSpec,
    request: Request,
    json: JsonDecoder<O>,
) -> Result<(Vec<f32>, O), KilnError> {
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
            off_thread_if_large(spec, body, json).await
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

fn image_only<O: Default>(spec: &ImageSpec, bytes: &[u8]) -> Result<(Vec<f32>, O), KilnError> {
    Ok((input::decode_image_bytes(spec, bytes)?, O::default()))
}

/// Run a body decoder, off the async workers when the body is large.
async fn off_thread_if_large<O: Send + 'static>(
    spec: &ImageSpec,
    body: Bytes,
    decode: JsonDecoder<O>,
) -> Result<(Vec<f32>, O), KilnError> {
    let spec = spec.clone();
    decode_off_thread_if_large(body.len(), move || decode(&spec, &body)).await
}
