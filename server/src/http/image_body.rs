//! Reading an image request body, in any of the forms the image routes take: raw
//! PNG/JPEG/WebP bytes, a multipart upload, or JSON (base64 bytes or raw pixels, with the
//! route's own options beside them).

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;

use super::request;
use crate::error::{ErrorKind, KilnError};
use crate::task::decode_off_thread_if_large;
use crate::task::image::ImageInput;

/// Parses a JSON body into the image and the route's options.
pub type JsonParser<O> = fn(&[u8]) -> Result<(ImageInput, O), KilnError>;

/// The image, and the options the body carried when it is JSON (`json` parses that form);
/// an image file or upload carries none.
pub async fn read_image_body<O: Default + Send + 'static>(
    request: Request,
    json: JsonParser<O>,
) -> Result<(ImageInput, O), KilnError> {
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
            Ok((ImageInput::Encoded(bytes.into()), O::default()))
        }
        "application/json" => {
            // Base64 of a large image takes long enough to stall an async worker.
            let body = read_body(request).await?;
            decode_off_thread_if_large(body.len(), move || json(&body)).await
        }
        m if m.starts_with("image/") || m == "application/octet-stream" => {
            let body = read_body(request).await?;
            Ok((ImageInput::Encoded(body.into()), O::default()))
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
    let body = request::read_body(request).await?;
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
    request::read_error(e.status(), e.body_text())
}
