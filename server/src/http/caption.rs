//! `POST /v1/models/{model}/caption`: an image in (the same forms as classify), a sentence
//! describing it out, with its words and log-probability.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::guard::Admitted;
use super::image_body::read_image_body;
use super::input::{self, CaptionJson};
use super::openapi::{ErrorBody, FileBytes, ImageUpload};
use super::request::request_timeout;
use crate::error::KilnError;
use crate::task::caption::CaptionRequestOptions;
use crate::task::run_request;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionQuery {
    beam_size: Option<usize>,
    max_tokens: Option<usize>,
}

/// One word of a caption.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptionToken {
    pub id: u32,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaptionResponse {
    model: String,
    model_version: String,
    caption: String,
    /// The caption's words with their ids, without the start and end tokens.
    tokens: Vec<CaptionToken>,
    /// Log-probability of the words and the end of the caption under the model.
    score: f32,
}

#[utoipa::path(post, path = "/v1/models/{model}/caption", tag = "Tasks",
    params(("model" = String, Path, description = "model name"),
           ("beam_size" = Option<usize>, Query, description = "hypotheses kept while searching, 1 (greedy, the default) to 16"),
           ("max_tokens" = Option<usize>, Query, description = "most words in the caption"),
           ("kiln-timeout-ms" = Option<u64>, Header, description = "deadline in milliseconds")),
    request_body(description = "a PNG, JPEG or WebP image: raw bytes, a multipart upload, or JSON", content(
        (FileBytes = "image/png"),
        (FileBytes = "image/jpeg"),
        (FileBytes = "image/webp"),
        (ImageUpload = "multipart/form-data"),
        (CaptionJson = "application/json"))),
    responses(
        (status = 200, description = "the caption", body = CaptionResponse),
        (status = 400, description = "not an image, a malformed body, or options out of range", body = ErrorBody),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 413, description = "body or image too large", body = ErrorBody),
        (status = 415, description = "unsupported content type", body = ErrorBody),
        (status = 422, description = "pixels of the wrong size", body = ErrorBody),
        (status = 429, description = "queue full", body = ErrorBody),
        (status = 504, description = "deadline passed", body = ErrorBody)))]
pub async fn caption(
    _admitted: Admitted,
    State(state): State<AppState>,
    Path(model): Path<String>,
    query: Result<Query<CaptionQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<CaptionResponse>, KilnError> {
    let handle = &state.ready_model(&model)?;
    let timeout = request_timeout(&request, state.default_timeout());
    let caption = run_request(&handle.metrics, timeout, |deadline| async move {
        let Query(query) = query.map_err(|e| KilnError::bad_input(e.body_text()))?;
        let captioner = handle.captioner()?;
        let (image, body) = read_image_body(request, input::parse_caption_json).await?;
        let options = CaptionRequestOptions {
            beam_size: query.beam_size.or(body.beam_size),
            max_tokens: query.max_tokens.or(body.max_tokens),
        };
        let mut captions = captioner.caption(vec![image], options, deadline).await?;
        Ok(captions.remove(0))
    })
    .await?;
    let words = kiln_zoo::captioning::vocabulary::CaptionVocabulary;
    Ok(Json(CaptionResponse {
        model: handle.name.clone(),
        model_version: handle.version().to_string(),
        tokens: caption
            .tokens
            .iter()
            .map(|&id| CaptionToken {
                id,
                text: words.word(id).unwrap_or_default().to_string(),
            })
            .collect(),
        caption: caption.text,
        score: caption.score,
    }))
}
