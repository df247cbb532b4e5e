//! Kiln's gRPC interfaces, generated at build time from `proto/`.
//!
//! - [`inference`]: the Open Inference Protocol (KServe V2) `GRPCInferenceService`, wire
//!   compatible with Triton's clients, with the model configuration messages it returns.
//! - [`kiln::v1`]: Kiln's typed task service (classify, next word, streaming generation).

#![allow(clippy::all, missing_docs)]

pub mod inference {
    tonic::include_proto!("inference");
}

pub mod kiln {
    pub mod v1 {
        tonic::include_proto!("kiln.v1");
    }
}

/// Every file descriptor of the services above, encoded, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kiln_descriptor.bin"));
