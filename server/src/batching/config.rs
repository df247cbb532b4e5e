//! The `[batching]` section of a model's `model.toml`, and the policy it gives the batcher.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BatchPolicy, LatencyTarget, Objective};

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
    /// The latency admitted requests should meet at the 99th percentile. Set, it replaces
    /// `max_queue_delay_us` and `preferred_batch_sizes`: the batcher chooses its batch size
    /// (up to `max_batch_size`) and delay from its own measurements, and refuses (HTTP 429
    /// with Retry-After) what it could not answer in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_p99_ms: Option<f64>,
    /// What to make the most of within the target: `"throughput"` (the default) or
    /// `"energy"` (items per joule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_queue_delay_us: 2_000,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1_024,
            target_p99_ms: None,
            objective: None,
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
    #[error("target_p99_ms must be a positive number of milliseconds, at most an hour")]
    Target,
    #[error("objective needs target_p99_ms: it says what to make the most of within the target")]
    ObjectiveWithoutTarget,
    #[error(
        "preferred_batch_sizes cannot be set with target_p99_ms: with a target the batcher chooses its batch sizes"
    )]
    PreferredWithTarget,
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
            target: self.latency_target(),
        }
    }

    /// The latency goal, when one is set.
    pub fn latency_target(&self) -> Option<LatencyTarget> {
        self.target_p99_ms.map(|ms| LatencyTarget {
            p99: Duration::from_secs_f64(ms / 1e3),
            objective: self.objective.unwrap_or_default(),
        })
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
        match self.target_p99_ms {
            // Above an hour is a typo, and beyond what a Duration from f64 milliseconds keeps.
            Some(ms) if !(ms > 0.0 && ms <= 3_600_000.0) => Err(BatchingConfigError::Target),
            Some(_) if !self.preferred_batch_sizes.is_empty() => {
                Err(BatchingConfigError::PreferredWithTarget)
            }
            None if self.objective.is_some() => Err(BatchingConfigError::ObjectiveWithoutTarget),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> BatchingConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_target_and_an_objective_become_the_policy_s_goal() {
        let config = parse(
            "max_batch_size = 64\nmax_queue_delay_us = 0\nmax_queue_size = 256\n\
             target_p99_ms = 20\nobjective = \"energy\"\n",
        );
        assert_eq!(config.validate(1), Ok(()));
        assert_eq!(
            config.policy().target,
            Some(LatencyTarget {
                p99: Duration::from_millis(20),
                objective: Objective::Energy
            })
        );
        let fixed = parse("max_batch_size = 8\nmax_queue_delay_us = 500\nmax_queue_size = 64\n");
        assert_eq!(fixed.policy().target, None);
    }

    #[test]
    fn targets_that_cannot_work_are_refused() {
        let mut config = BatchingConfig {
            target_p99_ms: Some(0.0),
            ..BatchingConfig::default()
        };
        assert_eq!(config.validate(1), Err(BatchingConfigError::Target));
        config.target_p99_ms = Some(f64::NAN);
        assert!(config.validate(1).is_err());
        config.target_p99_ms = Some(20.0);
        config.preferred_batch_sizes = vec![4];
        assert_eq!(
            config.validate(1),
            Err(BatchingConfigError::PreferredWithTarget)
        );
        let config = BatchingConfig {
            objective: Some(Objective::Throughput),
            ..BatchingConfig::default()
        };
        assert_eq!(
            config.validate(1),
            Err(BatchingConfigError::ObjectiveWithoutTarget)
        );
        assert!(
            toml::from_str::<BatchingConfig>(
                "max_batch_size = 8\nmax_queue_delay_us = 0\nmax_queue_size = 8\nobjective = \"speed\"\n"
            )
            .is_err()
        );
    }
}
