//! OpenAI's answer shapes for both endpoints, whole and streamed: a completion's `text` with
//! the legacy `logprobs` object, a chat reply's `message`/`delta` with per-token `logprobs`.
//! The generated text is the model's continuation as the native routes give it; a chat
//! reply drops its leading space.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::task::language::{GeneratedToken, Generation, GenerationSummary};

/// Which endpoint an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// Builds one request's answer: the fields every object carries, and per choice what its
/// chunks need to remember.
pub struct Answer {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    /// The prompt each choice answers, when echoed (completions with `echo`).
    echoed: Vec<Option<String>>,
    /// Characters of text each choice has sent so far (completions' `text_offset`).
    offsets: Vec<usize>,
    /// Whether each choice has sent any content yet (a chat reply's leading space).
    started: Vec<bool>,
    logprobs: bool,
    n: usize,
    prompt_tokens: usize,
    completion_tokens: usize,
}

pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Answer {
    /// `prompts` holds, per choice, the prompt it answers if echoed.
    pub fn new(
        endpoint: Endpoint,
        model: String,
        echoed: Vec<Option<String>>,
        n: usize,
        logprobs: bool,
    ) -> Self {
        let prefix = match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        let choices = echoed.len();
        Self {
            endpoint,
            id: format!("{prefix}-{:032x}", rand::random::<u128>()),
            created: unix_seconds(SystemTime::now()),
            model,
            offsets: echoed
                .iter()
                .map(|p| p.as_ref().map_or(0, |p| p.chars().count()))
                .collect(),
            echoed,
            started: vec![false; choices],
            logprobs,
            n,
            prompt_tokens: 0,
            completion_tokens: 0,
        }
    }

    fn object(&self, streamed: bool) -> &'static str {
        match (self.endpoint, streamed) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, streamed: bool, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": self.object(streamed),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// Counts a finished choice in the usage; a prompt counts once, however many choices
    /// answer it.
    fn count(&mut self, choice: usize, summary: &GenerationSummary) {
        if choice.is_multiple_of(self.n) {
            self.prompt_tokens += summary.prompt_tokens;
        }
        self.completion_tokens += summary.completion_tokens;
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }

    /// A chat reply's text drops the space its first word was given.
    fn content(&mut self, choice: usize, text: &str) -> String {
        if self.endpoint == Endpoint::Chat && !self.started[choice] {
            let text = text.trim_start();
            self.started[choice] = !text.is_empty();
            return text.to_string();
        }
        text.to_string()
    }

    /// The whole answer from every choice's collected generation.
    pub fn whole(mut self, generations: Vec<Generation>) -> Value {
        let mut choices = Vec::with_capacity(generations.len());
        for (index, generation) in generations.into_iter().enumerate() {
            self.count(index, &generation.summary);
            let finish_reason = generation.summary.reason.label();
            let text = self.content(index, &generation.summary.text);
            choices.push(match self.endpoint {
                Endpoint::Completions => {
                    let logprobs = self.completion_logprobs(index, &generation.tokens);
                    let echoed = self.echoed[index].clone().unwrap_or_default();
                    json!({
                        "index": index,
                        "text": echoed + &text,
                        "logprobs": logprobs,
                        "finish_reason": finish_reason,
                    })
                }
                Endpoint::Chat => json!({
                    "index": index,
                    "message": { "role": "assistant", "content": text },
                    "logprobs": self.chat_logprobs(&generation.tokens),
                    "finish_reason": finish_reason,
                }),
            });
        }
        let mut answer = self.envelope(false, choices);
        answer["usage"] = self.usage();
        answer
    }

    /// The chunks a stream opens with: a chat reply's role, a completion's echoed prompt.
    pub fn opening(&mut self) -> Vec<Value> {
        let mut chunks = Vec::new();
        for index in 0..self.echoed.len() {
            match self.endpoint {
                Endpoint::Chat => chunks.push(self.envelope(
                    true,
                    vec![json!({
                        "index": index,
                        "delta": { "role": "assistant", "content": "" },
                        "logprobs": null,
                        "finish_reason": null,
                    })],
                )),
                Endpoint::Completions => {
                    if let Some(prompt) = &self.echoed[index] {
                        chunks.push(self.envelope(
                            true,
                            vec![json!({
                                "index": index, "text": prompt, "logprobs": null, "finish_reason": null,
                            })],
                        ));
                    }
                }
            }
        }
        chunks
    }

    /// The chunk for one generated token of a choice.
    pub fn token(&mut self, index: usize, token: GeneratedToken) -> Value {
        let tokens = std::slice::from_ref(&token);
        let choice = match self.endpoint {
            Endpoint::Completions => {
                let logprobs = self.completion_logprobs(index, tokens);
                json!({ "index": index, "text": token.text, "logprobs": logprobs, "finish_reason": null })
            }
            Endpoint::Chat => {
                let logprobs = self.chat_logprobs(tokens);
                let content = self.content(index, &token.text);
                json!({
                    "index": index,
                    "delta": { "content": content },
                    "logprobs": logprobs,
                    "finish_reason": null,
                })
            }
        };
        self.envelope(true, vec![choice])
    }

    /// The last chunk of a choice, with its finish reason.
    pub fn finished(&mut self, index: usize, summary: &GenerationSummary) -> Value {
        self.count(index, summary);
        let reason = summary.reason.label();
        let choice = match self.endpoint {
            Endpoint::Completions => {
                json!({ "index": index, "text": "", "logprobs": null, "finish_reason": reason })
            }
            Endpoint::Chat => {
                json!({ "index": index, "delta": {}, "logprobs": null, "finish_reason": reason })
            }
        };
        self.envelope(true, vec![choice])
    }

    /// The closing chunk with the usage, for `stream_options.include_usage`.
    pub fn usage_chunk(&self) -> Value {
        let mut chunk = self.envelope(true, Vec::new());
        chunk["usage"] = self.usage();
        chunk
    }

    /// The legacy completions `logprobs` object, advancing the choice's text offset.
    fn completion_logprobs(&mut self, index: usize, tokens: &[GeneratedToken]) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let mut offsets = Vec::with_capacity(tokens.len());
        for token in tokens {
            offsets.push(self.offsets[index]);
            self.offsets[index] += token.text.chars().count();
        }
        let top: Vec<Value> = tokens
            .iter()
            .map(|t| {
                let mut alternatives = Map::new();
                for a in &t.alternatives {
                    alternatives
                        .entry(a.text.clone())
                        .or_insert(json!(a.logprob));
                }
                Value::Object(alternatives)
            })
            .collect();
        json!({
            "tokens": tokens.iter().map(|t| &t.text).collect::<Vec<_>>(),
            "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
            "top_logprobs": top,
            "text_offset": offsets,
        })
    }

    /// The chat `logprobs` object: each token with its bytes and alternatives.
    fn chat_logprobs(&self, tokens: &[GeneratedToken]) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let entry = |text: &str, logprob: f32| json!({ "token": text, "logprob": logprob, "bytes": text.as_bytes() });
        let content: Vec<Value> = tokens
            .iter()
            .map(|t| {
                let mut e = entry(&t.text, t.logprob);
                e["top_logprobs"] = t
                    .alternatives
                    .iter()
                    .map(|a| entry(&a.text, a.logprob))
                    .collect();
                e
            })
            .collect();
        json!({ "content": content, "refusal": null })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::language::{Alternative, FinishReason};

    fn token(text: &str, logprob: f32) -> GeneratedToken {
        GeneratedToken {
            id: 7,
            text: text.into(),
            logprob,
            alternatives: vec![Alternative {
                id: 8,
                text: " earth".into(),
                logprob: -2.0,
            }],
        }
    }

    fn generation(words: &[&str]) -> Generation {
        Generation {
            tokens: words.iter().map(|w| token(w, -0.5)).collect(),
            summary: GenerationSummary {
                reason: FinishReason::Length,
                prompt_tokens: 3,
                completion_tokens: words.len(),
                text: words.concat(),
            },
        }
    }

    #[test]
    fn a_whole_completion_echoes_offsets_and_counts_each_prompt_once() {
        let answer = Answer::new(
            Endpoint::Completions,
            "gru".into(),
            vec![Some("In the".into()), Some("In the".into())],
            2,
            true,
        );
        let whole = answer.whole(vec![
            generation(&[" beginning", ","]),
            generation(&[" day"]),
        ]);
        assert_eq!(whole["object"], "text_completion");
        assert_eq!(whole["choices"][0]["text"], "In the beginning,");
        assert_eq!(whole["choices"][1]["index"], 1);
        let logprobs = &whole["choices"][0]["logprobs"];
        assert_eq!(logprobs["text_offset"], json!([6, 16]));
        assert_eq!(logprobs["token_logprobs"], json!([-0.5, -0.5]));
        assert_eq!(logprobs["top_logprobs"][0][" earth"], -2.0);
        assert_eq!(
            whole["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
        );
        assert_eq!(whole["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn a_streamed_chat_reply_opens_with_its_role_and_trims_its_first_space() {
        let mut answer = Answer::new(Endpoint::Chat, "gru".into(), vec![None], 1, false);
        let opening = answer.opening();
        assert_eq!(opening[0]["object"], "chat.completion.chunk");
        assert_eq!(opening[0]["choices"][0]["delta"]["role"], "assistant");
        let first = answer.token(0, token(" And", -0.1));
        assert_eq!(first["choices"][0]["delta"]["content"], "And");
        assert!(first["choices"][0]["logprobs"].is_null());
        let second = answer.token(0, token(" God", -0.1));
        assert_eq!(second["choices"][0]["delta"]["content"], " God");
        let summary = generation(&[" And", " God"]).summary;
        let last = answer.finished(0, &summary);
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert_eq!(answer.usage_chunk()["usage"]["total_tokens"], 5);
        assert_eq!(answer.usage_chunk()["choices"], json!([]));
    }
}
