//! Liveness, readiness and metadata routes (KServe V2 / Open Inference Protocol shapes).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::error::KilnError;

pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "kiln",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, KilnError> {
    let handle = state.ready_model(&model)?;
    let spec = handle.input_spec();
    Ok(Json(json!({
        "name": handle.name,
        "versions": [handle.version()],
        "platform": format!("burn-{}", handle.backend),
        "inputs": [{
            "name": "input",
            "datatype": "FP32",
            "shape": [-1, spec.channels as i64, spec.height as i64, spec.width as i64],
        }],
        "outputs": [{
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [-1, handle.labels.len() as i64],
        }],
    })))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<StatusCode, KilnError> {
    state.ready_model(&model).map(|_| StatusCode::OK)
}
