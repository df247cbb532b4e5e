//! The Open Inference Protocol (KServe V2) independent of the wire: tensors, inference on
//! raw tensors, model metadata and configuration, and the model repository. The HTTP
//! routes (`http::v2`) and the gRPC service (`grpc`) only translate to and from these.

pub mod describe;
pub mod infer;
pub mod repository;
pub mod tensor;
