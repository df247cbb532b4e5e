//! The language-model routes: `POST /v1/models/{model}/next-word` (the likeliest next words)
//! and `POST /v1/models/{model}/generate` (a continuation, as one JSON answer or as a
//! Server-Sent Events stream of tokens).

use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::AppState;
use super::deadline::{body_error, request_timeout};
use super::openapi::ErrorBody;
use crate::deadline::{deadline_error, failure_reason, within_deadline};
use crate::error::{ErrorKind, KilnError};
use crate::generation::GenerationEvent;
use crate::metrics::{FailureReason, RequestRecord};
use crate::registry::{ModelHandle, WordProbability};
use crate::tasks;
use crate::tasks::text_input::{
    GenerateRequest, NextWordRequest, decode_generate, decode_next_word,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct NextWordResponse {
    model: String,
    model_version: String,
    prompt_tokens: usize,
    predictions: Vec<WordProbability>,
}

#[utoipa::path(post, path = "/v1/models/{model}/next-word", tag = "Tasks",
    params(("model" = String, Path, description = "language model name"),
           ("kiln-timeout-ms" = Option<u64>, Header, description = "deadline in milliseconds")),
    request_body = NextWordRequest,
    responses(
        (status = 200, description = "the likeliest next words, most likely first", body = NextWordResponse),
        (status = 400, description = "malformed body, or not a language model", body = ErrorBody),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 422, description = "top_k or prompt length out of range", body = ErrorBody),
        (status = 429, description = "queue full", body = ErrorBody),
        (status = 504, description = "deadline passed", body = ErrorBody)))]
pub async fn next_word(
    State(state): State<AppState>,
    Path(model): Path<String>,
    request: Request,
) -> Result<Json<NextWordResponse>, KilnError> {
    let handle = &state.ready_model(&model)?;
    let timeout = request_timeout(&request, state.default_timeout());
    let (prompt_tokens, predictions) = within_deadline(handle, timeout, |deadline| async move {
        let lm = handle.language_model()?;
        let body = read_body(request).await?;
        let (text, k) = decode_next_word(&body)?;
        tasks::next_words(lm, &text, k, deadline).await
    })
    .await?;
    Ok(Json(NextWordResponse {
        model: handle.name.clone(),
        model_version: handle.version().to_string(),
        prompt_tokens,
        predictions,
    }))
}

async fn read_body(request: Request) -> Result<Bytes, KilnError> {
    <Bytes as axum::extract::FromRequest<()>>::from_request(request, &())
        .await
        .map_err(|e: BytesRejection| body_error(e))
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

#[utoipa::path(post, path = "/v1/models/{model}/generate", tag = "Tasks",
    params(("model" = String, Path, description = "language model name"),
           ("kiln-timeout-ms" = Option<u64>, Header, description = "deadline in milliseconds for the whole answer (for a stream: until it starts)")),
    request_body = GenerateRequest,
    responses(
        (status = 200, description = "the continuation; with `stream` (or `Accept: text/event-stream`) a Server-Sent Events stream of `{\"token\": …}` events, a summary event and `[DONE]`",
            content((GenerateResponse = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "malformed body, or not a language model", body = ErrorBody),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 422, description = "settings or prompt length out of range", body = ErrorBody),
        (status = 429, description = "too many generations queued", body = ErrorBody),
        (status = 504, description = "deadline passed", body = ErrorBody)))]
pub async fn generate(
    State(state): State<AppState>,
    Path(model): Path<String>,
    request: Request,
) -> Response {
    let handle = match state.ready_model(&model) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let record = handle.metrics.start_request();
    let timeout = match request_timeout(&request, state.default_timeout()) {
        Ok(t) => t,
        Err(e) => return fail(record, e),
    };
    let deadline = Instant::now() + timeout;
    let events_accepted = wants_events(request.headers());
    let started = async {
        let lm = handle.language_model()?;
        let body = read_body(request).await?;
        let plan = decode_generate(&body, &lm.config.generation, events_accepted)?;
        let stream = plan.stream;
        let receiver = tasks::start_generation(lm, plan)?;
        Ok::<_, KilnError>((stream, receiver))
    };
    let (stream, receiver) = match tokio::time::timeout_at(deadline, started).await {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => return fail(record, e),
        Err(_) => return fail(record, deadline_error(timeout)),
    };
    if stream {
        return event_stream(handle, record, receiver).into_response();
    }
    match tokio::time::timeout_at(deadline, collect(receiver)).await {
        Ok(Ok(answer)) => {
            record.finish(None);
            Json(GenerateResponse {
                model: handle.name.clone(),
                model_version: handle.version.clone(),
                text: answer.text,
                tokens: answer.tokens,
                finish_reason: answer.finish_reason,
                usage: answer.usage,
            })
            .into_response()
        }
        Ok(Err(e)) => fail(record, e),
        // Dropping the receiver tells the loop to stop this generation.
        Err(_) => fail(record, deadline_error(timeout)),
    }
}

fn fail(record: RequestRecord, error: KilnError) -> Response {
    record.finish(Some(failure_reason(error.kind)));
    error.into_response()
}

/// A whole generation, answered at once.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerateResponse {
    model: String,
    model_version: String,
    text: String,
    tokens: Vec<TokenOut>,
    /// "length" or "stop".
    finish_reason: &'static str,
    usage: Usage,
}

#[derive(Debug, Serialize, ToSchema)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
struct TokenOut {
    id: u32,
    text: String,
    logprob: f32,
}

struct Answer {
    text: String,
    tokens: Vec<TokenOut>,
    finish_reason: &'static str,
    usage: Usage,
}

async fn collect(mut receiver: UnboundedReceiver<GenerationEvent>) -> Result<Answer, KilnError> {
    let mut tokens = Vec::new();
    while let Some(event) = receiver.recv().await {
        match event {
            GenerationEvent::Token { id, text, logprob } => {
                tokens.push(TokenOut { id, text, logprob })
            }
            GenerationEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
                text,
            } => {
                return Ok(Answer {
                    text,
                    tokens,
                    finish_reason: reason.label(),
                    usage: Usage {
                        prompt_tokens,
                        completion_tokens,
                    },
                });
            }
            GenerationEvent::Failed(message) => {
                return Err(KilnError::new(ErrorKind::Internal, message));
            }
        }
    }
    Err(tasks::generation_stopped())
}

/// Each token as an SSE `data:` event, then one event with the finish reason, the whole text
/// and the usage, then `data: [DONE]`. The request counts as finished when the stream ends;
/// a client that disconnects drops the stream, which stops the generation.
fn event_stream(
    handle: std::sync::Arc<ModelHandle>,
    record: RequestRecord,
    receiver: UnboundedReceiver<GenerationEvent>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct Progress {
        receiver: UnboundedReceiver<GenerationEvent>,
        record: Option<RequestRecord>,
        done: bool,
        handle: std::sync::Arc<ModelHandle>,
    }
    let progress = Progress {
        receiver,
        record: Some(record),
        done: false,
        handle,
    };
    let events = stream::unfold(progress, |mut p| async move {
        if p.done {
            return None;
        }
        let event = match p.receiver.recv().await {
            Some(GenerationEvent::Token { id, text, logprob }) => Event::default()
                .json_data(json!({ "token": TokenOut { id, text, logprob } }))
                .expect("serialisable"),
            Some(GenerationEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
                text,
            }) => {
                if let Some(r) = p.record.take() {
                    r.finish(None);
                }
                p.done = true;
                Event::default()
                    .json_data(json!({
                        "model": p.handle.name,
                        "model_version": p.handle.version(),
                        "text": text,
                        "finish_reason": reason.label(),
                        "usage": Usage { prompt_tokens, completion_tokens },
                    }))
                    .expect("serialisable")
            }
            failed => {
                let message = match failed {
                    Some(GenerationEvent::Failed(message)) => message,
                    _ => "the model stopped generating".to_string(),
                };
                if let Some(r) = p.record.take() {
                    r.finish(Some(FailureReason::Backend));
                }
                p.done = true;
                Event::default()
                    .event("error")
                    .json_data(json!({ "error": message }))
                    .expect("serialisable")
            }
        };
        Some((Ok(event), p))
    });
    let done = stream::once(async { Ok(Event::default().data("[DONE]")) });
    Sse::new(futures_util::StreamExt::chain(events, done)).keep_alive(KeepAlive::default())
}
