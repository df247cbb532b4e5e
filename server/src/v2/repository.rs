//! The model repository extension: what the repository holds and in which state, and
//! loading or unloading one model while the server runs.

use std::collections::BTreeMap;

use crate::error::{ErrorKind, KilnError};
use crate::registry::ModelState;
use crate::state::AppState;

/// One model of the index.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct IndexEntry {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// READY, LOADING or UNAVAILABLE.
    pub state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Every model folder of the repository and every model the server holds, by name.
pub fn index(state: &AppState, ready_only: bool) -> Result<Vec<IndexEntry>, KilnError> {
    let folders = state
        .registry
        .repository()
        .scan()
        .map_err(|e| KilnError::new(ErrorKind::Internal, e.to_string()))?;
    let mut entries: BTreeMap<String, IndexEntry> = BTreeMap::new();
    for folder in folders {
        entries.insert(
            folder.name.clone(),
            IndexEntry {
                name: folder.name,
                version: String::new(),
                state: "UNAVAILABLE",
                reason: "unloaded".into(),
            },
        );
    }
    for (name, model) in state.registry.all() {
        let (version, state, reason) = match model {
            ModelState::Ready(handle) => (handle.version.clone(), "READY", String::new()),
            ModelState::Loading => (String::new(), "LOADING", String::new()),
            ModelState::Failed(reason) => (String::new(), "UNAVAILABLE", reason),
        };
        entries.insert(
            name.clone(),
            IndexEntry {
                name,
                version,
                state,
                reason,
            },
        );
    }
    Ok(entries
        .into_values()
        .filter(|e| !ready_only || e.state == "READY")
        .collect())
}

/// Load (or reload) the model in folder `name`. Answers once it is ready or has failed.
pub async fn load(state: &AppState, name: &str) -> Result<(), KilnError> {
    state.registry.load(name).await
}

/// Stop serving `name`: new requests get 404 at once, requests in flight finish.
pub async fn unload(state: &AppState, name: &str) -> Result<(), KilnError> {
    state.registry.unload(name).await
}
