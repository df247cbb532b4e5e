use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kiln_loadtest::inputs::{load_images, load_prompts};
use kiln_loadtest::payloads::{Payloads, V2Target};
use kiln_loadtest::plan::{Arrivals, Level, LoadPlan, RequestForm, Sweep};
use kiln_loadtest::plot::{self, Run};
use kiln_loadtest::report;
use kiln_loadtest::runner::run_level;
use tonic::transport::Channel;

/// Load generator for Kiln (and other servers of the Open Inference Protocol): closed-loop
/// concurrency sweeps or open-loop request rates (Poisson or constant) over the task routes, V2 JSON, V2
/// binary or gRPC; latency percentiles, and the server's own queue/compute split.
#[derive(Debug, Parser)]
#[command(
    name = "kiln-loadtest",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Server base URL (loopback or your own hosts).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// gRPC address, for `--form grpc`.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    grpc_url: String,
    #[arg(long, default_value = "lenet-fashion")]
    model: String,
    /// Folder of PNG/JPEG images to send, in turn.
    #[arg(long, default_value = "examples/images")]
    inputs: PathBuf,
    #[arg(long, value_enum, default_value = "http-binary")]
    form: RequestForm,
    /// A path replacing the form's route, `{model}` standing for the model name (another
    /// server's image route, e.g. TorchServe's `/predictions/{model}`).
    #[arg(long)]
    path: Option<String>,
    /// Prompts file, one per line (next-word and generate forms, and V2 forms for text
    /// models).
    #[arg(long, default_value = "examples/prompts-en.txt")]
    prompts: PathBuf,
    /// Tokens each generate request produces (sent with `ignore_eos`).
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Closed-loop concurrency levels, e.g. `1:64:x2`.
    #[arg(long, conflicts_with = "request_rate")]
    concurrency: Option<Sweep>,
    /// Open-loop request rates (requests/s), e.g. `500:2000:+500`. Latency counts from each
    /// request's intended send time, so a stalled sender or server cannot hide queueing.
    #[arg(long)]
    request_rate: Option<Sweep>,
    /// How open-loop arrivals are spaced.
    #[arg(long, value_enum, default_value = "poisson")]
    arrivals: Arrivals,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Length of one measurement window.
    #[arg(long, default_value_t = 3.0)]
    window_secs: f64,
    #[arg(long, default_value_t = 6)]
    max_windows: usize,
    /// Throughput of the last three windows within this fraction of their mean.
    #[arg(long, default_value_t = 0.1)]
    stability: f64,
    /// Requests at most per level, warm-up included.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: usize,
    #[arg(long, env = "KILN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Where to write results.csv, results.json, results.svg and each level's latency
    /// distribution (level-N.hgrm, HdrHistogram's text form).
    #[arg(long)]
    output_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Draw runs compared: p50 and p99 latency against offered load and throughput against
    /// offered load, one line per run, from the results.json files of earlier runs.
    Plot {
        /// A run as NAME=PATH/results.json (or its folder); one colour each, in order.
        #[arg(required = true)]
        runs: Vec<String>,
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "")]
        title: String,
        /// A latency target to draw across the latency chart, in ms.
        #[arg(long)]
        target_ms: Option<f64>,
        /// What the runs' levels are.
        #[arg(long, default_value = "offered load (req/s)")]
        offered: String,
    },
}

fn plot_runs(
    runs: &[String],
    out: &std::path::Path,
    title: &str,
    target_ms: Option<f64>,
    offered: &str,
) -> anyhow::Result<()> {
    let runs = runs
        .iter()
        .map(|run| {
            // The last `=`: names may hold one ("batch=8"), paths seldom do.
            let (name, path) = run
                .rsplit_once('=')
                .with_context(|| format!("{run:?} is not NAME=PATH"))?;
            let mut path = PathBuf::from(path);
            if path.is_dir() {
                path.push("results.json");
            }
            let json = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Run::from_results_json(name, &json).map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::write(out, plot::compare(title, offered, &runs, target_ms))
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Plot {
        runs,
        out,
        title,
        target_ms,
        offered,
    }) = &args.command
    {
        return plot_runs(runs, out, title, *target_ms, offered);
    }
    let levels: Vec<Level> = match (&args.concurrency, &args.request_rate) {
        (_, Some(rates)) => rates.0.iter().map(|&r| Level::RequestRate(r)).collect(),
        (Some(c), None) => {
            c.0.iter()
                .map(|&c| Level::Concurrency(c.round() as usize))
                .collect()
        }
        (None, None) => vec![
            Level::Concurrency(1),
            Level::Concurrency(16),
            Level::Concurrency(64),
        ],
    };
    let plan = LoadPlan {
        url: args.url.clone(),
        model: args.model.clone(),
        form: args.form,
        path: args.path.clone(),
        levels,
        warmup: Duration::from_secs_f64(args.warmup_secs),
        window: Duration::from_secs_f64(args.window_secs),
        max_windows: args.max_windows.max(1),
        stability: args.stability,
        max_requests: args.max_requests,
        api_key: args.api_key.clone(),
        arrivals: args.arrivals,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    // V2 forms send what the model's metadata asks for: prompts or images.
    let target = if plan.form.is_v2() {
        let metadata: serde_json::Value = client
            .get(plan.metadata_url())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("cannot read {}", plan.metadata_url()))?
            .json()
            .await?;
        Some(V2Target::from_metadata(&plan.model, &metadata).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let wants_text = target.as_ref().map_or(plan.form.is_text(), |t| t.text);
    let images = if wants_text {
        Vec::new()
    } else {
        load_images(&args.inputs).map_err(anyhow::Error::msg)?
    };
    let prompts = if wants_text {
        load_prompts(&args.prompts).map_err(anyhow::Error::msg)?
    } else {
        Vec::new()
    };
    let payloads = match &target {
        Some(target) => {
            Payloads::v2(target, plan.form, &images, &prompts).map_err(anyhow::Error::msg)?
        }
        None if wants_text => Payloads::text(&prompts, plan.form, args.max_tokens),
        None => Payloads::new(&images, plan.form),
    };
    let grpc = if plan.form == RequestForm::Grpc {
        Some(
            Channel::from_shared(args.grpc_url.clone())?
                .connect()
                .await
                .with_context(|| format!("cannot connect to {}", args.grpc_url))?,
        )
    } else {
        None
    };
    let mut results = Vec::new();
    for &level in &plan.levels {
        let result = run_level(
            &plan,
            &client,
            grpc.as_ref(),
            payloads.clone(),
            level,
            &|line| eprintln!("{line}"),
        )
        .await;
        results.push(result);
    }
    print!("{}", report::table(&results));
    eprint!("{}", report::warnings(&results));
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("results.csv"), report::csv(&results))?;
        std::fs::write(dir.join("results.json"), report::json(&results))?;
        let title = format!("{} — {}", args.model, args.url);
        std::fs::write(dir.join("results.svg"), report::svg(&results, &title))?;
        for (index, result) in results.iter().enumerate() {
            let distribution = result.histogram.percentile_distribution();
            std::fs::write(dir.join(format!("level-{index}.hgrm")), distribution)?;
        }
        eprintln!(
            "wrote {}/results.{{csv,json,svg}} and level-N.hgrm",
            dir.display()
        );
    }
    Ok(())
}
