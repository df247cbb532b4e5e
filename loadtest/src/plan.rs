//! What to load and how: the target, the request form, and the levels to sweep.

use std::str::FromStr;
use std::time::Duration;

/// How each request carries its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestForm {
    /// `POST /v1/models/{m}/classify` with the raw image bytes and their content type.
    HttpBinary,
    /// `POST /v1/models/{m}/classify` with `{"image": "<base64>"}`.
    HttpJson,
    /// `POST /v1/models/{m}/caption` with the raw image bytes and their content type.
    Caption,
    /// `POST /v1/models/{m}/next-word` with `{"text": "<prompt>"}`.
    NextWord,
    /// `POST /v1/models/{m}/generate` with `{"text", "max_tokens", "ignore_eos": true}`:
    /// every request generates exactly `max_tokens` tokens.
    Generate,
    /// `POST /v2/models/{m}/infer`, JSON tensors: images as UINT8 pixels, prompts as BYTES
    /// (text models are asked for their top 5 next words).
    V2Json,
    /// `POST /v2/models/{m}/infer`, binary tensor data: each image file or prompt as one
    /// BYTES element.
    V2Binary,
    /// gRPC `inference.GRPCInferenceService/ModelInfer` to `--grpc-url`, BYTES as for
    /// `v2-binary`.
    Grpc,
}

impl RequestForm {
    /// Whether the form sends text prompts rather than images.
    pub fn is_text(self) -> bool {
        matches!(self, RequestForm::NextWord | RequestForm::Generate)
    }

    /// Whether the form speaks the Open Inference Protocol (and so sends what the model's
    /// metadata asks for).
    pub fn is_v2(self) -> bool {
        matches!(
            self,
            RequestForm::V2Json | RequestForm::V2Binary | RequestForm::Grpc
        )
    }

    fn route(self) -> &'static str {
        match self {
            RequestForm::HttpBinary | RequestForm::HttpJson => "classify",
            RequestForm::Caption => "caption",
            RequestForm::NextWord => "next-word",
            RequestForm::Generate => "generate",
            RequestForm::V2Json | RequestForm::V2Binary | RequestForm::Grpc => "infer",
        }
    }
}

/// One load level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    /// Closed loop: this many callers, each sending its next request when the last returns.
    Concurrency(usize),
    /// Open loop: arrivals at this mean rate (requests/s), spaced as the plan's [`Arrivals`]
    /// say, whatever the answers do.
    RequestRate(f64),
}

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Exponential gaps: independent users, bursts included.
    #[default]
    Poisson,
    /// Equal gaps of 1/rate: the steadiest load a rate can be.
    Constant,
}

impl Arrivals {
    /// The gap before the next arrival at `rate` requests/s; `uniform` draws from [0, 1).
    pub fn gap(self, rate: f64, uniform: &mut impl FnMut() -> f64) -> std::time::Duration {
        let seconds = match self {
            // Inverse transform of the exponential distribution; 1 - u is never 0.
            Arrivals::Poisson => -(1.0 - uniform()).ln() / rate,
            Arrivals::Constant => 1.0 / rate,
        };
        std::time::Duration::from_secs_f64(seconds)
    }
}

impl Level {
    pub fn label(&self) -> String {
        match self {
            Level::Concurrency(c) => format!("c={c}"),
            // Rates stepped by adding decimals carry float noise (3534.8999999999996).
            Level::RequestRate(r) => format!("rate={}", (r * 1000.0).round() / 1000.0),
        }
    }

    pub fn value(&self) -> f64 {
        match self {
            Level::Concurrency(c) => *c as f64,
            Level::RequestRate(r) => *r,
        }
    }
}

/// A sweep written `start:end:step` (`1:64:x2` doubles, `100:400:+100` adds) or a single
/// value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep(pub Vec<f64>);

impl FromStr for Sweep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or_else(|| format!("'{v}' is not a positive number"))
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [one] => Ok(Sweep(vec![number(one)?])),
            [start, end] | [start, end, _] => {
                let (start, end) = (number(start)?, number(end)?);
                if end < start {
                    return Err(format!("sweep end {end} is below its start {start}"));
                }
                let step = parts.get(2).copied().unwrap_or("x2");
                let next: Box<dyn Fn(f64) -> f64> = if let Some(f) = step.strip_prefix('x') {
                    let f = number(f)?;
                    if f <= 1.0 {
                        return Err("a multiplying step must be above 1".into());
                    }
                    Box::new(move |v| v * f)
                } else {
                    let d = number(step.trim_start_matches('+'))?;
                    Box::new(move |v| v + d)
                };
                let mut values = vec![start];
                while values.len() < 64 {
                    let v = next(*values.last().unwrap_or(&start));
                    if v > end + 1e-9 {
                        break;
                    }
                    values.push(v);
                }
                Ok(Sweep(values))
            }
            _ => Err(format!("'{s}' is not start:end:step")),
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Base URL of the server, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    pub model: String,
    pub form: RequestForm,
    /// A path replacing the form's route, `{model}` standing for the model name: another
    /// server's image route, e.g. TorchServe's `/predictions/{model}`.
    pub path: Option<String>,
    pub levels: Vec<Level>,
    pub warmup: Duration,
    pub window: Duration,
    /// Measurement windows at most per level.
    pub max_windows: usize,
    /// Throughput of the last three windows must lie within this fraction of their mean.
    pub stability: f64,
    /// Requests at most per level (warm-up included): a bound whatever the windows say.
    pub max_requests: usize,
    pub api_key: Option<String>,
    /// How open-loop levels space their arrivals.
    pub arrivals: Arrivals,
}

impl LoadPlan {
    /// The route the plan's request form goes to.
    pub fn request_url(&self) -> String {
        if let Some(path) = &self.path {
            return format!(
                "{}/{}",
                self.url.trim_end_matches('/'),
                path.replace("{model}", &self.model).trim_start_matches('/')
            );
        }
        let version = if self.form.is_v2() { "v2" } else { "v1" };
        format!(
            "{}/{version}/models/{}/{}",
            self.url.trim_end_matches('/'),
            self.model,
            self.form.route()
        )
    }

    /// The model's Open Inference Protocol metadata.
    pub fn metadata_url(&self) -> String {
        format!(
            "{}/v2/models/{}",
            self.url.trim_end_matches('/'),
            self.model
        )
    }

    pub fn classify_url(&self) -> String {
        format!(
            "{}/v1/models/{}/classify",
            self.url.trim_end_matches('/'),
            self.model
        )
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_multiply_add_or_stand_alone() {
        assert_eq!(
            "1:64:x2".parse::<Sweep>().unwrap().0,
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
        );
        assert_eq!(
            "100:300:+100".parse::<Sweep>().unwrap().0,
            vec![100.0, 200.0, 300.0]
        );
        assert_eq!("16".parse::<Sweep>().unwrap().0, vec![16.0]);
        assert!("8:4".parse::<Sweep>().is_err());
        assert!("1:8:x1".parse::<Sweep>().is_err());
        assert!("a:b".parse::<Sweep>().is_err());
    }

    #[test]
    fn rate_labels_read_as_the_rate_was_written() {
        let rates = "1178.3:5891.5:+2356.6".parse::<Sweep>().unwrap().0;
        let labels: Vec<String> = rates
            .into_iter()
            .map(|r| Level::RequestRate(r).label())
            .collect();
        assert_eq!(labels, ["rate=1178.3", "rate=3534.9", "rate=5891.5"]);
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced_and_poisson_ones_average_the_rate() {
        let mut never = || panic!("constant arrivals draw nothing");
        assert_eq!(
            Arrivals::Constant.gap(250.0, &mut never),
            Duration::from_millis(4)
        );
        // A fixed low-discrepancy sequence stands in for the random draws: the mean of the
        // exponential gaps tends to 1/rate, and none is negative or infinite.
        let mut i = 0u32;
        let mut uniform = || {
            i += 1;
            (f64::from(i) * 0.618_033_988_749_895).fract()
        };
        let gaps: Vec<f64> = (0..20_000)
            .map(|_| Arrivals::Poisson.gap(100.0, &mut uniform).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.01).abs() < 0.0005, "mean gap {mean}");
        assert!(gaps.iter().all(|g| g.is_finite() && *g >= 0.0));
        let longest = gaps.iter().cloned().fold(0.0, f64::max);
        assert!(
            longest > 0.05,
            "exponential gaps have a long tail: {longest}"
        );
    }

    #[test]
    fn a_path_replaces_the_route() {
        let mut plan = LoadPlan {
            url: "http://127.0.0.1:9000/".into(),
            model: "efficientnet-lite0".into(),
            form: RequestForm::HttpBinary,
            path: None,
            levels: vec![Level::Concurrency(1)],
            warmup: Duration::ZERO,
            window: Duration::from_secs(1),
            max_windows: 1,
            stability: 0.1,
            max_requests: 1,
            api_key: None,
            arrivals: Arrivals::Poisson,
        };
        assert_eq!(
            plan.request_url(),
            "http://127.0.0.1:9000/v1/models/efficientnet-lite0/classify"
        );
        plan.path = Some("/predictions/{model}".into());
        assert_eq!(
            plan.request_url(),
            "http://127.0.0.1:9000/predictions/efficientnet-lite0"
        );
    }
}
