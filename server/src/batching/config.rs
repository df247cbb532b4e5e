//! The `[batching]` section of a model's `model.toml`, and the policy it gives the batcher.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BatchPolicy;

/// How requests are grouped into batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Largest batch handed to the model.
    pub max_batch_size: usize,
    /// Longest a request waits for others to join its batch, counted from its arrival.
    pub max_queue_delay_us: u64,
    /// Sizes at which a batch is dispatched at once, without waiting for the delay.
    #[serde(default)]
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests queued or running beyond which new ones are refused (HTTP 429).
    pub max_queue_size: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_queue_delay_us: 2_000,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1_024,
        }
    }
}

/// A `[batching]` section that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchingConfigError {
    #[error("max_batch_size, max_queue_size and instances must be positive")]
    NotPositive,
    #[error("preferred batch size {0} is not within 1..=max_batch_size")]
    PreferredSize(usize),
}

impl BatchingConfig {
    pub fn max_queue_delay(&self) -> Duration {
        Duration::from_micros(self.max_queue_delay_us)
    }

    /// What the batcher needs to know.
    pub fn policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_batch_size: self.max_batch_size,
            max_queue_delay: self.max_queue_delay(),
            preferred_batch_sizes: self.preferred_batch_sizes.clone(),
        }
    }

    /// Lower the largest batch to `max` (a device memory limit), dropping preferred sizes
    /// above it.
    pub fn cap_max_batch_size(&mut self, max: usize) {
        self.max_batch_size = self.max_batch_size.min(max);
        let cap = self.max_batch_size;
        self.preferred_batch_sizes.retain(|&p| p <= cap);
    }

    /// Check the section for a model with `instances` executor threads.
    pub fn validate(&self, instances: usize) -> Result<(), BatchingConfigError> {
        if self.max_batch_size == 0 || self.max_queue_size == 0 || instances == 0 {
            return Err(BatchingConfigError::NotPositive);
        }
        if let Some(&p) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch_size)
        {
            return Err(BatchingConfigError::PreferredSize(p));
        }
        Ok(())
    }
}
