//! Liveness, readiness and metadata routes (KServe V2 / Open Inference Protocol shapes).

use crate::registry::TaskRunner;
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
    let classifier = match &handle.runner {
        TaskRunner::Classifier(c) => c,
        TaskRunner::LanguageModel(lm) => {
            return Ok(Json(json!({
                "name": handle.name,
                "versions": [handle.version()],
                "platform": format!("burn-{}", handle.backend),
                "task": "language-model",
                "architecture": lm.config.architecture.name(),
                "language": lm.config.language,
                "vocab_size": lm.tokenizer.vocab_size(),
                "context_length": lm.context_length(),
                "inputs": [{ "name": "text", "datatype": "BYTES", "shape": [-1] }],
                "outputs": [{
                    "name": "log_probabilities",
                    "datatype": "FP32",
                    "shape": [-1, lm.tokenizer.vocab_size() as i64],
                }],
            })));
        }
    };
    let spec = classifier.input_spec();
    Ok(Json(json!({
        "name": handle.name,
        "versions": [handle.version()],
        "platform": format!("burn-{}", handle.backend),
        "task": "classify",
        "inputs": [{
            "name": "input",
            "datatype": "FP32",
            "shape": [-1, spec.channels as i64, spec.height as i64, spec.width as i64],
        }],
        "outputs": [{
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [-1, classifier.labels.len() as i64],
        }],
    })))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<StatusCode, KilnError> {
    state.ready_model(&model).map(|_| StatusCode::OK)
}
