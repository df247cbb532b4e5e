//! The OpenAPI document of the HTTP API, served at `/openapi.json`. Each route's entry is
//! written beside its handler and registered with the route itself, so the document
//! always lists exactly the routes the server serves.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// Every error answer: a clear message, never internal detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// The bytes of a file (an image).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct FileBytes(Vec<u8>);

/// A multipart upload: the field `image` or `file`, else the first one.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImageUpload {
    image: FileBytes,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kiln",
        description = "Inference server for Burn models: image classification, image \
                       captioning and language models, with dynamic batching. The task routes live under /v1, the Open \
                       Inference Protocol (KServe V2) under /v2. gRPC serves the same on its own \
                       port (inference.GRPCInferenceService and kiln.v1.Tasks).",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "Tasks", description = "Classification, captions, next words and generation"),
        (name = "Open Inference Protocol (KServe V2)", description = "Metadata, inference on raw tensors, statistics and the model repository"),
        (name = "Health", description = "Liveness and readiness for probes"),
        (name = "Metrics", description = "Prometheus metrics"),
    )
)]
pub struct ApiDoc;
