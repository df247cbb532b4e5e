//! `kiln.v1.Tasks`: classification, captions, next words and streaming generation over
//! gRPC, through the same checks and batchers as the `/v1` HTTP routes.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, stream};
use kiln_proto::kiln::v1 as pb;
use kiln_proto::kiln::v1::tasks_server::Tasks;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::{admit, request_timeout};
use crate::deadline::{deadline_error, failure_reason, within_deadline};
use crate::error::KilnError;
use crate::generation::GenerationEvent;
use crate::metrics::{FailureReason, RequestRecord};
use crate::registry::ModelHandle;
use crate::state::AppState;
use crate::tasks;
use crate::tasks::decode_off_thread_if_large;
use crate::tasks::text_input::{GenerateRequest, StopStrings, next_word_count, plan_generation};

pub struct TaskService {
    state: AppState,
}

impl TaskService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type GenerateStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateResponse, Status>> + Send>>;

/// A count where 0 means "the default".
fn optional_count(n: u32) -> Option<usize> {
    (n > 0).then_some(n as usize)
}

#[tonic::async_trait]
impl Tasks for TaskService {
    async fn classify(
        &self,
        request: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let _permit = admit(&self.state)?;
        let timeout = request_timeout(request.metadata(), self.state.default_timeout());
        let r = request.into_inner();
        let handle = self.state.ready_model(&r.model)?;
        let predictions = within_deadline(&handle, timeout, |deadline| {
            let handle = &handle;
            async move {
                let classifier = handle.classifier()?;
                let k = tasks::class_count(optional_count(r.top_k), classifier.labels.len())?;
                let spec = classifier.input_spec().clone();
                let input = match r.input {
                    Some(pb::classify_request::Input::Image(bytes)) => {
                        decode_off_thread_if_large(bytes.len(), move || Ok(spec.decode(&bytes)?))
                            .await?
                    }
                    Some(pb::classify_request::Input::Pixels(p)) => pixels_input(&spec, &p)?,
                    None => {
                        return Err(KilnError::bad_input("send an image or pixels"));
                    }
                };
                Ok(classifier.classify(input, k, Some(deadline)).await?)
            }
        })
        .await?;
        Ok(Response::new(pb::ClassifyResponse {
            model: handle.name.clone(),
            model_version: handle.version.clone(),
            predictions: predictions
                .into_iter()
                .map(|p| pb::Prediction {
                    label: p.label,
                    index: p.index as u32,
                    probability: p.probability,
                })
                .collect(),
        }))
    }

    async fn caption(
        &self,
        request: Request<pb::CaptionRequest>,
    ) -> Result<Response<pb::CaptionResponse>, Status> {
        let _permit = admit(&self.state)?;
        let timeout = request_timeout(request.metadata(), self.state.default_timeout());
        let r = request.into_inner();
        let handle = self.state.ready_model(&r.model)?;
        let caption = within_deadline(&handle, timeout, |deadline| {
            let handle = &handle;
            async move {
                let captioner = handle.captioner()?;
                let options = captioner.options(
                    r.beam_size.map(|n| n as usize),
                    r.max_tokens.map(|n| n as usize),
                )?;
                let spec = captioner.input_spec().clone();
                let input = match r.input {
                    Some(pb::caption_request::Input::Image(bytes)) => {
                        decode_off_thread_if_large(bytes.len(), move || Ok(spec.decode(&bytes)?))
                            .await?
                    }
                    Some(pb::caption_request::Input::Pixels(p)) => pixels_input(&spec, &p)?,
                    None => {
                        return Err(KilnError::bad_input("send an image or pixels"));
                    }
                };
                Ok(captioner.caption(input, options, Some(deadline)).await?)
            }
        })
        .await?;
        let words = kiln_zoo::captioning::vocabulary::CaptionVocabulary;
        Ok(Response::new(pb::CaptionResponse {
            model: handle.name.clone(),
            model_version: handle.version.clone(),
            tokens: caption
                .tokens
                .iter()
                .map(|&id| pb::CaptionToken {
                    id,
                    text: words.word(id).unwrap_or_default().to_string(),
                })
                .collect(),
            caption: caption.text,
            score: caption.score,
        }))
    }

    async fn next_word(
        &self,
        request: Request<pb::NextWordRequest>,
    ) -> Result<Response<pb::NextWordResponse>, Status> {
        let _permit = admit(&self.state)?;
        let timeout = request_timeout(request.metadata(), self.state.default_timeout());
        let r = request.into_inner();
        let handle = self.state.ready_model(&r.model)?;
        let (prompt_tokens, words) = within_deadline(&handle, timeout, |deadline| {
            let handle = &handle;
            async move {
                let lm = handle.language_model()?;
                let k = next_word_count(optional_count(r.top_k))?;
                tasks::next_words(lm, &r.text, k, deadline).await
            }
        })
        .await?;
        Ok(Response::new(pb::NextWordResponse {
            model: handle.name.clone(),
            model_version: handle.version.clone(),
            prompt_tokens: prompt_tokens as u32,
            predictions: words
                .into_iter()
                .map(|w| pb::WordProbability {
                    word: w.word,
                    token_id: w.token_id,
                    probability: w.probability,
                })
                .collect(),
        }))
    }

    type GenerateStream = GenerateStream;

    /// Without `grpc-timeout` a stream runs until it finishes (as an SSE stream does); with
    /// one, it ends with DEADLINE_EXCEEDED when the deadline passes.
    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<GenerateStream>, Status> {
        let permit = admit(&self.state)?;
        let deadline = match request.metadata().get("grpc-timeout") {
            None => None,
            Some(_) => {
                let timeout = request_timeout(request.metadata(), self.state.default_timeout())?;
                Some((Instant::now() + timeout, timeout))
            }
        };
        let r = request.into_inner();
        let handle = self.state.ready_model(&r.model)?;
        let record = handle.metrics.start_request();
        let receiver = match start(&handle, r) {
            Ok(receiver) => receiver,
            Err(e) => {
                record.finish(Some(failure_reason(e.kind)));
                return Err(e.into());
            }
        };
        Ok(Response::new(Box::pin(events(
            handle, record, receiver, deadline, permit,
        ))))
    }
}

/// Check a generation against the model's limits and hand it to its loop.
fn start(
    handle: &ModelHandle,
    request: pb::GenerateRequest,
) -> Result<UnboundedReceiver<GenerationEvent>, KilnError> {
    let lm = handle.language_model()?;
    let plan = plan_generation(generate_request(request), &lm.config.generation, true)?;
    tasks::start_generation(lm, plan)
}

/// Pixels (height × width × channels, 0–255) as model input.
fn pixels_input(
    spec: &kiln_zoo::image_input::ImageSpec,
    p: &pb::Pixels,
) -> Result<Vec<f32>, KilnError> {
    let (h, w, c) = (p.height as usize, p.width as usize, p.channels as usize);
    if h.checked_mul(w).and_then(|n| n.checked_mul(c)) != Some(p.values.len()) {
        return Err(KilnError::unprocessable(format!(
            "{} pixel values do not fill {h}×{w}×{c}",
            p.values.len()
        )));
    }
    let hwc: Vec<f32> = p.values.iter().map(|&v| f32::from(v)).collect();
    Ok(spec.from_pixels(h, w, c, &hwc)?)
}

fn generate_request(r: pb::GenerateRequest) -> GenerateRequest {
    GenerateRequest {
        text: r.text,
        max_tokens: r.max_tokens.map(|n| n as usize),
        temperature: r.temperature,
        top_k: r.top_k.map(|k| k as usize),
        top_p: r.top_p,
        seed: r.seed,
        stop: (!r.stop.is_empty()).then_some(StopStrings::Many(r.stop)),
        stream: Some(true),
        ignore_eos: r.ignore_eos,
    }
}

/// Tokens, then the finish; the request counts as finished when the stream ends, and a
/// caller that goes away drops the stream, which stops the generation.
fn events(
    handle: Arc<ModelHandle>,
    record: RequestRecord,
    receiver: UnboundedReceiver<GenerationEvent>,
    deadline: Option<(Instant, std::time::Duration)>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<pb::GenerateResponse, Status>> + Send {
    struct Progress {
        handle: Arc<ModelHandle>,
        record: Option<RequestRecord>,
        receiver: UnboundedReceiver<GenerationEvent>,
        deadline: Option<(Instant, std::time::Duration)>,
        _permit: OwnedSemaphorePermit,
    }
    impl Progress {
        fn end(&mut self, failure: Option<FailureReason>) {
            if let Some(record) = self.record.take() {
                record.finish(failure);
            }
        }
    }
    let progress = Progress {
        handle,
        record: Some(record),
        receiver,
        deadline,
        _permit: permit,
    };
    stream::unfold(progress, |mut p| async move {
        p.record.as_ref()?;
        let next = match p.deadline {
            Some((at, timeout)) => tokio::time::timeout_at(at, p.receiver.recv())
                .await
                .map_err(|_| deadline_error(timeout)),
            None => Ok(p.receiver.recv().await),
        };
        let item = match next {
            Ok(Some(GenerationEvent::Token { id, text, logprob })) => Ok(pb::GenerateResponse {
                event: Some(pb::generate_response::Event::Token(pb::Token {
                    id,
                    text,
                    logprob,
                })),
            }),
            Ok(Some(GenerationEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
                text,
            })) => {
                p.end(None);
                Ok(pb::GenerateResponse {
                    event: Some(pb::generate_response::Event::Finished(pb::Finished {
                        model: p.handle.name.clone(),
                        model_version: p.handle.version.clone(),
                        finish_reason: reason.label().into(),
                        text,
                        prompt_tokens: prompt_tokens as u32,
                        completion_tokens: completion_tokens as u32,
                    })),
                })
            }
            Ok(Some(GenerationEvent::Failed(message))) => {
                p.end(Some(FailureReason::Backend));
                Err(Status::internal(message))
            }
            Ok(None) => {
                p.end(Some(FailureReason::Backend));
                Err(tasks::generation_stopped().into())
            }
            Err(e) => {
                p.end(Some(FailureReason::Timeout));
                Err(e.into())
            }
        };
        Some((item, p))
    })
}
