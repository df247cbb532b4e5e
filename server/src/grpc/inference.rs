//! `inference.GRPCInferenceService`: the Open Inference Protocol over gRPC, translating
//! protobuf messages to and from [`crate::v2`].

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use kiln_proto::inference as pb;
use kiln_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use kiln_proto::inference::infer_parameter::ParameterChoice;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use super::{admit, request_timeout};
use crate::error::KilnError;
use crate::metrics::{CountAndDuration, StatsSnapshot};
use crate::registry::ModelHandle;
use crate::state::AppState;
use crate::task::run_request;
use crate::v2::infer::{RequestedOutput, infer, timeout_micros};
use crate::v2::tensor::{DataType, InputTensor, OutputTensor, TensorData};
use crate::v2::{describe, repository};

/// Requests of one `ModelStreamInfer` stream in flight at once; answers keep their order.
const STREAM_CONCURRENCY: usize = 64;

pub struct InferenceService {
    state: AppState,
}

impl InferenceService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type InferStream = Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let ready = self.state.ready_model_version(&r.name, &r.version).is_ok();
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "kiln".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: describe::EXTENSIONS.map(String::from).to_vec(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let handle = self.state.ready_model_version(&r.name, &r.version)?;
        let (inputs, outputs) = describe::tensors(&handle);
        let tensor = |t: describe::TensorMetadata| pb::model_metadata_response::TensorMetadata {
            name: t.name.into(),
            datatype: t.datatype.name().into(),
            shape: t.shape,
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: handle.name.clone(),
            versions: vec![handle.version.clone()],
            platform: describe::platform(&handle),
            inputs: inputs.into_iter().map(tensor).collect(),
            outputs: outputs.into_iter().map(tensor).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let _permit = admit(&self.state)?;
        let timeout = request_timeout(request.metadata(), self.state.default_timeout());
        let response = infer_one(&self.state, request.into_inner(), timeout).await?;
        Ok(Response::new(response))
    }

    type ModelStreamInferStream = InferStream;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<InferStream>, Status> {
        let state = self.state.clone();
        let default = state.default_timeout();
        let answers = request
            .into_inner()
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok()))
            .map(move |r| {
                let state = state.clone();
                async move {
                    let id = r.id.clone();
                    let answer = match admit(&state) {
                        Ok(_permit) => infer_one(&state, r, Ok(default))
                            .await
                            .map_err(Status::from),
                        Err(status) => Err(status),
                    };
                    Ok(match answer {
                        Ok(response) => pb::ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(status) => pb::ModelStreamInferResponse {
                            error_message: status.message().to_string(),
                            infer_response: Some(pb::ModelInferResponse {
                                id,
                                ..Default::default()
                            }),
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = request.into_inner();
        let handle = self.state.ready_model_version(&r.name, &r.version)?;
        let config = describe::config(&handle);
        let data_type = |t: &describe::TensorMetadata| proto_data_type(t.datatype) as i32;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(pb::ModelConfig {
                name: config.name,
                platform: config.platform,
                backend: "kiln".into(),
                max_batch_size: config.max_batch_size as i32,
                input: config
                    .inputs
                    .iter()
                    .map(|t| pb::ModelInput {
                        name: t.name.into(),
                        data_type: data_type(t),
                        dims: t.shape[1..].to_vec(),
                    })
                    .collect(),
                output: config
                    .outputs
                    .iter()
                    .map(|t| pb::ModelOutput {
                        name: t.name.into(),
                        data_type: data_type(t),
                        dims: t.shape[1..].to_vec(),
                        label_filename: config.label_filename.clone().unwrap_or_default(),
                    })
                    .collect(),
                dynamic_batching: Some(pb::ModelDynamicBatching {
                    preferred_batch_size: config
                        .preferred_batch_sizes
                        .iter()
                        .map(|&s| s as i32)
                        .collect(),
                    max_queue_delay_microseconds: config.max_queue_delay_us,
                }),
            }),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = request.into_inner();
        let handles = if r.name.is_empty() {
            self.state.ready_models()
        } else {
            vec![self.state.ready_model_version(&r.name, &r.version)?]
        };
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: handles.iter().map(|h| statistics(h)).collect(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let entries = repository::index(&self.state, request.into_inner().ready)?;
        Ok(Response::new(pb::RepositoryIndexResponse {
            models: entries
                .into_iter()
                .map(|e| pb::repository_index_response::ModelIndex {
                    name: e.name,
                    version: e.version,
                    state: e.state.into(),
                    reason: e.reason,
                })
                .collect(),
        }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let r = request.into_inner();
        if let Some(name) = r.parameters.keys().next() {
            return Err(Status::invalid_argument(format!(
                "load parameter '{name}' is not supported: Kiln loads the model folder as it is"
            )));
        }
        repository::load(&self.state, &r.model_name).await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        repository::unload(&self.state, &request.into_inner().model_name).await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

/// One inference: decode, run under the deadline through the batcher, encode.
async fn infer_one(
    state: &AppState,
    request: pb::ModelInferRequest,
    timeout: Result<std::time::Duration, KilnError>,
) -> Result<pb::ModelInferResponse, KilnError> {
    let handle = state.ready_model_version(&request.model_name, &request.model_version)?;
    let id = request.id.clone();
    let outputs = run_request(&handle.metrics, timeout, |deadline: Instant| {
        let handle = &handle;
        async move {
            let decoded = decode_request(request)?;
            infer(
                handle,
                decoded.inputs,
                decoded.outputs,
                deadline,
                decoded.timeout,
            )
            .await
        }
    })
    .await?;
    Ok(encode_response(&handle, id, outputs))
}

/// What a `ModelInferRequest` asks for.
struct DecodedRequest {
    /// From raw contents when sent, else the typed lists.
    inputs: Vec<InputTensor>,
    outputs: Vec<RequestedOutput>,
    /// The request's own `timeout` parameter.
    timeout: Option<Duration>,
}

fn decode_request(request: pb::ModelInferRequest) -> Result<DecodedRequest, KilnError> {
    let timeout = request
        .parameters
        .get("timeout")
        .map(|p| timeout_micros(count_parameter(p).map(|n| n as u64)))
        .transpose()?;
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(KilnError::bad_input(format!(
            "{} raw_input_contents for {} inputs; send one per input or none",
            raw.len(),
            request.inputs.len()
        )));
    }
    let inputs = request
        .inputs
        .into_iter()
        .enumerate()
        .map(|(i, tensor)| {
            let datatype = DataType::parse(&tensor.datatype)?;
            let data = match raw.get(i) {
                Some(raw) => TensorData::from_raw(datatype, raw)?,
                None => typed_contents(datatype, &tensor.name, tensor.contents)?,
            };
            InputTensor::new(tensor.name, &tensor.shape, data)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = request
        .outputs
        .into_iter()
        .map(|output| {
            let classification = match output.parameters.get("classification") {
                None => None,
                Some(p) => Some(count_parameter(p).ok_or_else(|| {
                    KilnError::bad_input("classification must be a positive integer")
                })?),
            };
            Ok(RequestedOutput {
                name: output.name,
                classification,
            })
        })
        .collect::<Result<Vec<_>, KilnError>>()?;
    Ok(DecodedRequest {
        inputs,
        outputs,
        timeout,
    })
}

fn count_parameter(p: &pb::InferParameter) -> Option<usize> {
    match p.parameter_choice {
        Some(ParameterChoice::Int64Param(n)) => usize::try_from(n).ok(),
        Some(ParameterChoice::Uint64Param(n)) => usize::try_from(n).ok(),
        _ => None,
    }
}

/// Elements from the typed `contents` lists.
fn typed_contents(
    datatype: DataType,
    name: &str,
    contents: Option<pb::InferTensorContents>,
) -> Result<TensorData, KilnError> {
    let contents = contents.unwrap_or_default();
    Ok(match datatype {
        DataType::Fp32 => TensorData::Fp32(contents.fp32_contents),
        DataType::Int64 => TensorData::Int64(contents.int64_contents),
        DataType::Int32 => TensorData::Int32(contents.int_contents),
        DataType::Bytes => TensorData::Bytes(contents.bytes_contents),
        DataType::Uint8 => TensorData::Uint8(
            contents
                .uint_contents
                .into_iter()
                .map(|v| {
                    u8::try_from(v).map_err(|_| {
                        KilnError::bad_input(format!("UINT8 input '{name}' holds {v}, beyond 255"))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Outputs as raw contents, as Triton's clients read them.
fn encode_response(
    handle: &ModelHandle,
    id: String,
    outputs: Vec<OutputTensor>,
) -> pb::ModelInferResponse {
    let raw_output_contents = outputs.iter().map(|o| o.data.to_raw()).collect();
    pb::ModelInferResponse {
        model_name: handle.name.clone(),
        model_version: handle.version.clone(),
        id,
        parameters: HashMap::new(),
        outputs: outputs
            .into_iter()
            .map(|o| pb::model_infer_response::InferOutputTensor {
                name: o.name,
                datatype: o.data.datatype().name().into(),
                shape: o.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        raw_output_contents,
    }
}

fn proto_data_type(datatype: DataType) -> pb::DataType {
    match datatype {
        DataType::Uint8 => pb::DataType::TypeUint8,
        DataType::Int32 => pb::DataType::TypeInt32,
        DataType::Int64 => pb::DataType::TypeInt64,
        DataType::Fp32 => pb::DataType::TypeFp32,
        DataType::Bytes => pb::DataType::TypeString,
    }
}

fn statistics(handle: &ModelHandle) -> pb::ModelStatistics {
    let StatsSnapshot {
        last_inference_ms,
        inference_count,
        execution_count,
        success,
        fail,
        queue,
        compute_infer,
        batches,
    } = handle.metrics.stats();
    let duration = |d: CountAndDuration| {
        Some(pb::StatisticDuration {
            count: d.count,
            ns: d.ns,
        })
    };
    pb::ModelStatistics {
        name: handle.name.clone(),
        version: handle.version.clone(),
        last_inference: last_inference_ms,
        inference_count,
        execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(success),
            fail: duration(fail),
            queue: duration(queue),
            compute_input: duration(CountAndDuration::default()),
            compute_infer: duration(compute_infer),
            compute_output: duration(CountAndDuration::default()),
        }),
        batch_stats: batches
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(CountAndDuration::default()),
                compute_infer: duration(b.compute_infer),
                compute_output: duration(CountAndDuration::default()),
            })
            .collect(),
    }
}
