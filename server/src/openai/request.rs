//! OpenAI's request bodies and their translation into generation plans: one plan per choice
//! (each prompt `n` times), checked against the model's limits exactly as the native
//! `generate` route checks its own. Pure functions, testable without a server.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::OpenAiError;
use crate::error::{ErrorKind, KilnError};
use crate::task::language::request::{MAX_TOP_LOGPROBS, plan_generation};
use crate::task::language::{GenerateRequest, GenerationConfig, GenerationPlan, StopStrings};

/// Most generations one request may start (prompts × `n`).
pub const MAX_CHOICES: usize = 16;

/// The sampling fields both endpoints share.
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Not OpenAI's, but the usual extension (vLLM, TGI).
    pub top_k: Option<usize>,
    pub n: Option<usize>,
    pub seed: Option<u64>,
    pub stop: Option<StopStrings>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields OpenAI defines that these models cannot honour: refused unless left at their
/// neutral value, so no caller is silently given something else than it asked for.
#[derive(Debug, Default, Deserialize)]
pub struct Unsupported {
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<Map<String, Value>>,
    suffix: Option<String>,
    tools: Option<Vec<Value>>,
    response_format: Option<Value>,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Value,
    pub best_of: Option<usize>,
    /// Report each token's log-probability and this many alternatives.
    pub logprobs: Option<usize>,
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(flatten)]
    pub unsupported: Unsupported,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<usize>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<usize>,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(flatten)]
    pub unsupported: Unsupported,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

/// What a checked request asks for, whichever endpoint it came to.
#[derive(Debug)]
pub struct Planned {
    /// One per choice, prompt-major: choice `i` answers prompt `i / n`.
    pub plans: Vec<GenerationPlan>,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// `Some(k)`: report log-probabilities with `k` alternatives per token.
    pub logprobs: Option<usize>,
}

pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OpenAiError> {
    serde_json::from_slice(body)
        .map_err(|e| KilnError::bad_input(format!("invalid JSON body: {e}")).into())
}

fn invalid(param: &'static str, message: impl Into<String>) -> OpenAiError {
    OpenAiError::invalid(ErrorKind::BadInput, param, message)
}

impl Unsupported {
    fn check(&self) -> Result<(), OpenAiError> {
        let neutral = |v: Option<f32>| v.is_none_or(|v| v == 0.0);
        if !neutral(self.presence_penalty) {
            return Err(invalid(
                "presence_penalty",
                "presence_penalty is not supported; leave it at 0",
            ));
        }
        if !neutral(self.frequency_penalty) {
            return Err(invalid(
                "frequency_penalty",
                "frequency_penalty is not supported; leave it at 0",
            ));
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(invalid("logit_bias", "logit_bias is not supported"));
        }
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(invalid(
                "suffix",
                "suffix is not supported: these models only continue text",
            ));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(invalid("tools", "these language models cannot call tools"));
        }
        let text_format =
            |f: &Value| f.is_null() || f.get("type").and_then(Value::as_str) == Some("text");
        if self
            .response_format
            .as_ref()
            .is_some_and(|f| !text_format(f))
        {
            return Err(invalid(
                "response_format",
                "only the \"text\" response format is supported",
            ));
        }
        Ok(())
    }
}

impl Sampling {
    /// One plan per prompt and choice; choice `j` of a seeded request uses seed `seed + j`,
    /// so the choices differ and each is reproducible.
    fn plan(
        &self,
        prompts: Vec<String>,
        max_tokens: Option<usize>,
        logprobs: Option<usize>,
        limits: &GenerationConfig,
    ) -> Result<Planned, OpenAiError> {
        let n = self.n.unwrap_or(1);
        if n == 0 || n * prompts.len() > MAX_CHOICES {
            return Err(OpenAiError::invalid(
                ErrorKind::Unprocessable,
                "n",
                format!("n times the number of prompts must be within 1..={MAX_CHOICES}"),
            ));
        }
        if logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(OpenAiError::invalid(
                ErrorKind::Unprocessable,
                "logprobs",
                format!("at most {MAX_TOP_LOGPROBS} alternatives per token can be reported"),
            ));
        }
        let mut plans = Vec::with_capacity(n * prompts.len());
        for prompt in prompts {
            for choice in 0..n {
                let request = GenerateRequest {
                    text: prompt.clone(),
                    max_tokens,
                    temperature: self.temperature,
                    top_k: self.top_k,
                    top_p: self.top_p,
                    seed: self.seed.map(|s| s.wrapping_add(choice as u64)),
                    stop: self.stop.clone(),
                    stream: Some(false),
                    ignore_eos: false,
                };
                let mut plan = plan_generation(request, limits, false)?;
                plan.top_logprobs = logprobs.unwrap_or(0);
                plans.push(plan);
            }
        }
        Ok(Planned {
            plans,
            n,
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            logprobs,
        })
    }
}

impl CompletionRequest {
    /// The prompts, as given.
    pub fn prompts(&self) -> Result<Vec<String>, OpenAiError> {
        match &self.prompt {
            Value::String(text) => Ok(vec![text.clone()]),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                Ok(items
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect())
            }
            Value::Array(items)
                if !items.is_empty() && items.iter().all(|v| v.is_number() || v.is_array()) =>
            {
                Err(invalid(
                    "prompt",
                    "prompts as token ids are not supported: send the text",
                ))
            }
            _ => Err(invalid(
                "prompt",
                "prompt must be a string or a non-empty list of strings",
            )),
        }
    }

    pub fn plan(&self, limits: &GenerationConfig) -> Result<Planned, OpenAiError> {
        self.unsupported.check()?;
        if let Some(best_of) = self.best_of
            && best_of != self.sampling.n.unwrap_or(1)
        {
            return Err(invalid(
                "best_of",
                "best_of is not supported unless it equals n",
            ));
        }
        self.sampling.plan(
            self.prompts()?,
            self.sampling.max_tokens,
            self.logprobs,
            limits,
        )
    }
}

impl ChatRequest {
    pub fn plan(&self, limits: &GenerationConfig) -> Result<Planned, OpenAiError> {
        self.unsupported.check()?;
        if self.top_logprobs.is_some() && !self.logprobs {
            return Err(invalid(
                "top_logprobs",
                "top_logprobs needs logprobs set to true",
            ));
        }
        let logprobs = self.logprobs.then(|| self.top_logprobs.unwrap_or(0));
        let max_tokens = self.max_completion_tokens.or(self.sampling.max_tokens);
        self.sampling.plan(
            vec![chat_prompt(&self.messages)?],
            max_tokens,
            logprobs,
            limits,
        )
    }
}

/// The text a word-level model continues for a conversation: every message's text, in
/// order, one per line. Role names are left out — these models were trained on plain prose
/// and never saw them — so the reply is the model's continuation of the conversation.
pub fn chat_prompt(messages: &[Message]) -> Result<String, OpenAiError> {
    if messages.is_empty() {
        return Err(invalid("messages", "messages must not be empty"));
    }
    let mut lines = Vec::with_capacity(messages.len());
    for message in messages {
        if !matches!(
            message.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(invalid(
                "messages",
                format!(
                    "messages of role '{}' are not supported: use system, developer, user or assistant",
                    message.role
                ),
            ));
        }
        match &message.content {
            Value::Null => {}
            Value::String(text) => lines.push(text.clone()),
            Value::Array(parts) => {
                for part in parts {
                    match (
                        part.get("type").and_then(Value::as_str),
                        part.get("text").and_then(Value::as_str),
                    ) {
                        (Some("text"), Some(text)) => lines.push(text.to_string()),
                        _ => {
                            return Err(invalid(
                                "messages",
                                "message parts must be text: these language models read text only",
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err(invalid(
                    "messages",
                    "a message's content must be a string or a list of text parts",
                ));
            }
        }
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GenerationConfig {
        GenerationConfig::default()
    }

    fn completion(body: &str) -> Result<Planned, OpenAiError> {
        parse::<CompletionRequest>(body.as_bytes())?.plan(&limits())
    }

    fn chat(body: &str) -> Result<Planned, OpenAiError> {
        parse::<ChatRequest>(body.as_bytes())?.plan(&limits())
    }

    #[test]
    fn a_completion_plans_each_prompt_n_times_with_distinct_seeds() {
        let planned = completion(
            r#"{"model":"m","prompt":["In the","And God"],"n":2,"seed":7,"max_tokens":4,"stop":".","logprobs":3,"user":"x"}"#,
        )
        .unwrap();
        assert_eq!(planned.plans.len(), 4);
        assert_eq!(planned.n, 2);
        let texts: Vec<_> = planned.plans.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["In the", "In the", "And God", "And God"]);
        let seeds: Vec<_> = planned.plans.iter().map(|p| p.seed).collect();
        assert_eq!(seeds, [Some(7), Some(8), Some(7), Some(8)]);
        assert!(
            planned
                .plans
                .iter()
                .all(|p| p.max_tokens == 4 && p.stop == ["."])
        );
        assert!(planned.plans.iter().all(|p| p.top_logprobs == 3));
        assert!(!planned.stream);
    }

    #[test]
    fn chat_messages_become_lines_of_one_prompt() {
        let planned = chat(
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"In the beginning"}]}],"max_completion_tokens":3,"stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2}"#,
        )
        .unwrap();
        assert_eq!(planned.plans.len(), 1);
        assert_eq!(planned.plans[0].text, "Be brief.\nIn the beginning");
        assert_eq!(planned.plans[0].max_tokens, 3);
        assert!(planned.stream && planned.include_usage);
        assert_eq!(planned.logprobs, Some(2));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_its_field() {
        for (body, param) in [
            (
                r#"{"model":"m","prompt":"x","frequency_penalty":0.5}"#,
                "frequency_penalty",
            ),
            (
                r#"{"model":"m","prompt":"x","logit_bias":{"5":10}}"#,
                "logit_bias",
            ),
            (r#"{"model":"m","prompt":"x","suffix":"end"}"#, "suffix"),
            (r#"{"model":"m","prompt":"x","best_of":3}"#, "best_of"),
            (r#"{"model":"m","prompt":[1,2,3]}"#, "prompt"),
            (r#"{"model":"m","prompt":[]}"#, "prompt"),
            (r#"{"model":"m","prompt":"x","n":17}"#, "n"),
            (r#"{"model":"m","prompt":"x","logprobs":21}"#, "logprobs"),
        ] {
            let e = completion(body).unwrap_err();
            assert_eq!(e.param, Some(param), "{body}");
        }
        for (body, param) in [
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                "messages",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
                "messages",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2}"#,
                "top_logprobs",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#,
                "tools",
            ),
        ] {
            let e = chat(body).unwrap_err();
            assert_eq!(e.param, Some(param), "{body}");
        }
        // Limits shared with the native route come back as they do there.
        let e = completion(r#"{"model":"m","prompt":"x","max_tokens":0}"#).unwrap_err();
        assert_eq!(e.error.kind, ErrorKind::Unprocessable);
        let e = completion(r#"{"prompt":"x"}"#).unwrap_err();
        assert_eq!(e.error.kind, ErrorKind::BadInput);
        assert!(e.error.message.contains("model"), "{}", e.error.message);
    }
}
