//! The latency-target controller. With `target_p99_ms` in a model's `[batching]` section the
//! operator states the goal and the batcher finds the settings: the controller learns the
//! model's compute time per batch size and the arrival rate, chooses the largest batch and
//! the queue delay that still answer within the target, and refuses a request at the door
//! when the queue ahead of it could not be served within the target. Compute time here is
//! a batch's time from leaving the queue to its answers.
//!
//! The latency bound it keeps is that of a request arriving just as a batch starts: it waits
//! for that batch, then for its own batch to gather, then for its own batch to run:
//! `2 · compute(b) + delay ≤ share · target`. The share starts at 0.8 and is corrected by
//! the latencies of answered requests as the task measured them (see [`LatencyFeedback`]),
//! so that time the batcher cannot see (decoding, waking callers, a busy machine) comes out
//! of the batching budget instead of going over the target.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::compute_times::ComputeTimes;
use super::latency_feedback::{LatencyFeedback, MAX_SHARE};

/// How quickly the arrival-rate estimate forgets: its time constant.
const ARRIVAL_MEMORY: Duration = Duration::from_secs(1);
/// The energy objective waits for company only until its bound reaches this share of the
/// target. Waiting to the whole budget put its answers at the edge of the target, where a
/// load step or a stalled core took them over it; the throughput objective answers well
/// inside it and rides those out. Past half the target, waiting longer gathers few more
/// items per batch than it costs in headroom.
const ENERGY_WAIT_SHARE: f64 = 0.5;

/// What the batcher optimises within the latency target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The most items per second: batches leave as soon as an executor is free.
    #[default]
    Throughput,
    /// The most items per joule: each batch waits for company as long as the target allows.
    Energy,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Throughput => "throughput",
            Objective::Energy => "energy",
        }
    }
}

/// The goal an operator sets for a model instead of a batch size and a delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyTarget {
    /// Admitted requests should be answered within this, at the 99th percentile.
    pub p99: Duration,
    pub objective: Objective,
}

/// The batch size and queue delay the batcher uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub batch_size: usize,
    pub queue_delay: Duration,
}

impl Choice {
    /// Worth a log line: a batch size a quarter away (and at least 2), or a delay moved by
    /// more than a quarter and by more than 100 µs. Smaller moves are the estimates' noise:
    /// under load the largest feasible batch hunts between neighbours from batch to batch.
    pub fn differs_notably(&self, other: &Choice) -> bool {
        let (a, b) = (
            self.queue_delay.as_secs_f64(),
            other.queue_delay.as_secs_f64(),
        );
        let moved = (a - b).abs();
        moved_notably(self.batch_size, other.batch_size)
            || (moved > 1e-4 && moved > 0.25 * a.max(b))
    }

    /// Replaces `logged`, the choice last logged, when this one differs notably from it;
    /// true when it did and this choice is to be logged. Measured against the last logged
    /// choice, a slow drift is logged once it adds up and hunting never is.
    pub fn replaces_logged(self, logged: &mut Choice) -> bool {
        let notable = self.differs_notably(logged);
        if notable {
            *logged = self;
        }
        notable
    }
}

/// Whether two sizes chosen by a controller are far enough apart to log the change: by a
/// quarter of the smaller, and by at least 2.
pub fn moved_notably(a: usize, b: usize) -> bool {
    a.abs_diff(b) >= (a.min(b) / 4).max(2)
}

/// A request refused because the queue ahead of it could not be served within the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverTarget {
    /// When the queue ahead should have drained enough for a retry to be admitted.
    pub retry_after: Duration,
}

/// Chooses batch size and delay for one model; see the module's comment.
#[derive(Debug, Clone)]
pub struct Controller {
    target: LatencyTarget,
    max_batch_size: usize,
    instances: usize,
    compute: ComputeTimes,
    arrivals: ArrivalRate,
    /// When a request was last refused: while requests are refused, company is there
    /// without waiting for it.
    last_refusal: Option<Instant>,
    feedback: LatencyFeedback,
    choice: Choice,
    /// The estimated compute time of the chosen batch size, refreshed with every batch
    /// measured and every choice, so that admission (once per request) needs no estimate.
    choice_compute: Option<f64>,
}

impl Controller {
    /// A controller for a model with `instances` executors, never batching beyond
    /// `max_batch_size`. Until it has measured a batch it runs whatever is queued at once.
    pub fn new(target: LatencyTarget, max_batch_size: usize, instances: usize) -> Self {
        assert!(max_batch_size > 0 && instances > 0);
        Self {
            target,
            max_batch_size,
            instances,
            compute: ComputeTimes::new(max_batch_size),
            arrivals: ArrivalRate::default(),
            last_refusal: None,
            feedback: LatencyFeedback::default(),
            choice: Choice {
                batch_size: max_batch_size,
                queue_delay: Duration::ZERO,
            },
            choice_compute: None,
        }
    }

    pub fn target(&self) -> LatencyTarget {
        self.target
    }

    /// The choice made last.
    pub fn choice(&self) -> Choice {
        self.choice
    }

    /// A batch of `size` items took `compute`.
    pub fn executed(&mut self, size: usize, compute: Duration) {
        self.compute.record(size, compute.as_secs_f64());
        self.choice_compute = self.compute.estimate(self.choice.batch_size);
    }

    /// Estimated compute time of a batch of `size`, once any batch has been measured.
    pub fn compute_estimate(&self, size: usize) -> Option<Duration> {
        self.compute.estimate(size).map(Duration::from_secs_f64)
    }

    /// Arrivals per second, as estimated at `now`.
    pub fn arrival_rate(&self, now: Instant) -> f64 {
        self.arrivals.per_second(now)
    }

    /// The share of the target the batching decisions may spend now.
    pub fn target_share(&self) -> f64 {
        self.feedback.share()
    }

    /// A request was answered at `now`, `latency` after it reached its task. Returns the
    /// batching decisions' new share of the target when the answers so far changed it.
    pub fn answered(&mut self, now: Instant, latency: Duration) -> Option<f64> {
        // The next batch's choice, and admission from then on, read the new budget.
        self.feedback.answered(now, latency, self.target.p99)
    }

    /// What the batching decisions may spend: the corrected share of the target, but never
    /// so little that a batch of one misses it while the uncorrected share would not. Below
    /// that, no batch would look feasible and the controller would fall back to the batch
    /// that serves the most, the slowest of all.
    fn budget(&self) -> f64 {
        let target = self.target.p99.as_secs_f64();
        let corrected = self.feedback.share() * target;
        let one_at_a_time = self
            .compute
            .estimate(1)
            .map_or(0.0, |compute| 2.0 * compute)
            .min(MAX_SHARE * target);
        corrected.max(one_at_a_time)
    }

    /// A request arrives with `ahead` requests queued or running: admit it, or refuse it when
    /// they could not all be served and it answered within the target. Room for one batch
    /// is always left, so a model that cannot meet its target still answers full batches.
    pub fn admit(&mut self, now: Instant, ahead: usize) -> Result<(), OverTarget> {
        self.arrivals.arrived(now);
        self.check(now, ahead)
    }

    /// What [`admit`](Self::admit) would answer now, without counting an arrival: for a
    /// refusal before the request's body is decoded. A refusal is remembered.
    pub fn check(&mut self, now: Instant, ahead: usize) -> Result<(), OverTarget> {
        let answer = self.would_admit(ahead);
        if answer.is_err() {
            self.last_refusal = Some(now);
        }
        answer
    }

    /// Whether a request was refused within the last [`ARRIVAL_MEMORY`].
    fn refusing(&self, now: Instant) -> bool {
        self.last_refusal
            .is_some_and(|at| now.saturating_duration_since(at) < ARRIVAL_MEMORY)
    }

    /// What [`check`](Self::check) would answer, remembering nothing.
    fn would_admit(&self, ahead: usize) -> Result<(), OverTarget> {
        let Choice {
            batch_size,
            queue_delay,
        } = self.choice;
        if ahead < batch_size {
            return Ok(());
        }
        let Some(compute) = self.choice_compute else {
            return Ok(());
        };
        // Full batches ahead of its own (a running one counted whole), spread over the
        // executors; its own batch gathers meanwhile, and leaves once both are done.
        let rounds_ahead = (ahead / batch_size) / self.instances;
        let waited = (rounds_ahead as f64 * compute).max(queue_delay.as_secs_f64());
        let predicted = waited + compute;
        let over = predicted - self.budget();
        if over <= 0.0 {
            return Ok(());
        }
        Err(OverTarget {
            retry_after: Duration::from_secs_f64(over.max(compute)),
        })
    }

    /// Choose the batch size and delay for the next batch from what has been measured by
    /// `now`; returns the new choice.
    pub fn choose(&mut self, now: Instant) -> Choice {
        if let Some(choice) = self.best(now) {
            self.choice = choice;
            self.choice_compute = self.compute.estimate(choice.batch_size);
        }
        self.choice
    }

    fn best(&self, now: Instant) -> Option<Choice> {
        let budget = self.budget();
        let estimates = self.compute.estimates()?;
        // (size, compute, slack) of each batch size whose bound fits the budget.
        let mut feasible = Vec::new();
        for size in 1..=self.max_batch_size {
            let compute = estimates[size - 1];
            let slack = budget - 2.0 * compute;
            if slack >= 0.0 {
                feasible.push((size, compute.max(f64::EPSILON), slack));
            }
        }
        if feasible.is_empty() {
            // Even one item at a time would miss the target (an overloaded machine, or a
            // target below the model's own time): admitted requests miss it whatever the
            // batch, so serve as many as possible, in the batch that serves the most per
            // second, and shed the rest.
            let most = (1..=self.max_batch_size)
                .map(|size| (size, size as f64 / estimates[size - 1].max(f64::EPSILON)))
                .fold((1, 0.0), |best, c| if c.1 >= best.1 { c } else { best });
            return Some(Choice {
                batch_size: most.0,
                queue_delay: Duration::ZERO,
            });
        }
        let rate = self.arrivals.per_second(now);
        // Ties go to the larger batch: with one size measured every size looks alike, and
        // only a larger batch teaches what batching gains.
        let best_by = |score: &dyn Fn(&(usize, f64, f64)) -> f64| {
            let mut best = feasible[0];
            for candidate in &feasible[1..] {
                if score(candidate) >= score(&best) * (1.0 - 1e-9) {
                    best = *candidate;
                }
            }
            best
        };
        // While requests are refused, batches fill without waiting and the most items per
        // second is also the fewest joules per item: both objectives choose alike.
        let objective = match self.target.objective {
            Objective::Energy if self.refusing(now) => Objective::Throughput,
            objective => objective,
        };
        let choice = match objective {
            // The largest batch within the bound: batches gather while an executor is busy,
            // so a larger limit only matters when requests queue, where it serves the most
            // per second; waiting would add latency, not items.
            Objective::Throughput => {
                let (size, _, _) = *feasible.last().expect("some size is feasible");
                Choice {
                    batch_size: size,
                    queue_delay: Duration::ZERO,
                }
            }
            // The batch that, waiting for company as long as its slack within
            // ENERGY_WAIT_SHARE allows at the arrival rate seen, computes the most items per
            // second of compute: the fewest joules per item, as the power drawn barely
            // depends on the batch.
            Objective::Energy => {
                let wait_budget = budget.min(ENERGY_WAIT_SHARE * self.target.p99.as_secs_f64());
                let wait = |compute: f64| (wait_budget - 2.0 * compute).max(0.0);
                let gathered =
                    |size: usize, wait: f64| ((1.0 + rate * wait).floor() as usize).clamp(1, size);
                let (size, compute, _) = best_by(&|&(size, compute, _)| {
                    let items = gathered(size, wait(compute));
                    let compute = estimates[items - 1];
                    items as f64 / compute.max(f64::EPSILON)
                });
                let slack = wait(compute);
                // No longer than filling the batch takes at that rate.
                let fill = if rate > 0.0 {
                    (size - 1) as f64 / rate
                } else {
                    0.0
                };
                Choice {
                    batch_size: size,
                    queue_delay: Duration::from_secs_f64(slack.min(fill)),
                }
            }
        };
        Some(choice)
    }
}

/// Arrivals per second: an exponentially decaying count, so that a load step shows within
/// about [`ARRIVAL_MEMORY`].
#[derive(Debug, Clone, Default)]
struct ArrivalRate {
    rate: f64,
    last: Option<Instant>,
}

impl ArrivalRate {
    fn decay(&self, now: Instant) -> f64 {
        self.last.map_or(0.0, |last| {
            (-now.saturating_duration_since(last).as_secs_f64() / ARRIVAL_MEMORY.as_secs_f64())
                .exp()
        })
    }

    fn arrived(&mut self, now: Instant) {
        self.rate = self.rate * self.decay(now) + 1.0 / ARRIVAL_MEMORY.as_secs_f64();
        self.last = Some(now);
    }

    fn per_second(&self, now: Instant) -> f64 {
        self.rate * self.decay(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batching::compute_times::FRESH_BATCHES;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    fn target(p99_ms: f64, objective: Objective) -> LatencyTarget {
        LatencyTarget {
            p99: ms(p99_ms),
            objective,
        }
    }

    /// A model whose batch of b takes 2 ms + 0.5 ms · b, measured at a few sizes.
    fn measured(controller: &mut Controller, sizes: &[usize]) {
        for &b in sizes {
            controller.executed(b, ms(2.0 + 0.5 * b as f64));
        }
    }

    /// Five seconds of one arrival per millisecond from `now`, each admitted onto an empty
    /// queue; returns when they end.
    fn thousand_a_second(controller: &mut Controller, now: Instant) -> Instant {
        for i in 0..5_000u64 {
            controller.admit(now + Duration::from_millis(i), 0).unwrap();
        }
        now + Duration::from_millis(5_000)
    }

    #[test]
    fn the_fitted_line_predicts_sizes_not_seen() {
        let mut c = Controller::new(target(50.0, Objective::Throughput), 64, 1);
        assert_eq!(c.compute_estimate(8), None);
        measured(&mut c, &[1, 4, 16]);
        let predicted = c.compute_estimate(40).unwrap().as_secs_f64() * 1e3;
        assert!((predicted - 22.0).abs() < 1e-6, "{predicted}");
        // One size seen: proportional above it, flat below.
        let mut one = Controller::new(target(50.0, Objective::Throughput), 64, 1);
        one.executed(8, ms(6.0));
        assert_eq!(one.compute_estimate(16), Some(ms(12.0)));
        assert_eq!(one.compute_estimate(2), Some(ms(6.0)));
    }

    fn close(a: Duration, b: Duration) -> bool {
        (a.as_secs_f64() - b.as_secs_f64()).abs() < 1e-7
    }

    #[test]
    fn chooses_the_largest_batch_that_keeps_the_bound_and_no_delay_for_throughput() {
        let mut c = Controller::new(target(51.0, Objective::Throughput), 128, 1);
        measured(&mut c, &[1, 8, 32]);
        // 2 · (2 + 0.5 b) ≤ 40.8 ms gives b ≤ 36; the most items per second is the largest.
        let choice = c.choose(Instant::now());
        assert_eq!(choice.batch_size, 36);
        assert_eq!(choice.queue_delay, Duration::ZERO);
    }

    #[test]
    fn the_energy_objective_waits_only_as_long_as_filling_the_batch_takes() {
        let now = Instant::now();
        let mut c = Controller::new(target(200.0, Objective::Energy), 32, 1);
        measured(&mut c, &[1, 8, 32]);
        // 1,000 arrivals per second: 31 more arrive in 31 ms, well within the 64 ms a batch
        // of 32 may wait (half the target less twice its 18 ms).
        let later = thousand_a_second(&mut c, now);
        let choice = c.choose(later);
        assert_eq!(choice.batch_size, 32);
        let delay = choice.queue_delay.as_secs_f64() * 1e3;
        assert!((25.0..40.0).contains(&delay), "{delay} ms");
        // At 50 per second a batch of 32 would gather only 4 within its 64 ms of wait; a
        // batch of 5 to 16 gathers 5 in 80 ms (of 80 to 90 ms of wait).
        for i in 0..500u64 {
            c.admit(now + Duration::from_millis(10_000 + 20 * i), 0)
                .unwrap();
        }
        let choice = c.choose(now + Duration::from_millis(19_980));
        assert!((5..=16).contains(&choice.batch_size), "{choice:?}");
        let delay = choice.queue_delay.as_secs_f64() * 1e3;
        assert!((80.0 - 1e-6..=90.0 + 1e-6).contains(&delay), "{delay} ms");
    }

    #[test]
    fn the_energy_objective_leaves_half_the_target_for_what_it_cannot_foresee() {
        let now = Instant::now();
        let mut c = Controller::new(target(100.0, Objective::Energy), 32, 1);
        measured(&mut c, &[1, 8, 32]);
        // 1,000 arrivals per second would fill a batch of 32 within the 80 ms budget; the
        // wait stops at 50 ms: 2 · (2 + 0.5 b) + delay ≤ 50 ms, which gathers about 23.
        let later = thousand_a_second(&mut c, now);
        let choice = c.choose(later);
        assert!((22..=24).contains(&choice.batch_size), "{choice:?}");
        let compute = c.compute_estimate(choice.batch_size).unwrap();
        let bound = 2 * compute + choice.queue_delay;
        assert!(bound <= ms(50.0 + 1e-6), "{choice:?}: {bound:?}");
        assert!(bound >= ms(45.0), "{choice:?}: {bound:?}");
        // Admission still has the whole 80 ms budget: two full batches ahead of its own
        // (about 40 ms) are admitted, six (about 90 ms) are not.
        assert!(c.admit(later, 2 * choice.batch_size).is_ok());
        assert!(c.admit(later, 6 * choice.batch_size).is_err());
    }

    #[test]
    fn a_model_that_slows_down_gets_smaller_batches() {
        let now = Instant::now();
        let mut c = Controller::new(target(51.0, Objective::Throughput), 64, 1);
        measured(&mut c, &[1, 8, 32, 36]);
        let before = c.choose(now).batch_size;
        assert_eq!(before, 36);
        // Three times slower from now on, at whatever size runs.
        let mut sizes = Vec::new();
        for _ in 0..40 {
            let b = c.choose(now).batch_size;
            c.executed(b, ms(3.0 * (2.0 + 0.5 * b as f64)));
            sizes.push(b);
        }
        // 2 · 3 · (2 + 0.5 b) ≤ 40.8 ms gives b ≤ 9.
        let after = c.choose(now).batch_size;
        assert!(after <= 9, "sizes chosen: {sizes:?}");
        // Once the measurements from before the slowdown are old, the sizes not run since
        // are predicted from the slow ones.
        for _ in 0..FRESH_BATCHES {
            let b = c.choose(now).batch_size;
            c.executed(b, ms(3.0 * (2.0 + 0.5 * b as f64)));
        }
        let slow_32 = c.compute_estimate(32).unwrap().as_secs_f64() * 1e3;
        assert!(slow_32 > 2.5 * 18.0, "{slow_32} ms");
    }

    #[test]
    fn refuses_when_the_queue_ahead_cannot_be_served_in_time_but_never_an_empty_one() {
        let now = Instant::now();
        let mut c = Controller::new(target(51.0, Objective::Throughput), 64, 1);
        assert!(c.admit(now, 500).is_ok(), "nothing measured yet");
        measured(&mut c, &[1, 8, 32]);
        assert_eq!(c.choose(now).batch_size, 36);
        // One full batch ahead of its own: 2 · 20 ms = 40 ms ≤ 40.8 ms; two are 60 ms.
        assert!(c.admit(now, 71).is_ok());
        let refused = c.admit(now, 72).unwrap_err();
        assert!(close(refused.retry_after, ms(20.0)), "{refused:?}");
        // Two instances share the batches ahead.
        let mut two = Controller::new(target(51.0, Objective::Throughput), 64, 2);
        measured(&mut two, &[1, 8, 32]);
        two.choose(now);
        assert!(two.admit(now, 140).is_ok());
        assert!(two.admit(now, 144).is_err());
        // A model slower than its target still answers, in the batches that serve the
        // most, one batch at a time.
        let mut slow = Controller::new(target(5.0, Objective::Throughput), 64, 1);
        measured(&mut slow, &[1, 8]);
        assert_eq!(
            slow.choose(now),
            Choice {
                batch_size: 64,
                queue_delay: Duration::ZERO
            }
        );
        assert!(slow.admit(now, 63).is_ok());
        assert!(slow.admit(now, 64).is_err());
    }

    #[test]
    fn while_requests_are_refused_the_energy_objective_does_not_wait() {
        let now = Instant::now();
        let mut c = Controller::new(target(100.0, Objective::Energy), 32, 1);
        measured(&mut c, &[1, 8, 32]);
        let later = thousand_a_second(&mut c, now);
        let waiting = c.choose(later);
        assert!(waiting.queue_delay > Duration::ZERO, "{waiting:?}");
        // A queue longer than the target allows: refused, and batches leave full at once.
        assert!(c.check(later, 1_000).is_err());
        assert_eq!(
            c.choose(later),
            Choice {
                batch_size: 32,
                queue_delay: Duration::ZERO
            }
        );
        // A while without refusals, and it waits for company again.
        let calm = later + ARRIVAL_MEMORY + Duration::from_millis(1);
        for i in 0..1_000u64 {
            c.admit(calm + Duration::from_micros(1_000 * i), 0).unwrap();
        }
        let after = c.choose(calm + Duration::from_secs(1));
        assert!(after.queue_delay > Duration::ZERO, "{after:?}");
    }

    #[test]
    fn the_arrival_rate_follows_a_step_within_a_few_seconds() {
        let start = Instant::now();
        let mut rate = ArrivalRate::default();
        assert_eq!(rate.per_second(start), 0.0);
        for i in 0..10_000u64 {
            rate.arrived(start + Duration::from_millis(10 * i));
        }
        let low = rate.per_second(start + Duration::from_secs(100));
        assert!((low - 100.0).abs() < 5.0, "{low}");
        let stepped = start + Duration::from_secs(100);
        for i in 0..4_000u64 {
            rate.arrived(stepped + Duration::from_millis(i));
        }
        let high = rate.per_second(stepped + Duration::from_secs(4));
        assert!((high - 1_000.0).abs() < 50.0, "{high}");
    }

    #[test]
    fn notable_changes_are_sizes_or_delays_moved_by_a_quarter() {
        let choice = |b, us| Choice {
            batch_size: b,
            queue_delay: Duration::from_micros(us),
        };
        assert!(choice(8, 0).differs_notably(&choice(10, 0)));
        assert!(choice(1, 0).differs_notably(&choice(3, 0)));
        assert!(!choice(1, 0).differs_notably(&choice(2, 0)));
        assert!(!choice(28, 0).differs_notably(&choice(31, 0)));
        assert!(choice(28, 0).differs_notably(&choice(35, 0)));
        assert!(!choice(8, 1_000).differs_notably(&choice(8, 1_050)));
        assert!(!choice(8, 10).differs_notably(&choice(8, 90)));
        assert!(choice(8, 1_000).differs_notably(&choice(8, 2_000)));
    }

    #[test]
    fn a_batch_size_hunting_between_neighbours_is_not_logged_but_a_drift_is_once() {
        let size = |b| Choice {
            batch_size: b,
            queue_delay: Duration::ZERO,
        };
        let mut logged = size(28);
        let hunting = [31, 28, 30, 29, 31, 28, 30];
        assert!(
            hunting
                .iter()
                .all(|&b| !size(b).replaces_logged(&mut logged))
        );
        let drift: Vec<bool> = [30, 32, 34, 35, 36]
            .iter()
            .map(|&b| size(b).replaces_logged(&mut logged))
            .collect();
        assert_eq!(drift, [false, false, false, true, false]);
        assert_eq!(logged, size(35));
    }
}
