//! What a language-model request asks for, checked against the model's limits: the JSON
//! bodies of the task routes (which gRPC's messages are translated into) and the checks
//! every protocol shares. Pure functions of the body bytes and the model's limits, so they
//! can be tested and fuzzed without a server.

use serde::Deserialize;

use super::config::GenerationConfig;
use super::sampling::SamplingParams;
use crate::error::{ErrorKind, KilnError};

/// Next words returned when the caller does not say.
pub const DEFAULT_TOP_K: usize = 5;
/// Most next words one request may ask for.
pub const MAX_TOP_K: usize = 100;
/// Most stop strings per request, and the longest one.
pub const MAX_STOP_STRINGS: usize = 8;
pub const MAX_STOP_LENGTH: usize = 64;
/// Most alternatives reported beside each generated token.
pub const MAX_TOP_LOGPROBS: usize = 20;
const MAX_TEMPERATURE: f32 = 5.0;

/// `POST /v1/models/{m}/next-word`.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NextWordRequest {
    pub text: String,
    #[serde(default)]
    pub top_k: Option<usize>,
}

/// `POST /v1/models/{m}/generate`.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub text: String,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Option<StopStrings>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Keep generating past the end-of-text token (fixed-length runs, benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// `stop` may be one string or a list.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StopStrings {
    One(String),
    Many(Vec<String>),
}

/// A generation request after checking, ready for the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationPlan {
    pub text: String,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub ignore_eos: bool,
    /// How many of the likeliest alternatives to report beside each token (0: none).
    pub top_logprobs: usize,
}

fn unprocessable(message: impl Into<String>) -> KilnError {
    KilnError::new(ErrorKind::Unprocessable, message)
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, KilnError> {
    serde_json::from_slice(body)
        .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")))
}

/// Decode a next-word body: the text and how many words to return.
pub fn decode_next_word(body: &[u8]) -> Result<(String, usize), KilnError> {
    let request: NextWordRequest = parse(body)?;
    Ok((request.text, next_word_count(request.top_k)?))
}

/// How many next words to return: the default, or a requested count within the limit.
pub fn next_word_count(requested: Option<usize>) -> Result<usize, KilnError> {
    match requested {
        None => Ok(DEFAULT_TOP_K),
        Some(k) if (1..=MAX_TOP_K).contains(&k) => Ok(k),
        Some(k) => Err(unprocessable(format!(
            "top_k must be within 1..={MAX_TOP_K}, not {k}"
        ))),
    }
}

/// Decode and check a generate body against the model's limits. `wants_events` is true when
/// the caller sent `Accept: text/event-stream`.
pub fn decode_generate(
    body: &[u8],
    limits: &GenerationConfig,
    wants_events: bool,
) -> Result<GenerationPlan, KilnError> {
    plan_generation(parse(body)?, limits, wants_events)
}

/// Check a generation request, however it arrived, against the model's limits.
pub fn plan_generation(
    request: GenerateRequest,
    limits: &GenerationConfig,
    wants_events: bool,
) -> Result<GenerationPlan, KilnError> {
    let max_tokens = request.max_tokens.unwrap_or(limits.default_max_tokens);
    if max_tokens == 0 || max_tokens > limits.max_new_tokens {
        return Err(unprocessable(format!(
            "max_tokens must be within 1..={}, not {max_tokens}",
            limits.max_new_tokens
        )));
    }
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
        return Err(unprocessable(format!(
            "temperature must be within 0..={MAX_TEMPERATURE}"
        )));
    }
    if request.top_k == Some(0) {
        return Err(unprocessable("top_k must be at least 1"));
    }
    if let Some(p) = request.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(unprocessable("top_p must be within (0, 1]"));
    }
    let stop = match request.stop {
        None => Vec::new(),
        Some(StopStrings::One(s)) => vec![s],
        Some(StopStrings::Many(v)) => v,
    };
    if stop.len() > MAX_STOP_STRINGS
        || stop
            .iter()
            .any(|s| s.is_empty() || s.chars().count() > MAX_STOP_LENGTH)
    {
        return Err(unprocessable(format!(
            "stop takes at most {MAX_STOP_STRINGS} non-empty strings of up to {MAX_STOP_LENGTH} characters"
        )));
    }
    Ok(GenerationPlan {
        text: request.text,
        max_tokens,
        sampling: SamplingParams {
            temperature,
            top_k: request.top_k,
            top_p: request.top_p,
        },
        seed: request.seed,
        stop,
        stream: request.stream.unwrap_or(wants_events),
        ignore_eos: request.ignore_eos,
        top_logprobs: 0,
    })
}

/// Check an encoded prompt (with `<bos>`) against the model's limits: the configured prompt
/// length, and for models with a fixed context, room for at least one new token.
pub fn check_prompt_length(
    prompt_tokens: usize,
    limits: &GenerationConfig,
    context_length: Option<usize>,
) -> Result<(), KilnError> {
    let limit = match context_length {
        Some(c) => limits.max_prompt_tokens.min(c.saturating_sub(1)),
        None => limits.max_prompt_tokens,
    };
    if prompt_tokens > limit {
        return Err(unprocessable(format!(
            "the prompt is {prompt_tokens} tokens long; this model takes at most {limit}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GenerationConfig {
        GenerationConfig::default()
    }

    #[test]
    fn defaults_and_stream_negotiation() {
        let plan = decode_generate(br#"{"text":"In the"}"#, &limits(), false).unwrap();
        assert_eq!(plan.max_tokens, limits().default_max_tokens);
        assert!(!plan.stream);
        assert!(
            decode_generate(br#"{"text":"x"}"#, &limits(), true)
                .unwrap()
                .stream
        );
        assert!(
            !decode_generate(br#"{"text":"x","stream":false}"#, &limits(), true)
                .unwrap()
                .stream
        );
        let plan = decode_generate(br#"{"text":"x","stop":"."}"#, &limits(), false).unwrap();
        assert_eq!(plan.stop, ["."]);
    }

    #[test]
    fn out_of_range_values_are_422_and_bad_json_400() {
        for body in [
            r#"{"text":"x","max_tokens":0}"#,
            r#"{"text":"x","max_tokens":100000}"#,
            r#"{"text":"x","temperature":-1}"#,
            r#"{"text":"x","top_p":0}"#,
            r#"{"text":"x","top_k":0}"#,
            r#"{"text":"x","stop":[""]}"#,
        ] {
            let e = decode_generate(body.as_bytes(), &limits(), false).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unprocessable, "{body}");
        }
        for body in [
            "",
            "{",
            r#"{"txt":"x"}"#,
            r#"{"text":5}"#,
            r#"{"text":"x","top_k":-1}"#,
        ] {
            let e = decode_generate(body.as_bytes(), &limits(), false).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadInput, "{body}");
        }
        assert_eq!(
            decode_next_word(br#"{"text":"a","top_k":101}"#)
                .unwrap_err()
                .kind,
            ErrorKind::Unprocessable
        );
        assert_eq!(
            decode_next_word(br#"{"text":"a"}"#).unwrap(),
            ("a".into(), DEFAULT_TOP_K)
        );
    }

    #[test]
    fn prompt_limits_follow_the_context() {
        assert!(check_prompt_length(10, &limits(), None).is_ok());
        assert!(check_prompt_length(300, &limits(), None).is_err());
        assert!(check_prompt_length(128, &limits(), Some(128)).is_err());
        assert!(check_prompt_length(127, &limits(), Some(128)).is_ok());
    }
}
