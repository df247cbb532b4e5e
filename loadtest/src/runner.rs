//! Driving one load level: warm-up, measurement windows until throughput is stable, and
//! the server's own counters read around the measurement.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use rand::Rng;
use tonic::transport::Channel;

pub use crate::payloads::{Payload, Payloads};
use crate::plan::{Arrivals, Level, LoadPlan, RequestForm};
use crate::server_metrics::{Scrape, ServerSplit};
use crate::stats::{Latency, LatencyHistogram, fell_behind, is_stable};

/// Open-loop requests outstanding at most; arrivals beyond it are counted as errors
/// rather than piling up without bound.
const MAX_OUTSTANDING: usize = 8192;

/// The outcome of one level.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LevelResult {
    pub level: String,
    pub level_value: f64,
    /// Successful requests per second during the measurement.
    pub throughput: f64,
    pub latency: Latency,
    /// 99th percentile of how late the measured requests, answered or not, left after their
    /// scheduled time (open loop; closed-loop requests leave when claimed). A level whose
    /// requests left late measured the load generator's own lag as well, and offered its
    /// load in bursts: see [`generator_fell_behind`](Self::generator_fell_behind).
    pub send_lag_p99_ms: f64,
    /// Whether the load generator fell behind its own schedule at this level, by
    /// [`fell_behind`]: written with the results, so that scripts reading them apply the
    /// same rule.
    pub generator_fell_behind: bool,
    /// Every measured latency of a successful request.
    #[serde(skip)]
    pub histogram: LatencyHistogram,
    pub measured_ok: usize,
    pub measured_errors: usize,
    pub windows: usize,
    pub stable: bool,
    /// Every request of the level, warm-up included.
    pub sent: usize,
    pub ok: usize,
    pub errors: usize,
    pub server: Option<ServerSplit>,
    /// Generated tokens per second during the measurement (generate form only).
    pub tokens_per_second: Option<f64>,
}

/// A finished request.
struct Completion {
    at: Instant,
    latency: Duration,
    ok: bool,
    /// Tokens the answer reports generating.
    tokens: usize,
    /// How long after its scheduled time the request left.
    lag: Duration,
}

struct Shared {
    client: reqwest::Client,
    url: String,
    grpc: Option<GrpcInferenceServiceClient<Channel>>,
    api_key: Option<String>,
    payloads: Payloads,
    completions: Mutex<Vec<Completion>>,
    stop: AtomicBool,
    sent: AtomicUsize,
    max_requests: usize,
}

impl Shared {
    /// Claim the right to send one more request, within the level's bound.
    fn claim(&self) -> Option<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        (n < self.max_requests).then_some(n)
    }

    /// Sends request `n`; its latency counts from `started`, the time it was meant to leave
    /// (for open-loop arrivals, the scheduled instant, as wrk2 measures).
    async fn send(&self, n: usize, started: Instant) {
        // Late by what the runtime, the spawn or the schedule's own sleep took.
        let lag = started.elapsed();
        let payload = &self.payloads.items[n % self.payloads.items.len()];
        let (ok, tokens) = match payload {
            Payload::Http {
                body,
                content_type,
                header_length,
            } => {
                let mut request = self
                    .client
                    .post(&self.url)
                    .header("content-type", *content_type)
                    .body(body.clone());
                if let Some(length) = header_length {
                    request = request.header("inference-header-content-length", *length);
                }
                if let Some(key) = &self.api_key {
                    request = request.bearer_auth(key);
                }
                match request.send().await {
                    Ok(response) => {
                        let success = response.status().is_success();
                        match response.bytes().await {
                            Ok(body) if success => (true, completion_tokens(&body)),
                            _ => (false, 0),
                        }
                    }
                    Err(_) => (false, 0),
                }
            }
            Payload::Grpc(message) => {
                let Some(client) = &self.grpc else {
                    return self.record(started, false);
                };
                let mut request = tonic::Request::new(message.clone());
                if let Some(key) = &self.api_key
                    && let Ok(value) = format!("Bearer {key}").parse()
                {
                    request.metadata_mut().insert("authorization", value);
                }
                (client.clone().model_infer(request).await.is_ok(), 0)
            }
        };
        self.record_sent(started, lag, ok, tokens);
    }

    /// A request that never left: failed at once, as late as it is now.
    fn record(&self, started: Instant, ok: bool) {
        self.record_sent(started, started.elapsed(), ok, 0);
    }

    fn record_sent(&self, started: Instant, lag: Duration, ok: bool, tokens: usize) {
        let at = Instant::now();
        self.completions
            .lock()
            .expect("completions lock")
            .push(Completion {
                at,
                latency: at - started,
                ok,
                tokens,
                lag,
            });
    }
}

async fn scrape(client: &reqwest::Client, plan: &LoadPlan) -> Option<Scrape> {
    let mut request = client.get(plan.metrics_url());
    if let Some(key) = &plan.api_key {
        request = request.bearer_auth(key);
    }
    let text = request.send().await.ok()?.text().await.ok()?;
    Some(Scrape::parse(&text))
}

/// Run one level and report it; `progress` receives a line per measurement window.
/// `grpc` is the channel for the gRPC form.
pub async fn run_level(
    plan: &LoadPlan,
    client: &reqwest::Client,
    grpc: Option<&Channel>,
    payloads: Payloads,
    level: Level,
    progress: &(dyn Fn(&str) + Sync),
) -> LevelResult {
    let shared = Arc::new(Shared {
        client: client.clone(),
        url: plan.request_url(),
        grpc: grpc.map(|c| GrpcInferenceServiceClient::new(c.clone())),
        api_key: plan.api_key.clone(),
        payloads,
        completions: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        sent: AtomicUsize::new(0),
        max_requests: plan.max_requests,
    });
    let workers = start_workers(&shared, level, plan.arrivals);

    tokio::time::sleep(plan.warmup).await;
    let before = scrape(client, plan).await;
    let measure_start = Instant::now();
    let mut throughputs = Vec::new();
    let mut window_start = measure_start;
    while throughputs.len() < plan.max_windows && !is_stable(&throughputs, plan.stability) {
        tokio::time::sleep(plan.window).await;
        let now = Instant::now();
        let ok = count_ok(&shared, window_start, now);
        let throughput = ok as f64 / (now - window_start).as_secs_f64();
        throughputs.push(throughput);
        progress(&format!(
            "{} window {}: {throughput:.0} req/s",
            level.label(),
            throughputs.len()
        ));
        window_start = now;
        if shared.sent.load(Ordering::Relaxed) >= plan.max_requests {
            progress(&format!(
                "{} reached the bound of {} requests",
                level.label(),
                plan.max_requests
            ));
            break;
        }
    }
    let measure_end = Instant::now();
    let after = scrape(client, plan).await;
    shared.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }

    let completions = shared.completions.lock().expect("completions lock");
    let measured: Vec<&Completion> = completions
        .iter()
        .filter(|c| c.at >= measure_start && c.at <= measure_end)
        .collect();
    let mut histogram = LatencyHistogram::default();
    for completion in measured.iter().filter(|c| c.ok) {
        histogram.record(completion.latency);
    }
    let mut lags = LatencyHistogram::default();
    for completion in &measured {
        lags.record(completion.lag);
    }
    let measured_ok = histogram.len() as usize;
    let measured_secs = (measure_end - measure_start).as_secs_f64();
    let latency = histogram.summary();
    let send_lag_p99_ms = lags.summary().p99_ms;
    let tokens: usize = measured.iter().filter(|c| c.ok).map(|c| c.tokens).sum();
    LevelResult {
        tokens_per_second: (plan.form == RequestForm::Generate)
            .then(|| tokens as f64 / measured_secs),
        level: level.label(),
        level_value: level.value(),
        throughput: measured_ok as f64 / measured_secs,
        generator_fell_behind: fell_behind(send_lag_p99_ms, latency.p99_ms),
        latency,
        send_lag_p99_ms,
        histogram,
        measured_ok,
        measured_errors: measured.len() - measured_ok,
        windows: throughputs.len(),
        stable: is_stable(&throughputs, plan.stability),
        sent: completions.len(),
        ok: completions.iter().filter(|c| c.ok).count(),
        errors: completions.iter().filter(|c| !c.ok).count(),
        // Another server's metrics (or none) leave the split empty rather than zero.
        server: before
            .zip(after)
            .filter(|(_, a)| a.knows_model(&plan.model))
            .map(|(b, a)| ServerSplit::between(&b, &a, &plan.model)),
    }
}

/// `usage.completion_tokens` of a generate answer; 0 for any other body.
fn completion_tokens(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["usage"]["completion_tokens"].as_u64())
        .unwrap_or(0) as usize
}

fn count_ok(shared: &Shared, from: Instant, to: Instant) -> usize {
    let completions = shared.completions.lock().expect("completions lock");
    completions
        .iter()
        .filter(|c| c.ok && c.at > from && c.at <= to)
        .count()
}

fn start_workers(
    shared: &Arc<Shared>,
    level: Level,
    arrivals: Arrivals,
) -> Vec<tokio::task::JoinHandle<()>> {
    match level {
        Level::Concurrency(n) => (0..n.max(1))
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    while let Some(n) = shared.claim() {
                        shared.send(n, Instant::now()).await;
                    }
                })
            })
            .collect(),
        Level::RequestRate(rate) => {
            let shared = shared.clone();
            vec![tokio::spawn(async move {
                let outstanding = Arc::new(AtomicUsize::new(0));
                let mut in_flight = Vec::new();
                let mut next = Instant::now();
                let mut uniform = || rand::rng().random::<f64>();
                while let Some(n) = shared.claim() {
                    next += arrivals.gap(rate, &mut uniform);
                    tokio::time::sleep_until(next.into()).await;
                    if outstanding.load(Ordering::Relaxed) >= MAX_OUTSTANDING {
                        shared.record(next, false);
                        continue;
                    }
                    outstanding.fetch_add(1, Ordering::Relaxed);
                    let (shared, outstanding) = (shared.clone(), outstanding.clone());
                    // `next` is when this request was due: a late wake-up or a slow spawn
                    // counts against its latency instead of vanishing.
                    let due = next;
                    in_flight.push(tokio::spawn(async move {
                        shared.send(n, due).await;
                        outstanding.fetch_sub(1, Ordering::Relaxed);
                    }));
                    in_flight.retain(|t| !t.is_finished());
                }
                for task in in_flight {
                    let _ = task.await;
                }
            })]
        }
    }
}
