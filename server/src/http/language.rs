//! The language-model routes: `POST /v1/models/{model}/next-word` (the likeliest next words)
//! and `POST /v1/models/{model}/generate` (a continuation, as one JSON answer or as a
//! Server-Sent Events stream of tokens).

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::Instant;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::AppState;
use super::guard::Admitted;
use super::openapi::ErrorBody;
use super::request::{read_body, request_timeout};
use crate::error::KilnError;
use crate::registry::ModelHandle;
use crate::task::language::request::{GenerateRequest, NextWordRequest, decode_generate};
use crate::task::language::{
    DeadlineScope, GeneratedToken, GenerationDeadline, GenerationStream, GenerationSummary,
    StreamItem, WordProbability,
};
use crate::task::{deadline_error, failure_reason, run_request};

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
    _admitted: Admitted,
    State(state): State<AppState>,
    Path(model): Path<String>,
    request: Request,
) -> Result<Json<NextWordResponse>, KilnError> {
    let handle = &state.ready_model(&model)?;
    let timeout = request_timeout(&request, state.default_timeout());
    let words = run_request(&handle.metrics, timeout, |deadline| async move {
        let lm = handle.language_model()?;
        let body = read_body(request).await?;
        let NextWordRequest { text, top_k } = serde_json::from_slice(&body)
            .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")))?;
        lm.next_words(&text, top_k, deadline).await
    })
    .await?;
    Ok(Json(NextWordResponse {
        model: handle.name.clone(),
        model_version: handle.version().to_string(),
        prompt_tokens: words.prompt_tokens,
        predictions: words.predictions,
    }))
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
    Admitted(in_flight): Admitted,
    State(state): State<AppState>,
    Path(model): Path<String>,
    request: Request,
) -> Response {
    let handle = match state.ready_model(&model) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let record = handle.metrics.start_request();
    let events_accepted = wants_events(request.headers());
    let timeout = request_timeout(&request, state.default_timeout());
    let limit = timeout.as_ref().copied().unwrap_or(Duration::ZERO);
    let at = Instant::now() + limit;
    let started = async {
        let timeout = timeout?;
        let lm = handle.language_model()?;
        let body = read_body(request).await?;
        let plan = decode_generate(&body, &lm.config.generation, events_accepted)?;
        Ok::<_, KilnError>((lm, plan, timeout))
    };
    let started = tokio::time::timeout_at(at, started)
        .await
        .unwrap_or_else(|_| Err(deadline_error(limit)));
    let (lm, plan, timeout) = match started {
        Ok(started) => started,
        Err(e) => {
            record.finish(Some(failure_reason(e.kind)));
            return e.into_response();
        }
    };
    let stream = plan.stream;
    let deadline = GenerationDeadline {
        at,
        timeout,
        scope: if stream {
            DeadlineScope::FirstToken
        } else {
            DeadlineScope::WholeAnswer
        },
    };
    let generation = match lm.generate(plan, record, Some(deadline), Some(in_flight)) {
        Ok(generation) => generation,
        Err(e) => return e.into_response(),
    };
    if stream {
        return event_stream(handle, generation).await;
    }
    match generation.collect().await {
        Ok(answer) => Json(GenerateResponse {
            model: handle.name.clone(),
            model_version: handle.version.clone(),
            text: answer.summary.text,
            tokens: answer.tokens,
            finish_reason: answer.summary.reason.label(),
            usage: Usage {
                prompt_tokens: answer.summary.prompt_tokens,
                completion_tokens: answer.summary.completion_tokens,
            },
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// A whole generation, answered at once.
#[derive(Debug, Serialize, ToSchema)]
pub struct GenerateResponse {
    model: String,
    model_version: String,
    text: String,
    tokens: Vec<GeneratedToken>,
    /// "length" or "stop".
    finish_reason: &'static str,
    usage: Usage,
}

#[derive(Debug, Serialize, ToSchema)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// Each token as an SSE `data:` event, then one event with the finish reason, the whole text
/// and the usage, then `data: [DONE]`; a failure mid-stream is an `error` event. The answer
/// starts once the first token is there, so a generation that cannot start in time (its
/// deadline, a full queue) gets its status code. A client that disconnects drops the
/// stream, which stops the generation.
async fn event_stream(
    handle: std::sync::Arc<ModelHandle>,
    mut generation: GenerationStream,
) -> Response {
    let first = match generation.next().await {
        Some(Ok(item)) => item,
        Some(Err(e)) => return e.into_response(),
        None => return crate::task::language::generation_stopped().into_response(),
    };
    let summary = move |s: GenerationSummary| {
        json!({
            "model": handle.name,
            "model_version": handle.version(),
            "text": s.text,
            "finish_reason": s.reason.label(),
            "usage": Usage { prompt_tokens: s.prompt_tokens, completion_tokens: s.completion_tokens },
        })
    };
    let event = move |item: Result<StreamItem, KilnError>| match item {
        Ok(StreamItem::Token(token)) => Event::default()
            .json_data(json!({ "token": token }))
            .expect("serialisable"),
        Ok(StreamItem::Finished(s)) => Event::default()
            .json_data(summary(s))
            .expect("serialisable"),
        Err(e) => Event::default()
            .event("error")
            .json_data(json!({ "error": e.for_caller().message }))
            .expect("serialisable"),
    };
    let rest = stream::unfold(generation, |mut g| async move {
        g.next().await.map(|item| (item, g))
    });
    let events = stream::once(async { Ok(first) })
        .chain(rest)
        .map(move |item| Ok::<_, Infallible>(event(item)));
    let done = stream::once(async { Ok(Event::default().data("[DONE]")) });
    Sse::new(events.chain(done))
        .keep_alive(KeepAlive::default())
        .into_response()
}
