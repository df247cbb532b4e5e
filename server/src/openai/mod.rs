//! The OpenAI-compatible text API, so code written against the `openai` client runs
//! unchanged: `GET /v1/models` (and `/v1/models/{model}`) lists the language models,
//! `POST /v1/completions` continues prompts and `POST /v1/chat/completions` continues a
//! conversation ([`request::chat_prompt`] says how messages become a prompt). Answers come
//! whole or streamed as `data:` chunks ending in `data: [DONE]`; errors come in OpenAI's
//! shape. Every choice is one generation on the model's step loop, admitted, timed,
//! counted and cancelled exactly as the native `generate` route's.

mod error;
mod request;
mod response;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, BoxStream, SelectAll};
use futures_util::{StreamExt, future};
use serde_json::{Value, json};
use tokio::time::Instant;

pub use error::OpenAiError;
use request::{ChatRequest, CompletionRequest, Planned, parse};
use response::{Answer, Endpoint, unix_seconds};

use crate::auth::check_http_api_key;
use crate::batching::Permit;
use crate::error::KilnError;
use crate::http::request::{read_body, request_timeout};
use crate::registry::ModelHandle;
use crate::repository::Task;
use crate::state::AppState;
use crate::task::deadline_error;
use crate::task::language::{
    DeadlineScope, GenerationDeadline, GenerationStream, StreamItem, generation_stopped,
};

/// The OpenAI routes, behind the API keys when they are configured.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(retrieve_model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route_layer(from_fn_with_state(state.clone(), authorize))
}

/// API keys as on every other route, refused in OpenAI's error shape.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check_http_api_key(&state.settings.api_keys, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => OpenAiError::from(e).into_response(),
    }
}

fn model_object(handle: &ModelHandle) -> Value {
    json!({
        "id": handle.name,
        "object": "model",
        "created": unix_seconds(handle.loaded_at),
        "owned_by": "kiln",
    })
}

async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .ready_models()
        .iter()
        .filter(|h| h.task() == Task::LanguageModel)
        .map(|h| model_object(h))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

async fn retrieve_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    let handle = state.ready_model(&model)?;
    handle.language_model()?;
    Ok(Json(model_object(&handle)))
}

async fn completions(State(state): State<AppState>, request: Request) -> Response {
    serve(state, request, Endpoint::Completions).await
}

async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    serve(state, request, Endpoint::Chat).await
}

/// A request ready to generate: its model, plans and answer builder, and the deadline.
struct Started {
    handle: Arc<ModelHandle>,
    planned: Planned,
    answer: Answer,
    timeout: Duration,
}

async fn serve(state: AppState, request: Request, endpoint: Endpoint) -> Response {
    let in_flight = match state.admit() {
        Ok(permit) => permit,
        Err(e) => return OpenAiError::from(e).into_response(),
    };
    // The deadline covers reading the body too, as on the native routes.
    let timeout = request_timeout(&request, state.default_timeout());
    let limit = timeout.as_ref().copied().unwrap_or(Duration::ZERO);
    let at = Instant::now() + limit;
    let started = tokio::time::timeout_at(at, start(&state, request, endpoint, timeout))
        .await
        .unwrap_or_else(|_| Err(deadline_error(limit).into()));
    let Started {
        handle,
        planned,
        answer,
        timeout,
    } = match started {
        Ok(started) => started,
        Err(e) => return e.into_response(),
    };
    let scope = if planned.stream {
        DeadlineScope::FirstToken
    } else {
        DeadlineScope::WholeAnswer
    };
    let deadline = GenerationDeadline { at, timeout, scope };
    let generations = match generate(&handle, &planned, deadline) {
        Ok(generations) => generations,
        Err(e) => return OpenAiError::from(e).into_response(),
    };
    if planned.stream {
        return stream_answer(answer, generations, planned.include_usage, in_flight).await;
    }
    let collected = future::try_join_all(generations.into_iter().map(GenerationStream::collect));
    match collected.await {
        Ok(generations) => Json(answer.whole(generations)).into_response(),
        Err(e) => OpenAiError::from(e).into_response(),
    }
}

/// Read and check the body, and find its language model.
async fn start(
    state: &AppState,
    request: Request,
    endpoint: Endpoint,
    timeout: Result<Duration, KilnError>,
) -> Result<Started, OpenAiError> {
    let timeout = timeout?;
    let body = read_body(request).await?;
    let (model, planned, echoed) = match endpoint {
        Endpoint::Completions => {
            let request: CompletionRequest = parse(&body)?;
            let handle = state.ready_model(&request.model)?;
            let planned = request.plan(&handle.language_model()?.config.generation)?;
            let echoed = planned
                .plans
                .iter()
                .map(|p| request.echo.then(|| p.text.clone()))
                .collect();
            (handle, planned, echoed)
        }
        Endpoint::Chat => {
            let request: ChatRequest = parse(&body)?;
            let handle = state.ready_model(&request.model)?;
            let planned = request.plan(&handle.language_model()?.config.generation)?;
            let echoed = vec![None; planned.plans.len()];
            (handle, planned, echoed)
        }
    };
    let answer = Answer::new(
        endpoint,
        model.name.clone(),
        echoed,
        planned.n,
        planned.logprobs.is_some(),
    );
    Ok(Started {
        handle: model,
        planned,
        answer,
        timeout,
    })
}

/// Start every choice's generation; if one cannot start, those already started are dropped
/// (which cancels them) and its error is the answer.
fn generate(
    handle: &ModelHandle,
    planned: &Planned,
    deadline: GenerationDeadline,
) -> Result<Vec<GenerationStream>, KilnError> {
    let lm = handle.language_model()?;
    planned
        .plans
        .iter()
        .map(|plan| {
            let record = handle.metrics.start_request();
            lm.generate(plan.clone(), record, Some(deadline), None)
        })
        .collect()
}

/// The choices' tokens as `data:` chunks, as they come, then the usage if asked for, then
/// `data: [DONE]`. The answer starts once the first token (or a choice's end) is there, so a
/// request that cannot start in time gets its status code; a failure later is an error
/// chunk. The in-flight permit lives as long as the stream; a client that disconnects drops
/// it, which stops every choice's generation.
async fn stream_answer(
    mut answer: Answer,
    generations: Vec<GenerationStream>,
    include_usage: bool,
    in_flight: Permit,
) -> Response {
    let choices = generations
        .into_iter()
        .enumerate()
        .map(|(index, generation)| {
            stream::unfold(generation, |mut g| async move {
                g.next().await.map(|item| (item, g))
            })
            .map(move |item| (index, item))
            .boxed()
        });
    let mut merged = stream::select_all(choices);
    let first = match merged.next().await {
        Some((_, Err(e))) => return OpenAiError::from(e).into_response(),
        Some(first) => first,
        None => return OpenAiError::from(generation_stopped()).into_response(),
    };
    let mut pending: VecDeque<Event> = answer.opening().iter().map(json_event).collect();
    pending.push_back(json_event(&chunk(&mut answer, first)));
    let state = Chunks {
        answer,
        choices: merged,
        pending,
        include_usage,
        ended: false,
        _in_flight: in_flight,
    };
    let events = stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok::<_, Infallible>(event), s));
            }
            if s.ended {
                return None;
            }
            match s.choices.next().await {
                Some(item) => {
                    let chunk = chunk(&mut s.answer, item);
                    s.pending.push_back(json_event(&chunk));
                }
                None => {
                    s.ended = true;
                    if s.include_usage {
                        s.pending.push_back(json_event(&s.answer.usage_chunk()));
                    }
                    s.pending.push_back(Event::default().data("[DONE]"));
                }
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A stream in progress: the answer being built, the choices still running, and chunks
/// ready to send.
struct Chunks {
    answer: Answer,
    choices: SelectAll<BoxStream<'static, (usize, Result<StreamItem, KilnError>)>>,
    pending: VecDeque<Event>,
    include_usage: bool,
    ended: bool,
    _in_flight: Permit,
}

fn chunk(answer: &mut Answer, (index, item): (usize, Result<StreamItem, KilnError>)) -> Value {
    match item {
        Ok(StreamItem::Token(token)) => answer.token(index, token),
        Ok(StreamItem::Finished(summary)) => answer.finished(index, &summary),
        Err(e) => OpenAiError::from(e).body(),
    }
}

fn json_event(chunk: &Value) -> Event {
    Event::default().data(chunk.to_string())
}
