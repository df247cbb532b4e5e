//! A generation in progress as its caller holds it: the loop's events, the request's record
//! in the metrics, its deadline, and the server's in-flight permit, together. Protocols map
//! it to their stream (Server-Sent Events, gRPC) or collect it into one answer; dropping it
//! stops the generation and counts the request as canceled.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::events::{FinishReason, GenerationEvent};
use crate::batching::Permit;
use crate::error::{ErrorKind, KilnError};
use crate::metrics::{FailureReason, RequestRecord};
use crate::task::{deadline_error, failure_reason};

/// How far a generation's deadline reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineScope {
    /// The whole answer must arrive in time (a JSON answer, a gRPC call with a deadline).
    WholeAnswer,
    /// Only the first token must (a stream the caller reads as it comes).
    FirstToken,
}

/// A request's deadline and how far it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationDeadline {
    pub at: Instant,
    pub timeout: Duration,
    pub scope: DeadlineScope,
}

impl GenerationDeadline {
    pub fn new(timeout: Duration, scope: DeadlineScope) -> Self {
        Self {
            at: Instant::now() + timeout,
            timeout,
            scope,
        }
    }
}

/// One token of a generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct GeneratedToken {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
    /// The likeliest tokens of this step, most likely first, when they were asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
}

/// A token a step could have chosen, with its log-probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Alternative {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSummary {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The whole generated text.
    pub text: String,
}

/// What a stream yields, in order: tokens, then one summary.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Token(GeneratedToken),
    Finished(GenerationSummary),
}

/// A whole generation, collected.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub tokens: Vec<GeneratedToken>,
    pub summary: GenerationSummary,
}

/// A generation in progress; see the module documentation.
pub struct GenerationStream {
    events: UnboundedReceiver<GenerationEvent>,
    record: Option<RequestRecord>,
    deadline: Option<GenerationDeadline>,
    started: bool,
    _in_flight: Option<Permit>,
}

impl GenerationStream {
    pub(super) fn new(
        events: UnboundedReceiver<GenerationEvent>,
        record: RequestRecord,
        deadline: Option<GenerationDeadline>,
        in_flight: Option<Permit>,
    ) -> Self {
        Self {
            events,
            record: Some(record),
            deadline,
            started: false,
            _in_flight: in_flight,
        }
    }

    /// The next token or the summary; `None` once the stream has ended. An error ends it.
    pub async fn next(&mut self) -> Option<Result<StreamItem, KilnError>> {
        self.record.as_ref()?;
        let deadline = self
            .deadline
            .filter(|d| d.scope == DeadlineScope::WholeAnswer || !self.started);
        let event = match deadline {
            Some(d) => match tokio::time::timeout_at(d.at, self.events.recv()).await {
                Ok(event) => event,
                Err(_) => return Some(Err(self.end_with(deadline_error(d.timeout)))),
            },
            None => self.events.recv().await,
        };
        self.started = true;
        Some(match event {
            Some(GenerationEvent::Token {
                id,
                text,
                logprob,
                alternatives,
            }) => Ok(StreamItem::Token(GeneratedToken {
                id,
                text,
                logprob,
                alternatives: alternatives
                    .into_iter()
                    .map(|(id, text, logprob)| Alternative { id, text, logprob })
                    .collect(),
            })),
            Some(GenerationEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
                text,
            }) => {
                self.end(None);
                Ok(StreamItem::Finished(GenerationSummary {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                    text,
                }))
            }
            Some(GenerationEvent::Failed(error)) => Err(self.end_with(error.into())),
            None => Err(self.end_with(generation_stopped())),
        })
    }

    /// Wait for the whole generation.
    pub async fn collect(mut self) -> Result<Generation, KilnError> {
        let mut tokens = Vec::new();
        while let Some(item) = self.next().await {
            match item? {
                StreamItem::Token(token) => tokens.push(token),
                StreamItem::Finished(summary) => return Ok(Generation { tokens, summary }),
            }
        }
        Err(generation_stopped())
    }

    fn end(&mut self, failure: Option<FailureReason>) {
        if let Some(record) = self.record.take() {
            record.finish(failure);
        }
    }

    fn end_with(&mut self, error: KilnError) -> KilnError {
        self.end(Some(failure_reason(error.kind)));
        error
    }
}

/// Error for a generation whose loop went away before it finished.
pub fn generation_stopped() -> KilnError {
    KilnError::new(ErrorKind::NotReady, "the model stopped generating")
}
