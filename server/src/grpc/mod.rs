//! The gRPC API (tonic), served on its own port beside HTTP and sharing its models and
//! batchers: the Open Inference Protocol's `GRPCInferenceService` ([`inference`]), Kiln's
//! `kiln.v1.Tasks` ([`tasks`]), `grpc.health.v1` and server reflection. Errors map to the
//! same kinds as over HTTP; deadlines come from `grpc-timeout`.

mod inference;
mod tasks;

use std::time::Duration;

use kiln_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use kiln_proto::kiln::v1::tasks_server::TasksServer;
use tonic::Status;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::service::interceptor::InterceptedService;
use tonic_health::server::HealthReporter;

use crate::auth::check_api_key;
use crate::batching::Permit;
use crate::error::KilnError;
use crate::state::AppState;

pub use inference::InferenceService;
pub use tasks::TaskService;

/// Service names whose health `grpc.health.v1` reports, besides the server as a whole ("").
const SERVICES: [&str; 2] = ["inference.GRPCInferenceService", "kiln.v1.Tasks"];

/// Every gRPC service as one router, to be served over HTTP/2 like the HTTP API (and over
/// TLS when that is configured). Served this way, a request's `grpc-timeout` reaches the
/// handlers, which answer DEADLINE_EXCEEDED and drop queued work when it passes.
pub fn router(
    state: AppState,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> axum::Router {
    let max_message = state.settings.max_body_bytes;
    let inference = GrpcInferenceServiceServer::new(InferenceService::new(state.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let tasks = TasksServer::new(TaskService::new(state.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let auth = move |request: tonic::Request<()>| authorize(&state, request);
    tonic::service::Routes::new(health)
        .add_service(reflection().build_v1().expect(DESCRIPTORS_VALID))
        .add_service(reflection().build_v1alpha().expect(DESCRIPTORS_VALID))
        .add_service(InterceptedService::new(inference, auth.clone()))
        .add_service(InterceptedService::new(tasks, auth))
        .into_axum_router()
}

const DESCRIPTORS_VALID: &str = "the descriptors compiled into the binary are valid";

/// Reflection over every service served here.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kiln_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Report the server and its services as serving or not.
pub async fn set_health(health: &HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// With API keys configured, require `authorization: Bearer <key>` metadata.
fn authorize(state: &AppState, request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    check_api_key(&state.settings.api_keys, authorization)?;
    Ok(request)
}

/// Admit an inference request ([`AppState::admit`]) until the permit is dropped.
fn admit(state: &AppState) -> Result<Permit, Status> {
    Ok(state.admit()?)
}

/// The caller's deadline (`grpc-timeout`), else `default`.
fn request_timeout(metadata: &MetadataMap, default: Duration) -> Result<Duration, KilnError> {
    match metadata.get("grpc-timeout") {
        None => Ok(default),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(parse_grpc_timeout)
            .ok_or_else(|| KilnError::bad_input("grpc-timeout is malformed")),
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
    .filter(|d| !d.is_zero())
}

impl From<KilnError> for Status {
    fn from(e: KilnError) -> Self {
        let e = e.for_caller();
        let retry_after = e.retry_after_secs();
        let mut status = Status::new(e.kind.grpc_code(), e.message);
        // As HTTP's Retry-After, for clients that read trailers.
        if let Some(seconds) = retry_after {
            status.metadata_mut().insert("retry-after", seconds.into());
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_over_the_latency_target_carries_retry_after() {
        let refused = KilnError::from(crate::batching::InferError::OverTarget {
            retry_after: Duration::from_millis(2_300),
        });
        let status = Status::from(refused);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "3");
        let failed = Status::from(KilnError::bad_input("no"));
        assert!(failed.metadata().get("retry-after").is_none());
    }

    #[test]
    fn grpc_timeouts_parse_every_unit() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "S", "10", "123456789S", "1x", "-1S", "0m", "1é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
