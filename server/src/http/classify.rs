//! `POST /v1/models/{model}/classify`: an image in (raw PNG/JPEG/WebP body, multipart upload,
//! or JSON with base64 bytes or raw pixels), the top-k classes out.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::guard::Admitted;
use super::image_body::read_image_body;
use super::input::{self, ClassifyJson};
use super::openapi::{ErrorBody, FileBytes, ImageUpload};
use super::request::request_timeout;
use crate::error::KilnError;
use crate::task::classify::Prediction;
use crate::task::run_request;

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
    _admitted: Admitted,
    State(state): State<AppState>,
    Path(model): Path<String>,
    query: Result<Query<ClassifyQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<ClassifyResponse>, KilnError> {
    let handle = &state.ready_model(&model)?;
    let timeout = request_timeout(&request, state.default_timeout());
    let predictions = run_request(&handle.metrics, timeout, |deadline| async move {
        let Query(query) = query.map_err(|e| KilnError::bad_input(e.body_text()))?;
        let classifier = handle.classifier()?;
        let (image, body_top_k) = read_image_body(request, input::parse_classify_json).await?;
        classifier
            .classify(image, query.top_k.or(body_top_k), deadline)
            .await
    })
    .await?;
    Ok(Json(ClassifyResponse {
        model: handle.name.clone(),
        model_version: handle.version().to_string(),
        predictions,
    }))
}
