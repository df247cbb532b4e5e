//! The server's one lifecycle state — loading, serving, draining — which readiness, gRPC
//! health and shutdown all read.

use std::sync::Arc;

use tokio::sync::watch;

/// Where the server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listening (live), while the model repository loads.
    Loading,
    /// Every model of the repository has been loaded or has failed to: ready.
    Serving,
    /// Shutting down: not ready, and new inference requests are refused.
    Draining,
}

/// The shared lifecycle state. Cheap to clone; it only moves forward.
#[derive(Clone)]
pub struct Lifecycle {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Loading)),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Ready for traffic: loaded, and not draining.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Serving
    }

    pub fn is_draining(&self) -> bool {
        self.phase() == Phase::Draining
    }

    /// The repository has loaded; a server already draining stays draining.
    pub fn serve(&self) {
        self.phase.send_if_modified(|phase| {
            let loading = *phase == Phase::Loading;
            if loading {
                *phase = Phase::Serving;
            }
            loading
        });
    }

    /// Shutdown has begun.
    pub fn drain(&self) {
        self.phase.send_replace(Phase::Draining);
    }

    /// Follow the phase as it changes.
    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Wait until loading is over (serving, or draining already).
    pub async fn loaded(&self) {
        let mut phase = self.watch();
        let _ = phase.wait_for(|p| *p != Phase::Loading).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_only_moves_forward() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.is_ready());
        lifecycle.serve();
        assert!(lifecycle.is_ready());
        lifecycle.drain();
        lifecycle.serve();
        assert_eq!(lifecycle.phase(), Phase::Draining);
        assert!(!lifecycle.is_ready());
    }
}
