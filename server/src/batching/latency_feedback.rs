//! The latency controller's outer loop. The batching bound (`2 · compute + delay`) covers
//! what the batcher sees: the queue and the batches. A request also spends time where it
//! cannot see: decoding its input, waiting for a core to wake its caller once the answer
//! is in, and on a busy machine a scheduler's turn at every hand-over. So the share of the
//! target the batching decisions may spend is corrected by what answered requests took as
//! the task measured them, entry to answer: when their p99 climbs above [`AIM`] of the
//! target the share shrinks (smaller batches, a shorter queue admitted), and it grows back
//! slowly, up to [`MAX_SHARE`], while they keep well under it.

use std::time::Duration;

use tokio::time::Instant;

/// The batching decisions' share of the target before any correction, and the most they get.
pub const MAX_SHARE: f64 = 0.8;
/// The least share: below it, batches would be too small to serve a loaded model at all.
const MIN_SHARE: f64 = 0.2;
/// The answered requests' p99, as the server measures them, is held at this share of the
/// target: the rest is for what happens before a request reaches the task and after its
/// answer leaves it (parsing, the network stack, the caller's own turn on a core).
pub const AIM: f64 = 0.7;
/// A correction needs at least this many answers, so that a p99 means something...
const MIN_SAMPLES: usize = 200;
/// ...and at least this long since the last one, so each sees the effect of the one before.
const PERIOD: Duration = Duration::from_millis(250);
/// The most one correction may shrink the share by, and the most it grows by.
const MOST_SHRINK: f64 = 0.7;
const GROWTH: f64 = 1.05;
/// Growth waits until the p99 is this far below the aim, so the share does not hunt.
const GROW_BELOW: f64 = 0.85;

/// Answered requests' latencies since the last correction, and the share they set.
#[derive(Debug, Clone)]
pub struct LatencyFeedback {
    latencies: Vec<f64>,
    /// When the first of `latencies` was answered.
    since: Option<Instant>,
    share: f64,
}

impl Default for LatencyFeedback {
    fn default() -> Self {
        Self {
            latencies: Vec::new(),
            since: None,
            share: MAX_SHARE,
        }
    }
}

impl LatencyFeedback {
    /// The share of the target the batching decisions may spend now.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// A request was answered at `now`, `latency` after it reached the task. Returns the new
    /// share when this answer completed a correction that changed it.
    pub fn answered(&mut self, now: Instant, latency: Duration, target: Duration) -> Option<f64> {
        self.latencies.push(latency.as_secs_f64());
        let since = *self.since.get_or_insert(now);
        if self.latencies.len() < MIN_SAMPLES || now.saturating_duration_since(since) < PERIOD {
            return None;
        }
        let p99 = p99(&mut self.latencies);
        self.latencies.clear();
        self.since = None;
        let aim = AIM * target.as_secs_f64();
        let before = self.share;
        if p99 > aim {
            self.share *= (aim / p99).max(MOST_SHRINK);
        } else if p99 < GROW_BELOW * aim {
            self.share *= GROWTH;
        }
        self.share = self.share.clamp(MIN_SHARE, MAX_SHARE);
        (self.share != before).then_some(self.share)
    }
}

/// Nearest-rank 99th percentile of a non-empty sample; reorders it.
fn p99(sample: &mut [f64]) -> f64 {
    sample.sort_by(f64::total_cmp);
    sample[(sample.len() * 99).div_ceil(100) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(20);

    /// Answers one millisecond apart on a clock of their own.
    struct Answers {
        feedback: LatencyFeedback,
        now: Instant,
    }

    impl Answers {
        fn new() -> Self {
            Self {
                feedback: LatencyFeedback::default(),
                now: Instant::now(),
            }
        }

        fn answer(&mut self, latency_ms: f64) {
            let latency = Duration::from_secs_f64(latency_ms / 1e3);
            self.feedback.answered(self.now, latency, TARGET);
            self.now += Duration::from_millis(1);
        }

        /// One correction's worth of answers: 251 over 250 ms, `slow` of them `slow_ms`
        /// and the rest `latency_ms`.
        fn period(&mut self, latency_ms: f64, slow: usize, slow_ms: f64) -> f64 {
            for i in 0..251 {
                self.answer(if i < slow { slow_ms } else { latency_ms });
            }
            assert!(
                self.feedback.latencies.is_empty(),
                "one correction per period"
            );
            self.feedback.share()
        }
    }

    #[test]
    fn answers_within_the_aim_leave_the_share_alone() {
        let mut answers = Answers::new();
        for _ in 0..20 {
            assert_eq!(answers.period(13.9, 0, 0.0), MAX_SHARE);
        }
    }

    #[test]
    fn slow_answers_shrink_the_share_until_they_are_within_the_aim_then_it_grows_back() {
        let mut answers = Answers::new();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // 28 ms answered against an aim of 14 ms: halving is needed, 0.7 at most per period.
        assert!(close(answers.period(28.0, 0, 0.0), MAX_SHARE * MOST_SHRINK));
        let share = answers.period(28.0, 0, 0.0);
        assert!(close(share, MAX_SHARE * MOST_SHRINK * MOST_SHRINK));
        // A little over the aim: shrinks by just what it is over.
        let shrunk = answers.period(15.0, 0, 0.0);
        assert!(close(shrunk, share * 14.0 / 15.0), "{shrunk}");
        // Within the aim but close to it: held.
        assert_eq!(answers.period(13.0, 0, 0.0), shrunk);
        // Well within: grows back, period by period, to the most.
        assert!(close(answers.period(5.0, 0, 0.0), shrunk * GROWTH));
        for _ in 0..100 {
            answers.period(5.0, 0, 0.0);
        }
        assert_eq!(answers.feedback.share(), MAX_SHARE);
    }

    #[test]
    fn the_share_never_falls_below_its_floor() {
        let mut answers = Answers::new();
        for _ in 0..20 {
            answers.period(500.0, 0, 0.0);
        }
        assert_eq!(answers.feedback.share(), MIN_SHARE);
    }

    #[test]
    fn the_p99_is_that_of_the_answers_since_the_last_correction() {
        let mut answers = Answers::new();
        // 2 slow answers in 251 are within the 1 % the 99th percentile leaves out...
        assert_eq!(answers.period(10.0, 2, 100.0), MAX_SHARE);
        // ...3 are not.
        assert!(answers.period(10.0, 3, 100.0) < MAX_SHARE);
    }

    #[test]
    fn few_answers_correct_nothing_however_slow() {
        let mut answers = Answers::new();
        for _ in 0..MIN_SAMPLES - 1 {
            answers.answer(500.0);
            answers.now += Duration::from_secs(1);
        }
        assert_eq!(answers.feedback.share(), MAX_SHARE);
    }
}
