//! The dynamic batcher on its own, with fake executors and a paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use kiln_server::batching::{
    Admission, BatchExecutor, BatchObserver, BatchPolicy, Batcher, Choice, ExecutorError,
    InferError, LatencyTarget, Objective,
};
use proptest::prelude::*;

/// Doubles its inputs; panics on 13 and fails on 7, to test fault isolation.
struct Doubler;

impl BatchExecutor<u32, u32> for Doubler {
    fn execute(&mut self, inputs: &[u32]) -> Result<Vec<u32>, ExecutorError> {
        if inputs.contains(&13) {
            panic!("unlucky input");
        }
        if inputs.contains(&7) {
            return Err(ExecutorError("seven is not allowed".into()));
        }
        Ok(inputs.iter().map(|x| x * 2).collect())
    }
}

/// Waits for a go signal before each batch, so tests control when the model is busy.
struct Gated {
    go: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl BatchExecutor<u32, u32> for Gated {
    fn execute(&mut self, inputs: &[u32]) -> Result<Vec<u32>, ExecutorError> {
        self.go
            .lock()
            .unwrap()
            .recv()
            .map_err(|_| ExecutorError("gate closed".into()))?;
        Ok(inputs.to_vec())
    }
}

#[derive(Default)]
struct Recorder {
    batch_sizes: Mutex<Vec<usize>>,
    waits: Mutex<Vec<Duration>>,
    /// Batches whose answers were sent and measured (a controller has learnt from them).
    answered: AtomicUsize,
    /// The target's shares the batcher reported, in order.
    shares: Mutex<Vec<f64>>,
}

impl BatchObserver for Recorder {
    fn dequeued(&self, waited: Duration) {
        self.waits.lock().unwrap().push(waited);
    }
    fn executed(&self, size: usize, _compute: Duration) {
        self.batch_sizes.lock().unwrap().push(size);
    }
    fn answered(&self, _size: usize, _since_formed: Duration) {
        self.answered.fetch_add(1, Ordering::SeqCst);
    }
    fn target_share(&self, share: f64) {
        self.shares.lock().unwrap().push(share);
    }
}

fn policy(max_batch_size: usize, delay_us: u64) -> BatchPolicy {
    BatchPolicy {
        max_batch_size,
        max_queue_delay: Duration::from_micros(delay_us),
        preferred_batch_sizes: Vec::new(),
        target: None,
    }
}

/// A batcher with `max_queue_size` places, recording into `recorder`.
fn spawn(
    name: &str,
    policy: BatchPolicy,
    max_queue_size: usize,
    executors: Vec<Box<dyn BatchExecutor<u32, u32>>>,
    recorder: &Arc<Recorder>,
) -> Batcher<u32, u32> {
    Batcher::spawn(
        name,
        policy,
        Admission::new(max_queue_size),
        executors,
        recorder.clone(),
    )
    .unwrap()
}

fn doublers(n: usize) -> Vec<Box<dyn BatchExecutor<u32, u32>>> {
    (0..n)
        .map(|_| Box::new(Doubler) as Box<dyn BatchExecutor<u32, u32>>)
        .collect()
}

type Executors = Vec<Box<dyn BatchExecutor<u32, u32>>>;

/// One executor that runs a batch each time the returned sender says go.
fn gated() -> (mpsc::Sender<()>, Executors) {
    let (go, gate) = mpsc::channel();
    let gate = Arc::new(Mutex::new(gate));
    (go, vec![Box::new(Gated { go: gate })])
}

fn real_clock() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every request is answered exactly once with its own result, no batch exceeds the
    /// maximum, and with an idle executor no request waits longer than the delay.
    #[test]
    fn batcher_answers_every_request_once_within_limits(
        arrivals in proptest::collection::vec(0u64..4_000, 1..48),
        max_batch_size in 1usize..12,
        delay_us in 0u64..3_000,
        preferred in proptest::option::of(1usize..12),
    ) {
        let recorder = Arc::new(Recorder::default());
        let mut p = policy(max_batch_size, delay_us);
        p.preferred_batch_sizes = preferred.filter(|&s| s <= max_batch_size).into_iter().collect();
        let results = paused_runtime().block_on(async {
            // 64 executors for at most 47 requests: one is always idle.
            let batcher = spawn("prop", p, 64, doublers(64), &recorder);
            let tasks: Vec<_> = arrivals.iter().enumerate().map(|(i, &at)| {
                let batcher = batcher.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(at)).await;
                    // Skip the inputs the Doubler refuses on purpose.
                    let input = 100 + i as u32;
                    (input, batcher.infer(input).await)
                })
            }).collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            results
        });
        for (input, output) in &results {
            prop_assert_eq!(output, &Ok(input * 2));
        }
        let sizes = recorder.batch_sizes.lock().unwrap().clone();
        prop_assert_eq!(sizes.iter().sum::<usize>(), arrivals.len());
        prop_assert!(sizes.iter().all(|&s| s >= 1 && s <= max_batch_size), "{:?}", sizes);
        // Tokio timers tick in whole milliseconds, so a deadline can fire up to 1 ms late.
        let delay = Duration::from_micros(delay_us) + Duration::from_millis(1);
        let waits = recorder.waits.lock().unwrap().clone();
        prop_assert!(waits.iter().all(|w| *w <= delay), "waits {:?} > {:?}", waits, delay);
    }
}

#[test]
fn concurrent_requests_share_a_batch() {
    let recorder = Arc::new(Recorder::default());
    paused_runtime().block_on(async {
        let batcher = spawn("share", policy(8, 5_000), 64, doublers(1), &recorder);
        let tasks: Vec<_> = (20..28u32)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { (i, b.infer(i).await) })
            })
            .collect();
        for t in tasks {
            let (i, result) = t.await.unwrap();
            assert_eq!(result, Ok(i * 2));
        }
    });
    assert_eq!(*recorder.batch_sizes.lock().unwrap(), vec![8]);
}

#[test]
fn a_preferred_size_dispatches_before_the_delay() {
    let recorder = Arc::new(Recorder::default());
    paused_runtime().block_on(async {
        let mut p = policy(16, 1_000_000);
        p.preferred_batch_sizes = vec![4];
        let batcher = spawn("preferred", p, 64, doublers(1), &recorder);
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..4u32)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.infer(i).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    });
    assert_eq!(*recorder.batch_sizes.lock().unwrap(), vec![4]);
}

#[test]
fn a_full_queue_is_refused_at_once() {
    let (go, executors) = gated();
    let recorder = Arc::new(Recorder::default());
    real_clock().block_on(async {
        let batcher = spawn("full", policy(1, 0), 2, executors, &recorder);
        let first = batcher.submit(1).unwrap();
        let second = batcher.submit(2).unwrap();
        assert_eq!(batcher.pending(), 2);
        assert!(matches!(batcher.submit(3), Err(InferError::Overloaded(2))));
        go.send(()).unwrap();
        go.send(()).unwrap();
        assert_eq!(first.wait().await, Ok(1));
        assert_eq!(second.wait().await, Ok(2));
        // Answered requests free their places.
        let third = batcher.submit(3).unwrap();
        go.send(()).unwrap();
        assert_eq!(third.wait().await, Ok(3));
    });
}

#[test]
fn with_a_latency_target_a_request_that_would_wait_beyond_it_is_refused_with_a_retry_time() {
    let (go, executors) = gated();
    let recorder = Arc::new(Recorder::default());
    real_clock().block_on(async {
        // No batch can run within a nanosecond: the batcher serves the batches that serve
        // the most (2), and refuses what would wait behind a full one.
        let mut p = policy(2, 0);
        p.target = Some(LatencyTarget {
            p99: Duration::from_nanos(1),
            objective: Objective::Throughput,
        });
        let batcher = spawn("target", p, 64, executors, &recorder);
        // Nothing is refused before a batch has been measured.
        let first = batcher.submit(1).unwrap();
        go.send(()).unwrap();
        assert_eq!(first.wait().await, Ok(1));
        // The batch is measured just after its answers are sent.
        let measured = tokio::time::timeout(Duration::from_secs(10), async {
            while recorder.answered.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        measured.await.expect("the first batch is measured");

        // Room for one batch of two; a request behind them is refused, with a time to retry.
        let second = batcher.submit(2).unwrap();
        assert_eq!(batcher.check_room(1), Ok(()));
        assert!(matches!(
            batcher.check_room(2),
            Err(InferError::OverTarget { .. })
        ));
        let third = batcher.submit(3).unwrap();
        match batcher.submit(4) {
            Err(InferError::OverTarget { retry_after }) => assert!(retry_after > Duration::ZERO),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
        go.send(()).unwrap();
        assert_eq!(second.wait().await, Ok(2));
        assert_eq!(third.wait().await, Ok(3));
        let (choice, target) = batcher.settings();
        assert_eq!(
            choice,
            Choice {
                batch_size: 2,
                queue_delay: Duration::ZERO
            }
        );
        assert_eq!(target.unwrap().p99, Duration::from_nanos(1));
    });
    assert_eq!(*recorder.batch_sizes.lock().unwrap(), vec![1, 2]);
}

#[test]
fn answers_slower_than_the_target_allows_lower_the_share_the_observer_is_told_of() {
    let recorder = Arc::new(Recorder::default());
    paused_runtime().block_on(async {
        let mut p = policy(4, 0);
        p.target = Some(LatencyTarget {
            p99: Duration::from_millis(10),
            objective: Objective::Throughput,
        });
        let batcher = spawn("share", p, 64, doublers(1), &recorder);
        assert_eq!(*recorder.shares.lock().unwrap(), vec![0.8]);
        let answer_for = |latency: Duration, count: usize| {
            let batcher = batcher.clone();
            async move {
                for _ in 0..count {
                    tokio::time::advance(Duration::from_millis(1)).await;
                    batcher.answered(tokio::time::Instant::now() - latency);
                }
            }
        };
        // Answers well within 70 % of the target leave the share where it is...
        answer_for(Duration::from_millis(2), 600).await;
        assert_eq!(*recorder.shares.lock().unwrap(), vec![0.8]);
        // ...one correction's worth (200 answers over 250 ms) at 20 ms cuts it by 30 %.
        answer_for(Duration::from_millis(20), 300).await;
        let shares = recorder.shares.lock().unwrap().clone();
        assert_eq!(shares.len(), 2, "{shares:?}");
        assert!((shares[1] - 0.56).abs() < 1e-9, "{shares:?}");
    });
    // Without a target nothing is reported.
    let untargeted = Arc::new(Recorder::default());
    paused_runtime().block_on(async {
        let batcher = spawn("fixed", policy(4, 0), 64, doublers(1), &untargeted);
        batcher.answered(tokio::time::Instant::now());
    });
    assert!(untargeted.shares.lock().unwrap().is_empty());
}

#[test]
fn requests_whose_caller_left_are_skipped() {
    let (go, executors) = gated();
    let recorder = Arc::new(Recorder::default());
    real_clock().block_on(async {
        let batcher = spawn("leave", policy(4, 0), 8, executors, &recorder);
        // The first request occupies the executor while the others queue behind it.
        let first = batcher.submit(1).unwrap();
        tokio::task::yield_now().await;
        let leaving = batcher.submit(2).unwrap();
        let staying = batcher.submit(3).unwrap();
        assert_eq!(batcher.pending(), 3);
        drop(leaving);
        // The batcher gives the place back at once, while the executor is still busy.
        while batcher.pending() > 2 {
            tokio::task::yield_now().await;
        }
        go.send(()).unwrap();
        assert_eq!(first.wait().await, Ok(1));
        go.send(()).unwrap();
        assert_eq!(staying.wait().await, Ok(3));
        assert_eq!(batcher.pending(), 0);
    });
    // The withdrawn request was never computed.
    assert_eq!(
        recorder.batch_sizes.lock().unwrap().iter().sum::<usize>(),
        2
    );
}

#[test]
fn a_failing_or_panicking_batch_fails_only_its_requests() {
    let recorder = Arc::new(Recorder::default());
    paused_runtime().block_on(async {
        let batcher = spawn("faults", policy(1, 0), 8, doublers(1), &recorder);
        match batcher.infer(13).await {
            Err(InferError::Backend(message)) => {
                assert!(message.contains("unlucky input"), "{message}")
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
        assert!(
            matches!(batcher.infer(7).await, Err(InferError::Backend(m)) if m.contains("seven"))
        );
        // The same executor thread keeps serving.
        assert_eq!(batcher.infer(21).await, Ok(42));
    });
}
