//! The step loop on its own, with a fake model: a panic reloads the model, a request whose
//! deadline passes while it waits is answered without being started, and every request
//! holds its place from submission until its answer; with a step target, steps grow only
//! as wide as keep it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use kiln_server::batching::{
    Admission, ExecutorError, InferError, Running, StepController, StepLoop, StepModel, StepTarget,
    Waiting,
};
use tokio::sync::oneshot;

/// Doubles its value over `steps` steps; a request of 13 panics while running.
struct Job {
    value: u32,
    steps: usize,
    reply: oneshot::Sender<Result<u32, InferError>>,
}

#[derive(Default)]
struct Log {
    started: Mutex<Vec<u32>>,
    reloads: AtomicUsize,
    /// Requests in each step, in order.
    widths: Mutex<Vec<usize>>,
    /// Requests started together, in order.
    joined: Mutex<Vec<usize>>,
}

struct Doubler {
    log: Arc<Log>,
    /// One message lets one step run, when set.
    gate: Option<Mutex<mpsc::Receiver<()>>>,
    /// Requests running at once.
    room: usize,
    /// Each step sleeps this long per request in it (a model whose step time is known, at
    /// least: a sleep is never shorter).
    per_row: Duration,
    /// Starting sleeps this long per request started.
    per_start: Duration,
}

impl StepModel for Doubler {
    type Request = Job;
    type State = usize;

    fn room(&self, running: &[Running<Self>], _: &VecDeque<Waiting<Job>>, limit: usize) -> usize {
        self.room.min(limit).saturating_sub(running.len())
    }

    fn start(&mut self, joining: &mut [Waiting<Job>]) -> Result<Vec<usize>, ExecutorError> {
        let mut log = self.log.started.lock().unwrap();
        log.extend(joining.iter().map(|w| w.request.value));
        self.log.joined.lock().unwrap().push(joining.len());
        std::thread::sleep(self.per_start * joining.len() as u32);
        Ok(joining.iter().map(|w| w.request.steps).collect())
    }

    fn step(&mut self, running: &mut [Running<Self>]) -> Result<(), ExecutorError> {
        if let Some(gate) = &self.gate {
            gate.lock().unwrap().recv().unwrap();
        }
        self.log.widths.lock().unwrap().push(running.len());
        std::thread::sleep(self.per_row * running.len() as u32);
        for r in running.iter_mut() {
            if r.request.value == 13 {
                panic!("unlucky request");
            }
            r.state -= 1;
        }
        Ok(())
    }

    fn is_done(&self, running: &Running<Self>) -> bool {
        running.state == 0
    }

    fn finish(&self, request: Job, _: usize) {
        let _ = request.reply.send(Ok(request.value * 2));
    }

    fn reload(&mut self) -> Result<(), ExecutorError> {
        self.log.reloads.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn is_abandoned(&self, request: &Job) -> bool {
        request.reply.is_closed()
    }

    fn fail(&self, request: Job, error: InferError) {
        let _ = request.reply.send(Err(error));
    }
}

fn submit(
    step_loop: &StepLoop<Job>,
    value: u32,
    steps: usize,
    deadline: Option<tokio::time::Instant>,
) -> oneshot::Receiver<Result<u32, InferError>> {
    let (reply, answer) = oneshot::channel();
    step_loop
        .submit(
            Job {
                value,
                steps,
                reply,
            },
            deadline,
        )
        .unwrap();
    answer
}

#[tokio::test]
async fn a_panic_fails_its_requests_and_reloads_the_model() {
    let log = Arc::new(Log::default());
    let model = Doubler {
        log: log.clone(),
        gate: None,
        room: 4,
        per_row: Duration::ZERO,
        per_start: Duration::ZERO,
    };
    let step_loop = StepLoop::spawn("test-panic".into(), model, Admission::new(8), None).unwrap();
    let failed = submit(&step_loop, 13, 2, None).await.unwrap();
    match failed {
        Err(InferError::Backend(message)) => assert!(message.contains("unlucky"), "{message}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(log.reloads.load(Ordering::SeqCst), 1);
    assert_eq!(submit(&step_loop, 21, 3, None).await.unwrap(), Ok(42));
    assert_eq!(log.reloads.load(Ordering::SeqCst), 1);
    assert_eq!(step_loop.pending(), 0);
}

#[tokio::test]
async fn a_request_whose_deadline_passes_while_queued_is_never_started() {
    let (go, gate) = mpsc::channel();
    let log = Arc::new(Log::default());
    let model = Doubler {
        log: log.clone(),
        gate: Some(Mutex::new(gate)),
        room: 1,
        per_row: Duration::ZERO,
        per_start: Duration::ZERO,
    };
    let step_loop =
        StepLoop::spawn("test-deadline".into(), model, Admission::new(8), None).unwrap();
    // The first request takes the only room and holds it until its steps are let through.
    let first = submit(&step_loop, 1, 2, None);
    while log.started.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let late = submit(&step_loop, 2, 1, Some(tokio::time::Instant::now()));
    // Both hold a place: the running request and the queued one.
    assert_eq!(step_loop.pending(), 2);
    go.send(()).unwrap();
    assert_eq!(late.await.unwrap(), Err(InferError::DeadlineExceeded));
    go.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Ok(2));
    assert_eq!(*log.started.lock().unwrap(), vec![1]);
    assert_eq!(step_loop.pending(), 0);
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once() {
    let (go, gate) = mpsc::channel();
    let model = Doubler {
        log: Arc::default(),
        gate: Some(Mutex::new(gate)),
        room: 1,
        per_row: Duration::ZERO,
        per_start: Duration::ZERO,
    };
    let step_loop = StepLoop::spawn("test-full".into(), model, Admission::new(2), None).unwrap();
    let first = submit(&step_loop, 1, 1, None);
    let second = submit(&step_loop, 2, 1, None);
    let (reply, _answer) = oneshot::channel();
    let refused = step_loop.submit(
        Job {
            value: 3,
            steps: 1,
            reply,
        },
        None,
    );
    assert_eq!(refused, Err(InferError::Overloaded(2)));
    go.send(()).unwrap();
    go.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Ok(2));
    assert_eq!(second.await.unwrap(), Ok(4));
}

#[tokio::test]
async fn a_step_target_keeps_steps_as_narrow_as_it_needs_and_answers_everyone() {
    // 2 ms per request in a step against a 20 ms target (16 ms for a round): at most 8.
    let log = Arc::new(Log::default());
    let model = Doubler {
        log: log.clone(),
        gate: None,
        room: 64,
        per_row: Duration::from_millis(2),
        per_start: Duration::ZERO,
    };
    let target = StepTarget::from_ms(20.0).unwrap();
    let step_loop = StepLoop::spawn(
        "test-target".into(),
        model,
        Admission::new(256),
        Some(StepController::new(target, 64)),
    )
    .unwrap();
    assert_eq!(step_loop.step_target(), Some((target, 64)));
    // (13 would panic.)
    let answers: Vec<_> = (100..260).map(|v| submit(&step_loop, v, 3, None)).collect();
    for (value, answer) in (100..).zip(answers) {
        assert_eq!(answer.await.unwrap(), Ok(value * 2));
    }
    let widths = log.widths.lock().unwrap().clone();
    // The first requests start before anything is measured, and narrower waves follow
    // while the loop learns; once a step fits the budget, no later one grows past it.
    let settled: Vec<usize> = widths.iter().copied().skip_while(|&w| w > 8).collect();
    assert!(!settled.is_empty(), "{widths:?}");
    assert!(settled.iter().all(|&w| w <= 8), "{widths:?}");
    let (_, limit) = step_loop.step_target().unwrap();
    assert!((1..=8).contains(&limit), "{limit}");
    assert_eq!(step_loop.pending(), 0);
}

#[tokio::test]
async fn a_step_target_lets_only_as_many_join_a_round_as_their_start_leaves_time_for() {
    // Steps cost nothing, a start 5 ms per request, a 20 ms target (16 ms for a round): at
    // most 3 join in one round.
    let log = Arc::new(Log::default());
    let model = Doubler {
        log: log.clone(),
        gate: None,
        room: 64,
        per_row: Duration::ZERO,
        per_start: Duration::from_millis(5),
    };
    let target = StepTarget::from_ms(20.0).unwrap();
    let step_loop = StepLoop::spawn(
        "test-joiners".into(),
        model,
        Admission::new(256),
        Some(StepController::new(target, 64)),
    )
    .unwrap();
    // One request first, so that a start and a step are measured.
    assert_eq!(submit(&step_loop, 1, 2, None).await.unwrap(), Ok(2));
    let answers: Vec<_> = (100..140).map(|v| submit(&step_loop, v, 2, None)).collect();
    for (value, answer) in (100..).zip(answers) {
        assert_eq!(answer.await.unwrap(), Ok(value * 2));
    }
    let joined = log.joined.lock().unwrap().clone();
    assert_eq!(joined[0], 1);
    assert!(
        joined[1..].iter().all(|&n| (1..=3).contains(&n)),
        "{joined:?}"
    );
    assert_eq!(joined.iter().sum::<usize>(), 41);
}
