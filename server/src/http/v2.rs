//! The Open Inference Protocol (KServe V2) over HTTP: model metadata, readiness,
//! configuration and statistics, `infer` on raw tensors (JSON or binary), and the model
//! repository extension. Model routes also take `/versions/{version}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::deadline::{body_error, request_timeout};
use super::v2_codec::{DecodedInfer, HEADER_LENGTH, decode_infer, encode_infer};
use crate::deadline::within_deadline;
use crate::error::KilnError;
use crate::metrics::StatsSnapshot;
use crate::registry::ModelHandle;
use crate::v2::{describe, infer, repository};

/// A model route's path: the model and, optionally, the version.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    model: String,
    version: Option<String>,
}

impl ModelPath {
    fn resolve(&self, state: &AppState) -> Result<Arc<ModelHandle>, KilnError> {
        state.ready_model_version(&self.model, self.version.as_deref().unwrap_or(""))
    }
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "kiln",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": describe::EXTENSIONS,
    }))
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<Value>, KilnError> {
    let handle = path.resolve(&state)?;
    let (inputs, outputs) = describe::tensors(&handle);
    Ok(Json(json!({
        "name": handle.name,
        "versions": [handle.version()],
        "platform": describe::platform(&handle),
        "inputs": inputs,
        "outputs": outputs,
    })))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<StatusCode, KilnError> {
    path.resolve(&state).map(|_| StatusCode::OK)
}

/// The configuration in the shape Triton's clients read.
pub async fn model_config(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<Value>, KilnError> {
    let handle = path.resolve(&state)?;
    let config = describe::config(&handle);
    let tensor = |t: &describe::TensorMetadata| {
        json!({
            "name": t.name,
            "data_type": crate::v2::tensor::DataType::parse(t.datatype)
                .map(|d| d.config_name())
                .unwrap_or("TYPE_INVALID"),
            "dims": &t.shape[1..],
        })
    };
    let mut outputs: Vec<Value> = config.outputs.iter().map(tensor).collect();
    if let (Some(labels), Some(first)) = (&config.label_filename, outputs.first_mut()) {
        first["label_filename"] = json!(labels);
    }
    Ok(Json(json!({
        "name": config.name,
        "platform": config.platform,
        "backend": "kiln",
        "max_batch_size": config.max_batch_size,
        "input": config.inputs.iter().map(tensor).collect::<Vec<_>>(),
        "output": outputs,
        "dynamic_batching": {
            "preferred_batch_size": config.preferred_batch_sizes,
            "max_queue_delay_microseconds": config.max_queue_delay_us,
        },
    })))
}

/// Statistics of one model.
pub async fn model_stats(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<Value>, KilnError> {
    let handle = path.resolve(&state)?;
    Ok(Json(json!({ "model_stats": [stats_json(&handle)] })))
}

/// Statistics of every ready model.
pub async fn all_stats(State(state): State<AppState>) -> Json<Value> {
    let stats: Vec<Value> = state.ready_models().iter().map(|h| stats_json(h)).collect();
    Json(json!({ "model_stats": stats }))
}

fn stats_json(handle: &ModelHandle) -> Value {
    let StatsSnapshot {
        last_inference_ms,
        inference_count,
        execution_count,
        success,
        fail,
        queue,
        compute_infer,
        batches,
    } = handle.metrics.stats();
    let zero = crate::metrics::CountAndDuration::default();
    json!({
        "name": handle.name,
        "version": handle.version(),
        "last_inference": last_inference_ms,
        "inference_count": inference_count,
        "execution_count": execution_count,
        "inference_stats": {
            "success": success,
            "fail": fail,
            "queue": queue,
            "compute_input": zero,
            "compute_infer": compute_infer,
            "compute_output": zero,
        },
        "batch_stats": batches.iter().map(|b| json!({
            "batch_size": b.batch_size,
            "compute_input": zero,
            "compute_infer": b.compute_infer,
            "compute_output": zero,
        })).collect::<Vec<_>>(),
    })
}

/// `POST …/infer`: JSON tensors, or a JSON header and binary tensor data.
pub async fn infer(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
    request: Request,
) -> Result<Response, KilnError> {
    let handle = path.resolve(&state)?;
    let timeout = request_timeout(&request, state.default_timeout());
    let header_length = match request.headers().get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    KilnError::bad_input(format!("{HEADER_LENGTH} must be a number of bytes"))
                })?,
        ),
    };
    let (reply, outputs) = within_deadline(&handle, timeout, |deadline| {
        let handle = &handle;
        async move {
            let body = Bytes::from_request(request, &())
                .await
                .map_err(body_error)?;
            let DecodedInfer {
                id,
                inputs,
                outputs,
                binary,
                binary_by_default,
            } = decode_infer(&body, header_length)?;
            let outputs = infer::infer(handle, inputs, outputs, deadline).await?;
            Ok(((id, binary, binary_by_default), outputs))
        }
    })
    .await?;
    let (id, binary, binary_by_default) = reply;
    let encoded = encode_infer(
        &handle.name,
        handle.version(),
        id.as_deref(),
        &outputs,
        |i| binary.get(i).copied().unwrap_or(binary_by_default),
    );
    let mut response = encoded.body.into_response();
    let headers = response.headers_mut();
    match encoded.header_length {
        Some(n) => {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// `POST /v2/repository/index`: every model folder and its state.
pub async fn repository_index(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Vec<repository::IndexEntry>>, KilnError> {
    let request: IndexRequest = optional_json(&body)?;
    Ok(Json(repository::index(&state, request.ready)?))
}

#[derive(Debug, Default, Deserialize)]
pub struct LoadRequest {
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
}

/// `POST /v2/repository/models/{model}/load`: load or reload a model folder.
pub async fn repository_load(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<StatusCode, KilnError> {
    let request: LoadRequest = optional_json(&body)?;
    if let Some(name) = request.parameters.keys().next() {
        return Err(KilnError::bad_input(format!(
            "load parameter '{name}' is not supported: Kiln loads the model folder as it is"
        )));
    }
    repository::load(&state, &model).await?;
    Ok(StatusCode::OK)
}

/// `POST /v2/repository/models/{model}/unload`.
pub async fn repository_unload(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<StatusCode, KilnError> {
    repository::unload(&state, &model).await?;
    Ok(StatusCode::OK)
}

/// An optional JSON body: empty means the defaults.
fn optional_json<T: Default + for<'a> Deserialize<'a>>(body: &[u8]) -> Result<T, KilnError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")))
}
