//! `kiln.v1.Tasks`: classification, captions, next words and streaming generation over
//! gRPC: messages translated to and from the same task calls as the `/v1` HTTP routes.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, stream};
use kiln_proto::kiln::v1 as pb;
use kiln_proto::kiln::v1::tasks_server::Tasks;
use tonic::{Request, Response, Status};

use super::{admit, request_timeout};
use crate::error::KilnError;
use crate::registry::ModelHandle;
use crate::state::AppState;
use crate::task::caption::CaptionRequestOptions;
use crate::task::image::ImageInput;
use crate::task::language::request::{GenerateRequest, StopStrings, plan_generation};
use crate::task::language::{DeadlineScope, GenerationDeadline, GenerationStream, StreamItem};
use crate::task::{failure_reason, run_request};

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
        let predictions = run_request(&handle.metrics, timeout, |deadline| {
            let handle = &handle;
            async move {
                let classifier = handle.classifier()?;
                let image = match r.input {
                    Some(pb::classify_request::Input::Image(bytes)) => ImageInput::Encoded(bytes),
                    Some(pb::classify_request::Input::Pixels(p)) => pixels_input(p),
                    None => return Err(KilnError::bad_input("send an image or pixels")),
                };
                classifier
                    .classify(image, optional_count(r.top_k), deadline)
                    .await
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
        let caption = run_request(&handle.metrics, timeout, |deadline| {
            let handle = &handle;
            async move {
                let captioner = handle.captioner()?;
                let options = CaptionRequestOptions {
                    beam_size: r.beam_size.map(|n| n as usize),
                    max_tokens: r.max_tokens.map(|n| n as usize),
                };
                let image = match r.input {
                    Some(pb::caption_request::Input::Image(bytes)) => ImageInput::Encoded(bytes),
                    Some(pb::caption_request::Input::Pixels(p)) => pixels_input(p),
                    None => return Err(KilnError::bad_input("send an image or pixels")),
                };
                let mut captions = captioner.caption(vec![image], options, deadline).await?;
                Ok(captions.remove(0))
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
        let words = run_request(&handle.metrics, timeout, |deadline| {
            let handle = &handle;
            async move {
                let lm = handle.language_model()?;
                lm.next_words(&r.text, optional_count(r.top_k), deadline)
                    .await
            }
        })
        .await?;
        Ok(Response::new(pb::NextWordResponse {
            model: handle.name.clone(),
            model_version: handle.version.clone(),
            prompt_tokens: words.prompt_tokens as u32,
            predictions: words
                .predictions
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
                Some(GenerationDeadline::new(timeout, DeadlineScope::WholeAnswer))
            }
        };
        let r = request.into_inner();
        let handle = self.state.ready_model(&r.model)?;
        let record = handle.metrics.start_request();
        let plan = handle.language_model().and_then(|lm| {
            let plan = plan_generation(generate_request(r), &lm.config.generation, true)?;
            Ok((lm, plan))
        });
        let (lm, plan) = match plan {
            Ok(plan) => plan,
            Err(e) => {
                record.finish(Some(failure_reason(e.kind)));
                return Err(e.into());
            }
        };
        let generation = lm.generate(plan, record, deadline, Some(permit))?;
        Ok(Response::new(Box::pin(events(handle, generation))))
    }
}

/// Pixels (height × width × channels, 0–255) as an image.
fn pixels_input(p: pb::Pixels) -> ImageInput {
    ImageInput::Pixels {
        height: p.height as usize,
        width: p.width as usize,
        channels: p.channels as usize,
        values: p.values.iter().map(|&v| f32::from(v)).collect(),
    }
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

/// Tokens, then the finish; a caller that goes away drops the stream, which stops the
/// generation. Without `grpc-timeout` a stream runs until it finishes (as an SSE stream
/// does); with one, it ends with DEADLINE_EXCEEDED when the deadline passes.
fn events(
    handle: Arc<ModelHandle>,
    generation: GenerationStream,
) -> impl Stream<Item = Result<pb::GenerateResponse, Status>> + Send {
    stream::unfold(generation, move |mut generation| {
        let handle = handle.clone();
        async move {
            let item = generation.next().await?.map_err(Status::from);
            let event = item.map(|item| match item {
                StreamItem::Token(t) => pb::generate_response::Event::Token(pb::Token {
                    id: t.id,
                    text: t.text,
                    logprob: t.logprob,
                }),
                StreamItem::Finished(s) => pb::generate_response::Event::Finished(pb::Finished {
                    model: handle.name.clone(),
                    model_version: handle.version.clone(),
                    finish_reason: s.reason.label().into(),
                    text: s.text,
                    prompt_tokens: s.prompt_tokens as u32,
                    completion_tokens: s.completion_tokens as u32,
                }),
            });
            Some((
                event.map(|event| pb::GenerateResponse { event: Some(event) }),
                generation,
            ))
        }
    })
}
