//! The step loops' latency target. With `target_step_p99_ms` the operator states how long a
//! running request may wait between two of its steps (a generation's inter-token latency, a
//! caption's next word), and the loop finds how many sequences or hypotheses share a step
//! and how many requests may join in one round. A round is what the running requests wait
//! out: the joiners' start (prefill, image encoding), then the step. The controller learns
//! a step's time per width and a start's time per request, and keeps
//! `step(width) + joiners · start ≤ BUDGET_SHARE · target`: the step only as wide as leaves
//! time for one joiner, and as many joiners in a round as the step's slack pays for (at
//! least one, so the queue always moves). Requests beyond that wait in the queue, whose
//! limit and the requests' own deadlines bound how long.

use std::time::Duration;

use super::compute_times::ComputeTimes;

/// Share of the target a round may take on average; the rest absorbs its jitter.
const BUDGET_SHARE: f64 = 0.8;
/// Weight of a new start-time measurement against what was known.
const START_SMOOTHING: f64 = 0.2;

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

/// Chooses how wide a step loop's batch may grow and how many may join it per round; see
/// the module's comment.
#[derive(Debug, Clone)]
pub struct StepController {
    target: StepTarget,
    max_width: usize,
    steps: ComputeTimes,
    /// Seconds to start one request, smoothed; none until a start is measured.
    start: Option<f64>,
    width_limit: usize,
    join_limit: usize,
}

impl StepController {
    /// A controller for a loop that never runs more than `max_width` rows in a step. Until a
    /// step is measured it allows them all, and as many joiners as there is room for.
    pub fn new(target: StepTarget, max_width: usize) -> Self {
        assert!(max_width > 0);
        Self {
            target,
            max_width,
            steps: ComputeTimes::new(max_width),
            start: None,
            width_limit: max_width,
            join_limit: usize::MAX,
        }
    }

    pub fn target(&self) -> StepTarget {
        self.target
    }

    /// The most rows the next steps may hold.
    pub fn width_limit(&self) -> usize {
        self.width_limit
    }

    /// The most requests that may start in the next round.
    pub fn join_limit(&self) -> usize {
        self.join_limit
    }

    /// `count` requests took `took` to start.
    pub fn started(&mut self, count: usize, took: Duration) {
        if count == 0 {
            return;
        }
        let each = took.as_secs_f64() / count as f64;
        self.start = Some(match self.start {
            Some(old) => old + START_SMOOTHING * (each - old),
            None => each,
        });
        self.update();
    }

    /// A step of `width` rows took `took`; the limits follow.
    pub fn stepped(&mut self, width: usize, took: Duration) {
        self.steps
            .record(width.min(self.max_width), took.as_secs_f64());
        self.update();
    }

    fn update(&mut self) {
        let Some(estimates) = self.steps.estimates() else {
            return;
        };
        let budget = BUDGET_SHARE * self.target.step_p99.as_secs_f64();
        let start = self.start.unwrap_or(0.0);
        self.width_limit = self.choose(&estimates, budget - start);
        let slack = budget - estimates[self.width_limit - 1];
        self.join_limit = if start > 0.0 {
            ((slack / start).floor().max(1.0) as usize).min(self.max_width)
        } else {
            self.max_width
        };
    }

    /// The widest step that fits in `step_budget`.
    fn choose(&self, estimates: &[f64], step_budget: f64) -> usize {
        if let Some(widest) = (1..=self.max_width)
            .rev()
            .find(|&w| estimates[w - 1] <= step_budget)
        {
            return widest;
        }
        // Narrower steps than any measured lately are only guessed at (a single measurement
        // is taken to hold for them all): try half the narrowest to learn.
        let narrowest = self.steps.narrowest_fresh().unwrap_or(1);
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
    fn joiners_per_round_are_as_many_as_the_step_leaves_time_for() {
        let mut c = controller(10.0, 64);
        assert_eq!(c.join_limit(), usize::MAX);
        for width in [4, 8, 12] {
            c.stepped(width, round(width));
        }
        assert_eq!((c.width_limit(), c.join_limit()), (12, 64));
        // Starts of 0.8 ms each: the widest step leaving 0.8 ms is 10 rows (7 ms), and its
        // slack of 1 ms pays for one joiner.
        c.started(5, ms(4.0));
        assert_eq!((c.width_limit(), c.join_limit()), (10, 1));
        // Starts of 0.2 ms: 11 rows (7.5 ms) and two joiners.
        let mut c = controller(10.0, 64);
        for width in [4, 8, 12] {
            c.stepped(width, round(width));
        }
        c.started(5, ms(1.0));
        assert_eq!((c.width_limit(), c.join_limit()), (11, 2));
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
