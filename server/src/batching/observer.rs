//! The model's metrics as the batcher's observer.

use std::time::Duration;

use super::{BatchObserver, Choice};
use crate::metrics::ModelMetrics;

impl BatchObserver for ModelMetrics {
    fn dequeued(&self, waited: Duration) {
        self.record_queued(waited);
    }

    fn executed(&self, size: usize, compute: Duration) {
        self.record_batch(size, compute);
    }

    fn chose(&self, choice: Choice) {
        self.record_batching_choice(choice.batch_size, choice.queue_delay);
    }

    fn target_share(&self, share: f64) {
        self.record_target_share(share);
    }
}
