//! The Open Inference Protocol (KServe V2) over HTTP: model metadata, readiness,
//! configuration and statistics, `infer` on raw tensors (JSON or binary), and the model
//! repository extension. Model routes also take `/versions/{version}`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::guard::Admitted;
use super::openapi::ErrorBody;
use super::request::{read_body, request_timeout};
use super::v2_codec::{
    DecodedInfer, HEADER_LENGTH, InferRequestJson, InferResponseJson, decode_infer, encode_infer,
};
use crate::error::KilnError;
use crate::metrics::{CountAndDuration, StatsSnapshot};
use crate::registry::ModelHandle;
use crate::task::run_request;
use crate::v2::describe::{self, LatencyTargetView, StepTargetView, TensorMetadata};
use crate::v2::repository::{self, IndexEntry};

const TAG: &str = "Open Inference Protocol (KServe V2)";

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

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    extensions: Vec<&'static str>,
}

#[utoipa::path(get, path = "/v2", tag = TAG, responses(
    (status = 200, description = "server name, version and protocol extensions", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "kiln",
        version: env!("CARGO_PKG_VERSION"),
        extensions: describe::EXTENSIONS.to_vec(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    name: String,
    versions: Vec<String>,
    platform: String,
    inputs: Vec<TensorMetadata>,
    outputs: Vec<TensorMetadata>,
}

#[utoipa::path(get, path = "/v2/models/{model}", tag = TAG,
    params(("model" = String, Path, description = "model name")),
    responses(
        (status = 200, description = "the model's tensors", body = ModelMetadata),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 503, description = "still loading or failed to load", body = ErrorBody)))]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<ModelMetadata>, KilnError> {
    let handle = path.resolve(&state)?;
    let (inputs, outputs) = describe::tensors(&handle);
    Ok(Json(ModelMetadata {
        name: handle.name.clone(),
        versions: vec![handle.version.clone()],
        platform: describe::platform(&handle),
        inputs,
        outputs,
    }))
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = TAG,
    params(("model" = String, Path, description = "model name"),
           ("version" = String, Path, description = "model version")),
    responses(
        (status = 200, description = "the model's tensors", body = ModelMetadata),
        (status = 404, description = "unknown model or version", body = ErrorBody)))]
pub async fn version_metadata(
    state: State<AppState>,
    path: Path<ModelPath>,
) -> Result<Json<ModelMetadata>, KilnError> {
    model_metadata(state, path).await
}

#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = TAG,
    params(("model" = String, Path, description = "model name")),
    responses(
        (status = 200, description = "the model takes requests"),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 503, description = "still loading or failed to load", body = ErrorBody)))]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<StatusCode, KilnError> {
    path.resolve(&state).map(|_| StatusCode::OK)
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = TAG,
    params(("model" = String, Path, description = "model name"),
           ("version" = String, Path, description = "model version")),
    responses(
        (status = 200, description = "this version takes requests"),
        (status = 404, description = "unknown model or version", body = ErrorBody)))]
pub async fn version_ready(
    state: State<AppState>,
    path: Path<ModelPath>,
) -> Result<StatusCode, KilnError> {
    model_ready(state, path).await
}

/// A tensor of the configuration, dimensions without the batch dimension.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigTensor {
    name: &'static str,
    /// `TYPE_FP32`, `TYPE_STRING`, ...
    data_type: &'static str,
    dims: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label_filename: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DynamicBatching {
    preferred_batch_size: Vec<usize>,
    max_queue_delay_microseconds: u64,
}

/// The configuration in the shape Triton's clients read.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelConfigJson {
    name: String,
    platform: String,
    backend: &'static str,
    max_batch_size: usize,
    input: Vec<ConfigTensor>,
    output: Vec<ConfigTensor>,
    dynamic_batching: DynamicBatching,
    /// Kiln's own: the latency target and the batcher's current choice under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_target: Option<LatencyTargetView>,
    /// Kiln's own: the step target of generation or captioning, and the width chosen for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    step_target: Option<StepTargetView>,
}

#[utoipa::path(get, path = "/v2/models/{model}/config", tag = TAG,
    params(("model" = String, Path, description = "model name")),
    responses(
        (status = 200, description = "batching, tensors and labels", body = ModelConfigJson),
        (status = 404, description = "unknown model", body = ErrorBody)))]
pub async fn model_config(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<ModelConfigJson>, KilnError> {
    let handle = path.resolve(&state)?;
    let config = describe::config(&handle);
    let tensor = |t: &TensorMetadata, labels: Option<String>| ConfigTensor {
        name: t.name,
        data_type: t.datatype.config_name(),
        dims: t.shape[1..].to_vec(),
        label_filename: labels,
    };
    Ok(Json(ModelConfigJson {
        name: config.name,
        platform: config.platform,
        backend: "kiln",
        max_batch_size: config.max_batch_size,
        input: config.inputs.iter().map(|t| tensor(t, None)).collect(),
        output: config
            .outputs
            .iter()
            .map(|t| tensor(t, config.label_filename.clone()))
            .collect(),
        dynamic_batching: DynamicBatching {
            preferred_batch_size: config.preferred_batch_sizes,
            max_queue_delay_microseconds: config.max_queue_delay_us,
        },
        latency_target: config.latency_target,
        step_target: config.step_target,
    }))
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/config", tag = TAG,
    params(("model" = String, Path, description = "model name"),
           ("version" = String, Path, description = "model version")),
    responses(
        (status = 200, description = "batching, tensors and labels", body = ModelConfigJson),
        (status = 404, description = "unknown model or version", body = ErrorBody)))]
pub async fn version_config(
    state: State<AppState>,
    path: Path<ModelPath>,
) -> Result<Json<ModelConfigJson>, KilnError> {
    model_config(state, path).await
}

/// Counts and total nanoseconds, per kind of work.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferenceStatsJson {
    success: CountAndDuration,
    fail: CountAndDuration,
    queue: CountAndDuration,
    compute_input: CountAndDuration,
    compute_infer: CountAndDuration,
    compute_output: CountAndDuration,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchStatsJson {
    batch_size: u64,
    compute_input: CountAndDuration,
    compute_infer: CountAndDuration,
    compute_output: CountAndDuration,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelStatsJson {
    name: String,
    version: String,
    /// Milliseconds since the Unix epoch; 0 before the first inference.
    last_inference: u64,
    inference_count: u64,
    execution_count: u64,
    inference_stats: InferenceStatsJson,
    batch_stats: Vec<BatchStatsJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    model_stats: Vec<ModelStatsJson>,
}

#[utoipa::path(get, path = "/v2/models/{model}/stats", tag = TAG,
    params(("model" = String, Path, description = "model name")),
    responses(
        (status = 200, description = "the model's inference statistics", body = StatsResponse),
        (status = 404, description = "unknown model", body = ErrorBody)))]
pub async fn model_stats(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<StatsResponse>, KilnError> {
    let handle = path.resolve(&state)?;
    Ok(Json(StatsResponse {
        model_stats: vec![stats_json(&handle)],
    }))
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/stats", tag = TAG,
    params(("model" = String, Path, description = "model name"),
           ("version" = String, Path, description = "model version")),
    responses(
        (status = 200, description = "this version's inference statistics", body = StatsResponse),
        (status = 404, description = "unknown model or version", body = ErrorBody)))]
pub async fn version_stats(
    state: State<AppState>,
    path: Path<ModelPath>,
) -> Result<Json<StatsResponse>, KilnError> {
    model_stats(state, path).await
}

#[utoipa::path(get, path = "/v2/models/stats", tag = TAG, responses(
    (status = 200, description = "inference statistics of every ready model", body = StatsResponse)))]
pub async fn all_stats(State(state): State<AppState>) -> Json<StatsResponse> {
    Json(StatsResponse {
        model_stats: state.ready_models().iter().map(|h| stats_json(h)).collect(),
    })
}

fn stats_json(handle: &ModelHandle) -> ModelStatsJson {
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
    // Decoding and encoding happen outside the batcher and are not timed apart.
    let none = CountAndDuration::default();
    ModelStatsJson {
        name: handle.name.clone(),
        version: handle.version.clone(),
        last_inference: last_inference_ms,
        inference_count,
        execution_count,
        inference_stats: InferenceStatsJson {
            success,
            fail,
            queue,
            compute_input: none,
            compute_infer,
            compute_output: none,
        },
        batch_stats: batches
            .into_iter()
            .map(|b| BatchStatsJson {
                batch_size: b.batch_size,
                compute_input: none,
                compute_infer: b.compute_infer,
                compute_output: none,
            })
            .collect(),
    }
}

#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = TAG,
    params(("model" = String, Path, description = "model name"),
           ("inference-header-content-length" = Option<usize>, Header,
            description = "length of the JSON header when binary tensor data follows it"),
           ("kiln-timeout-ms" = Option<u64>, Header, description = "deadline in milliseconds")),
    request_body(content = InferRequestJson, description = "JSON tensors, or a JSON header and binary tensor data"),
    responses(
        (status = 200, description = "the outputs (binary data after the JSON header when asked for)", body = InferResponseJson),
        (status = 400, description = "malformed request", body = ErrorBody),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 422, description = "tensors of the wrong shape or type for the model", body = ErrorBody),
        (status = 429, description = "queue full", body = ErrorBody),
        (status = 504, description = "deadline passed", body = ErrorBody)))]
pub async fn infer(
    _admitted: Admitted,
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
    let (reply, outputs) = run_request(&handle.metrics, timeout, |deadline| {
        let handle = &handle;
        async move {
            let body = read_body(request).await?;
            let DecodedInfer {
                id,
                inputs,
                outputs,
                binary,
                binary_by_default,
                timeout,
            } = decode_infer(&body, header_length)?;
            let outputs =
                crate::v2::infer::infer(handle, inputs, outputs, deadline, timeout).await?;
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

#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = TAG,
    params(("model" = String, Path, description = "model name"),
           ("version" = String, Path, description = "model version")),
    request_body(content = InferRequestJson, description = "as for /v2/models/{model}/infer"),
    responses(
        (status = 200, description = "the outputs", body = InferResponseJson),
        (status = 404, description = "unknown model or version", body = ErrorBody)))]
pub async fn version_infer(
    admitted: Admitted,
    state: State<AppState>,
    path: Path<ModelPath>,
    request: Request,
) -> Result<Response, KilnError> {
    infer(admitted, state, path, request).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct IndexRequest {
    /// Only models that are ready.
    #[serde(default)]
    ready: bool,
}

#[utoipa::path(post, path = "/v2/repository/index", tag = TAG,
    request_body(content = Option<IndexRequest>, description = "optional; empty lists every model"),
    responses((status = 200, description = "every model folder and its state", body = Vec<IndexEntry>)))]
pub async fn repository_index(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Vec<IndexEntry>>, KilnError> {
    let request: IndexRequest = optional_json(&body)?;
    Ok(Json(repository::index(&state, request.ready)?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LoadRequest {
    /// Must be empty: Kiln loads the model folder as it is.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: serde_json::Map<String, Value>,
}

#[utoipa::path(post, path = "/v2/repository/models/{model}/load", tag = TAG,
    params(("model" = String, Path, description = "model folder name")),
    request_body(content = Option<LoadRequest>, description = "optional"),
    responses(
        (status = 200, description = "loaded (or reloaded) and ready"),
        (status = 400, description = "the folder failed to load; a model already serving keeps serving", body = ErrorBody),
        (status = 404, description = "no such folder", body = ErrorBody)))]
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

#[utoipa::path(post, path = "/v2/repository/models/{model}/unload", tag = TAG,
    params(("model" = String, Path, description = "model name")),
    responses(
        (status = 200, description = "unloaded; requests in flight finish"),
        (status = 404, description = "unknown model", body = ErrorBody)))]
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
