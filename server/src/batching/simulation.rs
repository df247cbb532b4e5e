//! The latency-target controller driving a simulated model whose compute time is known, on
//! a simulated clock: Poisson arrivals, a queue, and one executor formed into batches as the
//! batcher forms them. Deterministic, so the targets can be checked without timing anything.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::controller::{Controller, LatencyTarget, Objective};

/// A model whose batch of `b` takes `(fixed + per_item · b) · slowdown(t)` seconds.
#[derive(Clone, Copy)]
struct FakeModel {
    fixed: f64,
    per_item: f64,
    /// From this time on, every batch takes `factor` times as long.
    slows_at: Option<(f64, f64)>,
}

impl FakeModel {
    const LENET_LIKE: FakeModel = FakeModel {
        fixed: 0.002,
        per_item: 0.000_5,
        slows_at: None,
    };

    fn compute(&self, size: usize, at: f64) -> f64 {
        let factor = match self.slows_at {
            Some((from, factor)) if at >= from => factor,
            _ => 1.0,
        };
        (self.fixed + self.per_item * size as f64) * factor
    }
}

/// Arrival times of a Poisson process whose rate changes at given times.
struct Poisson {
    state: u64,
}

impl Poisson {
    fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// Uniform in (0, 1): xorshift64*.
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Arrivals up to `until`, at `rate(t)` per second.
    fn arrivals(mut self, until: f64, rate: impl Fn(f64) -> f64) -> Vec<f64> {
        let mut t = 0.0;
        let mut times = Vec::new();
        loop {
            t += -self.uniform().ln() / rate(t);
            if t >= until {
                return times;
            }
            times.push(t);
        }
    }
}

/// What happened to the requests of one run.
#[derive(Default)]
struct Outcome {
    /// (arrival, latency) of each admitted request, in seconds.
    answered: Vec<(f64, f64)>,
    refused: usize,
    batches: usize,
    /// Seconds the model computed in all.
    compute: f64,
    /// Batch sizes chosen at the end of the run.
    final_batch_size: usize,
}

impl Outcome {
    /// The 99th-percentile latency of requests that arrived within `from..to`.
    fn p99(&self, from: f64, to: f64) -> f64 {
        let mut latencies: Vec<f64> = self
            .answered
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|p| p.1)
            .collect();
        assert!(!latencies.is_empty());
        latencies.sort_by(f64::total_cmp);
        latencies[(latencies.len() * 99).div_ceil(100) - 1]
    }

    fn items_per_compute_second(&self) -> f64 {
        self.answered.len() as f64 / self.compute
    }
}

/// Serve `arrivals` with one executor, batches formed as the batcher forms them: when the
/// executor is free, the oldest requests leave once the chosen size is queued or the oldest
/// has waited the chosen delay.
fn serve(model: FakeModel, target: LatencyTarget, max_batch: usize, arrivals: &[f64]) -> Outcome {
    serve_with_time_outside(model, target, max_batch, arrivals, 0.0)
}

/// [`serve`], each request also spending `outside` seconds where the batcher cannot see it
/// (decoding its input, waking its caller), which its latency counts and the controller
/// learns only from the answered requests' latencies.
fn serve_with_time_outside(
    model: FakeModel,
    target: LatencyTarget,
    max_batch: usize,
    arrivals: &[f64],
    outside: f64,
) -> Outcome {
    let epoch = Instant::now();
    let at = |t: f64| epoch + Duration::from_secs_f64(t);
    let mut controller = Controller::new(target, max_batch, 1);
    let mut outcome = Outcome::default();
    let mut queue: VecDeque<f64> = VecDeque::new();
    // (end, compute, arrivals of its requests)
    let mut running: Option<(f64, f64, Vec<f64>)> = None;
    let mut next = 0;
    let mut now = 0.0;
    loop {
        let mut dispatch_at = f64::INFINITY;
        if running.is_none() && !queue.is_empty() {
            let choice = controller.choose(at(now));
            let due = queue.len() >= choice.batch_size
                || now >= queue[0] + choice.queue_delay.as_secs_f64();
            if due {
                let batch: Vec<f64> = queue.drain(..choice.batch_size.min(queue.len())).collect();
                let compute = model.compute(batch.len(), now);
                running = Some((now + compute, compute, batch));
                continue;
            }
            dispatch_at = queue[0] + choice.queue_delay.as_secs_f64();
        }
        let arrival = arrivals.get(next).copied().unwrap_or(f64::INFINITY);
        let finish = running.as_ref().map_or(f64::INFINITY, |r| r.0);
        now = arrival.min(finish).min(dispatch_at);
        if now.is_infinite() {
            break;
        }
        if finish <= now {
            let (end, compute, batch) = running.take().expect("a batch is running");
            controller.executed(batch.len(), Duration::from_secs_f64(compute));
            outcome.batches += 1;
            outcome.compute += compute;
            for &arrived in &batch {
                let latency = end - arrived + outside;
                controller.answered(at(end), Duration::from_secs_f64(latency));
                outcome.answered.push((arrived, latency));
            }
        } else if arrival <= now {
            next += 1;
            let ahead = queue.len() + running.as_ref().map_or(0, |r| r.2.len());
            match controller.admit(at(now), ahead) {
                Ok(()) => queue.push_back(now),
                Err(_) => outcome.refused += 1,
            }
        }
    }
    outcome.final_batch_size = controller.choice().batch_size;
    outcome
}

fn target(ms: f64, objective: Objective) -> LatencyTarget {
    LatencyTarget {
        p99: Duration::from_secs_f64(ms / 1e3),
        objective,
    }
}

/// The most the LeNet-like model serves within a 50 ms target: batches of 36 (the largest
/// with 2 · compute ≤ 40 ms) back to back.
const CAPACITY: f64 = 36.0 / 0.020;

#[test]
fn admitted_requests_meet_the_target_from_light_load_to_overload() {
    for (i, share) in [0.1, 0.5, 0.9, 1.2, 1.5].into_iter().enumerate() {
        let arrivals = Poisson::new(i as u64).arrivals(20.0, |_| share * CAPACITY);
        let outcome = serve(
            FakeModel::LENET_LIKE,
            target(50.0, Objective::Throughput),
            128,
            &arrivals,
        );
        let p99 = outcome.p99(0.0, 20.0);
        assert!(p99 <= 0.050, "at {share} of capacity p99 is {p99} s");
        let served = outcome.answered.len() as f64 / 20.0;
        if share < 1.0 {
            // Below capacity nearly everything is admitted.
            assert!(
                outcome.refused as f64 <= 0.01 * arrivals.len() as f64,
                "refused {} of {} at {share}",
                outcome.refused,
                arrivals.len()
            );
        } else {
            // Beyond it the model stays busy: it serves at least 90 % of what it can.
            assert!(outcome.refused > 0);
            assert!(served >= 0.9 * CAPACITY, "served {served}/s at {share}");
        }
    }
}

#[test]
fn time_spent_outside_the_batcher_comes_out_of_its_budget() {
    // 15 ms of every request's time is unseen by the batcher: planning for 40 ms of the 50
    // would answer in up to 55 ms once requests queue.
    for (i, share) in [0.5, 0.9, 1.5].into_iter().enumerate() {
        let arrivals = Poisson::new(20 + i as u64).arrivals(20.0, |_| share * CAPACITY);
        let outcome = serve_with_time_outside(
            FakeModel::LENET_LIKE,
            target(50.0, Objective::Throughput),
            128,
            &arrivals,
            0.015,
        );
        // The first correction needs a quarter of a second of answers.
        let p99 = outcome.p99(1.0, 20.0);
        assert!(p99 <= 0.050, "at {share} of capacity p99 is {p99} s");
        let served = outcome.answered.len() as f64 / 20.0;
        // Smaller batches serve less, but still most of what the model can.
        assert!(
            served >= 0.75 * CAPACITY.min(share * CAPACITY),
            "served {served}/s at {share}"
        );
    }
}

#[test]
fn a_load_step_is_absorbed_without_missing_the_target() {
    let arrivals = Poisson::new(7).arrivals(30.0, |t| if t < 10.0 { 0.2 } else { 1.3 } * CAPACITY);
    let outcome = serve(
        FakeModel::LENET_LIKE,
        target(50.0, Objective::Throughput),
        128,
        &arrivals,
    );
    assert!(outcome.p99(0.0, 10.0) <= 0.050);
    assert!(outcome.p99(10.0, 30.0) <= 0.050);
    assert!(outcome.refused > 0);
}

#[test]
fn a_model_that_suddenly_slows_down_gets_smaller_batches_and_keeps_the_target() {
    let model = FakeModel {
        slows_at: Some((10.0, 3.0)),
        ..FakeModel::LENET_LIKE
    };
    let arrivals = Poisson::new(11).arrivals(30.0, |_| 0.6 * CAPACITY);
    let outcome = serve(model, target(50.0, Objective::Throughput), 128, &arrivals);
    assert!(outcome.p99(0.0, 10.0) <= 0.050);
    // The batches that run as it slows down are late; a second later the target holds again.
    assert!(
        outcome.p99(11.0, 30.0) <= 0.050,
        "{}",
        outcome.p99(11.0, 30.0)
    );
    // 2 · 3 · (2 + 0.5 b) ms ≤ 40 ms gives b ≤ 9.
    assert!(
        outcome.final_batch_size <= 9,
        "{}",
        outcome.final_batch_size
    );
    // 60 % of the old capacity is beyond the new one: the excess is refused.
    assert!(outcome.refused > 0);
}

#[test]
fn the_energy_objective_spends_less_compute_per_item_within_the_same_target() {
    for share in [0.1, 0.3, 0.6] {
        let arrivals = Poisson::new(3).arrivals(20.0, |_| share * CAPACITY);
        let run = |objective| {
            serve(
                FakeModel::LENET_LIKE,
                target(50.0, objective),
                128,
                &arrivals,
            )
        };
        let (throughput, energy) = (run(Objective::Throughput), run(Objective::Energy));
        // Within half the target: the other half is headroom (ENERGY_WAIT_SHARE).
        assert!(energy.p99(0.0, 20.0) <= 0.025, "{}", energy.p99(0.0, 20.0));
        assert!(
            energy.items_per_compute_second() > 1.1 * throughput.items_per_compute_second(),
            "at {share}: {} vs {} items per compute second",
            energy.items_per_compute_second(),
            throughput.items_per_compute_second()
        );
        // Answered in fewer, larger batches, and hardly anyone turned away for it.
        assert!(energy.batches < throughput.batches);
        assert!(
            energy.refused <= throughput.refused + arrivals.len() / 1_000,
            "{} vs {} refused of {}",
            energy.refused,
            throughput.refused,
            arrivals.len()
        );
    }
}
