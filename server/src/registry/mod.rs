//! The models a running server knows, by name: each one's state (loading, ready or failed)
//! and, once ready, the handle requests go through; loading and unloading them, one change
//! at a time; and the server's [`Lifecycle`].
//!
//! Loads and unloads — at start-up or asked for through the repository extension — take
//! turns. A request to load a model that a load begun after the request has since finished
//! (the start-up's, or another request's) is answered by that load instead of building the
//! model again; the start-up load skips a model that was unloaded or loaded on request
//! while it waited.

mod lifecycle;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kiln_zoo::BackendKind;
use tokio::sync::Mutex;

pub use lifecycle::{Lifecycle, Phase};

use crate::error::{ErrorKind, KilnError};
use crate::metrics::{Metrics, ModelMetrics};
use crate::placement::Placement;
use crate::repository::{ConfigFileError, ModelConfig, ModelEntry, ModelRepository, Task};
use crate::task::caption::{self, CaptionerRunner};
use crate::task::classify::{self, ClassifierRunner};
use crate::task::language::{self, LanguageModelRunner};
use crate::task::{LoadContext, LoadError, Loaded};

/// Where a model of the repository stands.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ModelHandle>),
    Failed(String),
}

/// A loaded model: its name, backend and metrics, and what runs its task.
pub struct ModelHandle {
    pub name: String,
    pub version: String,
    pub backend: BackendKind,
    pub metrics: Arc<ModelMetrics>,
    pub runner: TaskRunner,
    /// When the model became ready (OpenAI's `created`).
    pub loaded_at: std::time::SystemTime,
}

/// The machinery behind one task.
pub enum TaskRunner {
    Classifier(ClassifierRunner),
    LanguageModel(LanguageModelRunner),
    Captioner(CaptionerRunner),
}

impl ModelHandle {
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn task(&self) -> Task {
        match self.runner {
            TaskRunner::Classifier(_) => Task::Classify,
            TaskRunner::LanguageModel(_) => Task::LanguageModel,
            TaskRunner::Captioner(_) => Task::Caption,
        }
    }

    /// The classifier behind this model, or the error for a request that needs one.
    pub fn classifier(&self) -> Result<&ClassifierRunner, KilnError> {
        match &self.runner {
            TaskRunner::Classifier(c) => Ok(c),
            _ => Err(self.wrong_task(Task::Classify)),
        }
    }

    /// The language model behind this model, or the error for a request that needs one.
    pub fn language_model(&self) -> Result<&LanguageModelRunner, KilnError> {
        match &self.runner {
            TaskRunner::LanguageModel(l) => Ok(l),
            _ => Err(self.wrong_task(Task::LanguageModel)),
        }
    }

    /// The captioner behind this model, or the error for a request that needs one.
    pub fn captioner(&self) -> Result<&CaptionerRunner, KilnError> {
        match &self.runner {
            TaskRunner::Captioner(c) => Ok(c),
            _ => Err(self.wrong_task(Task::Caption)),
        }
    }

    fn wrong_task(&self, wanted: Task) -> KilnError {
        KilnError::new(
            ErrorKind::BadInput,
            format!(
                "model '{}' is a {} model, not a {} model",
                self.name,
                self.task().name(),
                wanted.name()
            ),
        )
    }
}

/// The folders start-up is to load, as [`ModelRegistry::begin_startup`] marked them.
pub struct Startup {
    entries: Vec<ModelEntry>,
    /// The number of the marking.
    change: u64,
}

/// A model's state and the change that set it.
#[derive(Clone)]
struct Slot {
    state: ModelState,
    /// Number of the load (or the start-up's marking) that set `state`; numbers grow.
    change: u64,
}

/// Every model of the repository, by name.
pub struct ModelRegistry {
    models: RwLock<BTreeMap<String, Slot>>,
    /// Held while a model is loaded or unloaded, so those happen one at a time.
    changes: Mutex<()>,
    next_change: AtomicU64,
    repository: ModelRepository,
    placement: Placement,
    metrics: Arc<Metrics>,
}

impl ModelRegistry {
    pub fn new(repository: ModelRepository, placement: Placement, metrics: Arc<Metrics>) -> Self {
        Self {
            models: RwLock::new(BTreeMap::new()),
            changes: Mutex::new(()),
            next_change: AtomicU64::new(1),
            repository,
            placement,
            metrics,
        }
    }

    pub fn repository(&self) -> &ModelRepository {
        &self.repository
    }

    pub fn get(&self, name: &str) -> Option<ModelState> {
        self.read().get(name).map(|slot| slot.state.clone())
    }

    /// Names and states, sorted by name.
    pub fn all(&self) -> Vec<(String, ModelState)> {
        self.read()
            .iter()
            .map(|(n, s)| (n.clone(), s.state.clone()))
            .collect()
    }

    /// The named model if it can take requests and serves `version` (any, when empty),
    /// else the error to answer with.
    pub fn ready(&self, name: &str, version: &str) -> Result<Arc<ModelHandle>, KilnError> {
        let handle = match self.get(name) {
            Some(ModelState::Ready(handle)) => handle,
            Some(ModelState::Loading) => {
                return Err(KilnError::new(
                    ErrorKind::NotReady,
                    format!("model '{name}' is still loading"),
                ));
            }
            Some(ModelState::Failed(_)) => {
                return Err(KilnError::new(
                    ErrorKind::NotReady,
                    format!("model '{name}' failed to load; see the server log"),
                ));
            }
            None => return Err(KilnError::unknown_model(name)),
        };
        if !version.is_empty() && version != handle.version {
            return Err(KilnError::new(
                ErrorKind::NotFound,
                format!(
                    "model '{name}' has no version '{version}'; it serves version '{}'",
                    handle.version
                ),
            ));
        }
        Ok(handle)
    }

    /// Every model that can take requests, by name.
    pub fn ready_models(&self) -> Vec<Arc<ModelHandle>> {
        self.read()
            .values()
            .filter_map(|slot| match &slot.state {
                ModelState::Ready(handle) => Some(handle.clone()),
                _ => None,
            })
            .collect()
    }

    /// Mark every folder of the repository as loading and return them, for
    /// [`load_startup`](Self::load_startup). Marked at once, so a load or unload asked
    /// for from then on is ordered with the start-up's.
    pub fn begin_startup(&self) -> Startup {
        let entries = match self.repository.scan() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!("{e}");
                Vec::new()
            }
        };
        if entries.is_empty() {
            tracing::warn!(repository = %self.repository.root().display(), "no models found");
        }
        let change = self.next_change.fetch_add(1, Ordering::AcqRel);
        let mut models = self.write();
        for entry in &entries {
            models.insert(
                entry.name.clone(),
                Slot {
                    state: ModelState::Loading,
                    change,
                },
            );
        }
        Startup { entries, change }
    }

    /// Load the folders [`begin_startup`](Self::begin_startup) marked, one after another,
    /// skipping those unloaded or loaded on request meanwhile. A failure is logged and shown
    /// in the repository index; the others still load.
    pub async fn load_startup(&self, startup: Startup) {
        for entry in startup.entries {
            let _one_at_a_time = self.changes.lock().await;
            let still_marked = self.read().get(&entry.name).is_some_and(|slot| {
                slot.change == startup.change && matches!(slot.state, ModelState::Loading)
            });
            if still_marked {
                let _ = self.load_locked(entry).await;
            }
        }
    }

    /// Load (or reload) the folder `name`; answers once it is ready or has failed. A model
    /// already serving keeps serving until its replacement is ready, and if that fails.
    pub async fn load(&self, name: &str) -> Result<(), KilnError> {
        // Loads begun after this point (or the one under way for a loading model) answer
        // this request too.
        let asked = match self.read().get(name) {
            Some(slot) if matches!(slot.state, ModelState::Loading) => slot.change - 1,
            _ => self.next_change.fetch_add(1, Ordering::AcqRel),
        };
        let _one_at_a_time = self.changes.lock().await;
        if let Some(slot) = self.read().get(name).filter(|s| s.change > asked) {
            match &slot.state {
                ModelState::Ready(_) => return Ok(()),
                ModelState::Failed(reason) => return Err(load_failed(name, reason)),
                ModelState::Loading => {}
            }
        }
        let entry = self
            .repository
            .scan()
            .map_err(|e| KilnError::new(ErrorKind::Internal, e.to_string()))?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| {
                KilnError::new(
                    ErrorKind::NotFound,
                    format!("the model repository has no folder '{name}' with a model.toml"),
                )
            })?;
        self.load_locked(entry)
            .await
            .map_err(|reason| load_failed(name, &reason.to_string()))
    }

    /// Stop serving `name`: new requests get 404 at once, requests in flight finish.
    pub async fn unload(&self, name: &str) -> Result<(), KilnError> {
        let _one_at_a_time = self.changes.lock().await;
        let removed = self.write().remove(name).is_some();
        if !removed
            && !self
                .repository
                .scan()
                .map_err(|e| KilnError::new(ErrorKind::Internal, e.to_string()))?
                .iter()
                .any(|e| e.name == name)
        {
            return Err(KilnError::unknown_model(name));
        }
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Load one folder on a blocking thread and put it in the registry; the caller holds
    /// `changes`.
    async fn load_locked(&self, entry: ModelEntry) -> Result<(), ModelLoadError> {
        let name = entry.name.clone();
        let change = self.next_change.fetch_add(1, Ordering::AcqRel);
        let serving = matches!(self.get(&name), Some(ModelState::Ready(_)));
        if !serving {
            self.set(&name, ModelState::Loading, change);
        }
        let placement = self.placement;
        let metrics = self.metrics.clone();
        let loaded = on_loader_thread(&name, move || load_model(&entry, &placement, &metrics))
            .await
            .unwrap_or_else(|crash| Err(ModelLoadError::Crashed(crash)));
        match loaded {
            Ok(handle) => {
                let backend = handle.backend;
                self.set(&name, ModelState::Ready(Arc::new(handle)), change);
                // Logged once requests can reach it: tests and operators act on this line.
                tracing::info!(model = %name, %backend, "model ready");
                Ok(())
            }
            Err(reason) => {
                tracing::error!(model = %name, %reason, "model failed to load");
                if !serving {
                    self.set(&name, ModelState::Failed(reason.to_string()), change);
                }
                Err(reason)
            }
        }
    }

    fn set(&self, name: &str, state: ModelState, change: u64) {
        self.write()
            .insert(name.to_string(), Slot { state, change });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        self.models.read().expect("registry lock")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Slot>> {
        self.models.write().expect("registry lock")
    }
}

/// Why a folder of the repository could not be served.
#[derive(Debug, thiserror::Error)]
enum ModelLoadError {
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the loader crashed: {0}")]
    Crashed(String),
}

/// Stack of a loader thread. Loading walks Burn's derived module code (`Module::map` over the
/// whole network), whose frames for a large network such as Inception v3 outgrow the 2 MiB
/// of a runtime thread in unoptimised builds.
const LOADER_STACK_BYTES: usize = 64 << 20;

/// Run `load` on a thread of its own with room on its stack, inside the runtime (a model's
/// batcher starts its tasks as it loads); a panic comes back as its message.
async fn on_loader_thread<T: Send + 'static>(
    model: &str,
    load: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (done, result) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(format!("kiln-load-{model}"))
        .stack_size(LOADER_STACK_BYTES)
        .spawn(move || {
            let _runtime = runtime.enter();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                .map_err(|panic| crate::batching::panic_message(&panic));
            let _ = done.send(outcome);
        })
        .map_err(|e| format!("cannot start a loader thread: {e}"))?;
    result
        .await
        .unwrap_or_else(|_| Err("the loader thread ended without an answer".into()))
}

fn load_failed(name: &str, reason: &str) -> KilnError {
    KilnError::bad_input(format!("failed to load '{name}': {reason}"))
}

/// Load a model folder and start what runs its task. Blocking: call it off the async
/// workers, inside a tokio runtime context.
fn load_model(
    entry: &ModelEntry,
    placement: &Placement,
    metrics: &Metrics,
) -> Result<ModelHandle, ModelLoadError> {
    let context = LoadContext {
        name: &entry.name,
        dir: &entry.dir,
        placement,
        metrics,
    };
    let config = entry.config.clone()?;
    let (version, loaded) = match config {
        ModelConfig::Classify(c) => (
            c.version.clone(),
            runner(classify::load(&context, c)?, TaskRunner::Classifier),
        ),
        ModelConfig::LanguageModel(c) => (
            c.version.clone(),
            runner(language::load(&context, c)?, TaskRunner::LanguageModel),
        ),
        ModelConfig::Caption(c) => (
            c.version.clone(),
            runner(caption::load(&context, c)?, TaskRunner::Captioner),
        ),
    };
    let (backend, metrics, runner) = loaded;
    Ok(ModelHandle {
        name: entry.name.clone(),
        version,
        backend,
        metrics,
        runner,
        loaded_at: std::time::SystemTime::now(),
    })
}

fn runner<R>(
    loaded: Loaded<R>,
    wrap: fn(R) -> TaskRunner,
) -> (BackendKind, Arc<ModelMetrics>, TaskRunner) {
    (loaded.backend, loaded.metrics, wrap(loaded.runner))
}
