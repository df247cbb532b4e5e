//! The step loops' latency target. With `target_step_p99_ms` the operator states how long a
//! running request may wait between two of its steps (a generation's inter-token latency, a
//! caption's next word), and the loop finds how many sequences or hypotheses share a step:
//! it learns a round's time (starting the requests that join, then the step) per width,
//! and lets the running batch grow only as wide as keeps a round within
//! `BUDGET_SHARE · target`. Requests beyond that wait in the queue, whose limit and the
//! requests' own deadlines bound how long.

use std::time::Duration;

use super::compute_times::ComputeTimes;

/// Share of the target a round may take on average; the rest absorbs its jitter.
const BUDGET_SHARE: f64 = 0.8;

/// The goal an operator sets for a step loop instead of a fixed width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTarget {
    /// A running request's next step should come within this, at the 99th percentile.
    pub step_p99: Duration,
}

impl StepTarget {
    /// The target of a `target_step_p99_ms` setting; none for anything but a positive number
    /// of milliseconds up to an hour (beyond is a typo).
    pub fn from_ms(ms: f64) -> Option<StepTarget> {
        (ms > 0.0 && ms <= 3_600_000.0).then(|| StepTarget {
            step_p99: Duration::from_secs_f64(ms / 1e3),
        })
    }
}

/// Chooses how wide a step loop's batch may grow; see the module's comment.
#[derive(Debug, Clone)]
pub struct StepController {
    target: StepTarget,
    max_width: usize,
    rounds: ComputeTimes,
    width_limit: usize,
}

impl StepController {
    /// A controller for a loop that never runs more than `max_width` rows in a step. Until a
    /// round is measured it allows them all.
    pub fn new(target: StepTarget, max_width: usize) -> Self {
        assert!(max_width > 0);
        Self {
            target,
            max_width,
            rounds: ComputeTimes::new(max_width),
            width_limit: max_width,
        }
    }

    pub fn target(&self) -> StepTarget {
        self.target
    }

    /// The most rows the next steps may hold.
    pub fn width_limit(&self) -> usize {
        self.width_limit
    }

    /// A round of `width` rows took `took`; the limit follows.
    pub fn stepped(&mut self, width: usize, took: Duration) {
        self.rounds
            .record(width.min(self.max_width), took.as_secs_f64());
        if let Some(estimates) = self.rounds.estimates() {
            self.width_limit = self.choose(&estimates);
        }
    }

    fn choose(&self, estimates: &[f64]) -> usize {
        let budget = BUDGET_SHARE * self.target.step_p99.as_secs_f64();
        if let Some(widest) = (1..=self.max_width)
            .rev()
            .find(|&w| estimates[w - 1] <= budget)
        {
            return widest;
        }
        // Narrower steps than any measured lately are only guessed at (a single measurement
        // is taken to hold for them all): try half the narrowest to learn.
        let narrowest = self.rounds.narrowest_fresh().unwrap_or(1);
        if narrowest > 1 {
            return narrowest / 2;
        }
        // Even one row misses the target: every step misses it whatever the width, so run
        // the width that advances the most rows per second.
        (1..=self.max_width)
            .map(|w| (w, w as f64 / estimates[w - 1].max(f64::EPSILON)))
            .fold((1, 0.0), |best, c| if c.1 >= best.1 { c } else { best })
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    fn controller(target_ms: f64, max_width: usize) -> StepController {
        StepController::new(
            StepTarget {
                step_p99: ms(target_ms),
            },
            max_width,
        )
    }

    /// A model whose round takes 2 ms plus 0.5 ms per row.
    fn round(width: usize) -> Duration {
        ms(2.0 + 0.5 * width as f64)
    }

    #[test]
    fn targets_are_positive_and_at_most_an_hour() {
        assert_eq!(StepTarget::from_ms(25.0).unwrap().step_p99, ms(25.0));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 3_600_001.0] {
            assert!(StepTarget::from_ms(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn allows_every_row_until_a_round_is_measured() {
        assert_eq!(controller(10.0, 64).width_limit(), 64);
    }

    #[test]
    fn settles_on_the_widest_step_within_the_budget() {
        let mut c = controller(10.0, 64);
        // Budget 8 ms: 2 + 0.5 · 12 = 8.
        for _ in 0..20 {
            let width = c.width_limit();
            c.stepped(width, round(width));
        }
        assert_eq!(c.width_limit(), 12);
        // Narrower rounds teach the same line.
        c.stepped(3, round(3));
        assert_eq!(c.width_limit(), 12);
    }

    #[test]
    fn a_model_that_slows_down_gets_narrower_steps() {
        let mut c = controller(10.0, 64);
        for width in [4, 8, 12] {
            c.stepped(width, round(width));
        }
        assert_eq!(c.width_limit(), 12);
        // Three times slower: 6 + 1.5 · w ≤ 8 only for w = 1.
        for _ in 0..40 {
            let width = c.width_limit();
            c.stepped(width, round(width) * 3);
        }
        assert_eq!(c.width_limit(), 1);
    }

    #[test]
    fn a_first_round_over_the_budget_halves_the_width_until_one_fits() {
        let mut c = controller(10.0, 64);
        c.stepped(64, round(64));
        assert_eq!(c.width_limit(), 32);
        c.stepped(32, round(32));
        // The line through 32 and 64 predicts 12 rows in 8 ms.
        assert_eq!(c.width_limit(), 12);
    }

    #[test]
    fn an_unreachable_target_runs_the_width_that_advances_the_most_rows() {
        let mut c = controller(1.0, 32);
        for width in [1, 8, 16, 32] {
            c.stepped(width, round(width));
        }
        assert_eq!(c.width_limit(), 32);
    }
}
